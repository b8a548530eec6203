"""Who must act, by when (issue #37): every case names its responsible unit and carries its
rectification deadline; at the deadline the camera checks the place itself and says `verified`
or `overdue`, with a picture, and checks an overdue case again until it is gone.

Synthetic streets through the real pipeline (real H.264, a real ONNX detector with one box per
marker colour, the tracker, rules, deduplicator and replay runner), the staged kerbside footage,
and the live daemon killed between a case's opening and its deadline."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
import yaml
from marker_model import build_markers_model, marker_colour, red_marker
from realparts import REPO, DaemonProcess, RtspServer, encode_clip, wait_for

from streetscan.delivery.sinks import JsonlSink
from streetscan.pipeline.config import ConfigError, parse_config
from streetscan.pipeline.detect import load_detector
from streetscan.pipeline.events import event_schema
from streetscan.pipeline.models import resolve_model
from streetscan.workers.replay import ReplayJob

ROAD = [[0, 190], [640, 190], [640, 360], [0, 360]]


def fleet(**over) -> dict:
    doc = {
        "sections": [{"id": "cz-east", "name": "城中路东段", "road_chief": "王路长", "unit": "新成路街道城管中队"}],
        "defaults": {"responsible": {"unit": "嘉定区城管执法局", "contact": "021-0000"}},
        "cameras": [
            {
                "id": "cam",
                "name": "cam",
                "url": "c.mp4",
                "location": {"address": "x"},
                "zones": [
                    {"id": "kerb", "kind": "no_parking", "polygon": ROAD, "section": "cz-east"},
                    {
                        "id": "shopfront",
                        "kind": "storefront",
                        "grade": "demonstration",
                        "responsible": {"shop": "老王面馆", "contact": "139-0000"},
                    },  # fmt: skip
                    {"id": "alley", "kind": "sidewalk", "grade": "alley"},
                ],
            }
        ],
    }
    doc.update(over)
    return doc


def test_each_zone_names_who_must_act_the_nearest_setting_first():
    cam = parse_config(fleet()).camera("cam")
    kerb, shop, alley = (cam.responsibility[z] for z in ("kerb", "shopfront", "alley"))
    # The road section's unit and chief, the file's contact where the section gives none.
    assert (kerb.unit, kerb.contact, kerb.section_name, kerb.road_chief) == (
        "新成路街道城管中队", "021-0000", "城中路东段", "王路长")  # fmt: skip
    # The shop answers for its frontage (门前三包); its own contact, the file's unit.
    assert (shop.shop, shop.contact, shop.unit, shop.section_id) == ("老王面馆", "139-0000", "嘉定区城管执法局", None)
    assert (alley.unit, alley.shop) == ("嘉定区城管执法局", None)
    doc = fleet()
    doc["cameras"][0]["responsible"] = {"unit": "摄像头所在中队"}
    assert parse_config(doc).camera("cam").responsibility["alley"].unit == "摄像头所在中队"


def test_a_zone_in_an_unknown_road_section_or_a_bad_deadline_is_refused_with_its_field():
    doc = fleet()
    doc["cameras"][0]["zones"][0]["section"] = "cz-west"
    with pytest.raises(ConfigError, match=r"  - camera 'cam' \(cameras\[0\]\) field zones\[0\]\.section: "
                       r"no road section 'cz-west' in `sections:`; known: cz-east"):  # fmt: skip
        parse_config(doc)
    with pytest.raises(ConfigError, match=r"defaults.deadlines.illegal_parking: .*duration like 90s, 15m"):
        parse_config(fleet(defaults={"deadlines": {"illegal_parking": "soon"}}))
    with pytest.raises(ConfigError, match=r"defaults.deadlines: .*unknown scene class 'parking'"):
        parse_config(fleet(defaults={"deadlines": {"parking": "15m"}}))
    with pytest.raises(ConfigError, match=r"road section id 'a' is used twice"):
        parse_config(fleet(sections=[{"id": "a", "name": "a"}, {"id": "a", "name": "b"}]))


def test_a_deadline_is_the_catalogues_scaled_by_road_grade_unless_streams_yaml_gives_one():
    cam = parse_config(fleet()).camera("cam")
    assert cam.rectify_s("illegal_parking", "kerb") == 15 * 60  # arterial: the table's
    assert cam.rectify_s("out_of_store_trading", "shopfront") == 15 * 60  # demonstration road: half of 30 min
    assert cam.rectify_s("stacked_materials", "alley") == 48 * 3600  # alley: twice 24 h
    doc = fleet(defaults={"deadlines": {"illegal_parking": "2m", "stacked_materials": "4h"}})
    doc["cameras"][0]["deadlines"] = {"illegal_parking": 45}
    cam = parse_config(doc).camera("cam")
    assert cam.rectify_s("illegal_parking", "alley") == 45  # the camera's, as given: not scaled
    assert cam.rectify_s("stacked_materials", "alley") == 4 * 3600


@pytest.fixture(scope="module")
def markers(tmp_path_factory) -> Path:
    pytest.importorskip("onnx")
    return build_markers_model(tmp_path_factory.mktemp("markers"))


@pytest.mark.integration
def test_at_its_deadline_a_case_still_there_is_overdue_and_checked_again_and_one_gone_is_verified(tmp_path, markers):
    """A red car parks at 1 s and stays; a blue car parks at 1 s and leaves at 5 s. Deadline 4 s after
    a case opens (≈ 2.5 s), checks again every 3 s while overdue."""

    def scene(t, img):
        img[:, :] = 90
        img[180:, :] = 60
        if t >= 1.0:
            img[250:300, 60:160] = marker_colour("red", 0.8)
            if t < 5.0:
                img[250:300, 420:520] = marker_colour("blue", 0.8)

    clip = encode_clip(tmp_path / "street.mp4", fps=10, gop=10, seconds=16, scene=scene)
    doc = fleet()
    doc["defaults"].update({
        "analysis_fps": 4,
        "event": {"resolve_grace_s": 2, "update_interval_s": 600},
        "deadlines": {"illegal_parking": "4s"},
        "deadline_checks": {"recheck_s": "3s"},
    })  # fmt: skip
    doc["cameras"][0]["zones"] = doc["cameras"][0]["zones"][:1]
    doc["cameras"][0]["rules"] = {"illegal_parking": {"dwell_s": 1.5}}
    out = tmp_path / "out"
    sink = JsonlSink(out / "events.jsonl")
    try:
        job = ReplayJob(parse_config(doc).camera("cam"), load_detector(resolve_model(str(markers))), out_dir=out,
                        sinks=[sink])  # fmt: skip
        job.run(str(clip))
    finally:
        sink.close()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    cases = {e["event_id"]: [x for x in events if x["event_id"] == e["event_id"]] for e in events}
    assert len(cases) == 2
    red, blue = sorted(cases.values(), key=lambda revs: revs[0]["objects"][0]["box"][0])
    for revs in (red, blue):
        first = revs[0]
        assert first["state"] == "opened" and [e["revision"] for e in revs] == list(range(len(revs)))
        assert first["responsible"] == {
            "unit": "新成路街道城管中队", "contact": "021-0000", "shop": None,
            "section": {"id": "cz-east", "name": "城中路东段", "road_chief": "王路长"},
        }  # fmt: skip
        due = datetime.fromisoformat(first["deadline"]["due"])
        assert first["deadline"]["rectify_s"] == 4
        assert (due - datetime.fromisoformat(first["confirmed"]["wall"])).total_seconds() == pytest.approx(4)
        checks = [e for e in revs if e["state"] in ("overdue", "verified")]
        assert checks, [e["state"] for e in revs]
        # The first check starts on the first analysed frame at or after the deadline, and looks at 3 frames.
        at = datetime.fromisoformat(checks[0]["verification"]["checked"]["wall"])
        assert 0 <= (at - due).total_seconds() <= 1.0
        for e in checks:
            jsonschema.validate(e, event_schema(), format_checker=jsonschema.FormatChecker())
            assert e["verification"]["request_id"].startswith("deadline:")
            assert e["evidence"] and all((out / p).is_file() for p in e["evidence"].values())
    red_checks = [e for e in red if e["state"] in ("overdue", "verified")]
    blue_checks = [e for e in blue if e["state"] in ("overdue", "verified")]
    assert [e["state"] for e in red_checks] == ["overdue"] * len(red_checks) and len(red_checks) >= 2
    assert [e["verification"]["request_id"] for e in red_checks][:2] == ["deadline:1", "deadline:2"]
    gap = [datetime.fromisoformat(e["verification"]["checked"]["wall"]) for e in red_checks[:2]]
    assert 3.0 <= (gap[1] - gap[0]).total_seconds() <= 4.5  # recheck_s after the last check
    assert [e["state"] for e in blue_checks] == ["verified"]  # rectified: no more checks


@pytest.mark.assets
def test_replay_of_the_kerbside_sample_with_a_30_s_deadline_finds_every_parked_car_overdue(assets, tmp_path):
    """The Done-when of issue #37: every parking case that reaches its deadline within the clip gets
    an automatic check about 30 s after it opened; the parked cars stay, so it is `overdue`, with a
    picture of the car still there."""
    doc = yaml.safe_load((REPO / "examples" / "footage.yaml").read_text(encoding="utf-8"))
    doc["cameras"] = [c for c in doc["cameras"] if c["id"] == "kerbside"]
    doc.setdefault("defaults", {})["deadlines"] = {"illegal_parking": "30s"}
    doc["defaults"]["deadline_checks"] = {"recheck_s": "10m"}
    streams = tmp_path / "streams.yaml"
    streams.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    clip = assets / "footage" / "street_parking_overhead.mp4"
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "streetscan", "replay", str(clip), "--streams", str(streams), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    parking = [e for e in events if e["state"] == "opened" and e["scene_class"]["code"] == "illegal_parking"]
    end_s = max(e["last_seen"]["stream_s"] for e in events)
    reaching = [e for e in parking if e["confirmed"]["stream_s"] + 30 + 1 <= end_s]
    assert len(reaching) >= 2, f"{len(parking)} parking cases, {len(reaching)} reach their deadline"
    for case in reaching:
        assert case["responsible"]["unit"] in ("样例街道城管一中队", "样例街道城管二中队")  # examples/footage.yaml
        checks = [e for e in events if e["event_id"] == case["event_id"] and e["state"] in ("overdue", "verified")]
        assert [e["state"] for e in checks] == ["overdue"], [
            e["state"] for e in events if e["event_id"] == case["event_id"]
        ]
        check = checks[0]
        late = check["verification"]["checked"]["stream_s"] - case["confirmed"]["stream_s"]
        assert 30 <= late <= 32, late
        assert check["verification"]["present_frames"] >= 2
        assert all((out / p).is_file() for p in check["evidence"].values()) and "annotated" in check["evidence"]


@pytest.mark.integration
def test_a_daemon_restarted_between_a_cases_opening_and_its_deadline_still_checks_it(
    rtsp_ready, marker_model, tmp_path
):
    """The pending check is saved with the camera's state: killed (-9) after the case opened, the
    daemon started again checks the case at its deadline and finds it overdue."""
    clip = encode_clip(tmp_path / "kerb.mp4", seconds=120, gop=25, scene=red_marker(present=lambda t: t >= 1.0))
    rtsp = RtspServer({"kerb": clip}).start()
    streams = tmp_path / "streams.yaml"
    streams.write_text(yaml.safe_dump({
        "defaults": {
            "analysis_fps": 4,
            "event": {"update_interval_s": 600, "resolve_grace_s": 30},
            "rules": {"illegal_parking": {"dwell_s": 1.5}},
            "deadlines": {"illegal_parking": "20s"},
            "responsible": {"unit": "新成路街道城管中队"},
        },
        "cameras": [{"id": "kerb", "name": "kerb", "url": rtsp.url("kerb"), "location": {"address": "test road"}}],
    }), encoding="utf-8")  # fmt: skip
    out = tmp_path / "out"

    def events() -> list[dict]:
        f = out / "events.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []

    daemon = DaemonProcess(streams, out, marker_model, "--jsonl").start()
    try:
        wait_for(lambda: any(e["state"] == "opened" for e in events()), 60, what="a case opened")
        daemon.kill9()
        case = next(e for e in events() if e["state"] == "opened")
        due = datetime.fromisoformat(case["deadline"]["due"])
        assert (due - datetime.now(due.tzinfo)).total_seconds() > 5, "the deadline passed before the restart"
        daemon = DaemonProcess(streams, out, marker_model, "--jsonl").start()
        wait_for(
            lambda: any(e["state"] == "overdue" for e in events()), 60, what="the deadline check after the restart"
        )
    finally:
        daemon.stop()
        rtsp.kill()
    overdue = next(e for e in events() if e["state"] == "overdue")
    assert overdue["event_id"] == case["event_id"] and overdue["responsible"]["unit"] == "新成路街道城管中队"
    checked = datetime.fromisoformat(overdue["verification"]["checked"]["wall"])
    assert 0 <= (checked - due).total_seconds() <= 5
    sent = [(e["event_id"], e["revision"]) for e in events()]
    assert len(set(sent)) == len(sent)  # nothing sent twice across the kill
