"""End-to-end replays of real H.264 clips: decode -> detect -> track -> rules -> dedup -> evidence -> sinks."""

import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import jsonschema
import numpy as np
import pytest
import redis
import yaml
from conftest import REPO, encode_clip

from streetscan.delivery.sinks import JsonlSink, RedisStreamSink
from streetscan.pipeline.config import parse_config
from streetscan.pipeline.detect import make_detections
from streetscan.pipeline.events import event_schema
from streetscan.pipeline.models import ModelCard
from streetscan.workers.replay import ReplayJob

pytestmark = pytest.mark.integration


def streetscan(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "streetscan", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_replay_of_unreadable_input_exits_non_zero(untrained_yolo, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 4096)
    proc = streetscan("replay", str(bad), "--model", str(untrained_yolo), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 2 and "broken.mp4: cannot open" in proc.stderr
    proc = streetscan("replay", str(tmp_path / "none.mp4"), "--model", str(untrained_yolo), cwd=tmp_path)
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_a_still_image_is_refused_and_a_clip_cut_short_is_reported(marker_model, tmp_path):
    # Issue #34 item 6: a JPEG renamed .mp4 replayed as a one-frame video with exit 0; a half-written
    # MP4 (its index first, the media cut off) replayed 150 of 341 frames with exit 0 and no word.
    picture = tmp_path / "still.mp4"
    ok, jpeg = cv2.imencode(".jpg", np.full((360, 640, 3), 90, dtype=np.uint8))
    picture.write_bytes(jpeg.tobytes())
    proc = streetscan("replay", str(picture), "--model", str(marker_model), "--out", str(tmp_path / "o1"), cwd=tmp_path)
    assert proc.returncode == 2 and "still.mp4: a still image (mjpeg), not video footage" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

    whole = encode_clip(tmp_path / "whole.mp4", seconds=20, gop=25)
    faststart = tmp_path / "faststart.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(whole), "-c", "copy", "-movflags", "+faststart", str(faststart)],
        check=True,
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(faststart.read_bytes()[: faststart.stat().st_size * 45 // 100])
    proc = streetscan("replay", str(cut), "--model", str(marker_model), "--out", str(tmp_path / "o2"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cut.mp4 ends early" in proc.stdout and "s missing" in proc.stderr
    proc = streetscan(
        "replay", str(faststart), "--model", str(marker_model), "--out", str(tmp_path / "o3"), cwd=tmp_path
    )
    assert "ends early" not in proc.stdout + proc.stderr


def test_the_same_footage_replayed_twice_into_one_folder_sends_each_revision_once(marker_model, tmp_path):
    # Issue #35 item 2: running the demo twice appended every (event_id, revision) to events.jsonl a
    # second time, with no word. The ids are deterministic so that a re-run changes nothing.
    from marker_model import red_marker

    clip = encode_clip(tmp_path / "kerb.mp4", seconds=12, scene=red_marker(present=lambda t: 1.0 <= t <= 7.0))
    out, streams = tmp_path / "out", tmp_path / "streams.yaml"
    streams.write_text(yaml.safe_dump({
        "defaults": {"analysis_fps": 4, "event": {"update_interval_s": 1, "resolve_grace_s": 2},
                     "rules": {"illegal_parking": {"dwell_s": 1.5}}},
        "cameras": [{"id": "kerb", "name": "kerb", "url": "kerb.mp4", "location": {"address": "test road"}}],
    }))  # fmt: skip
    args = ("replay", str(clip), "--streams", str(streams), "--model", str(marker_model), "--out", str(out))
    first = streetscan(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    written = (out / "events.jsonl").read_text(encoding="utf-8")
    assert len(written.splitlines()) >= 2  # the parked 'car' opened and resolved
    second = streetscan(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (out / "events.jsonl").read_text(encoding="utf-8") == written
    assert "already in this output folder's spool" in second.stderr + second.stdout
    assert "already in this output folder's spool" not in first.stderr + first.stdout


def test_the_replay_progress_bar_counts_seconds_of_footage_out_of_the_clips_length(marker_model, tmp_path):
    # Issue #35 item 3: the bar was made with no total and stayed at 0 % for every clip.
    import re

    clip = encode_clip(tmp_path / "clip.mp4", seconds=12)
    env = {**os.environ, "COLUMNS": "160", "FORCE_COLOR": "1"}  # Rich draws its bar as on a terminal
    proc = subprocess.run(
        [sys.executable, "-m", "streetscan", "replay", str(clip), "--model", str(marker_model), "--out",
         str(tmp_path / "o")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shown = [(int(p), int(s)) for p, s in re.findall(r"(\d+)%\s+(\d+)/12 s", proc.stdout)]
    assert shown, proc.stdout[-500:]
    assert shown[-1][1] >= 11 and shown[-1][0] >= 90  # the whole clip, out of its 12 s
    # ... and its table keeps a long file name whole in an 80-column terminal (it was cut to "stree…").
    long = clip.rename(tmp_path / "kerbside_camera_gate_east_2026-12-07.mp4")
    env["COLUMNS"] = "80"
    proc = subprocess.run(
        [sys.executable, "-m", "streetscan", "replay", str(long), "--model", str(marker_model), "--out",
         str(tmp_path / "o2")], cwd=tmp_path, env={k: v for k, v in env.items() if k != "FORCE_COLOR"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and long.name in proc.stdout, proc.stdout


def test_replay_with_unreachable_redis_exits_non_zero(untrained_yolo, h264_clip, tmp_path):
    proc = streetscan(
        "replay",
        str(h264_clip),
        "--model",
        str(untrained_yolo),
        "--redis",
        "redis://127.0.0.1:1/0",
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "Redis not reachable" in proc.stderr


# --- events end to end -------------------------------------------------------------------------
# Why a stub detector here: the only ONNX model a fresh checkout can build is untrained and detects
# nothing, so it cannot drive events. RedBoxDetector is a real detector of a simpler world: it finds
# the red "car" painted into the encoded clip in the *decoded* frames, so decode, tracking, rules,
# dedup, evidence and both sinks all run for real on what the video shows.


def parking_scene(t: float, img: np.ndarray) -> None:
    """A red car drives in (0-4 s), parks on the kerb (4-24 s), drives off (24-27 s)."""
    if t < 4:
        x = int(20 + 120 * t)
    elif t < 24:
        x = 500
    else:
        x = int(500 + 150 * (t - 24))
    if x < 620:
        img[250:310, x : x + 100] = (0, 0, 255)


class RedBoxDetector:
    card = ModelCard(
        name="red-box-stub",
        version="test",
        family="yolo",
        weights=Path("none"),
        input_width=640,
        input_height=640,
        rect=False,
        layout="NCHW",
        color="RGB",
        mean=(0, 0, 0),
        std=(1, 1, 1),
        class_names=("car",),
        class_map={"car": "car"},
    )

    def detect(self, images):
        out = []
        for img in images:
            mask = ((img[..., 2] > 180) & (img[..., 1] < 80) & (img[..., 0] < 80)).astype(np.uint8)
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            boxes = [cv2.boundingRect(c) for c in contours if cv2.contourArea(c) > 200]
            xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes], np.float32)
            out.append(make_detections(xyxy, np.full(len(boxes), 0.9, np.float32), ["car"] * len(boxes)))
        return out


STREAMS = {
    "defaults": {"analysis_fps": 2, "event": {"update_interval_s": 5, "resolve_grace_s": 4}},
    "cameras": [
        {
            "id": "kerb-cam",
            "name": "测试路 kerb",
            "url": "parking.mp4",
            "location": {"address": "测试路 1 号", "lat": 31.2, "lon": 121.4},
            "zones": [{"id": "kerb", "kind": "no_parking", "polygon": [[0, 200], [640, 200], [640, 360], [0, 360]]}],
            "rules": {"illegal_parking": {"dwell_s": 8}},
        }
    ],
}


@pytest.fixture(scope="module")
def parking_clip(tmp_path_factory) -> Path:
    return encode_clip(tmp_path_factory.mktemp("parking") / "parking.mp4", seconds=32, gop=50, scene=parking_scene)


def run_parking_replay(clip: Path, out: Path, redis_url: str, stream: str, flush_s: float = 30.0):
    camera = parse_config(STREAMS).camera("kerb-cam")
    sinks = [JsonlSink(out / "events.jsonl"), RedisStreamSink(redis_url, stream=stream, timeout_s=1.0)]
    job = ReplayJob(
        camera,
        RedBoxDetector(),
        out_dir=out,
        sinks=sinks,
        batch_size=4,
        flush_s=flush_s,
        start_time=datetime(2026, 11, 20, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")),
    )
    try:
        return job.run(str(clip))
    finally:
        for s in sinks:
            s.close()


def test_replay_cli_through_a_real_onnx_model_delivers_events_to_both_sinks(
    marker_model, parking_clip, redis_url, tmp_path
):
    """The CLI as an analyst runs it, with a real ONNX model that sees the parked car: events must
    reach the JSONL file and Redis (an unwired sink fails here), with the report beside them."""
    out = tmp_path / "out"
    streams = tmp_path / "streams.yaml"
    streams.write_text(yaml.safe_dump(STREAMS, allow_unicode=True), encoding="utf-8")
    proc = streetscan(
        "replay",
        str(parking_clip),
        "--streams",
        str(streams),
        "--model",
        str(marker_model),
        "--out",
        str(out),
        "--redis",
        redis_url,
        "--redis-stream",
        "e2e:cli",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "scene classes" in proc.stdout and "cannot serve" in proc.stdout  # says what the model cannot do
    assert "real-time factor" in proc.stdout and "parking.mp4" in proc.stdout
    events = [json.loads(line) for line in (out / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["state"] for e in events][0] == "opened" and events[-1]["state"] == "resolved"
    assert {e["scene_class"]["code"] for e in events} == {"illegal_parking"}
    entries = redis.Redis.from_url(redis_url, decode_responses=True).xrange("e2e:cli")
    assert [(f["event_id"], int(f["revision"])) for _, f in entries] == [(e["event_id"], e["revision"]) for e in events]
    report = (out / "report.md").read_text(encoding="utf-8")
    row = re.search(r"\| kerb-cam \| 640x360 \| 32\.0 \| (\d+) \| 64 \|", report)  # 64 analysed at 2 fps
    assert row, report
    # Of 800 frames (1 s GOP), those after each GOP's analysed 0.5 s frame are not decoded; how many
    # of them is for the decoder's threads to say (frames in flight when the hold starts).
    assert 64 < int(row.group(1)) < 800
    assert f"id `{events[0]['event_id']}`" in report and "![annotated](evidence/" in report


def test_replay_keeps_what_a_sink_did_not_take_and_delivers_it_next_time(parking_clip, redis_url, tmp_path):
    """Replay commits events to the same durable spool as the daemon: with Redis down they wait in
    OUT/spool.db, and the next replay into that folder delivers them before its own."""
    down = run_parking_replay(parking_clip, tmp_path, "redis://127.0.0.1:1/0", "e2e:later", flush_s=1.0)
    assert down.events and down.undelivered == len(down.events)  # analysed and kept, not delivered
    rows = sqlite3.connect(tmp_path / "spool.db").execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    assert rows == len(down.events)
    up = run_parking_replay(parking_clip, tmp_path, redis_url, "e2e:later")
    assert up.undelivered == 0
    entries = redis.Redis.from_url(redis_url, decode_responses=True).xrange("e2e:later")
    delivered = [(f["event_id"], int(f["revision"])) for _, f in entries]
    # Same clip, same ids: the sink's (event_id, revision) dedupe absorbs the second run's copies.
    assert delivered == [(e.event_id, e.revision) for e in down.events]
    assert sqlite3.connect(tmp_path / "spool.db").execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_parking_violation_end_to_end(parking_clip, redis_url, tmp_path):
    result = run_parking_replay(parking_clip, tmp_path, redis_url, "e2e:parking")
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    states = [e["state"] for e in events]
    assert states[0] == "opened" and states[-1] == "resolved" and set(states[1:-1]) <= {"updated"}
    assert len({e["event_id"] for e in events}) == 1 and [e["revision"] for e in events] == list(range(len(events)))
    opened, resolved = events[0], events[-1]
    schema = event_schema()
    for e in events:
        jsonschema.validate(e, schema)
    assert opened["scene_class"]["code"] == "illegal_parking" and opened["camera"]["name"] == "测试路 kerb"
    # Parked from ~4 s; confirmed after 8 s of dwell; gone after 24 s; resolved 4 s later.
    assert 3.5 <= opened["first_seen"]["stream_s"] <= 5.0
    assert opened["confirmed"]["stream_s"] - opened["first_seen"]["stream_s"] == pytest.approx(8, abs=0.6)
    assert opened["confirmed"]["wall"].startswith("2026-11-20T09:00:1")
    assert 23.0 <= resolved["last_seen"]["stream_s"] <= 24.5
    x1, y1, x2, y2 = opened["objects"][0]["box"]
    assert abs(x1 - 500) <= 4 and abs(y1 - 250) <= 4 and abs(x2 - 600) <= 4 and abs(y2 - 310) <= 4
    # Evidence: clean + annotated confirming frame and the first sighting, all real JPEGs.
    assert set(opened["evidence"]) == {"clean", "annotated", "first"}
    for role in ("clean", "first"):
        img = cv2.imread(str(tmp_path / opened["evidence"][role]))
        assert img is not None and img.shape == (360, 640, 3)
    annotated = cv2.imread(str(tmp_path / opened["evidence"]["annotated"]))
    clean = cv2.imread(str(tmp_path / opened["evidence"]["clean"]))
    bar = annotated.shape[0] - 360  # the header's strip above the picture
    assert 20 <= bar <= 40 and annotated.shape[1:] == (640, 3)
    assert np.abs(annotated[bar:].astype(int) - clean.astype(int)).mean() > 1  # boxes and zone drawn
    assert resolved["evidence"] == opened["evidence"]
    # The same events reached Redis, in order, with their ids in the entries.
    entries = redis.Redis.from_url(redis_url, decode_responses=True).xrange("e2e:parking")
    assert [(f["event_id"], f["state"]) for _, f in entries] == [(e["event_id"], e["state"]) for e in events]
    assert result.frames_analysed == 64 and result.counts[("illegal_parking", "opened")] == 1
    assert [e.to_dict() for e in result.events] == events and result.undelivered == 0 and result.still_open == 0
    assert result.duration_s == pytest.approx(32.0, abs=0.05) and result.wall_s > 0
    assert result.realtime_factor == pytest.approx(result.duration_s / result.wall_s)


def test_rerun_gives_the_same_event_ids(parking_clip, redis_url, tmp_path):
    first = run_parking_replay(parking_clip, tmp_path / "a", redis_url, "e2e:rerun")
    second = run_parking_replay(parking_clip, tmp_path / "b", redis_url, "e2e:rerun")
    assert [(e.event_id, e.revision) for e in first.events] == [(e.event_id, e.revision) for e in second.events]
    assert first.events


def test_repo_streams_example_drives_a_replay(untrained_yolo, h264_clip, tmp_path):
    proc = streetscan(
        "replay",
        str(h264_clip),
        "--streams",
        str(REPO / "streams.yaml"),
        "--camera",
        "jd-kerb-07",
        "--model",
        str(untrained_yolo),
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    # The camera analyses 1 fps and the clip has a keyframe every second: only keyframes are decoded.
    assert "| jd-kerb-07 | 640x360 | 8.0 | 8 | 8 |" in (tmp_path / "o" / "report.md").read_text()
