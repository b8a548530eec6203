"""Violations in, case events out: the event lifecycle and its deterministic ids.

A violation that a rule confirms becomes an `opened` event; while it lasts it is re-sent as
`updated` at most once per update interval; once it has been absent for the grace period it is
`resolved` (the proof of rectification the case platform's verify step needs).

Event ids are uuid5 of (camera, zone, scene class, violation key, first-seen stream time in ms),
and for a sighting whose case was already resolved, of that id and the time it is confirmed again:
the same footage replayed twice yields the same ids, no (event_id, revision) is sent twice, and
consumers deduplicate on (event_id, revision).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from .. import __version__
from .catalogue import CATALOGUE, DEFAULT_PLATFORM_CODES, PlatformCode
from .clock import StreamClock
from .config import Camera
from .duty import Deadline, Responsibility
from .rules import ObservedObject, Violation
from .track import same_place

SCHEMA_VERSION = "3"  # 3: responsible, deadline, state overdue; 2: platform, enforcement, verified (README "Events")
EVENT_NAMESPACE = uuid.UUID("5f1c3a52-9f4e-4a53-8a5e-57a3ee75ca11")

State = Literal["opened", "updated", "resolved", "verified", "still_present", "overdue"]


def event_schema() -> dict[str, Any]:
    """The JSON Schema of events (schemas/event-v3.json), for consumers and tests."""
    return json.loads((Path(__file__).parent / "schemas" / f"event-v{SCHEMA_VERSION}.json").read_text(encoding="utf-8"))


def event_id(camera_id: str, zone_id: str, scene_class: str, key: str, first_seen_s: float) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{camera_id}|{zone_id}|{scene_class}|{key}|{round(first_seen_s * 1000)}"))


@dataclass(frozen=True)
class CameraRef:
    """Who saw it, as consumers read it: plain fields, not the camera's configuration."""

    id: str
    name: str
    address: str
    lat: float | None = None
    lon: float | None = None

    @classmethod
    def of(cls, camera: Camera) -> CameraRef:
        loc = camera.location
        return cls(camera.id, camera.name, loc.address, loc.lat, loc.lon)


@dataclass(frozen=True)
class Enforcement:
    """The tiered-enforcement stage of an event: its violation is the `count`-th of its class at
    this place (camera + zone) within `window_days`, for a class whose offender is the place; for
    one whose offender the camera cannot know (a car, a vendor's cart), every case is a first."""

    stage: str
    name: str
    count: int
    window_days: float
    offender: str = "place"  # what the count is of: the place's violations, or none (every case a first)

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "name": self.name, "count": self.count, "window_days": self.window_days,
                "offender": self.offender}  # fmt: skip


OFFENCES_KEPT = 1000  # per place and class: past the last stage the exact count matters little
RECENT_REVISIONS = 10_000  # events whose last revision a camera remembers after they closed


class EventFormatError(ValueError):
    """A payload that is not a StreetScan event; the message says which field."""


@dataclass(frozen=True)
class Verification:
    """What a verification (核查) revision answers: the request, when it was checked, what was seen."""

    request_id: str
    requested: datetime
    checked_s: float
    checked: datetime
    frames: int
    present_frames: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "requested": self.requested.isoformat(),
            "checked": {"stream_s": round(self.checked_s, 3), "wall": self.checked.isoformat()},
            "frames": self.frames,
            "present_frames": self.present_frames,
        }


