"""Verification on request (核查), answered in a replay and by the live daemon: a violation still
there gets a `still_present` revision with evidence, one gone a `verified` revision with a fresh
picture; unknown cases, cameras that are down and malformed requests get a clear answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import encode_clip
from marker_model import red_marker

from streetscan.pipeline.events import event_schema

pytestmark = pytest.mark.integration
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def replay(clip: Path, streams: Path, model: Path, out: Path, *extra: str) -> list[dict]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streetscan",
            "replay",
            str(clip),
            "--streams",
            str(streams),
            "--model",
            str(model),
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def test_verification_requests_in_a_replay(tmp_path, marker_model):
    # A red 'car' parked from 1 s to 8 s of a 14 s recording.
    clip = encode_clip(tmp_path / "kerb.mp4", seconds=14, scene=red_marker(present=lambda t: 1.0 <= t <= 8.0))
    streams = tmp_path / "streams.yaml"
    streams.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "analysis_fps": 4,
                    "event": {"update_interval_s": 1, "resolve_grace_s": 2},
                    "rules": {"illegal_parking": {"dwell_s": 1.5}},
                },
                "cameras": [{"id": "kerb", "name": "kerb", "url": "kerb.mp4", "location": {"address": "test road"}}],
            }
        )
    )
    first = replay(clip, streams, marker_model, tmp_path / "first")
    event_id = first[0]["event_id"]  # ids are the same on every replay of this footage
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"at_s": 5.0, "request_id": "r-there", "event_id": event_id},  # the car is still parked
                {"at_s": 11.0, "request_id": "r-gone", "event_id": event_id},  # it left at 8 s
                {"at_s": 11.0, "request_id": "r-unknown", "event_id": UNKNOWN},
                {"at_s": 11.0, "request_id": "r-bad"},
                {"at_s": 13.9, "request_id": "r-late", "event_id": event_id},  # the recording ends first
            ]
        )
        + "\n"
    )
    out = tmp_path / "second"
    events = replay(clip, streams, marker_model, out, "--verify", str(requests))
    replies = [json.loads(line) for line in (out / "verifications.jsonl").read_text().splitlines()]
    final = {r["request_id"]: r for r in replies}
    assert final["r-there"]["status"] == "answered" and final["r-there"]["state"] == "still_present"
    assert final["r-gone"]["status"] == "answered" and final["r-gone"]["state"] == "verified"
    assert final["r-unknown"]["status"] == "unknown_case"
    assert final["r-bad"]["status"] == "malformed" and "event_id" in final["r-bad"]["detail"]
    assert final["r-late"]["status"] == "camera_down" and "recording ends" in final["r-late"]["detail"]
    assert [r["status"] for r in replies if r["request_id"] == "r-there"] == ["accepted", "answered"]

    mine = [e for e in events if e["event_id"] == event_id]
    revisions = [e["revision"] for e in mine]
    assert revisions == list(range(len(mine)))  # the answers are revisions in the event's sequence
    by_request = {e["verification"]["request_id"]: e for e in mine if "verification" in e}
    there, gone = by_request["r-there"], by_request["r-gone"]
    assert there["state"] == "still_present" and there["objects"] and there["verification"]["present_frames"] >= 2
    assert gone["state"] == "verified" and gone["verification"]["present_frames"] <= 1
    assert mine[-1] is gone and any(e["state"] == "resolved" for e in mine)
    for e in (there, gone):
        jsonschema.validate(e, event_schema(), format_checker=jsonschema.FormatChecker())
        for path in e["evidence"].values():
            assert (out / path).is_file() and "verify-" in path


@pytest.mark.usefixtures("rtsp_ready")
def test_verification_requests_to_the_daemon_over_redis_and_http(tmp_path, marker_model, redis_url, monkeypatch):
    import httpx
    import redis
    from realparts import DaemonProcess, RtspServer, wait_for
    from test_webhook import SECRET, Receiver

    from streetscan.delivery.webhook import sign

    clip = encode_clip(tmp_path / "parked.mp4", seconds=90, gop=25, scene=red_marker(present=lambda t: t >= 1.0))
    rtsp = RtspServer({"cam": clip}).start()
    streams = tmp_path / "streams.yaml"
    streams.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "analysis_fps": 4,
                    "event": {"update_interval_s": 30, "resolve_grace_s": 3},
                    "reader": {
                        "backoff_initial_s": 0.3,
                        "backoff_max_s": 2.0,
                        "open_timeout_s": 5,
                        "read_timeout_s": 3,
                        "stall_timeout_s": 5,
                    },
                    "rules": {"illegal_parking": {"dwell_s": 1.5}},
                },
                "cameras": [
                    {"id": "cam-1", "name": "cam 1", "url": rtsp.url("cam"), "location": {"address": "test road"}}
                ],
            }
        )
    )
    receiver = Receiver(tmp_path).start()
    monkeypatch.setenv("STREETSCAN_WEBHOOK_SECRET", SECRET.decode())
    out = tmp_path / "out"
    daemon = DaemonProcess(
        streams,
        out,
        marker_model,
        "--redis",
        redis_url,
        "--redis-stream",
        "verify-cases",
        "--command-stream",
        "verify-cmds",
        "--webhook",
        receiver.url,
        "--jsonl",
    ).start()
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    base = f"http://127.0.0.1:{daemon.port}"

    def events() -> list[dict]:
        path = out / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def replies(request_id: str) -> list[dict]:
        return [f for _, f in r.xrange("verify-cmds:replies") if f.get("request_id") == request_id]

    def signed(body: bytes = b"") -> dict:
        ts = str(int(__import__("time").time()))
        return {"X-StreetScan-Timestamp": ts, "X-StreetScan-Signature": sign(SECRET, ts, body)}

    try:
        wait_for(lambda: any(e["state"] == "opened" for e in events()), 60, what="the parked car's case")
        event_id = events()[0]["event_id"]
        # Over Redis: a well-formed request, an unknown case, a malformed command.
        r.xadd("verify-cmds", {"request_id": "redis-1", "event_id": event_id})
        r.xadd("verify-cmds", {"request_id": "redis-2", "event_id": UNKNOWN})
        r.xadd("verify-cmds", {"payload": "{not json"})
        wait_for(
            lambda: [x["status"] for x in replies("redis-1")] == ["accepted", "answered"],
            30,
            what="the Redis request answered",
        )
        assert replies("redis-1")[-1]["state"] == "still_present"
        assert [x["status"] for x in replies("redis-2")] == ["unknown_case"]
        wait_for(
            lambda: any(f.get("status") == "malformed" for _, f in r.xrange("verify-cmds:replies")),
            10,
            what="the malformed command's answer",
        )
        # Over HTTP, signed with the shared secret; unsigned requests are refused.
        body = json.dumps({"request_id": "http-1", "event_id": event_id}).encode()
        assert httpx.post(f"{base}/verify", content=body).status_code == 401
        answer = httpx.post(f"{base}/verify", content=body, headers=signed(body))
        assert answer.status_code == 202 and answer.json()["status"] == "accepted"
        wait_for(
            lambda: (
                httpx.get(f"{base}/verify/http-1", headers=signed(b"/verify/http-1")).json().get("status") == "answered"
            ),
            30,
            what="the HTTP request answered",
        )
        # A GET is signed over its path: the headers that read one request read no other.
        assert httpx.get(f"{base}/verify/http-1", headers=signed()).status_code == 401
        assert httpx.get(f"{base}/verify/http-2", headers=signed(b"/verify/http-1")).status_code == 401
        bad = b'{"request_id": "http-2"}'
        assert httpx.post(f"{base}/verify", content=bad, headers=signed(bad)).status_code == 400
        unknown = json.dumps({"request_id": "http-3", "event_id": UNKNOWN}).encode()
        assert httpx.post(f"{base}/verify", content=unknown, headers=signed(unknown)).status_code == 404
        # The camera goes dark: a request for its case says so instead of waiting.
        rtsp.kill()
        wait_for(lambda: daemon.camera_state("cam-1") == "backoff", 30, what="the camera down")
        down = json.dumps({"request_id": "http-4", "event_id": event_id}).encode()
        answer = httpx.post(f"{base}/verify", content=down, headers=signed(down))
        assert answer.status_code == 409 and answer.json()["status"] == "camera_down"
        assert "backoff" in answer.json()["detail"]
        wait_for(
            lambda: sum("verification" in e for e in receiver_events(receiver)) >= 2,
            20,
            what="the answers delivered to the platform's webhook",
        )
    finally:
        daemon.stop()
        rtsp.kill()
        receiver.kill()
    answers = [e for e in events() if "verification" in e]
    assert {e["verification"]["request_id"] for e in answers} == {"redis-1", "http-1"}
    assert all(e["state"] == "still_present" for e in answers)
    mine = [e["revision"] for e in events() if e["event_id"] == event_id]
    assert mine == list(range(len(mine)))


def receiver_events(receiver) -> list[dict]:
    """The events the receiver accepted, read back from the daemon's own record by key."""
    keys = set(receiver.accepted())
    out = receiver.log.parent / "out" / "events.jsonl"
    return (
        [
            e
            for e in (json.loads(line) for line in out.read_text().splitlines())
            if f"{e['event_id']}:{e['revision']}" in keys
        ]
        if out.exists()
        else []
    )


def test_the_reference_consumer_takes_over_a_dead_consumers_entries_and_prints_each_case_once(redis_url):
    import redis
    from test_console_security import event

    from streetscan.delivery.sinks import RedisStreamSink

    stream = "consume-test"
    sink = RedisStreamSink(redis_url, stream=stream)
    for i in range(10):
        sink.emit(event(i))
    sink.close()
    r = redis.Redis.from_url(redis_url)
    r.xgroup_create(stream, "platform", id="0")
    taken = r.xreadgroup("platform", "dead", {stream: ">"}, count=4)[0][1]  # read, then the consumer died
    assert len(taken) == 4
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streetscan",
            "consume",
            "--redis",
            redis_url,
            "--stream",
            stream,
            "--consumer",
            "alive",
            "--claim-idle",
            "0.2",
            "--max",
            "10",
            "--idle-exit",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(e["event_id"] for e in printed) == sorted(event(i)["event_id"] for i in range(10))
    assert r.xpending(stream, "platform")["pending"] == 0  # every entry acknowledged, the dead one's too
