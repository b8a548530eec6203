"""Scene-change cases (#32): a real object left on a real street, and what must not count.

The footage is a real kerbside camera (street_parking_overhead.mp4: cars park and leave, people
walk); the object is a garbage pile cut from a real photograph (cn_garbage_bins), the pedestrian a
person cut from a real street frame, the truck a real truck from another camera. The detector is
the default model. Nothing but the scene model knows the garbage pile is there.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from street_scenes import edited_clip, garbage_crop, paste

from streetscan.delivery.sinks import JsonlSink
from streetscan.pipeline.config import ConfigError, parse_config
from streetscan.pipeline.detect import load_detector
from streetscan.pipeline.models import resolve_model
from streetscan.pipeline.plan import CameraPlan
from streetscan.pipeline.rules import SceneChangeRule
from streetscan.pipeline.scene import SceneModel, SceneSettings
from streetscan.pipeline.track import box_iou
from streetscan.workers.replay import ReplayJob

pytestmark = [pytest.mark.assets, pytest.mark.integration]

STREET = "street_parking_overhead.mp4"  # 640 x 360, 73 s
PILE = (540, 70, 610, 125)  # on the far pavement, in the building's shadow
DWELL_S = 20.0


def street_camera(dwell_s: float = DWELL_S, deadline: str | None = None) -> dict:
    rule = {"stacked_materials": {"detector": "scene_change", "dwell_s": dwell_s}}
    return {
        "defaults": {
            "event": {"resolve_grace_s": 10},
            **({"deadlines": {"stacked_materials": deadline}, "deadline_checks": {"recheck_s": "10s"}}
               if deadline else {}),
        },
        "cameras": [
            {
                "id": "kerb",
                "name": "kerbside",
                "url": "street.mp4",
                "location": {"address": "test"},
                "zones": [
                    # The far pavement, and the kerb lanes where cars park, drive off and wait.
                    {"id": "pavement", "kind": "sidewalk", "polygon": [[470, 20], [640, 20], [640, 150], [470, 150]],
                     "classes": ["stacked_materials"], "rules": rule},
                    {"id": "kerbs", "kind": "sidewalk", "polygon": [[0, 150], [640, 150], [640, 360], [0, 360]],
                     "classes": ["stacked_materials"], "rules": rule},
                ],
            }
        ],
    }  # fmt: skip


def replay(clip: Path, out: Path, deadline: str | None = None) -> list:
    camera = parse_config(street_camera(deadline=deadline)).camera("kerb")
    sink = JsonlSink(out / "events.jsonl")
    job = ReplayJob(camera, load_detector(resolve_model(None)), out_dir=out, sinks=[sink], batch_size=4,
                    start_time=datetime(2026, 12, 6, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))  # fmt: skip
    try:
        return job.run(str(clip)).events
    finally:
        sink.close()


@pytest.fixture(scope="module")
def pile(assets) -> np.ndarray:
    return garbage_crop(assets / "datasets" / "cn_garbage_bins")


def test_a_pile_left_on_a_real_pavement_opens_one_case_within_the_dwell_and_resolves_when_taken_away(
    assets, pile, tmp_path
):
    arrives, removed = 10.0, 45.0

    def edit(t, img):
        if arrives <= t < removed:
            paste(img, pile, PILE)

    clip = edited_clip(assets / "footage" / STREET, tmp_path / "pile.mp4", edit)
    events = replay(clip, tmp_path)
    opened = [e for e in events if e.state == "opened"]
    assert len(opened) == 1, [(e.violation.zone_id, e.violation.objects) for e in opened]
    case = opened[0]
    v = case.violation
    assert (v.zone_id, v.scene_class, v.detector) == ("pavement", "stacked_materials", "scene_change")
    assert arrives <= v.confirmed_s <= arrives + DWELL_S + 5.0
    assert v.objects[0].class_name == "unknown" and box_iou(v.objects[0].box, PILE) >= 0.3
    assert case.to_dict()["detector"] == "scene_change"
    # The empty scene, the pile's place boxed on it, beside the picture that confirmed it.
    assert {"first", "clean", "annotated"} <= set(case.evidence)
    assert all((tmp_path / p).stat().st_size > 0 for p in case.evidence.values())
    # Taken away: the case resolves, and what is left where it stood is no new case (no ghost).
    resolved = [e for e in events if e.state == "resolved"]
    assert [e.event_id for e in resolved] == [case.event_id]
    assert resolved[0].violation.last_seen_s < removed + 3.0


def test_light_a_person_standing_cars_parking_and_a_truck_stopping_open_no_scene_change_case(assets, tmp_path):
    person = _person(assets)
    truck = _truck(assets)

    def truck_at(t: float) -> tuple[int, int, int, int] | None:
        """Drives in from the right (15-19 s), stands 20 s on the kerb, drives off left (39-43 s)."""
        if t < 15 or t >= 43:
            return None
        x = 640 - (t - 15) / 4 * 160 if t < 19 else (480 if t < 39 else 480 - (t - 39) / 4 * 480)
        return int(x), 150, int(x) + 150, 250

    def edit(t, img):
        if 5 <= t < 65:  # a pedestrian standing on the pavement for a minute
            paste(img, person, (560, 40, 590, 120))
        box = truck_at(t)
        if box is not None:
            x1, y1, x2, y2 = box
            crop = cv2.resize(truck, (x2 - x1, y2 - y1))
            img[y1:y2, max(0, x1) : min(640, x2)] = crop[:, max(0, -x1) : min(x2 - x1, 640 - x1)]
        gain = 1 + 0.4 * math.sin(2 * math.pi * t / 40)  # light swinging +-40 % (clouds, auto-exposure)
        img[:] = np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)

    clip = edited_clip(assets / "footage" / STREET, tmp_path / "busy.mp4", edit)
    events = replay(clip, tmp_path)
    assert [e for e in events if e.violation.detector == "scene_change"] == []


def watch(
    assets: Path,
    pile: np.ndarray,
    present,
    until_s: float = 55.0,
    settings: SceneSettings | None = None,
    held: np.ndarray | None = None,
) -> tuple[SceneModel, dict[float, list]]:
    """The scene model over the street clip at 2 fps with the pile pasted while `present(t)`: the
    static regions touching the pile's place, by time. `held`: boxes of open cases."""
    import av

    model = SceneModel(settings)
    seen: dict[float, list] = {}
    with av.open(str(assets / "footage" / STREET)) as container:
        stream = container.streams.video[0]
        nxt = 0.0
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            if t + 1e-6 < nxt:
                continue
            nxt += 0.5
            img = frame.to_ndarray(format="bgr24")
            if present(t):
                paste(img, pile, PILE)
            seen[round(t, 1)] = [r for r in model.update(img, t, held=held).static if box_iou(r.box, PILE) > 0]
            if t > until_s:
                break
    return model, seen