@dataclass(frozen=True)
class Event:
    """One message about a case. Plain data: wall times are worked out when it is built."""

    event_id: str
    state: State
    revision: int  # 0 for opened, +1 for each later message of the same event
    violation: Violation
    camera: CameraRef
    zone_kind: str
    zone_grade: str
    repeat_count: int
    first_seen: datetime  # wall-clock times of the violation's stream times
    confirmed: datetime
    last_seen: datetime
    model_name: str
    model_version: str
    source: str
    evidence: dict[str, str] = field(default_factory=dict)
    platform: PlatformCode | None = None  # the case platform's code (default: StreetScan's table)
    enforcement: Enforcement | None = None  # None: the class is not handled in stages
    verification: Verification | None = None  # only on verified / still_present / overdue revisions
    responsible: Responsibility | None = None  # who must act (None: nobody configured)
    deadline: Deadline | None = None  # by when
    pipeline_version: str = __version__  # of the StreetScan that made it

    def to_dict(self) -> dict[str, Any]:
        """The wire form (schemas/event-v3.json): what the spool stores and every sink sends."""
        v, scene, cam = self.violation, CATALOGUE[self.violation.scene_class], self.camera
        return {
            "schema_version": SCHEMA_VERSION,
            "event_id": self.event_id,
            "state": self.state,
            "revision": self.revision,
            "camera": {"id": cam.id, "name": cam.name, "address": cam.address, "lat": cam.lat, "lon": cam.lon},
            "zone": {"id": v.zone_id, "kind": self.zone_kind, "grade": self.zone_grade},
            "scene_class": {
                "code": scene.code,
                "name_zh": scene.name_zh,
                "name_en": scene.name_en,
                "category": scene.category.value,
            },
            "first_seen": {"stream_s": round(v.first_seen_s, 3), "wall": self.first_seen.isoformat()},
            "confirmed": {"stream_s": round(v.confirmed_s, 3), "wall": self.confirmed.isoformat()},
            "last_seen": {"stream_s": round(v.last_seen_s, 3), "wall": self.last_seen.isoformat()},
            "confidence": round(v.confidence, 4),
            "objects": [
                {
                    "class_name": o.class_name,
                    "box": [round(c, 1) for c in o.box],
                    "confidence": round(o.confidence, 4),
                    "track_id": o.track_id,
                }
                for o in v.objects
            ],
            "evidence": dict(self.evidence),
            "model": {"name": self.model_name, "version": self.model_version},
            "pipeline_version": self.pipeline_version,
            "repeat_count": self.repeat_count,
            "source": self.source,
            "platform": (self.platform or DEFAULT_PLATFORM_CODES[v.scene_class]).as_dict(),
            "enforcement": self.enforcement.as_dict() if self.enforcement else None,
            "responsible": self.responsible.as_dict() if self.responsible and self.responsible.named else None,
            "deadline": self.deadline.as_dict() if self.deadline else None,
            **({"detector": v.detector} if v.detector != "model" else {}),
            **({"verification": self.verification.as_dict()} if self.verification else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """An event read back from its wire form (the spool, a JSONL file, a sink's stream):
        `Event.from_dict(e.to_dict()).to_dict() == e.to_dict()`. The violation's key and first frame
        are the rules' own bookkeeping and not on the wire: a read-back event has neither."""
        try:
            cam, zone, code = d["camera"], d["zone"], d["scene_class"]["code"]
            if code not in CATALOGUE:
                raise EventFormatError(f"scene_class.code: unknown scene class {code!r}")
            objects = tuple(
                ObservedObject(
                    str(o["class_name"]),
                    tuple(float(c) for c in o["box"]),  # type: ignore[arg-type]
                    float(o["confidence"]),
                    o["track_id"],
                )
                for o in d["objects"]
            )
            violation = Violation(
                camera_id=cam["id"],
                zone_id=zone["id"],
                scene_class=code,
                key="",
                first_seen_s=float(d["first_seen"]["stream_s"]),
                confirmed_s=float(d["confirmed"]["stream_s"]),
                last_seen_s=float(d["last_seen"]["stream_s"]),
                confidence=float(d["confidence"]),
                objects=objects,
                first_seen_frame=-1,
                detector=str(d.get("detector", "model")),
            )
            check = d.get("verification")
            return cls(
                event_id=d["event_id"],
                state=d["state"],
                revision=int(d["revision"]),
                violation=violation,
                camera=CameraRef(cam["id"], cam["name"], cam["address"], cam.get("lat"), cam.get("lon")),
                zone_kind=zone["kind"],
                zone_grade=zone["grade"],
                repeat_count=int(d.get("repeat_count", 0)),
                first_seen=_wall(d["first_seen"]),
                confirmed=_wall(d["confirmed"]),
                last_seen=_wall(d["last_seen"]),
                model_name=d["model"]["name"],
                model_version=d["model"]["version"],
                source=d["source"],
                evidence=dict(d.get("evidence") or {}),
                platform=PlatformCode(**d["platform"]) if d.get("platform") else None,
                enforcement=Enforcement(**d["enforcement"]) if d.get("enforcement") else None,
                verification=Verification(
                    request_id=check["request_id"],
                    requested=datetime.fromisoformat(check["requested"]),
                    checked_s=float(check["checked"]["stream_s"]),
                    checked=_wall(check["checked"]),
                    frames=int(check["frames"]),
                    present_frames=int(check["present_frames"]),
                )
                if check
                else None,
                pipeline_version=d.get("pipeline_version", __version__),
                responsible=Responsibility.from_dict(d["responsible"]) if d.get("responsible") else None,
                deadline=Deadline.from_dict(d["deadline"]) if d.get("deadline") else None,
            )
        except EventFormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise EventFormatError(f"not a StreetScan event: {type(exc).__name__} {exc}") from None


def _wall(instant: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(instant["wall"])


@dataclass
class _Open:
    event_id: str
    state: State
    revision: int
    violation: Violation  # the latest sighting, keeping the first sighting's key and times
    repeat_count: int
    last_seen_s: float
    last_sent_s: float
    enforcement: Enforcement | None = None


class EventDeduplicator:
    """Lifecycle of one camera's events. Feed it each analysed frame's violations in stream order."""

    def __init__(self, camera: Camera, *, clock: StreamClock, model_name: str, model_version: str, source: str):
        self.camera_id = camera.id
        self.policy = camera.event
        self.clock = clock
        self._zones = {z.id: z for z in camera.zones}
        self._ref = CameraRef.of(camera)
        self._camera = camera
        self._platform = camera.platform_codes
        self._policy = camera.enforcement
        # (zone, class) -> wall times (Unix s) of the violations opened there, newest last
        self.offences: dict[tuple[str, str], deque[float]] = {}
        self._model = (model_name, model_version)
        self.source = source
        self.open: dict[tuple[str, str, str], _Open] = {}
        self.history: Counter[tuple[str, str]] = Counter()  # events per (zone, class) so far
        # Every revision number of this camera's events is given here: event -> the newest sent.
        self._revisions: OrderedDict[str, int] = OrderedDict()

    def _event(self, rec: _Open) -> Event:
        self._sent(rec.event_id, rec.revision)
        v, zone, wall = rec.violation, self._zones[rec.violation.zone_id], self.clock.wall
        rectify_s = self._camera.rectify_s(v.scene_class, zone.id)
        return Event(
            event_id=rec.event_id,
            state=rec.state,
            revision=rec.revision,
            violation=v,
            camera=self._ref,
            zone_kind=zone.kind.value,
            zone_grade=zone.grade.value,
            repeat_count=rec.repeat_count,
            first_seen=wall(v.first_seen_s),
            confirmed=wall(v.confirmed_s),
            last_seen=wall(v.last_seen_s),
            model_name=self._model[0],
            model_version=self._model[1],
            source=self.source,
            platform=self._platform[v.scene_class],
            enforcement=rec.enforcement,
            responsible=self._camera.responsibility.get(zone.id),
            deadline=Deadline(rectify_s, wall(v.confirmed_s) + timedelta(seconds=rectify_s)),
        )

    def update(self, violations: list[Violation], t: float) -> list[Event]:
        out: list[Event] = []
        seen: set[tuple[str, str, str]] = set()
        for v in violations:
            k = self._match(v)
            seen.add(k)
            rec = self.open.get(k)
            if rec is None:
                eid = event_id(self.camera_id, v.zone_id, v.scene_class, v.key, v.first_seen_s)
                if eid in self._revisions:
                    # Its case was sent and resolved, and the rule held the sighting through the gap
                    # (its gap_s outlasting the resolve grace): a new case, not revision 0 again.
                    eid = str(uuid.uuid5(EVENT_NAMESPACE, f"{eid}|again|{round(t * 1000)}"))
                rec = self.open[k] = _Open(
                    event_id=eid,
                    state="opened",
                    revision=0,
                    violation=v,
                    repeat_count=self.history[(v.zone_id, v.scene_class)],
                    last_seen_s=t,
                    last_sent_s=t,
                    enforcement=self._stage(v),
                )
                self.history[(v.zone_id, v.scene_class)] += 1
                out.append(self._event(rec))
                continue
            rec.last_seen_s = t
            rec.violation = replace(
                v,
                zone_id=rec.violation.zone_id,
                first_seen_s=rec.violation.first_seen_s,
                confirmed_s=rec.violation.confirmed_s,
                key=rec.violation.key,
            )
            if t - rec.last_sent_s >= self.policy.update_interval_s:
                rec.state, rec.revision, rec.last_sent_s = "updated", rec.revision + 1, t
                out.append(self._event(rec))
        for k in [
            k for k, rec in self.open.items() if k not in seen and t - rec.last_seen_s >= self.policy.resolve_grace_s
        ]:
            rec = self.open.pop(k)
            rec.state, rec.revision = "resolved", rec.revision + 1
            out.append(self._event(rec))
        return out

    def _sent(self, event_id: str, revision: int) -> None:
        self._revisions[event_id] = revision
        self._revisions.move_to_end(event_id)
        while len(self._revisions) > RECENT_REVISIONS:
            self._revisions.popitem(last=False)

    def answer_revision(self, event_id: str, known: int) -> int:
        """The revision a verification answer goes out as: after the newest this camera sent and the
        newest the platform knows (`known`). An open event's next message numbers on from it."""
        revision = max(known, self._revisions.get(event_id, -1)) + 1
        self._sent(event_id, revision)
        for rec in self.open.values():
            if rec.event_id == event_id:
                rec.revision = max(rec.revision, revision)
        return revision

    def _stage(self, v: Violation) -> Enforcement | None:
        """Count this confirmed violation at its place and give it its enforcement stage."""
        policy = self._policy
        if not policy.applies_to(v.scene_class):
            return None
        if policy.offender_of(v.scene_class) == "none":
            first = policy.stages[0]
            return Enforcement(first.id, first.name, 1, policy.window_days, "none")
        now = self.clock.wall(v.confirmed_s).timestamp()
        past = self.offences.setdefault((v.zone_id, v.scene_class), deque(maxlen=OFFENCES_KEPT))
        while past and past[0] < now - policy.window_days * 86400:
            past.popleft()
        past.append(now)
        stage = policy.stages[min(len(past), len(policy.stages)) - 1]
        return Enforcement(stage.id, stage.name, len(past), policy.window_days)

    def _match(self, v: Violation) -> tuple[str, str, str]:
        """The open event this violation continues. One tracked object is one case per scene class
        on this camera: the same track in another zone, or under another episode after it moved,
        continues its open case. A new track id on an open event's spot is the same violation
        (the tracker re-identified a parked car), not a new case."""
        k = (v.zone_id, v.scene_class, v.key)
        if k in self.open or not v.objects:
            return k
        track = v.objects[0].track_id if len(v.objects) == 1 else None
        if track is not None:
            for ok, rec in self.open.items():
                prev = rec.violation.objects
                if ok[1] == v.scene_class and len(prev) == 1 and prev[0].track_id == track:
                    return ok
        for ok, rec in self.open.items():
            prev = rec.violation.objects
            if ok[:2] == k[:2] and prev and same_place(prev[0].box, v.objects[0].box):
                return ok
        return k

    # Open events outlive the process (the daemon persists them), so that a restart continues a
    # violation under its event id instead of reporting it again as new.
    def snapshot(self) -> dict[str, Any]:
        return {
            "open": [
                {
                    "key": list(k),
                    "event_id": rec.event_id,
                    "state": rec.state,
                    "revision": rec.revision,
                    "zone_kind": self._zones[rec.violation.zone_id].kind.value,
                    "zone_grade": self._zones[rec.violation.zone_id].grade.value,
                    "repeat_count": rec.repeat_count,
                    "violation": asdict(rec.violation),
                    "last_seen_s": rec.last_seen_s,
                    "last_sent_s": rec.last_sent_s,
                    "enforcement": rec.enforcement.as_dict() if rec.enforcement else None,
                }
                for k, rec in self.open.items()
            ],
            "history": [[zone, cls, n] for (zone, cls), n in self.history.items()],
            "offences": [[zone, cls, list(times)] for (zone, cls), times in self.offences.items()],
        }

    def restore(self, snapshot: dict[str, Any], t: float, hold_s: Callable[[str, str], float]) -> int:
        """Reload open events saved by `snapshot`. After a restart the rules must confirm a
        violation afresh before it can be matched, so each restored event is kept at least
        `hold_s(zone, class)` beyond `t` before the resolve grace starts counting."""
        for zone, cls, n in snapshot.get("history", []):
            self.history[(zone, cls)] = max(self.history[(zone, cls)], int(n))
        for zone, cls, times in snapshot.get("offences", []):
            self.offences[(zone, cls)] = deque(
                sorted(set(self.offences.get((zone, cls), ())) | set(times)), maxlen=OFFENCES_KEPT
            )
        restored = 0
        for rec in snapshot.get("open", []):
            v = dict(rec["violation"])
            if v["zone_id"] not in self._zones:
                continue  # the zone was removed from the config while we were down
            # Track ids restart with the tracker: a stale id must not claim a new track's case.
            v["objects"] = tuple(
                ObservedObject(o["class_name"], tuple(o["box"]), o["confidence"], None) for o in v["objects"]
            )
            violation = Violation(**v)
            key = tuple(rec["key"])
            if violation.key.startswith("track-"):
                # Track ids restart with the tracker: match by place (IoU) only, never by a stale id.
                key = (key[0], key[1], f"restored-{rec['event_id']}")
            hold = hold_s(violation.zone_id, violation.scene_class)
            stage = rec.get("enforcement")
            self.open[key] = _Open(
                event_id=rec["event_id"],
                state=rec["state"],
                revision=int(rec["revision"]),
                violation=violation,
                repeat_count=int(rec["repeat_count"]),
                last_seen_s=max(float(rec["last_seen_s"]), t + hold),
                last_sent_s=float(rec["last_sent_s"]),
                enforcement=Enforcement(**stage) if stage else None,
            )
            restored += 1
        return restored
