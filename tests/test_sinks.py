import json

import pytest
import redis

from streetscan.delivery.sinks import JsonlSink, RedisStreamSink, SinkError


def event(n: int, state: str = "opened") -> dict:
    return {
        "event_id": f"00000000-0000-0000-0000-{n:012d}",
        "revision": 0,
        "state": state,
        "scene_class": {"code": "illegal_parking"},
        "camera": {"id": "cam-1"},
        "note": "违停",
    }


def test_jsonl_appends_one_object_per_line(tmp_path):
    path = tmp_path / "sub" / "events.jsonl"
    sink = JsonlSink(path, durable=True)
    for i in range(3):
        sink.emit(event(i))
    sink.close()
    JsonlSink(path).emit(event(3))  # reopening appends, never truncates
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["event_id"][-1] for line in lines] == ["0", "1", "2", "3"]
    assert "违停" in lines[0]  # UTF-8 kept readable, not \\u-escaped


def test_jsonl_rotates_by_size_without_losing_or_splitting_a_line(tmp_path):
    path = tmp_path / "events.jsonl"
    line_bytes = len(json.dumps(event(0), ensure_ascii=False, separators=(",", ":")).encode()) + 1
    sink = JsonlSink(path, max_bytes=3 * line_bytes + 10)  # three events per file
    for i in range(10):
        sink.emit(event(i))
    sink.close()
    parts = sorted(tmp_path.glob("events-*.jsonl")) + [path]  # rotated parts sort by time
    assert [len(p.read_text(encoding="utf-8").splitlines()) for p in parts] == [3, 3, 3, 1]
    ids = [json.loads(line)["event_id"] for p in parts for line in p.read_text(encoding="utf-8").splitlines()]
    assert ids == [event(i)["event_id"] for i in range(10)]


@pytest.mark.integration
def test_redis_stream_entries_ids_and_payload(redis_url):
    sink = RedisStreamSink(redis_url, stream="t:entries")
    sink.ping()
    for i in range(5):
        sink.emit(event(i))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    entries = client.xrange("t:entries")
    assert len(entries) == 5
    ids = [fields["event_id"] for _, fields in entries]
    assert ids == [event(i)["event_id"] for i in range(5)]  # in order, id in the entry itself
    _, fields = entries[0]
    assert fields["state"] == "opened" and fields["scene_class"] == "illegal_parking" and fields["camera_id"] == "cam-1"
    assert json.loads(fields["payload"]) == event(0)
    stream_ids = [sid for sid, _ in entries]
    assert stream_ids == sorted(stream_ids, key=lambda s: tuple(map(int, s.split("-"))))


@pytest.mark.integration
def test_redis_stream_maxlen_bounds_the_queue(redis_url):
    sink = RedisStreamSink(redis_url, stream="t:bounded", maxlen=10, approximate=False)
    for i in range(25):
        sink.emit(event(i))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.xlen("t:bounded") == 10
    assert client.xrange("t:bounded")[0][1]["event_id"] == event(15)["event_id"]  # oldest trimmed first


@pytest.mark.integration
def test_redis_unreachable_is_a_clear_error():
    sink = RedisStreamSink("redis://127.0.0.1:1/0", timeout_s=0.5)
    with pytest.raises(SinkError, match=r"redis:streetscan:events: Redis not reachable"):
        sink.ping()
    with pytest.raises(SinkError, match="XADD failed"):
        sink.emit(event(0))


def test_outputs_are_opened_from_their_urls_through_one_registry(tmp_path, redis_url, monkeypatch):
    from streetscan.delivery.outputs import OutputError, open_output, open_outputs, redis_output
    from streetscan.pipeline.config import OutputConfig

    sinks = open_outputs(
        [
            OutputConfig(url="jsonl:"),
            OutputConfig(url="jsonl:sub/cases.jsonl", max_mb=0),
            OutputConfig(url=redis_output(redis_url, "t:outputs")),
        ],
        tmp_path,
    )
    try:
        for sink in sinks:
            sink.emit(event(1))
    finally:
        for sink in sinks:
            sink.close()
    assert [s.name for s in sinks] == [
        f"jsonl:{tmp_path / 'events.jsonl'}",
        f"jsonl:{tmp_path / 'sub/cases.jsonl'}",
        "redis:t:outputs",
    ]
    assert json.loads((tmp_path / "sub/cases.jsonl").read_text())["event_id"] == event(1)["event_id"]
    assert redis.Redis.from_url(redis_url).xlen("t:outputs") == 1
    with pytest.raises(OutputError, match=r"unknown output 'kafka://broker'.*jsonl:, redis:"):
        open_output("kafka://broker", tmp_path)
    with pytest.raises(OutputError, match="named twice"):
        open_outputs([OutputConfig(url="jsonl:"), OutputConfig(url="jsonl:events.jsonl")], tmp_path)
    monkeypatch.delenv("STREETSCAN_WEBHOOK_SECRET", raising=False)
    with pytest.raises(OutputError, match="needs a shared secret"):
        open_output("https://platform.example/cases", tmp_path)


