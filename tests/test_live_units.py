"""Units of the live daemon, alone: hand-off, backoff, spool, open-event persistence, probes, logs."""

import json
import logging
import random
import sqlite3
import threading
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import redis
from realparts import free_port, wait_for

from streetscan.delivery.sinks import RedisStreamSink
from streetscan.delivery.spool import EventSpool
from streetscan.infra.backoff import Backoff
from streetscan.infra.metrics import Metrics
from streetscan.infra.probes import MetricsServer
from streetscan.logs import JsonFormatter
from streetscan.pipeline.clock import StreamClock
from streetscan.pipeline.config import ReaderPolicy, parse_config
from streetscan.pipeline.decode import redact_url
from streetscan.pipeline.events import CameraRef, Event, EventDeduplicator
from streetscan.pipeline.frames import Frame
from streetscan.pipeline.rules import ObservedObject, Violation
from streetscan.workers.handoff import FrameBoard, FrameQueue, LiveFrame


def lf(cam: str, seq: int) -> LiveFrame:
    return LiveFrame(cam, 0, Frame(seq, seq, float(seq), np.zeros((4, 4, 3), np.uint8), False), time.monotonic())


def test_board_keeps_only_the_newest_frame_and_counts_drops():
    dropped = []
    board = FrameBoard(on_drop=dropped.append)
    board.add("a")
    assert board.put(lf("a", 0)) is False
    assert board.put(lf("a", 1)) is True and board.put(lf("a", 2)) is True
    batch = board.gather(8, 0.0)
    assert [b.frame.seq for b in batch] == [2] and dropped == ["a", "a"]
    assert board.put(lf("gone", 0)) is False and board.pending() == 0  # unknown camera: ignored


def test_board_wants_a_frame_unless_a_recent_one_waits():
    board = FrameBoard()
    board.add("a")
    assert board.wants("a", fresh_s=1.0)  # nothing waiting
    board.put(lf("a", 0))
    assert not board.wants("a", fresh_s=1.0)  # a fresh one waits: do not decode another
    board.put(LiveFrame("a", 0, lf("a", 1).frame, time.monotonic() - 2.0))
    assert board.wants("a", fresh_s=1.0)  # the waiting one is stale: replace it
    board.gather(8, 0.0)
    assert board.wants("a", fresh_s=1.0) and board.wants("unknown", fresh_s=1.0)


def test_board_gathers_one_frame_per_camera_round_robin():
    board = FrameBoard()
    cams = [f"c{i}" for i in range(5)]
    for c in cams:
        board.add(c)
    served = []
    for round_ in range(5):
        for c in cams:
            board.put(lf(c, round_))
        batch = board.gather(2, 0.0)
        assert len(batch) == 2 and len({b.camera_id for b in batch}) == 2
        served += [b.camera_id for b in batch]
    # Every camera is served twice in 10 picks: nobody starves, whatever the insertion order.
    assert sorted(served) == sorted(cams * 2)


def test_board_waits_for_a_batch_to_fill_but_not_longer_than_max_wait():
    board = FrameBoard()
    for c in ("a", "b", "c"):
        board.add(c)
    board.put(lf("a", 0))

    def b_arrives_while_gather_waits():
        wait_for(lambda: board.pending() == 0, 10, interval=0.005, what="gather to take a")
        board.put(lf("b", 0))

    putter = threading.Thread(target=b_arrives_while_gather_waits)
    putter.start()
    batch = board.gather(8, max_wait_s=5.0)
    putter.join()
    assert sorted(b.camera_id for b in batch) == ["a", "b"]  # waited for b; c never came, wait ended at 5 s
    assert board.gather(8, 0.0, idle_timeout_s=0.01) == []


def test_frame_queue_keeps_every_frame_in_order_and_blocks_when_full():
    q = FrameQueue(capacity=3)
    q.add("a")
    q.add("b")
    for seq in range(3):
        assert q.put(lf("a" if seq != 1 else "b", seq)) is False  # nothing is ever replaced
    fourth = threading.Thread(target=q.put, args=(lf("a", 3),))
    fourth.start()
    fourth.join(timeout=0.2)
    assert fourth.is_alive() and q.pending() == 3  # full: the reader waits, no frame is dropped
    assert [f.frame.seq for f in q.gather(2, 0.0)] == [0, 1]  # arrival order, cameras mixed
    fourth.join(timeout=10)
    assert not fourth.is_alive()
    assert [f.frame.seq for f in q.gather(8, 0.0)] == [2, 3]
    assert q.put(lf("gone", 0)) is False and q.pending() == 0  # unknown camera: ignored


