"""Scene rules: tracked detections in, confirmed violations out.

Three rule kinds serve all 14 scene classes (see catalogue.py):
  DwellRule        a tracked object stays nearly still inside a zone for dwell_s (parking, vendors, ...)
  CountRule        at least min_count objects are inside a zone for hold_s (crowds)
  PersistenceRule  an object class is present in a zone for persist_s, track-agnostic (garbage, water, ads)

A rule reports a Violation on every analysed frame on which it holds and is confirmed; turning that
stream into opened/updated/resolved events is the deduplicator's job (events.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import numpy as np
import supervision as sv

from .catalogue import CATALOGUE, SceneClass, served_by
from .config import Allowance, Camera, ZoneConfig
from .models import Thresholds

# Objects on walls or water are judged by their centre; everything standing on the ground by the
# bottom centre of its box (where a car's wheels touch the kerb).
CENTRE_ANCHORED = {"advertisement", "laundry", "floating_debris"}

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class ObservedObject:
    class_name: str
    box: Box
    confidence: float
    track_id: int | None


@dataclass(frozen=True)
class Violation:
    camera_id: str
    zone_id: str
    scene_class: str
    key: str  # distinguishes simultaneous violations of one class in one zone (e.g. two parked cars)
    first_seen_s: float
    confirmed_s: float
    last_seen_s: float
    confidence: float
    objects: tuple[ObservedObject, ...]
    first_seen_frame: int  # Frame.seq of the first sighting, for before/after evidence


@dataclass(frozen=True)
class RuleStep:
    """What the rules made of one frame: the violations that hold on it, and whether an episode
    began on it (its picture is then kept for the before/after evidence)."""

    violations: list[Violation]
    episode_started: bool


@dataclass
class _Episode:
    key: str
    start_s: float
    last_s: float
    first_frame: int
    objects: tuple[ObservedObject, ...] = ()
    confirmed_s: float | None = None
    ref_centre: tuple[float, float] = (0.0, 0.0)
    ref_diag: float = 1.0

    def violation(self, rule: ZoneRule) -> Violation:
        return Violation(
            camera_id=rule.camera_id, zone_id=rule.zone.id, scene_class=rule.scene.code, key=self.key,
            first_seen_s=self.start_s, confirmed_s=self.confirmed_s or self.last_s, last_seen_s=self.last_s,
            confidence=max((o.confidence for o in self.objects), default=0.0), objects=self.objects,
            first_seen_frame=self.first_frame,
        )


def _objects(det: sv.Detections, idx) -> tuple[ObservedObject, ...]:
    tids = det.tracker_id if det.tracker_id is not None else np.full(len(det), -1)
    return tuple(
        ObservedObject(str(det.data["class_name"][i]), tuple(float(v) for v in det.xyxy[i]),  # type: ignore[arg-type]
                       float(det.confidence[i]), int(tids[i]) if tids[i] >= 0 else None)
        for i in idx
    )


def box_iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def same_place(a: Box, b: Box) -> bool:
    """Two boxes of one stationary object seen twice: IoU >= 0.5, or each box's centre inside the
    other (a detector's box for a half-hidden or merged car can shrink or widen a lot, but two
    neighbouring parked cars never hold each other's centres)."""
    if box_iou(a, b) >= 0.5:
        return True
    ca, cb = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2), ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    return _inside(ca, b) and _inside(cb, a)


@lru_cache(maxsize=4096)
def _polygon_zone(points: tuple[tuple[float, float], ...], anchor: sv.Position) -> sv.PolygonZone:
    """One zone, and one mask, per polygon and anchor, shared by every rule and camera that uses it:
    supervision rasterises the polygon to a mask as large as its bounding corner (2 MB for a zone
    reaching a 1080p frame's corner), and a camera has one rule per scene class."""
    return sv.PolygonZone(np.array(points, dtype=np.int64), triggering_anchors=(anchor,))


