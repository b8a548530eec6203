"""Console figures (issue #17), both against real servers:

1. Response time with 100,000 cases in the index: the case list (first page, filtered, deep page)
   and case pages, served by uvicorn on a real port, timed by an HTTP client on this machine.
2. The console's CPU inside the daemon: `streetscan run --http-port` on N RTSP cameras, CPU of the
   daemon process measured for a while with nobody on the console, then while an operator's
   browser refreshes the case list, the cameras page, a camera picture and the overview charts
   every few seconds. The difference is what the console costs.

    .venv/bin/python benchmarks/console.py --json out/console-bench.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import uvicorn
import yaml

from streetscan.capacity import machine
from streetscan.console.app import ConsoleSettings, create_app
from streetscan.console.index import CaseIndex
from streetscan.console.users import UserStore
from streetscan.pipeline.catalogue import CATALOGUE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the real parts the tests use
from marker_model import build_marker_model, red_marker  # noqa: E402
from realparts import DaemonProcess, RtspServer, encode_clip, free_port  # noqa: E402

PASSWORD = "benchmark password"
TZ = timezone(timedelta(hours=8))


def synthetic_events(n: int, cameras: int = 200, seed: int = 7):
    """n cases over 30 days on `cameras` cameras; a third of them with an update, a third resolved."""
    rng = random.Random(seed)
    codes = list(CATALOGUE)
    start = datetime(2026, 10, 25, tzinfo=TZ)
    for i in range(n):
        cam = f"cam-{rng.randrange(cameras):03d}"
        code = rng.choice(codes)
        scene = CATALOGUE[code]
        first = start + timedelta(seconds=rng.uniform(0, 30 * 86400))
        eid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        base = {
            "schema_version": "1",
            "event_id": eid,
            "state": "opened",
            "revision": 0,
            "camera": {"id": cam, "name": f"{cam} 路口", "address": f"测试路 {i % 500} 号", "lat": 31.2, "lon": 121.4},
            "zone": {"id": f"z{rng.randrange(3)}", "kind": "sidewalk", "grade": "arterial"},
            "scene_class": {
                "code": code,
                "name_zh": scene.name_zh,
                "name_en": scene.name_en,
                "category": scene.category.value,
            },
            "first_seen": {"stream_s": 0.0, "wall": first.isoformat()},
            "confirmed": {"stream_s": 30.0, "wall": (first + timedelta(seconds=30)).isoformat()},
            "last_seen": {"stream_s": 60.0, "wall": (first + timedelta(seconds=60)).isoformat()},
            "confidence": round(rng.uniform(0.3, 0.95), 3),
            "objects": [{"class_name": "person", "box": [10, 10, 50, 90], "confidence": 0.8, "track_id": 1}],
            "evidence": {"clean": f"evidence/{eid}/clean.jpg", "annotated": f"evidence/{eid}/annotated.jpg"},
            "model": {"name": "bench", "version": "0"},
            "pipeline_version": "0.1.0",
            "repeat_count": 0,
            "source": "benchmark",
        }
        yield base
        kind = i % 3
        if kind:
            later = first + timedelta(seconds=600)
            yield {
                **base,
                "revision": 1,
                "state": "updated" if kind == 1 else "resolved",
                "repeat_count": 1,
                "last_seen": {"stream_s": 660.0, "wall": later.isoformat()},
            }


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def log_in(client: httpx.Client) -> None:
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"name": "admin", "password": PASSWORD, "csrf": csrf})
    assert r.status_code == 303, r.text


def response_times(n_cases: int, requests: int, log) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="console-bench-"))
    settings = ConsoleSettings.for_output(tmp)
    index = CaseIndex(settings.index_path)
    t0 = time.perf_counter()
    events = list(synthetic_events(n_cases))
    for i in range(0, len(events), 5000):
        index.add_many(events[i : i + 5000])
    log(f"indexed {index.count()} cases ({len(events)} revisions) in {time.perf_counter() - t0:.1f}s")
    UserStore(settings.users_path).add("admin", PASSWORD, "admin")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, index), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    rng = random.Random(1)
    ids = [e["event_id"] for e in events if e["revision"] == 0]
    cams = sorted({e["camera"]["id"] for e in events})
    routes = {
        "case list, page 1": lambda: "/cases",
        "case list, camera filter": lambda: f"/cases?camera={rng.choice(cams)}",
        "case list, class + state": lambda: f"/cases?scene={rng.choice(list(CATALOGUE))}&state=opened",
        "case list, one day": lambda: "/cases?since=2026-11-10T00:00&until=2026-11-11T00:00",
        "case list, page 500": lambda: "/cases?page=500",
        "case page": lambda: f"/cases/{rng.choice(ids)}",
        "api/cases, page 1": lambda: "/api/cases",
    }
    results = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            log_in(client)
            for name, path in routes.items():
                for _ in range(5):  # warm the page cache and the templates
                    client.get(path())
                times = []
                for _ in range(requests):
                    t = time.perf_counter()
                    r = client.get(path())
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, (name, r.status_code)
                results[name] = {
                    "p50_ms": round(statistics.median(times), 1),
                    "p95_ms": round(percentile(times, 0.95), 1),
                    "max_ms": round(max(times), 1),
                    "requests": requests,
                }
                log(f"{name:28s} p50 {results[name]['p50_ms']:7.1f} ms   p95 {results[name]['p95_ms']:7.1f} ms")
    finally:
        server.should_exit = True
        thread.join(10)
    return {"cases": index.count(), "revisions": len(events), "routes": results}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 1/100 s


def console_cpu(cameras: int, seconds: float, refresh_s: float, log) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="console-cpu-"))
    model = build_marker_model(tmp / "model")
    clip = encode_clip(tmp / "parked.mp4", seconds=120, gop=25, scene=red_marker(present=lambda t: t >= 1.0))
    rtsp = RtspServer({f"cam{i}": clip for i in range(cameras)}).start()
    streams = tmp / "streams.yaml"
    streams.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "analysis_fps": 2,
                    "event": {"update_interval_s": 5, "resolve_grace_s": 5},
                    "rules": {"illegal_parking": {"dwell_s": 2}},
                },
                "cameras": [
                    {
                        "id": f"cam{i}",
                        "name": f"camera {i}",
                        "url": rtsp.url(f"cam{i}"),
                        "location": {"address": f"test road {i}"},
                    }
                    for i in range(cameras)
                ],
            },
            sort_keys=False,
        )
    )
    out = tmp / "out"
    UserStore(ConsoleSettings.for_output(out).users_path).add("admin", PASSWORD, "admin")
    port = free_port()
    daemon = DaemonProcess(streams, out, model, "--http-port", str(port)).start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if daemon.get("/readyz")[0] == 200 and (out / "events.jsonl").exists():
                break
            time.sleep(1)
        time.sleep(10)  # every camera connected and analysing

        def window(load: bool) -> float:
            stop = threading.Event()
            pages = 0

            def operator():
                nonlocal pages
                with httpx.Client(base_url=base, timeout=30) as c:
                    log_in(c)
                    while not stop.is_set():
                        for path in (
                            "/cases",
                            "/cameras",
                            "/cameras/cam0/snapshot.jpg",
                            "/overview",
                            "/overview/per-day.svg",
                            "/overview/per-camera.svg",
                        ):
                            assert c.get(path).status_code == 200, path
                            pages += 1
                        stop.wait(refresh_s)

            worker = threading.Thread(target=operator) if load else None
            if worker:
                worker.start()
            c0, t0 = cpu_seconds(daemon.proc.pid), time.monotonic()
            time.sleep(seconds)
            share = (cpu_seconds(daemon.proc.pid) - c0) / (time.monotonic() - t0)
            stop.set()
            if worker:
                worker.join()
            log(
                f"daemon CPU {'with' if load else 'without'} an operator on the console: {share * 100:.1f}% "
                f"of one core{f' ({pages} requests)' if load else ''}"
            )
            return share

        idle = window(False)
        busy = window(True)
        idle2 = window(False)
    finally:
        daemon.stop()
        rtsp.kill()
    return {
        "cameras": cameras,
        "window_s": seconds,
        "refresh_s": refresh_s,
        "daemon_cpu_no_console_use": round((idle + idle2) / 2, 3),
        "daemon_cpu_with_operator": round(busy, 3),
        "console_cpu": round(busy - (idle + idle2) / 2, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200, help="requests per route")
    ap.add_argument("--cameras", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60, help="each CPU window")
    ap.add_argument("--refresh", type=float, default=2.0, help="seconds between the operator's page refreshes")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    doc = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "response_times": response_times(args.cases, args.requests, print),
    }
    if not args.skip_cpu:
        doc["console_cpu"] = console_cpu(args.cameras, args.seconds, args.refresh, print)
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
