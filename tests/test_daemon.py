"""The live daemon against real parts: a GStreamer RTSP server serving real H.264, real
redis-server, a real ONNX model, the daemon as a real process receiving real signals."""

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import redis
import yaml
from conftest import encode_clip
from marker_model import red_marker
from realparts import DaemonProcess, RedisServer, RtspServer, wait_for

from streetscan.infra.metrics import Metrics
from streetscan.pipeline.config import parse_config
from streetscan.workers.handoff import FrameBoard
from streetscan.workers.reader import CameraState, StreamReader

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("rtsp_ready")]

FAST_READER = {
    "backoff_initial_s": 0.3,
    "backoff_max_s": 2.0,
    "open_timeout_s": 5,
    "read_timeout_s": 3,
    "stall_timeout_s": 5,
}


@pytest.fixture(scope="module")
def marker_clip(tmp_path_factory) -> Path:
    """60 s of road with a red 'car' parked on it from 1 s on (the marker model sees it)."""
    return encode_clip(
        tmp_path_factory.mktemp("live") / "parked.mp4", seconds=60, gop=25, scene=red_marker(present=lambda t: t >= 1.0)
    )


def write_streams(path: Path, cameras: dict[str, str], disabled: tuple[str, ...] = (), **extra_defaults) -> Path:
    doc = {
        "defaults": {
            "analysis_fps": 4,
            "event": {"update_interval_s": 1, "resolve_grace_s": 3},
            "reader": FAST_READER,
            "rules": {"illegal_parking": {"dwell_s": 1.5}},
            **extra_defaults,
        },
        "cameras": [
            {
                "id": cid,
                "name": f"camera {cid}",
                "url": url,
                "location": {"address": f"test street {cid}"},
                "enabled": cid not in disabled,
            }
            for cid, url in cameras.items()
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def jsonl_events(out: Path) -> list[dict]:
    f = out / "events.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


def redis_events(url: str, stream: str) -> list[dict]:
    return [json.loads(f["payload"]) for _, f in redis.Redis.from_url(url, decode_responses=True).xrange(stream)]


def ids(events: list[dict]) -> list[tuple[str, int]]:
    return [(e["event_id"], e["revision"]) for e in events]


def start_reader(server: RtspServer, mount: str) -> tuple[StreamReader, FrameBoard, Metrics]:
    """A lone StreamReader on one of the server's mounts, at 4 fps with fast reconnects."""
    metrics, board = Metrics(), FrameBoard()
    board.add(mount)
    camera = parse_config(
        {
            "defaults": {"analysis_fps": 4, "reader": FAST_READER},
            "cameras": [{"id": mount, "name": mount, "url": server.url(mount), "location": {"address": "test"}}],
        }
    ).camera(mount)
    reader = StreamReader(camera, board, metrics)
    reader.start()
    return reader, board, metrics


def count(metrics: Metrics, name: str, camera: str) -> float:
    return metrics.registry.get_sample_value(name, {"camera": camera}) or 0.0


def test_reader_backs_off_when_the_camera_dies_and_reconnects_when_it_returns(marker_clip):
    server = RtspServer({"cam": marker_clip}).start()
    reader, board, metrics = start_reader(server, "cam")
    try:
        wait_for(lambda: reader.state == CameraState.LIVE, 20, what="first connection")
        wait_for(lambda: board.gather(1, 0.0), 5, what="a frame")
        server.kill()
        wait_for(lambda: reader.state == CameraState.BACKOFF, 15, what="backoff")
        assert "retry in" in reader.reason
        wait_for(
            lambda: count(metrics, "streetscan_reconnects_total", "cam") >= 2, 15, what="re-dialling a dead camera"
        )
        assert reader.state != CameraState.LIVE
        server.start()  # same port: the camera is back
        wait_for(lambda: reader.state == CameraState.LIVE, 20, what="reconnection")
        board.gather(1, 0.0)
        assert wait_for(lambda: board.gather(1, 0.0), 5, what="frames after reconnecting")
        assert reader.alive
    finally:
        reader.stop()
        reader.join(10)
        server.kill()
    assert reader.state == CameraState.STOPPED


def corrupt_copy(src: Path, dst: Path, every: int = 6000, span: int = 48) -> Path:
    """Overwrite bytes inside the media data (not the index), as a lossy network would."""
    data = bytearray(src.read_bytes())
    start = data.find(b"mdat") + 4 + 20_000  # leave the first keyframe intact
    for pos in range(start, len(data) - span, every):
        data[pos : pos + span] = bytes((pos * 7 + i) & 0xFF for i in range(span))
    dst.write_bytes(bytes(data))
    return dst


def test_corrupt_packets_are_counted_and_never_stop_the_reader(marker_clip, tmp_path):
    bad = corrupt_copy(marker_clip, tmp_path / "corrupt.mp4")
    server = RtspServer({"bad": bad}).start()
    reader, _, metrics = start_reader(server, "bad")
    try:
        wait_for(lambda: count(metrics, "streetscan_decode_errors_total", "bad") >= 3, 40, what="decode errors counted")
        assert reader.alive and reader.state == CameraState.LIVE
        assert count(metrics, "streetscan_frames_sampled_total", "bad") > 0
    finally:
        reader.stop()
        reader.join(10)
        server.kill()


def test_redis_outage_spools_then_delivers_everything_once_in_order_and_sigterm_loses_nothing(
    marker_clip, marker_model, tmp_path
):
    rtsp = RtspServer({"cam": marker_clip}).start()
    rds = RedisServer(tmp_path / "redis").start()
    out = tmp_path / "out"
    streams = write_streams(tmp_path / "streams.yaml", {"cam-1": rtsp.url("cam")})
    daemon = DaemonProcess(streams, out, marker_model, "--redis", rds.url, "--redis-stream", "cases", "--jsonl").start()
    try:
        wait_for(lambda: len(redis_events(rds.url, "cases")) >= 3, 60, what="events in Redis")
        assert redis_events(rds.url, "cases")[0]["state"] == "opened"
        rds.stop()  # the case queue goes away mid-run
        wait_for(
            lambda: daemon.metric("streetscan_spool_depth", sink="redis:cases") >= 3,
            30,
            what="events spooled during the outage",
        )
        assert daemon.metric("streetscan_sink_up", sink="redis:cases") == 0.0
        assert daemon.metric("streetscan_sink_errors_total", sink="redis:cases") >= 1
        assert daemon.get("/healthz")[0] == 200  # an outage is not a crash
        rds.start()
        wait_for(
            lambda: (
                daemon.metric("streetscan_sink_up", sink="redis:cases") == 1.0
                and daemon.metric("streetscan_spool_depth", sink="redis:cases") == 0
            ),
            60,
            what="backlog delivered",
        )
        t0 = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        stop_s = time.monotonic() - t0
    finally:
        daemon.stop()
        rtsp.kill()
    try:
        expected = jsonl_events(out)
        got = redis_events(rds.url, "cases")
    finally:
        rds.stop()
    assert len(expected) >= 6
    assert ids(got) == ids(expected)  # every event exactly once, in the order it happened
    assert len(set(ids(got))) == len(got)
    # One violation: opened once, then its revisions in sequence.
    assert [e["state"] for e in got].count("opened") == 1
    assert [e["revision"] for e in got] == list(range(len(got)))
    assert stop_s < 25, f"SIGTERM took {stop_s:.1f}s"
    assert sqlite3.connect(out / "spool.db").execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    assert '"stopped (drained)"' in daemon.log_text() or "stopped (drained)" in daemon.log_text()


def test_kill9_keeps_the_spooled_backlog_and_a_restart_continues_the_open_event(marker_clip, marker_model, tmp_path):
    rtsp = RtspServer({"cam": marker_clip}).start()
    rds = RedisServer(tmp_path / "redis")  # not started: Redis is down from the beginning
    out = tmp_path / "out"
    streams = write_streams(tmp_path / "streams.yaml", {"cam-1": rtsp.url("cam")})
    args = ("--redis", rds.url, "--redis-stream", "cases")
    daemon = DaemonProcess(streams, out, marker_model, *args).start()
    try:
        wait_for(lambda: daemon.metric("streetscan_spool_depth", sink="redis:cases") >= 3, 60, what="a spooled backlog")
        daemon.kill9()
        spooled = [
            (r[0], r[1])
            for r in sqlite3.connect(out / "spool.db").execute("SELECT event_id, revision FROM outbox ORDER BY seq")
        ]
        assert len(spooled) >= 3 and spooled[0][1] == 0
        rds.start()
        daemon = DaemonProcess(streams, out, marker_model, *args).start()
        wait_for(
            lambda: len(redis_events(rds.url, "cases")) >= len(spooled) + 2,
            60,
            what="backlog delivered and new events after the restart",
        )
        assert daemon.get("/readyz")[0] == 200
    finally:
        daemon.stop()
        rtsp.kill()
    try:
        got = redis_events(rds.url, "cases")
    finally:
        rds.stop()
    assert ids(got)[: len(spooled)] == spooled  # nothing spooled before kill -9 was lost, order kept
    after = got[len(spooled) :]
    # The restart did not open the same violation as new: it continued the event under its id.
    assert [e["state"] for e in got].count("opened") == 1
    assert {e["event_id"] for e in after} == {spooled[0][0]}
    assert after[0]["revision"] == spooled[-1][1] + 1
    assert "open event(s) restored" in daemon.log_text()


def test_sighup_adds_removes_and_keeps_cameras_and_rejects_a_bad_config(marker_clip, marker_model, tmp_path):
    rtsp = RtspServer({"a": marker_clip, "b": marker_clip, "c": marker_clip}).start()
    out = tmp_path / "out"
    streams = write_streams(tmp_path / "streams.yaml", {"cam-a": rtsp.url("a"), "cam-c": rtsp.url("c")})
    daemon = DaemonProcess(streams, out, marker_model).start()
    try:
        wait_for(
            lambda: daemon.camera_state("cam-a") == "live" and daemon.camera_state("cam-c") == "live",
            40,
            what="both cameras live",
        )
        before_c = daemon.metric("streetscan_frames_analysed_total", camera="cam-c")
        write_streams(
            streams, {"cam-c": rtsp.url("c"), "cam-b": rtsp.url("b"), "cam-d": rtsp.url("a")}, disabled=("cam-d",)
        )
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: daemon.camera_state("cam-b") == "live", 40, what="the added camera live")
        assert daemon.camera_state("cam-d") == "disabled"
        wait_for(lambda: daemon.camera_state("cam-a") is None, 10, what="the removed camera gone")
        assert daemon.metric("streetscan_frames_analysed_total", camera="cam-a") == 0.0  # series dropped
        # The untouched camera kept running: never re-dialled, frames kept coming.
        assert daemon.camera_state("cam-c") == "live"
        assert daemon.metric("streetscan_reconnects_total", camera="cam-c") == 0.0
        assert daemon.metric("streetscan_frames_analysed_total", camera="cam-c") > before_c
        streams.write_text("cameras:\n  - id: cam-c\n    url: 12\n", encoding="utf-8")  # invalid
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in daemon.log_text(), 10, what="the rejection logged")
        assert "camera 'cam-c' (cameras[0]) field location: required field is missing" in daemon.log_text()
        analysed = daemon.metric("streetscan_frames_analysed_total", camera="cam-c")
        wait_for(
            lambda: daemon.metric("streetscan_frames_analysed_total", camera="cam-c") > analysed,
            10,
            what="cam-c analysed on after the rejected reload",
        )
        assert daemon.camera_state("cam-b") == "live" and daemon.camera_state("cam-c") == "live"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        daemon.stop()
        rtsp.kill()
    logs = [json.loads(line) for line in daemon.log_text().splitlines() if line.startswith("{")]
    assert any(r.get("camera") == "cam-b" and "live" in r["msg"] for r in logs)  # JSON logs name the camera