def test_frame_queue_remove_releases_a_blocked_reader_and_its_frames():
    q = FrameQueue(capacity=1)
    q.add("a")
    q.put(lf("a", 0))
    blocked = threading.Thread(target=q.put, args=(lf("a", 1),))
    blocked.start()
    q.remove("a")
    blocked.join(timeout=10)
    assert not blocked.is_alive() and q.pending() == 0


def test_backoff_grows_is_capped_jittered_and_resets():
    b = Backoff(1.0, 8.0, jitter=0.2, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(7)]
    for d, base in zip(delays, [1, 2, 4, 8, 8, 8, 8], strict=False):
        assert base * 0.8 <= d <= min(8.0, base * 1.2)
    assert len(set(delays)) == len(delays)  # jitter: a fleet does not redial in step
    b.reset()
    assert b.next_delay() <= 1.2


def test_reader_policy_is_validated():
    with pytest.raises(Exception, match="backoff_max_s must be at least backoff_initial_s"):
        ReaderPolicy(backoff_initial_s=10, backoff_max_s=1)


def event(n: int, rev: int = 0) -> Event:
    when = datetime(2026, 11, 20, 12, tzinfo=ZoneInfo("Asia/Shanghai"))
    v = Violation(
        "cam",
        "kerb",
        "illegal_parking",
        f"track-{n}",
        1.0,
        21.0,
        21.0,
        0.9,
        (ObservedObject("car", (1.0, 2.0, 3.0, 4.0), 0.9, n),),
        2,
    )
    return Event(
        f"00000000-0000-0000-0000-{n:012d}",
        "opened",
        rev,
        v,
        CameraRef("cam", "Cam", "Test St 1"),
        "no_parking",
        "arterial",
        0,
        when,
        when,
        when,
        "m",
        "1",
        "test",
    )


def test_spool_delivers_in_order_per_sink_and_survives_reopen(tmp_path):
    path = tmp_path / "spool.db"
    spool = EventSpool(path, ["jsonl", "redis"])
    spool.commit("cam", [event(1), event(2)], {"dedup": {"open": []}})
    spool.commit("cam", [event(3)], None)
    assert [e["event_id"][-1] for _, e in spool.pending("jsonl")] == ["1", "2", "3"]
    seqs = [s for s, _ in spool.pending("jsonl")]
    spool.ack("jsonl", seqs[-1])
    assert spool.pending("jsonl") == [] and spool.depth("redis") == 3 and spool.depth() == 3
    spool.ack("redis", seqs[0])
    assert spool.depth() == 2
    spool.close()
    # Reopened (a restart, or after kill -9): the redis backlog is still there, in order.
    spool = EventSpool(path, ["jsonl", "redis"])
    assert [e["event_id"][-1] for _, e in spool.pending("redis")] == ["2", "3"]
    assert spool.load_state("cam") == {"dedup": {"open": []}} and spool.load_state("other") is None
    spool.ack("redis", seqs[-1])
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    assert rows == 0  # delivered everywhere: deleted, the spool stays bounded by the backlog
    # A sink new to this spool starts at the head instead of replaying history.
    spool.commit("cam", [event(4)], None)
    spool.close()
    spool = EventSpool(path, ["jsonl", "redis", "new"])
    assert spool.pending("new") == [] and len(spool.pending("redis")) == 1


def test_spool_commit_is_atomic(tmp_path):
    spool = EventSpool(tmp_path / "s.db", ["x"])
    bad = replace(event(2), evidence={"clean": object()})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        spool.commit("cam", [event(1), bad], {"state": 1})
    assert spool.depth() == 0 and spool.load_state("cam") is None  # neither the events nor the state


def test_evidence_retention_keeps_open_and_undelivered_events(tmp_path):
    import os

    from streetscan.delivery.retention import EvidenceRetention
    from streetscan.infra.metrics import Metrics

    now = 1_800_000_000.0
    for name, age_days in [("old-done", 40), ("old-open", 40), ("old-pending", 40), ("new-done", 5)]:
        folder = tmp_path / "evidence" / name
        folder.mkdir(parents=True)
        (folder / "clean.jpg").write_bytes(b"jpeg")
        os.utime(folder, (now - age_days * 86400,) * 2)
    spool = EventSpool(tmp_path / "spool.db", ["redis"])
    pending = replace(event(1), event_id="old-pending")
    spool.commit("cam", [pending], {"dedup": {}, "evidence": {"old-open": {"clean": "evidence/old-open/clean.jpg"}}})
    metrics = Metrics()
    retention = EvidenceRetention(tmp_path, spool, metrics, evidence_days=30)
    assert retention.sweep(now) == 1
    assert sorted(p.name for p in (tmp_path / "evidence").iterdir()) == ["new-done", "old-open", "old-pending"]
    # Delivered and closed: then it goes too.
    spool.ack("redis", spool.pending("redis")[-1][0])
    spool.commit("cam", [], {"dedup": {}, "evidence": {}})
    assert retention.sweep(now) == 2
    assert [p.name for p in (tmp_path / "evidence").iterdir()] == ["new-done"]
    assert metrics.registry.get_sample_value("streetscan_evidence_pruned_total") == 3


