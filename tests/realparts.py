"""Real parts for tests, the soak and the benchmarks: an RTSP server serving real H.264 files,
a restartable redis-server, the daemon as a subprocess, and clip encoding. Development tooling,
kept out of the product package: the tests import it from here, benchmarks/soak.py too."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]  # the checkout: scripts/rtsp_server.py lives there
# The RTSP server needs GStreamer's Python bindings, which Debian packages (python3-gi) for its own
# interpreter, not for the venv.
SYSTEM_PYTHON = os.environ.get("STREETSCAN_SYSTEM_PYTHON") or "/usr/bin/python3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def rtsp_server_available() -> str | None:
    """None when the RTSP server can run here, else what is missing."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} (Debian python3)"
    probe = (
        "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst, GstRtspServer; "
        "Gst.init(None); assert all(Gst.ElementFactory.find(e) for e in ('qtdemux', 'h264parse', 'rtph264pay'))"
    )
    ok = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0
    return None if ok else "gst-rtsp-server (gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good/-bad, python3-gi)"


class RedisServer:
    """redis-server on a fixed port with an append-only file, so it can be stopped and restarted
    with its data (as a production Redis restart would keep the case queue)."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.exe = shutil.which("redis-server")
        self.port = port or free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        if not wait_port(self.port):
            self.proc.kill()
            raise RuntimeError("redis-server did not start")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


class RtspServer:
    def __init__(self, mounts: dict[str, Path], port: int | None = None):
        self.mounts = mounts
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, mount: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{mount}"

    def start(self) -> RtspServer:
        args = [SYSTEM_PYTHON, str(REPO / "scripts" / "rtsp_server.py"), "--port", str(self.port)]
        for name, path in self.mounts.items():
            args += ["--mount", f"{name}={path}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.proc.kill()
            raise RuntimeError(f"RTSP server did not start: {line}{self.proc.stdout.read()}")
        return self

    def kill(self) -> None:
        """Gone without a goodbye, as a camera that loses power."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    stop = kill


def parked_marker_streams(
    path: Path, rtsp: RtspServer, cameras: list[str], *, analysis_fps: float, resolve_grace_s: float
) -> Path:
    """streams.yaml for RTSP cameras that each show a parked marker: illegal parking after 2 s."""
    path.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "analysis_fps": analysis_fps,
                    "event": {"update_interval_s": 3, "resolve_grace_s": resolve_grace_s},
                    "reader": {"backoff_initial_s": 0.3, "backoff_max_s": 2.0},
                    "rules": {"illegal_parking": {"dwell_s": 2}},
                },
                "cameras": [
                    {"id": c, "name": c, "url": rtsp.url(c), "location": {"address": f"road {c}"}} for c in cameras
                ],
            }
        )
    )
    return path


class DaemonProcess:
    """`streetscan run` as a real subprocess: signals, exit codes and kill -9 are the real thing."""

    def __init__(
        self,
        streams: Path,
        out: Path,
        model: Path,
        *extra: str,
        metrics_port: int | None = None,
        log: Path | None = None,
    ):
        """`log`: where its output goes (default OUT/daemon.log)."""
        self.streams, self.out, self.model, self.extra = streams, out, model, extra
        self.port = metrics_port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = log or out / "daemon.log"

    def start(self) -> DaemonProcess:
        self.out.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "streetscan",
            "--log-format",
            "json",
            "run",
            "--streams",
            str(self.streams),
            "--model",
            str(self.model),
            "--out",
            str(self.out),
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(self.port),
            *self.extra,
        ]
        self._log_fh = self.log.open("a")
        self.proc = subprocess.Popen(
            args, stdout=self._log_fh, stderr=subprocess.STDOUT, cwd=self.out, env={**os.environ, "COLUMNS": "200"}
        )
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """{(sample name, sorted label items): value}; empty while the daemon is not serving."""
        status, text = self.get("/metrics")
        if status != 200:
            return {}
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }

    def metric(self, name: str, **labels) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def per_camera(self, name: str = "streetscan_frames_analysed_total") -> dict[str, float]:
        """{camera: value} of a per-camera series, for the cameras /metrics lists now."""
        return {dict(labels)["camera"]: v for (n, labels), v in self.metrics().items() if n == name}

    def camera_state(self, camera: str) -> str | None:
        for (name, labels), value in self.metrics().items():
            d = dict(labels)
            if name == "streetscan_camera_state" and d.get("camera") == camera and value == 1.0:
                return d["state"]
        return None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._log_fh.close()
        return rc

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc:
            self._log_fh.close()

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def encode_clip(
    path: Path,
    *,
    width: int = 640,
    height: int = 360,
    fps: int = 25,
    seconds: float = 8.0,
    gop: int = 25,
    scene=None,
    bframes: int = 0,
) -> Path:
    """Encode a real H.264 clip. `scene(t, img)` draws on each frame (BGR); default: a moving box.
    `bframes` > 0 makes a stream with B-frames (a decoder reorder delay), as many cameras send."""
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {
        "g": str(gop),
        "keyint_min": str(gop),
        "sc_threshold": "0",
        "preset": "ultrafast",
        "bf": str(bframes),
    }
    stream.time_base = Fraction(1, fps)
    for i in range(int(seconds * fps)):
        t = i / fps
        img = np.full((height, width, 3), 90, dtype=np.uint8)
        img[height // 2 :, :] = 60  # a "road"
        if scene is None:
            x = int((t * 60) % (width - 80))
            img[100:160, x : x + 80] = (0, 200, 0)
        else:
            scene(t, img)
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts = i
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def loop_clip(src: Path, dst: Path, min_seconds: float) -> Path:
    """`src` repeated (stream copy, no re-encode) until it lasts at least `min_seconds`."""
    with av.open(str(src)) as c:
        duration = (c.duration or 1_000_000) / 1_000_000
    loops = max(0, int(min_seconds // duration))
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(src), "-c", "copy", str(dst)], check=True
    )
    return dst


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
