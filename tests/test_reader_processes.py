"""Reader processes (issue #19): cameras decoded in a pool of processes, frames handed to the
daemon through shared memory. Real `streetscan run`, real RTSP cameras; a reader process killed
with SIGKILL is started again with its cameras, the other process's cameras never stop, and the
open cases of the restarted cameras continue (one case per parked car)."""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
import time

import numpy as np
import pytest
import yaml
from conftest import encode_clip
from marker_model import red_marker
from realparts import DaemonProcess, RtspServer, parked_marker_streams, wait_for

from streetscan.pipeline.frames import Frame
from streetscan.workers.reader_pool import FrameSlot

CAMERAS = [f"cam-{i}" for i in range(4)]


def test_frame_slot_hands_over_the_newest_frame_once_and_counts_replacements():
    slot = FrameSlot(None, 64 * 48 * 3, create=True)
    other = FrameSlot(slot.name, 64 * 48 * 3, create=False)  # as the reader process attaches it
    try:
        assert slot.take() is None and not slot.waiting()
        img = np.full((40, 64, 3), 7, np.uint8)
        assert other.write(Frame(0, 0, 1.5, img, True, source_size=(1280, 800)), arrived=10.0) is False
        assert other.write(Frame(1, 3, 2.5, img + 1, False, source_size=(1280, 800)), arrived=11.0) is True
        frame, arrived = slot.take()
        assert (frame.seq, frame.decoded_index, frame.pts_s, frame.keyframe, arrived) == (1, 3, 2.5, False, 11.0)
        assert frame.image.shape == (40, 64, 3) and int(frame.image[0, 0, 0]) == 8
        assert frame.source_size == (1280, 800) and frame.width == 1280
        assert slot.take() is None  # taken once
        assert other.write(Frame(2, 4, 3.0, img, True), arrived=12.0) is False  # the last one was taken
        with pytest.raises(ValueError, match="larger than its slot"):
            other.write(Frame(3, 5, 3.5, np.zeros((100, 100, 3), np.uint8), True), arrived=13.0)
    finally:
        other.close()
        slot.close(unlink=True)


@pytest.mark.integration
@pytest.mark.usefixtures("rtsp_ready")
def test_a_killed_reader_process_is_restarted_with_its_cameras_and_the_others_go_on(tmp_path, marker_model):
    clip = encode_clip(tmp_path / "parked.mp4", seconds=120, gop=25, scene=red_marker(present=lambda t: t >= 1.0))
    rtsp = RtspServer({c: clip for c in CAMERAS}).start()
    streams = parked_marker_streams(tmp_path / "streams.yaml", rtsp, CAMERAS, analysis_fps=2, resolve_grace_s=30)
    out = tmp_path / "out"
    daemon = DaemonProcess(streams, out, marker_model, "--reader-processes", "2").start()

    def pool() -> dict:
        status, body = daemon.get("/readyz")
        return json.loads(body).get("reader_processes", {}) if body else {}

    def analysed() -> dict[str, float]:
        now = daemon.per_camera()
        return {c: now.get(c, 0.0) for c in CAMERAS}

    # (a removed camera's series leaves /metrics: its value reads 0 from then on)

    def events() -> list[dict]:
        path = out / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    try:
        wait_for(lambda: all(v > 0 for v in analysed().values()), 90, what="every camera analysed")
        procs = pool()
        assert sorted(c for p in procs.values() for c in p["cameras"]) == CAMERAS  # each camera in one process
        assert all(p["alive"] and p["pid"] not in (None, daemon.proc.pid) for p in procs.values())
        victim, survivor = sorted(procs, key=lambda k: -len(procs[k]["cameras"]))[:2]
        assert procs[victim]["cameras"] and procs[survivor]["cameras"]
        wait_for(
            lambda: {e["camera"]["id"] for e in events() if e["state"] == "opened"} == set(CAMERAS),
            60,
            what="a case opened on every camera",
        )
        os.kill(procs[victim]["pid"], signal.SIGKILL)
        killed_at, before = time.monotonic(), analysed()
        wait_for(
            lambda: pool()[victim]["pid"] != procs[victim]["pid"] and pool()[victim]["alive"],
            30,
            what="the killed reader process started again",
        )
        assert pool()[survivor]["pid"] == procs[survivor]["pid"]  # the other process untouched
        wait_for(
            lambda: all(analysed()[c] > before[c] + 4 for c in procs[victim]["cameras"]),
            60,
            what="the restarted process's cameras analysed again",
        )
        during = analysed()
        assert all(during[c] > before[c] + 2 for c in procs[survivor]["cameras"])  # never stopped
        assert time.monotonic() - killed_at < 90
        assert daemon.metric("streetscan_frames_decoded_total", camera=procs[victim]["cameras"][0]) > 0
        status, _ = daemon.get("/healthz")
        assert status == 200
        # A reload that removes one camera stops it in its process; the rest read on.
        gone = procs[survivor]["cameras"][0]
        doc = yaml.safe_load(streams.read_text())
        doc["cameras"] = [c for c in doc["cameras"] if c["id"] != gone]
        streams.write_text(yaml.safe_dump(doc))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: gone not in {c for p in pool().values() for c in p["cameras"]}, 20, what="the camera removed")
        after_reload = analysed()
        wait_for(
            lambda: all(analysed()[c] > after_reload[c] + 2 for c in CAMERAS if c != gone),
            30,
            what="the other cameras reading on after the reload",
        )
        assert pool()[survivor]["pid"] == procs[survivor]["pid"]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        daemon.stop()
        rtsp.kill()
    for cam in CAMERAS:
        mine = [e for e in events() if e["camera"]["id"] == cam]
        # The parked marker's case survived its reader process: updated, never opened twice.
        assert [e["state"] for e in mine].count("opened") == 1, (cam, [e["state"] for e in mine])
        assert len({e["event_id"] for e in mine}) == 1
    evidence = next(e for e in events() if e["state"] == "opened")["evidence"]["annotated"]
    assert (out / evidence).stat().st_size > 0


