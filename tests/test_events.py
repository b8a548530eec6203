from dataclasses import replace

import jsonschema
import pytest
from synthetic import KERB, NOON, car, config, dets

from streetscan.pipeline.clock import StreamClock
from streetscan.pipeline.events import EventDeduplicator, event_schema
from streetscan.pipeline.plan import CameraPlan
from streetscan.pipeline.rules import RuleSet

POLICY = {"event": {"update_interval_s": 60, "resolve_grace_s": 30}}


def replay(frames, seconds_per_frame=1.0):
    """Rules + dedup over synthetic frames, as a replay would run them. Returns the events."""
    cam = config([{**KERB, "classes": ["illegal_parking"]}], {"illegal_parking": {"dwell_s": 20}}, POLICY)
    rules = RuleSet.of(CameraPlan.build(cam, {"car"}))
    clock = StreamClock(NOON.tzinfo, origin=NOON)
    dedup = EventDeduplicator(cam, clock=clock, model_name="test-model", model_version="1", source="synthetic")
    events = []
    for seq, d in enumerate(frames):
        t = seq * seconds_per_frame
        events += dedup.update(rules.update(d, t, clock.wall(t), seq).violations, t)
    return events


def parked_then_gone(parked_until: int, total: int, tid=1, x=200):
    return [dets(car(x, tid=tid)) if t < parked_until else dets() for t in range(total)]


def test_open_update_resolve():
    events = replay(parked_then_gone(parked_until=150, total=200))
    states = [(e.state, e.revision) for e in events]
    assert states == [("opened", 0), ("updated", 1), ("updated", 2), ("resolved", 3)]
    opened, *_, resolved = events
    assert opened.violation.confirmed_s == 20  # dwell 20 s
    assert [e.violation.last_seen_s for e in events[1:3]] == [80, 140]  # at most one update per 60 s
    assert resolved.violation.last_seen_s == 149
    assert len({e.event_id for e in events}) == 1


def test_gap_shorter_than_grace_does_not_resolve():
    frames = [dets() if 40 <= t < 55 else dets(car(200)) for t in range(100)]
    assert [e.state for e in replay(frames)] == ["opened", "updated"]


def test_same_ids_on_rerun():
    a = [e.event_id for e in replay(parked_then_gone(100, 140))]
    b = [e.event_id for e in replay(parked_then_gone(100, 140))]
    assert a == b and len(a) >= 2


def test_different_violations_get_different_ids_and_repeat_count_grows():
    # The same spot is violated twice: parked 0-50 s, gone, parked again 100-160 s.
    frames = [
        dets(car(200, tid=1)) if t < 50 else dets(car(200, tid=2)) if 100 <= t < 160 else dets() for t in range(200)
    ]
    opened = [e for e in replay(frames) if e.state == "opened"]
    assert len(opened) == 2 and opened[0].event_id != opened[1].event_id
    assert [e.repeat_count for e in opened] == [0, 1]


def test_track_id_change_continues_the_open_event():
    frames = [dets(car(200, tid=1 if t < 60 else 9)) for t in range(120)]
    events = replay(frames)
    assert [e.state for e in events] == ["opened", "updated"]


def test_events_match_the_published_schema():
    schema = event_schema()
    events = replay(parked_then_gone(150, 200))
    for e in events:
        doc = e.to_dict()
        jsonschema.validate(doc, schema, format_checker=jsonschema.FormatChecker())
    doc = events[0].to_dict()
    assert doc["scene_class"] == {
        "code": "illegal_parking",
        "name_zh": "机动车违停",
        "name_en": "Illegal parking",
        "category": "街面秩序",
    }
    assert doc["camera"]["address"] == "Test St 1" and doc["zone"] == {
        "id": "kerb",
        "kind": "no_parking",
        "grade": "arterial",
    }
    assert doc["confirmed"] == {"stream_s": 20.0, "wall": "2026-11-20T12:00:20+08:00"}
    assert doc["objects"][0]["class_name"] == "car" and doc["objects"][0]["track_id"] == 1
    assert doc["platform"] == {"category_code": "05", "category": "街面秩序", "code": "0505", "name": "机动车乱停放"}