def test_the_scene_model_sees_what_arrived_and_stayed_and_forgets_it_when_it_goes(assets, pile):
    model, seen = watch(assets, pile, lambda t: 10 <= t < 40)
    at = {t: regions for t, regions in seen.items() if 20 <= t < 40}
    assert all(len(r) == 1 and box_iou(r[0].box, PILE) >= 0.3 and r[0].since_s <= 11 for r in at.values())
    assert not any(seen[t] for t in seen if t < 10 or t >= 45)  # before it came, and after it went
    # Bounded per camera: two small grey backgrounds, a few per-cell arrays, one colour reference.
    assert model.memory_bytes < 2 * 2**20


def test_something_there_from_the_start_and_taken_away_is_a_departure_not_a_new_object(assets, pile):
    # The pile is part of the scene the model first sees; once it is gone, the bare pavement differs
    # from that scene and stands still, but its outline is the old scene's: absorbed, never static.
    _, seen = watch(assets, pile, lambda t: t < 20, until_s=50.0)
    assert not any(seen.values())


def test_the_first_seconds_are_learnt_as_the_empty_scene_and_what_arrives_after_them_is_found(assets, pile):
    # The first frame is all the model has of the empty scene: until the warm-up ends, what stands
    # still is that scene. Something there in the first second leaves no trace when it goes ...
    _, seen = watch(assets, pile, lambda t: t < 1, until_s=40.0)
    assert not any(seen.values())
    # ... something put down during the warm-up is part of the scene (the cost, said in the README) ...
    _, seen = watch(assets, pile, lambda t: 2 <= t, until_s=30.0)
    assert not any(seen.values())
    # ... and without a warm-up it would have been found, like anything put down after it.
    _, seen = watch(assets, pile, lambda t: 2 <= t, until_s=30.0, settings=SceneSettings(warmup_s=0))
    assert any(seen.values())
    _, seen = watch(assets, pile, lambda t: 10 <= t, until_s=30.0)
    assert any(seen.values())


@pytest.mark.parametrize("taken_away", [True, False], ids=["taken-away", "still-there"])
def test_at_its_deadline_a_pile_taken_away_is_verified_and_one_still_there_is_overdue(
    assets, pile, tmp_path, taken_away
):
    """Issue #37 on a scene-change case: no model sees the pile, so the deadline check asks the scene
    model whether the change still stands at the case's place. Arrives 10 s, confirmed 30-35 s,
    deadline 20 s after that; taken away at 40 s, or left to the end."""
    arrives, removed = 10.0, 40.0 if taken_away else 99.0

    def edit(t, img):
        if arrives <= t < removed:
            paste(img, pile, PILE)

    clip = edited_clip(assets / "footage" / STREET, tmp_path / "pile.mp4", edit)
    events = replay(clip, tmp_path, deadline="20s")
    case = next(e for e in events if e.state == "opened")
    checks = [e for e in events if e.event_id == case.event_id and e.state in ("verified", "overdue")]
    assert checks, [(e.state, e.violation.last_seen_s) for e in events]
    assert case.deadline is not None
    first = checks[0]
    assert first.verification is not None and first.verification.request_id == "deadline:1"
    assert 0 <= (first.verification.checked - case.deadline.due).total_seconds() <= 3
    if taken_away:
        assert [e.state for e in checks] == ["verified"]
    else:
        assert [e.state for e in checks][:2] == ["overdue", "overdue"]  # and again, recheck_s later
        assert box_iou(first.violation.objects[0].box, PILE) >= 0.3
    assert all((tmp_path / p).is_file() for p in first.evidence.values()) and "annotated" in first.evidence


