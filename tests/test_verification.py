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

from streetscan.pipeline.events import event_schema

from conftest import encode_clip
from marker_model import red_marker

pytestmark = pytest.mark.integration
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def replay(clip: Path, streams: Path, model: Path, out: Path, *extra: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "streetscan", "replay", str(clip), "--streams", str(streams),
                           "--model", str(model), "--out", str(out), *extra], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def test_verification_requests_in_a_replay(tmp_path, marker_model):
    # A red 'car' parked from 1 s to 8 s of a 14 s recording.
    clip = encode_clip(tmp_path / "kerb.mp4", seconds=14, scene=red_marker(present=lambda t: 1.0 <= t <= 8.0))
    streams = tmp_path / "streams.yaml"
    streams.write_text(yaml.safe_dump({
        "defaults": {"analysis_fps": 4, "event": {"update_interval_s": 1, "resolve_grace_s": 2},
                     "rules": {"illegal_parking": {"dwell_s": 1.5}}},
        "cameras": [{"id": "kerb", "name": "kerb", "url": "kerb.mp4", "location": {"address": "test road"}}]}))
    first = replay(clip, streams, marker_model, tmp_path / "first")
    event_id = first[0]["event_id"]                      # ids are the same on every replay of this footage
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(json.dumps(r) for r in [
        {"at_s": 5.0, "request_id": "r-there", "event_id": event_id},      # the car is still parked
        {"at_s": 11.0, "request_id": "r-gone", "event_id": event_id},      # it left at 8 s
        {"at_s": 11.0, "request_id": "r-unknown", "event_id": UNKNOWN},
        {"at_s": 11.0, "request_id": "r-bad"},
        {"at_s": 13.9, "request_id": "r-late", "event_id": event_id},      # the recording ends first
    ]) + "\n")
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
    assert revisions == list(range(len(mine)))           # the answers are revisions in the event's sequence
    by_request = {e["verification"]["request_id"]: e for e in mine if "verification" in e}
    there, gone = by_request["r-there"], by_request["r-gone"]
    assert there["state"] == "still_present" and there["objects"] and there["verification"]["present_frames"] >= 2
    assert gone["state"] == "verified" and gone["verification"]["present_frames"] <= 1
    assert mine[-1] is gone and any(e["state"] == "resolved" for e in mine)
    for e in (there, gone):
        jsonschema.validate(e, event_schema(), format_checker=jsonschema.FormatChecker())
        for path in e["evidence"].values():
            assert (out / path).is_file() and "verify-" in path