def violation(key: str, box, t: float) -> Violation:
    return Violation(
        camera_id="cam",
        zone_id="frame",
        scene_class="illegal_parking",
        key=key,
        first_seen_s=t,
        confirmed_s=t,
        last_seen_s=t,
        confidence=0.9,
        objects=(ObservedObject("car", box, 0.9, int(key.split("-")[-1])),),
        first_seen_frame=0,
    )


def test_open_events_restored_after_restart_continue_under_their_id():
    cfg = parse_config(
        {
            "defaults": {"event": {"update_interval_s": 1, "resolve_grace_s": 5}},
            "cameras": [{"id": "cam", "name": "c", "url": "rtsp://x/1", "location": {"address": "a"}}],
        }
    )
    cam = cfg.camera("cam")

    def dedup():
        return EventDeduplicator(cam, clock=StreamClock(UTC), model_name="m", model_version="1", source="rtsp://x/1")

    before = dedup()
    [opened] = before.update([violation("track-3", (10, 10, 50, 50), 100.0)], 100.0)
    snap = json.loads(json.dumps(before.snapshot()))  # what the spool stores
    after = dedup()
    assert after.restore(snap, t=200.0, hold_s=lambda zone, cls: 30.0) == 1
    # Before the rules re-confirm (hold 30 s), the restored event is not resolved.
    assert after.update([], 220.0) == []
    # The tracker restarted: a *different* object under the old track id is not that event ...
    other = after.update([violation("track-3", (300, 300, 350, 350), 225.0)], 225.0)
    assert other[0].state == "opened" and other[0].event_id != opened.event_id
    # ... but the same spot under a new id continues it: an update, same id, next revision.
    cont = after.update([violation("track-1", (11, 10, 51, 50), 226.0)], 226.0)
    assert [(e.event_id, e.state, e.revision) for e in cont] == [(opened.event_id, "updated", 1)]
    assert cont[0].violation.first_seen_s == 100.0


@pytest.mark.integration
def test_redis_sink_adds_each_event_revision_once(redis_url):
    sink = RedisStreamSink(redis_url, stream="t:once")
    for e in (
        event(1).to_dict(),
        event(1).to_dict(),
        event(1, rev=1).to_dict(),
        event(1).to_dict(),
    ):  # redeliveries after a lost reply
        sink.emit(e)
    entries = redis.Redis.from_url(redis_url, decode_responses=True).xrange("t:once")
    assert [(f["event_id"][-1], f["revision"]) for _, f in entries] == [("1", "0"), ("1", "1")]


def test_metrics_server_serves_metrics_and_probes():
    m = Metrics()
    m.frames_analysed.labels("cam-1").inc(3)
    m.live.add("streetscan_test_gauge", "doc", ("camera",), lambda: {("cam-1",): 7.0})
    healthy = {"ok": True}
    server = MetricsServer(
        m,
        "127.0.0.1",
        free_port(),
        health=lambda: (healthy["ok"], {"why": "loops"}),
        ready=lambda: (False, {"why": "no camera live"}),
    )
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        text = urllib.request.urlopen(base + "/metrics").read().decode()
        assert 'streetscan_frames_analysed_total{camera="cam-1"} 3.0' in text
        assert 'streetscan_test_gauge{camera="cam-1"} 7.0' in text
        assert urllib.request.urlopen(base + "/healthz").status == 200
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(base + "/readyz")
        assert exc.value.code == 503 and json.loads(exc.value.read())["why"] == "no camera live"
        healthy["ok"] = False
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/healthz")
        m.forget_camera("cam-1")
        assert 'cam-1"} 3.0' not in urllib.request.urlopen(base + "/metrics").read().decode()
    finally:
        server.stop()


def test_json_logs_carry_the_camera_id():
    rec = logging.LogRecord("streetscan.x", logging.WARNING, __file__, 1, "gate-3: %s", ("backoff",), None)
    rec.camera = "gate-3"
    out = json.loads(JsonFormatter().format(rec))
    assert out["camera"] == "gate-3" and out["msg"] == "gate-3: backoff" and out["level"] == "warning"


def test_camera_passwords_never_reach_logs_or_events():
    assert redact_url("rtsp://admin:s3cret@10.0.0.5:554/ch1") == "rtsp://admin:***@10.0.0.5:554/ch1"
    assert redact_url("rtsp://10.0.0.5/ch1") == "rtsp://10.0.0.5/ch1"
    assert redact_url("/data/clip.mp4") == "/data/clip.mp4"
