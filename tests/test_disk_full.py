"""A full disk is a fault like a sink outage (issue #34 item 2): nothing is lost or doubled, the
probes tell the truth, and a replay says so in one line. The output folder lives on a real, small
tmpfs that the test fills and frees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from marker_model import red_marker
from realparts import DaemonProcess, RtspServer, encode_clip, wait_for

pytestmark = [pytest.mark.integration]


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 6 MiB (root, and a kernel that lets the test mount, are needed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip() or proc.returncode}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write until the filesystem refuses: the disk is full."""
    filler = folder / "filler.bin"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def blinking(t: float, img) -> None:
    """A car that parks for 9 s of every 25, so cases open, update and resolve all along."""
    red_marker(present=lambda s: (s % 25.0) < 9.0)(t, img)


def revisions(path: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for line in path.read_text().splitlines():
        event = json.loads(line)  # a half-written line would fail here
        out[event["event_id"]].append(event["revision"])
    return out


@pytest.mark.usefixtures("rtsp_ready")
def test_a_full_disk_loses_and_doubles_no_revision_and_the_probes_say_so(tmp_path, small_disk, marker_model):
    clip = encode_clip(tmp_path / "blink.mp4", seconds=120, gop=25, scene=blinking)
    server = RtspServer({"cam": clip}).start()
    streams = tmp_path / "streams.yaml"
    streams.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "analysis_fps": 4,
                    "event": {"update_interval_s": 1, "resolve_grace_s": 2},
                    "rules": {"illegal_parking": {"dwell_s": 1.5}},
                },
                "cameras": [{"id": "cam", "name": "cam", "url": server.url("cam"), "location": {"address": "x"}}],
            }
        )
    )
    out = small_disk / "out"
    daemon = DaemonProcess(streams, out, marker_model, "--jsonl", log=tmp_path / "daemon.log").start()
    events = out / "events.jsonl"
    try:
        wait_for(lambda: events.exists() and events.read_text().count("\n") >= 3, 60, what="the first events")
        filler = fill(small_disk)
        wait_for(
            lambda: daemon.metric("streetscan_spool_write_failures_total", camera="cam") > 0,
            60,
            what="events that cannot be saved",
        )
        status, body = daemon.get("/readyz")
        assert status == 503 and "events_not_saved" in body and "cam" in json.loads(body)["events_not_saved"]
        time.sleep(5)  # events keep being made while full
        filler.unlink()
        wait_for(lambda: daemon.get("/readyz")[0] == 200, 60, what="ready again once there is room")
        made = daemon.metric("streetscan_events_total", scene_class="illegal_parking", state="opened")
        wait_for(
            lambda: daemon.metric("streetscan_spool_depth", sink=f"jsonl:{events}") == 0,
            30,
            what="the backlog delivered",
        )
    finally:
        daemon.stop()
        server.kill()
    assert daemon.proc.returncode == 0
    got = revisions(events)
    assert made >= 1 and sum(len(r) for r in got.values()) >= 4
    for event_id, revs in got.items():
        assert revs == list(range(len(revs))), f"{event_id}: revisions {revs}"  # each once, in order
    for line in events.read_text().splitlines():  # evidence named in an event is whole on disk
        for rel in json.loads(line)["evidence"].values():
            assert (out / rel).stat().st_size > 0
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


def test_a_replay_onto_a_full_disk_exits_2_with_one_line(tmp_path, small_disk, marker_model):
    clip = encode_clip(tmp_path / "parked.mp4", seconds=20, scene=red_marker(present=lambda t: t >= 1.0))
    fill(small_disk)
    (small_disk / "filler.bin").unlink()
    with (small_disk / "filler.bin").open("wb") as fh:  # leave ~150 kB: the spool opens, then fills
        fh.write(b"\0" * (os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize - 150_000))
    streams = tmp_path / "streams.yaml"
    streams.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "analysis_fps": 4,
                    "event": {"update_interval_s": 1, "resolve_grace_s": 2},
                    "rules": {"illegal_parking": {"dwell_s": 1.5}},
                },
                "cameras": [{"id": "cam", "name": "cam", "url": "parked.mp4", "location": {"address": "x"}}],
            }
        )
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streetscan",
            "replay",
            str(clip),
            "--model",
            str(marker_model),
            "--streams",
            str(streams),
            "--out",
            str(small_disk / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [
        line
        for line in proc.stderr.splitlines()
        if line.strip() and "WARNING" not in line and " warning " not in line.lower()
    ]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert errors and ("disk full" in errors[-1] or "cannot write" in errors[-1] or "not written" in errors[-1]), (
        proc.stderr
    )
