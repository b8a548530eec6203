"""Event-level accuracy: the scorer on exact truth, low-confidence tracking and zone-crop inference,
each through the real pipeline (real H.264 clips, real ONNX marker detectors)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from marker_model import build_marker_model
from realparts import REPO, encode_clip
from synthetic import dets

from streetscan.accuracy import Case, ClipTruth, load_truth, run_evaluation, score
from streetscan.pipeline.config import parse_config
from streetscan.pipeline.crops import CropPlanner
from streetscan.pipeline.detect import load_detector
from streetscan.pipeline.models import Thresholds, resolve_model
from streetscan.pipeline.track import ObjectTracker, TrackerSettings

# The default model's calibrated scale (models/coco-centernet-mbv3.yaml), for the marker cards.
CALIBRATED = {"track_high": 0.3, "track_activate": 0.25, "track_min_frames": 3, "min_confidence": {"default": 0.3}}


def truth(violations, must_not_fire=(), duration=100.0) -> ClipTruth:
    return ClipTruth.model_validate(
        {
            "clip": "c.mp4",
            "camera": "cam",
            "duration_s": duration,
            "split": "tune",
            "violations": list(violations),
            "must_not_fire": list(must_not_fire),
        }
    )


def case(
    eid, opened, box=(100, 100, 200, 160), first=None, last=90.0, resolved=False, cls="illegal_parking", zone="kerb"
) -> Case:
    return Case(eid, "cam", zone, cls, first if first is not None else opened - 20, opened, last, resolved, (box,))


CAR_A = {
    "id": "a",
    "scene_class": "illegal_parking",
    "zone": "kerb",
    "start_s": 0,
    "end_s": 100,
    "box": [100, 100, 200, 160],
}
CAR_B = {**CAR_A, "id": "b", "box": [400, 100, 500, 160]}
PERFECT = [case("e1", 20), case("e2", 20, box=(400, 100, 500, 160))]


def classes(t, cases):
    return score([t], {"c.mp4": cases}).classes["illegal_parking"]


def test_perfect_cases_score_perfectly():
    s = classes(truth([CAR_A, CAR_B]), PERFECT)
    assert (s.recall, s.precision, s.duplicates_per_violation, s.median_delay_s) == (1.0, 1.0, 0.0, 20.0)
    assert s.false_cases == 0 and s.resolved_too_early == 0


def test_missed_violation_lowers_recall_only():
    s = classes(truth([CAR_A, CAR_B]), PERFECT[:1])
    assert (s.recall, s.precision, s.missed) == (0.5, 1.0, ["c.mp4:b"])


def test_duplicate_case_counts_as_duplicate_not_false():
    s = classes(truth([CAR_A, CAR_B]), PERFECT + [case("e3", 50, first=45, box=(105, 102, 198, 158))])
    assert (s.recall, s.precision, s.duplicates, s.duplicates_per_violation) == (1.0, 1.0, 1, 0.5)


def test_false_case_lowers_precision_and_hits_must_not_fire():
    t = truth([CAR_A, CAR_B], [{"scene_class": "illegal_parking", "start_s": 0, "end_s": 100}], duration=3600)
    s = classes(t, PERFECT + [case("e3", 30, box=(800, 400, 900, 460))])
    assert (s.recall, s.false_cases, s.must_not_fire_hits) == (1.0, 1, 1)
    assert s.precision == pytest.approx(2 / 3)
    assert score([t], {"c.mp4": PERFECT + [case("e3", 30, box=(800, 400, 900, 460))]}).as_dict()["classes"][
        "illegal_parking"
    ]["false_per_camera_hour"] == pytest.approx(1.0)


def test_wrong_zone_or_class_is_false():
    s = classes(truth([CAR_A]), [case("e1", 20, zone="other")])
    assert (s.recall, s.false_cases) == (0.0, 1)


def test_late_confirmation_raises_time_to_open():
    s = classes(truth([CAR_A, CAR_B]), [case("e1", 20), case("e2", 80, box=(400, 100, 500, 160))])
    assert s.median_delay_s == 50.0 and s.recall == 1.0


def test_resolved_while_still_there_is_counted():
    s = classes(truth([CAR_A]), [case("e1", 20, last=40, resolved=True), case("e2", 70, first=50)])
    assert (s.resolved_too_early, s.duplicates) == (1, 1)


def test_optional_truth_is_neither_missed_nor_false():
    s = classes(truth([CAR_A, {**CAR_B, "optional": True}]), [case("e1", 20)])
    assert (s.truths, s.recall, s.precision) == (1, 1.0, 1.0)
    s = classes(truth([CAR_A, {**CAR_B, "optional": True}]), PERFECT)
    assert (s.cases, s.false_cases, s.precision) == (1, 0, 1.0)


def test_shipped_truth_files_load_and_name_their_cameras():
    footage = parse_config(yaml.safe_load((REPO / "examples" / "footage.yaml").read_text()))
    files = sorted((REPO / "benchmarks" / "truth").glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        t = load_truth(f)
        cam = footage.camera(t.camera)
        assert {v.zone for v in t.violations} <= {z.id for z in cam.zones}
    assert {load_truth(f).split for f in files} == {"tune", "holdout"}


# --- through the real pipeline -------------------------------------------------------------


def marker_scene(box, present=lambda t: True):
    x1, y1, x2, y2 = box

    def scene(t, img):
        if present(t):
            img[y1:y2, x1:x2] = (0, 0, 230)

    return scene


def streams(zone_polygon=None, dwell_s=10, **camera):
    zone = {"id": "kerb", "kind": "no_parking"}
    if zone_polygon:
        zone["polygon"] = zone_polygon
    return parse_config(
        {
            "defaults": {"event": {"resolve_grace_s": 30, "update_interval_s": 600}},
            "cameras": [
                {
                    "id": "cam",
                    "name": "cam",
                    "url": "c.mp4",
                    "location": {"address": "x"},
                    "zones": [zone],
                    "rules": {"illegal_parking": {"dwell_s": dwell_s}},
                    **camera,
                }
            ],
        }
    )


def evaluate(tmp_path, clip, config, card, violations):
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))  # each run its own output folder
    t = ClipTruth.model_validate(
        {"clip": clip.name, "camera": "cam", "duration_s": 60, "split": "tune", "violations": violations}
    )
    result = run_evaluation(
        [t],
        footage=[clip.parent],
        config=config,
        detector=load_detector(resolve_model(str(card))),
        out_dir=tmp_path / "out",
    )
    events = [
        yaml.safe_load(line) for line in (tmp_path / "out" / f"events-{clip.stem}.jsonl").read_text().splitlines()
    ]
    return result.score.classes.get("illegal_parking"), events


@pytest.mark.integration
def test_scorer_on_a_synthetic_clip_with_exact_truth(tmp_path, marker_model):
    # The marker stands 5-35 s; dwell 10 s: one case, opened ~10 s after it arrived.
    clip = encode_clip(
        tmp_path / "exact.mp4",
        fps=5,
        gop=5,
        seconds=50,
        scene=marker_scene((260, 200, 380, 260), lambda t: 5 <= t < 35),
    )
    s, _ = evaluate(
        tmp_path,
        clip,
        streams(),
        marker_model,
        [
            {
                "id": "car",
                "scene_class": "illegal_parking",
                "zone": "kerb",
                "start_s": 5,
                "end_s": 35,
                "box": [260, 200, 380, 260],
            }
        ],
    )
    assert (s.truths, s.found, s.cases, s.duplicates) == (1, 1, 1, 0)
    assert 10.0 <= s.median_delay_s <= 12.0
    # The same clip scored against a truth placed elsewhere: the case is false, the truth missed.
    s, _ = evaluate(
        tmp_path,
        clip,
        streams(),
        marker_model,
        [
            {
                "id": "car",
                "scene_class": "illegal_parking",
                "zone": "kerb",
                "start_s": 5,
                "end_s": 35,
                "box": [0, 0, 50, 50],
            }
        ],
    )
    assert (s.found, s.false_cases) == (0, 1)


@pytest.mark.integration
def test_object_detected_at_0_3_for_60_s_gets_one_id_and_one_event(tmp_path, marker_model):
    clip = encode_clip(tmp_path / "faint.mp4", fps=5, gop=5, seconds=60, scene=marker_scene((260, 200, 380, 260)))
    violation = [{"id": "car", "scene_class": "illegal_parking", "zone": "kerb", "start_s": 0, "end_s": 60}]
    calibrated = build_marker_model(tmp_path / "m", score=0.3, name="faint", thresholds=CALIBRATED)
    s, events = evaluate(tmp_path, clip, streams(), calibrated, violation)
    opened = [e for e in events if e["state"] == "opened"]
    assert len(opened) == 1 and s.found == 1 and s.duplicates == 0
    assert len({o["track_id"] for e in events for o in e["objects"]}) == 1
    # With the tracker's old fixed thresholds (start a track only from 0.4, match first from 0.5)
    # the same object never gets an id: no case.
    fixed = build_marker_model(
        tmp_path / "m",
        score=0.3,
        name="faint-fixed",
        thresholds={"track_high": 0.5, "track_activate": 0.4, "min_confidence": 0.3},
    )
    s, events = evaluate(tmp_path, clip, streams(), fixed, violation)
    assert events == [] and s.found == 0


def test_stationary_low_confidence_object_keeps_its_id_through_occlusion():
    # 0.3 for 30 s, hidden by traffic for 25 s (resolve grace 30 s), back for 30 s: one id.
    tracker = ObjectTracker(
        2.0,
        TrackerSettings.resolve(
            Thresholds(**{k: v for k, v in CALIBRATED.items() if k != "min_confidence"}), lost_s=30
        ),
    )
    ids = set()
    for i in range(170):
        t = i / 2
        hidden = 30 <= t < 55
        d = dets() if hidden else dets(("car", (300.0, 200.0, 360.0, 240.0), 0.3, -1))
        out = tracker.update(d, t)
        ids |= {int(x) for x in out.tracker_id if x >= 0}
    assert len(ids) == 1


def test_crop_planner_auto_crops_only_zones_that_gain():
    fit = (320, 320)
    small = ((600.0, 300.0), (800.0, 300.0), (800.0, 450.0), (600.0, 450.0))
    large = ((0.0, 0.0), (1280.0, 0.0), (1280.0, 720.0), (0.0, 720.0))
    assert CropPlanner((small,), fit).plan(1280, 720) == ((580, 285, 821, 466),)
    assert CropPlanner((large,), fit).plan(1280, 720) == ()
    assert CropPlanner((small,), fit, "off").plan(1280, 720) == ()
    assert CropPlanner((small,), (1280, 1280)).plan(1280, 720) == ()  # the full frame is native already


@pytest.mark.integration
def test_zone_crop_finds_a_small_object_the_letterboxed_frame_misses(tmp_path, marker_model):
    # 16x12 px marker in a 1280x720 frame: 4x3 px after the 320 px letterbox (the marker detector
    # needs > 30 px), 192 px in a native-resolution crop of its zone.
    clip = encode_clip(
        tmp_path / "far.mp4", width=1280, height=720, fps=5, gop=5, seconds=30, scene=marker_scene((700, 370, 716, 382))
    )
    polygon = [[600, 300], [800, 300], [800, 450], [600, 450]]
    violation = [
        {
            "id": "far-car",
            "scene_class": "illegal_parking",
            "zone": "kerb",
            "start_s": 0,
            "end_s": 30,
            "box": [700, 370, 716, 382],
        }
    ]
    s, events = evaluate(tmp_path, clip, streams(polygon, zone_crops="off"), marker_model, violation)
    assert events == [] and s.found == 0
    s, events = evaluate(tmp_path, clip, streams(polygon), marker_model, violation)  # zone_crops: auto
    assert s.found == 1 and s.false_cases == 0
    box = np.array(events[0]["objects"][0]["box"])
    assert np.abs(box - [700, 370, 716, 382]).max() <= 2