class ZoneRule:
    """One scene class in one zone of one camera."""

    def __init__(self, scene: SceneClass, zone: ZoneConfig, params: dict, camera_id: str):
        self.scene = scene
        self.zone = zone
        self.params = params
        self.camera_id = camera_id
        self.min_confidence = float(params["min_confidence"])
        self.gap_s = float(params["gap_s"])
        # Once confirmed, a violation survives absences up to the event's resolve grace: a parked car
        # hidden by a bus for 30 s is the same case when it reappears, not a new dwell from zero.
        self.confirmed_gap_s = max(self.gap_s, float(params.get("confirmed_gap_s", self.gap_s)))
        self._anchor = sv.Position.CENTER if set(scene.objects) & CENTRE_ANCHORED else sv.Position.BOTTOM_CENTER
        self._polygon = tuple(map(tuple, zone.polygon)) if zone.polygon is not None else None

    def candidates(self, det: sv.Detections) -> tuple[np.ndarray, np.ndarray]:
        """(indices of this rule's objects inside the zone, indices of its objects outside it)."""
        if len(det) == 0:
            return np.array([], dtype=int), np.array([], dtype=int)
        # A detection on an activated track counts whatever its score this frame: the tracker has
        # already seen it persist. Untracked ones must be confident on their own.
        tracked = det.tracker_id >= 0 if det.tracker_id is not None else np.zeros(len(det), dtype=bool)
        ours = np.isin(det.data["class_name"], self.scene.objects) & ((det.confidence >= self.min_confidence) | tracked)
        if self._polygon is None:
            inside = np.ones(len(det), dtype=bool)  # the whole picture: every detection is in it
        else:
            inside = _polygon_zone(self._polygon, self._anchor).trigger(det)
        return np.flatnonzero(ours & inside), np.flatnonzero(ours & ~inside)

    def _gap(self, ep: _Episode) -> float:
        return self.confirmed_gap_s if ep.confirmed_s is not None else self.gap_s

    def update(self, det: sv.Detections, t: float, frame_seq: int) -> RuleStep:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


class DwellRule(ZoneRule):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dwell_s = float(self.params["dwell_s"])
        self.max_move_ratio = float(self.params["max_move_ratio"])
        self.episodes: dict[int, _Episode] = {}  # by current track id
        self.displaced: dict[int, _Episode] = {}  # by track id: where it stood before it moved
        # Only an object that stood still this long may pass its dwell time to a new track id (a
        # parked car the tracker lost behind a bus); a car seen for a moment at a spot that passing
        # traffic keeps visiting must not.
        self.inherit_after_s = min(0.25 * self.dwell_s, 10.0)

    def reset(self) -> None:
        self.episodes.clear()
        self.displaced.clear()

    def _moved(self, ep: _Episode, centre: tuple[float, float]) -> bool:
        return math.dist(centre, ep.ref_centre) > self.max_move_ratio * ep.ref_diag

    def update(self, det, t, frame_seq):
        started = False
        inside, outside = self.candidates(det)
        tids = det.tracker_id if det.tracker_id is not None else np.full(len(det), -1)
        for i in outside:  # seen outside the zone: it left, whatever the gap tolerance says
            self.episodes.pop(int(tids[i]), None)
        present = {int(tids[i]): i for i in inside if tids[i] >= 0}
        for tid, i in present.items():
            obj = _objects(det, [i])
            box = obj[0].box
            centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            ep = self.episodes.get(tid)
            if ep is not None and self._moved(ep, centre):
                # It moved, or its track jumped onto a merged or passing box for a frame. The old
                # episode is set aside: back at its spot within the gap tolerance, the dwell clock
                # carries on. Another track may take it over only once it stood still for
                # inherit_after_s (_inherit), or passing cars would chain into one "parked" car.
                back = self.displaced.get(tid)
                self.displaced[tid] = self.episodes.pop(tid)
                ep = back if back is not None and not self._moved(back, centre) else None
            if ep is None or ep.confirmed_s is None:
                ep = self._inherit(tid, box, present, ep)
            if ep is None:
                ep = _Episode(key=f"track-{tid}", start_s=t, last_s=t, first_frame=frame_seq, ref_centre=centre,
                              ref_diag=max(1.0, math.hypot(box[2] - box[0], box[3] - box[1])))
                started = True
            ep.last_s, ep.objects = t, obj
            self.episodes[tid] = ep
        for tid in [k for k, ep in self.episodes.items() if k not in present and t - ep.last_s > self._gap(ep)]:
            del self.episodes[tid]
        for tid in [k for k, ep in self.displaced.items() if t - ep.last_s > self._gap(ep)]:
            del self.displaced[tid]
        out = []
        for tid in present:
            ep = self.episodes[tid]
            if t - ep.start_s >= self.dwell_s:
                ep.confirmed_s = ep.confirmed_s or t
                out.append(ep.violation(self))
        return RuleStep(out, started)

    @property
    def confirm_s(self) -> float:
        return self.dwell_s

    def _inherit(self, tid: int, box: Box, present: dict[int, int], current: _Episode | None) -> _Episode | None:
        """A stationary object that reappears under a new track id (the tracker lost it behind a
        passing bus, or its old track drifted onto a merged box) keeps its dwell time: it takes
        over an episode at the same place, lost or set aside, that began before its own and stood
        still long enough to be a parked object rather than a moment of passing traffic."""
        pools = [(self.episodes, k, ep) for k, ep in self.episodes.items() if k != tid and k not in present]
        pools += [(self.displaced, k, ep) for k, ep in self.displaced.items() if k != tid]
        best, best_pool, best_key = current, None, None
        for pool, key, ep in pools:
            if (ep.objects and ep.last_s - ep.start_s >= self.inherit_after_s and same_place(ep.objects[0].box, box)
                    and (best is None or ep.start_s < best.start_s)):
                best, best_pool, best_key = ep, pool, key
        if best_pool is not None:
            del best_pool[best_key]
        return best