def test_a_report_from_the_reader_a_reload_replaced_is_not_counted_again(tmp_path):
    """A reader process reports every 0.5 s; a camera reloaded between a report and its reading
    (removed, added again with the next generation) must not have the old reader's totals
    forwarded a second time, nor its state shown as the new reader's."""
    from streetscan.infra.metrics import Metrics
    from streetscan.pipeline.config import camera_for_file
    from streetscan.workers.handoff import FrameBoard
    from streetscan.workers.reader_pool import ReaderPool

    camera = camera_for_file(encode_clip(tmp_path / "cam.mp4", width=160, height=96, seconds=4.0))
    metrics = Metrics()
    pool = ReaderPool(1, FrameBoard(), metrics, fit=(160, 96), epoch=(time.time(), time.monotonic()))
    decoded = lambda: metrics.registry.get_sample_value("streetscan_frames_decoded_total", {"camera": camera.id}) or 0.0  # noqa: E731
    try:
        first = pool.reader(camera, generation=1)
        first.start()
        reports: list = []

        def reported() -> bool:
            # The process's reports, applied as the pool's loop applies them; the last one kept.
            try:
                reports.append(pool.status.get(timeout=1.0))
            except queue.Empty:
                return False
            pool._apply_status(*reports[-1])
            return decoded() > 0

        wait_for(reported, timeout=30, what="the reader process's first report of decoded frames")
        stale = reports[-1]
        forwarded = decoded()
        assert stale[2][camera.id]["counters"]["frames_decoded"] == forwarded

        first.stop()  # the reload: the same camera, its next generation
        second = pool.reader(camera, generation=2)
        second.start()
        pool._apply_status(*stale)  # the old reader's report, read only now

        assert decoded() == forwarded
        assert (second.state.value, second.reason) == ("connecting", "starting in a reader process")
        # The new reader's own reports still count.
        wait_for(lambda: reported() and decoded() > forwarded, timeout=30, what="the new reader's reports counted")
        assert second.state.value == "live"
    finally:
        pool.close()


def test_a_reader_a_reload_replaced_writes_no_frame_into_its_successors_slot():
    from streetscan.infra.metrics import Metrics
    from streetscan.workers.handoff import LiveFrame
    from streetscan.workers.reader_pool import SlotHandoff

    slot = FrameSlot(None, 64 * 48 * 3, create=True)
    handoff = SlotHandoff(Metrics(), posted=threading.Semaphore(0))
    handoff.attach("cam", slot, generation=2)  # as the process loop attaches the new reader
    frame = Frame(0, 0, 1.0, np.zeros((48, 64, 3), np.uint8), True)
    try:
        handoff.put(LiveFrame("cam", 1, frame, 10.0))  # the replaced reader, back from a slow read
        assert slot.take() is None
        handoff.put(LiveFrame("cam", 2, frame, 11.0))
        taken = slot.take()
        assert taken is not None and taken[1] == 11.0
    finally:
        slot.close(unlink=True)