def test_the_daemon_sends_to_the_outputs_of_its_command_line_and_of_streams_yaml(tmp_path):
    import yaml

    from streetscan.pipeline.config import OutputConfig
    from streetscan.startup import LiveSettings, Startup, StartupError
    from streetscan.workers.supervisor import DaemonOptions

    streams = tmp_path / "streams.yaml"
    camera = {"id": "c", "name": "c", "url": "c.mp4", "location": {"address": "x"}}
    streams.write_text(yaml.safe_dump({"outputs": [{"url": "jsonl:from-file.jsonl"}], "cameras": [camera]}))
    options = DaemonOptions(streams_path=streams, out_dir=tmp_path / "out", spool_path=tmp_path / "out/spool.db")
    startup = Startup(LiveSettings(options, outputs=(OutputConfig(url="jsonl:from-flag.jsonl"),), jsonl_max_mb=0))
    startup.init_config()
    startup.init_outputs()
    assert [s.name.rsplit("/", 1)[-1] for s in startup.sinks] == ["from-flag.jsonl", "from-file.jsonl"]
    startup = Startup(LiveSettings(options, jsonl=True, jsonl_max_mb=0))  # --jsonl --jsonl-max-mb 0
    startup.init_config()
    startup.init_outputs()
    assert startup.sinks[0].name.endswith("/events.jsonl") and startup.sinks[0].max_bytes is None
    # No output anywhere: the events file, as before outputs existed.
    streams.write_text(yaml.safe_dump({"cameras": [camera]}))
    startup = Startup(LiveSettings(options))
    startup.init_config()
    startup.init_outputs()
    assert [s.name.rsplit("/", 1)[-1] for s in startup.sinks] == ["events.jsonl"]
    streams.write_text(yaml.safe_dump({"outputs": [{"url": "mqtt://broker"}], "cameras": [camera]}))
    with pytest.raises(StartupError, match=r"outputs\[0\]\.url: unknown output 'mqtt://broker'"):
        Startup(LiveSettings(options)).init_config()


def test_the_case_index_refuses_what_is_not_an_event_as_a_sink_and_skips_it_when_importing(tmp_path):
    from streetscan.console.index import CaseIndex
    from streetscan.delivery.sinks import EventRejected

    good = {
        "schema_version": "2", "event_id": "00000000-0000-4000-8000-000000000001", "state": "opened", "revision": 0,
        "camera": {"id": "c", "name": "c", "address": "x", "lat": None, "lon": None},
        "zone": {"id": "z", "kind": "sidewalk", "grade": "arterial"},
        "scene_class": {"code": "illegal_parking", "name_zh": "", "name_en": "", "category": ""},
        "first_seen": {"stream_s": 1.0, "wall": "2026-12-06T08:00:00+08:00"},
        "confirmed": {"stream_s": 2.0, "wall": "2026-12-06T08:00:01+08:00"},
        "last_seen": {"stream_s": 2.0, "wall": "2026-12-06T08:00:01+08:00"},
        "confidence": 0.9, "objects": [], "evidence": {}, "model": {"name": "m", "version": "1"},
        "pipeline_version": "0.1.0", "repeat_count": 0, "source": "t", "platform": None, "enforcement": None,
    }  # fmt: skip
    newer = {**good, "event_id": "00000000-0000-4000-8000-000000000002",
             "scene_class": {**good["scene_class"], "code": "a_class_from_a_newer_version"}}  # fmt: skip
    index = CaseIndex(tmp_path / "cases.db")
    with pytest.raises(EventRejected, match="unknown scene class 'a_class_from_a_newer_version'"):
        index.emit(newer)  # the daemon's emitter keeps it as a dead letter and goes on
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(e) for e in (newer, good)) + "\n")
    assert index.import_jsonl(tmp_path) == 1 and index.count() == 1
    assert index.case(good["event_id"]).place == ("c", "z", "illegal_parking")