def test_schema_rejects_a_broken_event():
    doc = replay(parked_then_gone(150, 200))[0].to_dict()
    doc["state"] = "closed"
    try:
        jsonschema.validate(doc, event_schema())
    except jsonschema.ValidationError as exc:
        assert "closed" in str(exc)
    else:
        raise AssertionError("schema accepted state 'closed'")


def staged(window_days: float, classes=None, offender: str | None = "place"):
    """Three cars parked one after another on the kerb: at 0-40 s, 80-120 s and 160-200 s. The kerb is
    counted as the offender (as a place where one party answers for parking would be) unless
    `offender` is None (StreetScan's table: a car's driver is nobody the camera knows)."""
    from streetscan.pipeline.config import parse_config

    doc = {
        "defaults": POLICY,
        "enforcement": {
            "window_days": window_days,
            **({"classes": classes} if classes else {}),
            **({"offender": {"illegal_parking": offender}} if offender else {}),
        },
        "cameras": [
            {
                "id": "cam",
                "name": "Test cam",
                "url": "test.mp4",
                "location": {"address": "Test St 1"},
                "zones": [{**KERB, "classes": ["illegal_parking"]}],
                "rules": {"illegal_parking": {"dwell_s": 20}},
            }
        ],
    }
    cam = parse_config(doc).camera("cam")
    rules = RuleSet.of(CameraPlan.build(cam, {"car"}))
    clock = StreamClock(NOON.tzinfo, origin=NOON)
    dedup = EventDeduplicator(cam, clock=clock, model_name="m", model_version="1", source="synthetic")
    events = []
    for t in range(240):
        present = [car(200, tid=1 + t // 80)] if t % 80 < 40 else []
        events += dedup.update(rules.update(dets(*present), t, clock.wall(t), t).violations, float(t))
    return [e.to_dict() for e in events if e.state == "opened"], dedup


def test_enforcement_stages_follow_the_violations_at_a_place_within_the_window():
    opened, dedup = staged(window_days=30)
    assert [(e["enforcement"]["stage"], e["enforcement"]["count"]) for e in opened] == [
        ("educate", 1),
        ("warn", 2),
        ("penalise", 3),
    ]
    assert {e["enforcement"]["offender"] for e in opened} == {"place"}
    assert opened[1]["enforcement"]["name"] == "二次警告"
    for e in opened:
        jsonschema.validate(e, event_schema())
    # With a 100 s window the first car (confirmed at 20 s) no longer counts when the third is (180 s).
    opened, _ = staged(window_days=100 / 86400)
    assert [e["enforcement"]["count"] for e in opened] == [1, 2, 2]
    # Classes the policy leaves out carry no stage.
    opened, _ = staged(window_days=30, classes=["mobile_vendor"])
    assert [e["enforcement"] for e in opened] == [None, None, None]


def test_different_cars_in_one_kerb_lane_are_each_a_first_offence_and_the_event_says_why():
    # Issue #35 item 1: three different cars parked in one lane within 36 s got 首次教育引导 -> 二次警告
    # -> 三次从轻处罚. Tiered enforcement is about one offender repeating; a camera cannot tell one
    # driver from the next, so by default every parking case is a first, and says so.
    opened, dedup = staged(window_days=30, offender=None)
    assert [(e["enforcement"]["stage"], e["enforcement"]["count"], e["enforcement"]["offender"]) for e in opened] == [
        ("educate", 1, "none"),
        ("educate", 1, "none"),
        ("educate", 1, "none"),
    ]
    assert not dedup.offences  # nothing counted against a place
    for e in opened:
        jsonschema.validate(e, event_schema())


def test_enforcement_counts_survive_a_restart():
    _, dedup = staged(window_days=30)
    snap = dedup.snapshot()
    from streetscan.pipeline.events import EventDeduplicator as Dedup

    again = Dedup(
        dedup_camera(),
        clock=StreamClock(NOON.tzinfo, origin=NOON),
        model_name="m",
        model_version="1",
        source="synthetic",
    )
    again.restore(snap, 240.0, lambda zone, cls: 0.0)
    assert len(again.offences[("kerb", "illegal_parking")]) == 3


def dedup_camera():
    return config([{**KERB, "classes": ["illegal_parking"]}], {"illegal_parking": {"dwell_s": 20}}, POLICY)


def test_one_track_holds_one_case_however_its_episodes_are_keyed():
    # Issue #30, defect 1: track 3 opened a case at 6.0 s and another at 11.5 s with nothing resolved
    # in between. Its first violation carried the episode it took over (key track-1), its second
    # its own (key track-3, after it moved up a car length): two keys, one object, one case.
    from streetscan.pipeline.rules import ObservedObject, Violation

    cam = config([{**KERB, "classes": ["illegal_parking"]}], {"illegal_parking": {"dwell_s": 5}}, POLICY)
    clock = StreamClock(NOON.tzinfo, origin=NOON)
    dedup = EventDeduplicator(cam, clock=clock, model_name="m", model_version="1", source="s")

    def seen(key, x, t):
        return Violation(
            "cam",
            "kerb",
            "illegal_parking",
            key,
            t - 5,
            t,
            t,
            0.8,
            (ObservedObject("car", (x, 480.0, x + 100.0, 560.0), 0.8, 3),),
            0,
        )

    events = dedup.update([seen("track-1", 200, 6.0)], 6.0) + dedup.update([seen("track-3", 330, 11.5)], 11.5)
    assert [e.state for e in events] == ["opened"]


def test_a_car_that_drove_up_does_not_take_over_the_parked_time_of_one_that_left():
    # Car 1 stands at the spot 0-8 s and is lost (it drove off faster than the tracker follows at
    # 2 fps); car 2 drives up the lane (untracked boxes, each frame further on) and stops on the
    # same spot at 10 s. Car 2's dwell starts when it stopped, not when car 1 did.
    frames = []
    for i in range(80):
        t = i * 0.5
        if t < 8:
            frames.append(dets(car(400, tid=1)))
        elif t < 10:
            frames.append(dets(car(100 + 150 * (t - 8), tid=-1)))  # driving up, untracked
        else:
            frames.append(dets(car(400, tid=2)))
    events = replay(frames, seconds_per_frame=0.5)
    opened = [e for e in events if e.state == "opened"]
    assert len(opened) == 1 and opened[0].violation.first_seen_s >= 9.5


def test_two_cars_parked_side_by_side_with_no_traffic_are_parked_once_nothing_has_moved_for_a_while():
    # Car 1 stands from 0 s; car 2 drives up (untracked boxes, each frame further on) and parks next
    # to it at 10 s; nothing else moves for minutes. That looks like a queue forming at first, but a
    # queue moves within a light's cycle (QUEUE_MEMORY_S): both are parked after it.
    from streetscan.pipeline.rules.dwell import QUEUE_MEMORY_S

    frames = []
    for i in range(2 * 160):
        t = i * 0.5
        still = [car(200, tid=1)]
        if t < 8:
            frames.append(dets(*still))
        elif t < 10:
            frames.append(dets(*still, car(0 + 150 * (t - 8), tid=-1)))
        else:
            frames.append(dets(*still, car(305, tid=2)))
    events = replay(frames, seconds_per_frame=0.5)
    opened = sorted(e.violation.confirmed_s for e in events if e.state == "opened")
    assert len(opened) == 2
    assert all(20 <= t <= 10 + QUEUE_MEMORY_S + 1 for t in opened), opened


def test_an_event_read_back_from_its_wire_form_is_the_same_event():
    import jsonschema

    from streetscan.pipeline.events import Event, EventFormatError, event_schema

    events = replay([dets(car(200))] * 60)
    assert events and all(Event.from_dict(e.to_dict()).to_dict() == e.to_dict() for e in events)
    doc = events[0].to_dict()
    jsonschema.validate(doc, event_schema())
    with pytest.raises(EventFormatError, match="unknown scene class 'parking'"):
        Event.from_dict({**doc, "scene_class": {**doc["scene_class"], "code": "parking"}})
    with pytest.raises(EventFormatError, match="KeyError"):
        Event.from_dict({k: v for k, v in doc.items() if k != "camera"})


def test_a_case_resolved_and_confirmed_again_on_the_same_sighting_is_a_new_case_not_a_repeated_revision():
    """A rule may hold an episode through a gap longer than the resolve grace (a live camera whose
    rule's gap_s outlasts it): the object comes back with its first sighting, after its case was
    resolved. The same id again would send (event_id, revision 0) twice; it is a new case."""
    cam = config([{**KERB, "classes": ["illegal_parking"]}], {"illegal_parking": {"dwell_s": 20}}, POLICY)
    clock = StreamClock(NOON.tzinfo, origin=NOON)

    def run() -> list:
        dedup = EventDeduplicator(cam, clock=clock, model_name="m", model_version="1", source="s")
        v = replay(parked_then_gone(30, 31))[0].violation  # a confirmed parking violation, first seen at 0 s
        events = []
        for t in range(30, 200):
            seen = [replace(v, last_seen_s=float(t))] if t < 50 or t >= 100 else []
            events += dedup.update(seen, float(t))
        return events

    events = run()
    assert [e.state for e in events] == ["opened", "resolved", "opened", "updated"]
    sent = [(e.event_id, e.revision) for e in events]
    assert len(set(sent)) == len(sent)  # no revision of any event sent twice
    assert events[0].event_id != events[2].event_id
    assert [e.event_id for e in run()] == [e.event_id for e in events]  # still the same ids on a rerun


def test_a_crowds_evidence_labels_stay_apart_and_inside_the_picture():
    # Issue #35 item 6: a crowd's labels ("person 0.71 #12" on every box) covered one another and
    # were cut at the frame's edge. Twelve people side by side along the top edge, 48 px apart.
    from pathlib import Path

    import cv2
    import numpy as np

    from streetscan.pipeline.events import CameraRef, Event
    from streetscan.pipeline.evidence import EvidenceWriter, object_labels
    from streetscan.pipeline.rules import ObservedObject, Violation

    people = tuple(
        ObservedObject("person", (40.0 + 48 * i, 2.0 + (i % 3) * 6, 80.0 + 48 * i, 110.0), 0.7, 10 + i)
        for i in range(12)
    )
    v = Violation("cam", "plaza", "crowd_gathering", "crowd", 0.0, 5.0, 9.0, 0.7, people, 0)
    event = Event("e1", "opened", 0, v, CameraRef("cam", "cam", "x"), "sidewalk", "arterial", 0, NOON, NOON, NOON,
                  "m", "1", "t")  # fmt: skip
    picture = np.full((360, 640, 3), 90, np.uint8)
    out = EvidenceWriter(Path("/nonexistent"), {"plaza": None}).annotate(event, picture)
    # The header is a strip above the picture, not over its top rows where these people stand.
    bar = out.shape[0] - picture.shape[0]
    assert 20 <= bar <= 40 and out.shape[1] == 640
    below = out[bar:]
    assert (below[:, :38] == picture[:, :38]).all() and (below[120:] == picture[120:]).all()  # only boxes drawn
    labelled = np.all(below[:30] == (251, 81, 163), axis=2)  # label fill (palette colour 0, BGR) at the top
    assert labelled.sum() > 12 * 100  # every label shows, none was covered
    # A crowd's labels are short enough not to run into the next person's (48 px apart).
    widths = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)[0][0] + 2 * 4 for t in object_labels(people)]
    assert max(widths) < 48
    assert object_labels(people[:2]) == ["person 0.70 #10", "person 0.70 #11"]  # a few: what, how sure, which
