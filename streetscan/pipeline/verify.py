"""Verification on request (核查): the case platform asks whether a case's violation is still there.

A request names an event. The camera that reported it looks at that zone on its next analysed
frames (`FRAMES_TO_CHECK`) for the scene class's objects (for dwell classes: at the place the
violation was, so a different car parked beside it does not count) and answers with a new
revision of the event: `verified` (gone on most frames: a fresh picture proves it) or
`still_present` (with annotated evidence). What cannot be checked is answered at once, with a
reason, by whoever took the request (workers.verification.VerificationDesk).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import supervision as sv

from .catalogue import CATALOGUE
from .events import Event, Verification
from .plan import CameraPlan
from .rules import ObservedObject
from .rules.base import box_of
from .rules.registry import rule_kind
from .rules.scene_change import same_thing
from .track import same_place
from .zones import FrameZones

FRAMES_TO_CHECK = 3
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class BadRequest(ValueError):
    """A malformed verification request; the message says which field and why."""


@dataclass(frozen=True)
class VerificationRequest:
    request_id: str
    event_id: str
    requested: datetime  # when it was asked (wall clock; replay: the stream's wall time)
    camera_id: str | None = None  # the event's camera: required by a sharded fleet (it picks the shard)

    @classmethod
    def parse(cls, raw: Any, requested: datetime) -> VerificationRequest:
        if not isinstance(raw, dict):
            raise BadRequest(f"expected a JSON object with request_id and event_id, got {type(raw).__name__}")
        unknown = set(raw) - {"request_id", "event_id", "camera_id"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
        request_id, event_id = raw.get("request_id"), raw.get("event_id")
        if not isinstance(request_id, str) or not _ID.match(request_id):
            raise BadRequest("request_id: required, 1-128 characters of A-Z a-z 0-9 _ . : -")
        if not isinstance(event_id, str) or not _UUID.match(event_id):
            raise BadRequest("event_id: required, the event's UUID as StreetScan sent it")
        camera_id = raw.get("camera_id")
        if camera_id is not None and (not isinstance(camera_id, str) or not _ID.match(camera_id)):
            raise BadRequest("camera_id: the event's camera id, as in its `camera.id`")
        return cls(request_id, event_id, requested, camera_id)


@dataclass
class ZoneCheck:
    """One request being checked on a camera's frames."""

    request: VerificationRequest
    event: Event | None  # the newest revision the platform knows; None on a cancel message
    frames: int = 0
    present: int = 0
    last_objects: tuple[ObservedObject, ...] = ()
    is_cancel: bool = False
    at_deadline: bool = False  # the camera's own check at the rectification deadline (duty.DeadlineWatch)

    @classmethod
    def cancelled(cls, request_id: str) -> ZoneCheck:
        """A message to the camera: stop checking this request (it timed out)."""
        return cls(VerificationRequest(request_id, "", datetime.now().astimezone()), None, is_cancel=True)

    @property
    def case(self) -> Event:
        assert self.event is not None, "a cancel message checks no case"
        return self.event

    def look(self, plan: CameraPlan, det: sv.Detections, where: FrameZones) -> None:
        """Count this frame: are the violation's objects in its zone? `where`: the frame's zones (and
        the scene model's static changes, for a case no model detects)."""
        v = self.case.violation
        scene, zone_id = CATALOGUE[v.scene_class], v.zone_id
        self.frames += 1
        if v.detector == "scene_change":
            # No model sees it: the scene model's static change at the case's place is the object.
            found = [r.box for r in where.static_in(zone_id) if v.objects and same_thing(v.objects[0].box, r.box)]
            if found:
                self.present += 1
                self.last_objects = tuple(ObservedObject("unknown", box, 1.0, None) for box in found)
            return
        if len(det) == 0:
            return
        assert det.confidence is not None  # detectors score every box (make_detections)
        ours = np.isin(det.data["class_name"], scene.objects)
        ours &= det.confidence >= plan.min_confidence(zone_id, scene.code)
        ours &= where.inside(zone_id, scene)
        idx = [int(i) for i in np.flatnonzero(ours)]
        if rule_kind(scene.rule).same_object_only and v.objects:
            # The case is about that object at that place: another one elsewhere in the zone is a new case.
            idx = [i for i in idx if same_place(v.objects[0].box, box_of(det, i))]
        if len(idx) == 0:
            return
        self.present += 1
        self.last_objects = tuple(
            ObservedObject(str(det.data["class_name"][i]), box_of(det, i), float(det.confidence[i]), None) for i in idx
        )

    @property
    def done(self) -> bool:
        return self.frames >= FRAMES_TO_CHECK

    @property
    def still_present(self) -> bool:
        return 2 * self.present > self.frames

    def answer(self, revision: int, checked_s: float, checked_wall: datetime, evidence: dict[str, str]) -> Event:
        """The event's new revision: verified, or still_present (overdue for a deadline check), with
        what was seen and when."""
        ev = self.case
        check = Verification(
            self.request.request_id, self.request.requested, checked_s, checked_wall, self.frames, self.present
        )
        if not self.still_present:
            return replace(ev, state="verified", revision=revision, evidence=evidence, verification=check)
        seen = replace(ev.violation, objects=self.last_objects, last_seen_s=checked_s)
        return replace(
            ev,
            state="overdue" if self.at_deadline else "still_present",
            revision=revision,
            violation=seen,
            last_seen=checked_wall,
            evidence=evidence,
            verification=check,
        )