def test_an_open_cases_change_is_not_taken_into_the_empty_scene_however_long_it_stands(assets, pile):
    # With a short absorb time the pile becomes scene after it; held as an open case's box, it stays.
    short = SceneSettings(absorb_s=15.0)
    _, seen = watch(assets, pile, lambda t: 10 <= t, until_s=45.0, settings=short)
    assert any(seen[t] for t in seen if t < 25) and not any(seen[t] for t in seen if t >= 30)
    held = np.array([PILE], dtype=np.float32)
    _, seen = watch(assets, pile, lambda t: 10 <= t, until_s=45.0, settings=short, held=held)
    assert all(seen[t] for t in seen if 20 <= t <= 45)


def test_pieces_of_one_thing_on_one_frame_are_one_case_not_two():
    """A passer-by's legs cut a left suitcase's region in two (i-LIDS platform): one case, its box
    taking in both pieces, not a second case for the second piece."""
    from streetscan.pipeline.scene import StaticRegion

    camera = parse_config(street_camera(dwell_s=5.0)).camera("kerb")
    rule = CameraPlan.build(camera, set()).rule("pavement", "stacked_materials")
    assert rule is not None
    scene_rule = rule.build(camera.id)
    assert isinstance(scene_rule, SceneChangeRule)

    class Static:  # what FrameZones.static_in answers: the static regions in one zone, this frame
        def __init__(self, regions):
            self.regions = regions

        def static_in(self, zone_id):
            return self.regions

    whole = StaticRegion((540.0, 70.0, 610.0, 125.0), 0.0, 12, False)
    top = StaticRegion((540.0, 70.0, 610.0, 95.0), 0.0, 6, False)
    bottom = StaticRegion((540.0, 100.0, 610.0, 125.0), 0.0, 6, False)
    cases = set()
    for i in range(40):
        t = i * 0.5
        step = scene_rule.update(None, t, i, None, Static([whole] if t < 8 or t >= 15 else [top, bottom]))  # type: ignore[arg-type]
        cases |= {v.key for v in step.violations}
    assert len(cases) == 1 and len(scene_rule.episodes) == 1


def test_a_zone_rule_may_find_its_class_with_the_scene_model_whatever_the_model_detects():
    plan = CameraPlan.build(parse_config(street_camera()).camera("kerb"), {"car", "person"})
    kinds = {(r.zone.id, r.scene.code): (r.kind, r.confirm_s) for r in plan.rules}
    # stacked_materials has no detector class: the scene model serves it all the same.
    assert kinds[("pavement", "stacked_materials")] == (SceneChangeRule, DWELL_S) and plan.needs_scene
    doc = street_camera()
    doc["cameras"][0]["zones"][0]["rules"] = {"stacked_materials": {"detector": "scene_change", "max_move_ratio": 1}}
    with pytest.raises(ConfigError, match="unknown parameter 'max_move_ratio' for a scene_change rule"):
        parse_config(doc)
    doc["cameras"][0]["zones"][0]["rules"] = {"stacked_materials": {"detector": "radar"}}
    with pytest.raises(ConfigError, match="detector must be one of model, scene_change, got 'radar'"):
        parse_config(doc)
    doc["cameras"][0]["zones"][0]["rules"] = {"floating_debris": {"detector": "scene_change"}}
    doc["cameras"][0]["zones"][0]["classes"] = ["floating_debris"]
    doc["cameras"][0]["zones"][0]["kind"] = "water"
    water = CameraPlan.build(parse_config(doc).camera("kerb"), set()).rule("pavement", "floating_debris")
    assert water is not None and water.confirm_s == 120  # the class's own time threshold, as its default


def _person(assets: Path) -> np.ndarray:
    """A person the default model boxes at 0.4 or more, cut from a real street frame."""
    return _object(assets / "footage" / "plaza_pedestrians.mp4", "person", 0.4, min_height=60)


def _truck(assets: Path) -> np.ndarray:
    return _object(assets / "footage" / "bangkok_multilane_queue_footbridge.mp4", "truck", 0.5, min_height=100)


def _object(clip: Path, name: str, confidence: float, min_height: int) -> np.ndarray:
    import av

    detector = load_detector(resolve_model(None))
    with av.open(str(clip)) as container:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            if i % 25:
                continue
            img = frame.to_ndarray(format="bgr24")
            det = detector.detect([img])[0]
            for k in range(len(det)):
                x1, y1, x2, y2 = (int(v) for v in det.xyxy[k])
                if det.data["class_name"][k] == name and det.confidence[k] >= confidence and y2 - y1 >= min_height:
                    return img[y1:y2, x1:x2].copy()
    raise LookupError(f"no {name} at {confidence} in {clip}")
