"""A sharded fleet on one machine: three daemons read the same streams.yaml with 9 RTSP cameras,
each analyses the cameras rendezvous hashing gives its shard, all write to one Redis stream.
Stopping a shard stops its cameras and only those; restarting it resumes them with their open
cases intact (the same event ids continue)."""

from __future__ import annotations

import json
import signal
import time

import pytest
import redis
from conftest import encode_clip
from marker_model import red_marker
from realparts import DaemonProcess, RtspServer, parked_marker_streams, wait_for

from streetscan.infra.shard import Shard, ShardError, owner

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("rtsp_ready")]
SHARDS = 3


def cameras_per_shard(per_shard: int = 3) -> dict[int, list[str]]:
    """Camera ids, `per_shard` for each shard, as rendezvous hashing places them."""
    out: dict[int, list[str]] = {k: [] for k in range(SHARDS)}
    i = 0
    while any(len(v) < per_shard for v in out.values()):
        cam = f"cam-{i:02d}"
        if len(out[owner(cam, SHARDS)]) < per_shard:
            out[owner(cam, SHARDS)].append(cam)
        i += 1
    return out


def test_three_shards_split_nine_cameras_and_a_restarted_shard_resumes_its_cases(tmp_path, marker_model, redis_url):
    clip = encode_clip(tmp_path / "parked.mp4", seconds=120, gop=25, scene=red_marker(present=lambda t: t >= 1.0))
    plan = cameras_per_shard()
    all_cams = sorted(c for cams in plan.values() for c in cams)
    rtsp = RtspServer({c: clip for c in all_cams}).start()
    streams = parked_marker_streams(tmp_path / "streams.yaml", rtsp, all_cams, analysis_fps=1, resolve_grace_s=20)
    stream = "sharded-cases"

    def shard_daemon(k: int) -> DaemonProcess:
        return DaemonProcess(
            streams,
            tmp_path / f"shard-{k}",
            marker_model,
            "--shard",
            f"{k}/{SHARDS}",
            "--redis",
            redis_url,
            "--redis-stream",
            stream,
        )

    daemons = {k: shard_daemon(k).start() for k in range(SHARDS)}
    r = redis.Redis.from_url(redis_url, decode_responses=True)

    def cases() -> list[dict]:
        return [json.loads(f["payload"]) for _, f in r.xrange(stream)]

    try:
        wait_for(
            lambda: all(any(v > 0 for v in d.per_camera().values()) for d in daemons.values()),
            90,
            what="every shard analysing",
        )
        wait_for(
            lambda: {e["camera"]["id"] for e in cases() if e["state"] == "opened"} == set(all_cams),
            90,
            what="a case opened on every camera",
        )
        for k, d in daemons.items():  # each camera analysed by its shard, and only by it
            assert {c for c, v in d.per_camera().items() if v > 0} == set(plan[k]), (k, d.per_camera())
            assert d.metric("streetscan_shard", index=str(k), count=str(SHARDS)) == 1.0
        # Every shard reads every verification request; the camera's shard alone answers it.
        cam = plan[2][0]
        eid = next(e["event_id"] for e in cases() if e["camera"]["id"] == cam)
        r.xadd("streetscan:commands", {"request_id": "shard-1", "event_id": eid, "camera_id": cam})
        r.xadd("streetscan:commands", {"request_id": "shard-2", "event_id": eid})  # names no camera

        def replies(rid: str) -> list[str]:
            return [f["status"] for _, f in r.xrange("streetscan:commands:replies") if f.get("request_id") == rid]

        wait_for(lambda: replies("shard-1") == ["accepted", "answered"], 30, what="the owning shard's answer")
        wait_for(lambda: replies("shard-2") == ["malformed"], 10, what="shard 0's answer to a request without camera")
        time.sleep(2)
        assert replies("shard-1") == ["accepted", "answered"] and replies("shard-2") == ["malformed"]
        stopped = daemons[1]
        stopped.signal(signal.SIGTERM)
        assert stopped.wait(30) == 0
        before = {k: daemons[k].per_camera() for k in (0, 2)}
        seen_then = len(cases())
        wait_for(
            lambda: all(daemons[k].per_camera()[c] > before[k][c] + 2 for k in (0, 2) for c in plan[k]),
            60,
            what="the other shards' cameras going on",
        )
        assert not [e for e in cases()[seen_then:] if e["camera"]["id"] in plan[1]]  # its cameras stopped
        daemons[1] = shard_daemon(1).start()
        wait_for(
            lambda: all(daemons[1].per_camera().get(c, 0) > 0 for c in plan[1]),
            90,
            what="the restarted shard's cameras analysed again",
        )
        wait_for(
            lambda: len([e for e in cases()[seen_then:] if e["camera"]["id"] in plan[1]]) >= len(plan[1]),
            60,
            what="updates from the restarted shard",
        )
    finally:
        for d in daemons.values():
            d.stop()
        rtsp.kill()
    events = cases()
    for cam in all_cams:
        mine = [e for e in events if e["camera"]["id"] == cam]
        # One case per parked car, across the restart: its open case was restored, not opened again.
        assert [e["state"] for e in mine].count("opened") == 1, (cam, [(e["state"], e["revision"]) for e in mine])
        assert len({e["event_id"] for e in mine}) == 1
        assert [e["revision"] for e in mine] == list(range(len(mine)))


def test_shard_parsing_and_placement():
    assert str(Shard.parse("2/3")) == "2/3"
    for bad in ("3/3", "x", "1/0", "-1/3"):
        with pytest.raises(ShardError):
            Shard.parse(bad)
    assert Shard.from_environment({"STREETSCAN_SHARD_COUNT": "4", "HOSTNAME": "streetscan-3"}) == Shard(3, 4)
    assert Shard.from_environment({"STREETSCAN_SHARD": "1/2", "STREETSCAN_SHARD_COUNT": "9"}) == Shard(1, 2)
    assert Shard.from_environment({}) is None
    with pytest.raises(ShardError, match="ordinal"):
        Shard.from_environment({"STREETSCAN_SHARD_COUNT": "3", "HOSTNAME": "laptop"})
    ids = [f"camera-{i}" for i in range(3000)]
    counts = [sum(owner(c, 10) == k for c in ids) for k in range(10)]
    assert min(counts) > 240 and max(counts) < 360  # even spread
    moved = sum(owner(c, 10) != owner(c, 11) for c in ids)
    assert moved < 3000 * 0.13  # one more shard moves ~1/11 of the cameras
    assert all(owner(c, 11) == 10 for c in ids if owner(c, 10) != owner(c, 11))  # ... and only to it