class CountRule(ZoneRule):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.min_count = int(self.params.get("min_count", 1))
        self.hold_s = float(self.params["hold_s"])
        self.episode: _Episode | None = None

    def reset(self) -> None:
        self.episode = None

    @property
    def confirm_s(self) -> float:
        return self.hold_s

    def update(self, det, t, frame_seq):
        inside, _ = self.candidates(det)
        ep = self.episode
        started = False
        if len(inside) >= self.min_count:
            if ep is None:
                ep = self.episode = _Episode(key="zone", start_s=t, last_s=t, first_frame=frame_seq)
                started = True
            ep.last_s, ep.objects = t, _objects(det, inside)
            if t - ep.start_s >= self.hold_s:
                ep.confirmed_s = ep.confirmed_s or t
                return RuleStep([ep.violation(self)], started)
        elif ep is not None and t - ep.last_s > self._gap(ep):
            self.episode = None
        return RuleStep([], started)


class PersistenceRule(CountRule):
    def __init__(self, scene, zone, params, camera_id):
        super().__init__(scene, zone, {**params, "min_count": 1, "hold_s": params["persist_s"]}, camera_id)


RULES = {"dwell": DwellRule, "count": CountRule, "persistence": PersistenceRule}


@dataclass
class RuleSet:
    """Every active rule of one camera; applies zone schedules in the camera's local time."""

    camera_id: str
    rules: list[ZoneRule] = field(default_factory=list)
    unserved: list[SceneClass] = field(default_factory=list)  # scene classes the model cannot serve
    allowances: list[tuple[ZoneConfig, Allowance]] = field(default_factory=list)  # zones that allow classes

    @classmethod
    def build(cls, camera: Camera, model_objects: set[str], thresholds: Thresholds | None = None) -> RuleSet:
        """`thresholds`: the model card's; they set each class's min_confidence unless streams.yaml does."""
        thresholds = thresholds or Thresholds()
        served, unserved = served_by(model_objects)
        served_codes = {c.code for c in served}
        rs = cls(camera_id=camera.id, unserved=unserved,
                 allowances=[(z, a) for z in camera.zones for a in z.allows])
        for setting in camera.rules:
            code = setting.scene_class
            if code not in served_codes or not setting.params["enabled"]:
                continue
            params = {**setting.params, "min_confidence": setting.overrides.get(
                "min_confidence", thresholds.min_confidence_for(code))}
            scene = CATALOGUE[code]
            rs.rules.append(RULES[scene.rule](scene, setting.zone, params, camera.id))
        return rs

    def confirm_s(self, zone_id: str, scene_class: str) -> float:
        """How long this camera's rule for (zone, class) takes to confirm a violation; 0 if none."""
        return max((r.confirm_s for r in self.rules if r.zone.id == zone_id and r.scene.code == scene_class),
                   default=0.0)

    def update(self, det: sv.Detections, t: float, wall: datetime, frame_seq: int) -> RuleStep:
        out: list[Violation] = []
        started = False
        weekday, clock = wall.isoweekday(), wall.timetz().replace(tzinfo=None)
        allowed = self._allowed_now(weekday, clock)
        seen_by: dict[str, sv.Detections] = {}
        for rule in self.rules:
            schedule = rule.zone.schedule
            if schedule is not None and not schedule.is_active(weekday, clock):
                rule.reset()
                continue
            code = rule.scene.code
            if code in allowed and len(det):
                if code not in seen_by:
                    seen_by[code] = det[~self._inside_any(det, allowed[code], rule)]
                step = rule.update(seen_by[code], t, frame_seq)
            else:
                step = rule.update(det, t, frame_seq)
            out.extend(step.violations)
            started = started or step.episode_started
        return RuleStep(out, started)

    def _allowed_now(self, weekday: int, clock) -> dict[str, list[ZoneConfig]]:
        """Scene class -> the zones allowing it at this local time."""
        out: dict[str, list[ZoneConfig]] = {}
        for zone, allow in self.allowances:
            if allow.schedule is None or allow.schedule.is_active(weekday, clock):
                for code in allow.classes:
                    out.setdefault(code, []).append(zone)
        return out

    @staticmethod
    def _inside_any(det: sv.Detections, zones: list[ZoneConfig], rule: ZoneRule) -> np.ndarray:
        """Detections anchored (as `rule` anchors them) inside any of `zones`."""
        mask = np.zeros(len(det), dtype=bool)
        for zone in zones:
            if zone.polygon is None:
                return np.ones(len(det), dtype=bool)
            mask |= _polygon_zone(tuple(map(tuple, zone.polygon)), rule._anchor).trigger(det)
        return mask
