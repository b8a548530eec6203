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
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import numpy as np
import supervision as sv

from .catalogue import BASE_DEFAULTS, CATALOGUE, Grade, SceneClass, served_by
from .config import Allowance, Camera, ZoneConfig
from .models import Thresholds
from .track import (TrackBook, TrackHistory, box_iou, covered, diagonal, near, same_place, same_place_matrix,
                    track_ids)

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
    passed: bool = False  # a vehicle of its kind drove past it while it stood
    joined_s: float | None = None  # when a vehicle last moved up near it and stopped: traffic stops and goes
    arrived: bool = False  # it drove here (its track moved before this episode began)
    movers: deque = field(default_factory=lambda: deque(maxlen=MOVERS_KEPT))  # (t, box, could pass) to judge

    def violation(self, rule: ZoneRule) -> Violation:
        return Violation(
            camera_id=rule.camera_id, zone_id=rule.zone.id, scene_class=rule.scene.code, key=self.key,
            first_seen_s=self.start_s, confirmed_s=self.confirmed_s or self.last_s, last_seen_s=self.last_s,
            confidence=max((o.confidence for o in self.objects), default=0.0), objects=self.objects,
            first_seen_frame=self.first_frame,
        )


def _objects(det: sv.Detections, idx) -> tuple[ObservedObject, ...]:
    tids = track_ids(det)
    return tuple(
        ObservedObject(str(det.data["class_name"][i]), tuple(float(v) for v in det.xyxy[i]),  # type: ignore[arg-type]
                       float(det.confidence[i]), int(tids[i]) if tids[i] >= 0 else None)
        for i in idx
    )


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

    def counts(self, det: sv.Detections, book: TrackBook) -> np.ndarray:
        """Which detections are this rule's objects with enough evidence. A tracked one is judged by
        its track's mean score over its life (a parked car's score swings from frame to frame; a
        bus shelter boxed as `bus` at 0.23-0.34 every frame stays below a 0.3 bar however long it
        stands); an untracked one by its own score."""
        ours = np.isin(det.data["class_name"], self.scene.objects)
        tids = track_ids(det)
        score = det.confidence.astype(float).copy()
        for i in np.flatnonzero(ours & (tids >= 0)):
            h = book.get(int(tids[i]))
            if h is not None:
                score[i] = h.mean_score
        return ours & (score >= self.min_confidence)

    def candidates(self, det: sv.Detections, book: TrackBook) -> tuple[np.ndarray, np.ndarray]:
        """(indices of this rule's objects inside the zone, indices of its objects outside it)."""
        if len(det) == 0:
            return np.array([], dtype=int), np.array([], dtype=int)
        ours = self.counts(det, book)
        if self._polygon is None:
            inside = np.ones(len(det), dtype=bool)  # the whole picture: every detection is in it
        else:
            inside = _polygon_zone(self._polygon, self._anchor).trigger(det)
        return np.flatnonzero(ours & inside), np.flatnonzero(ours & ~inside)

    def _gap(self, ep: _Episode) -> float:
        return self.confirmed_gap_s if ep.confirmed_s is not None else self.gap_s

    def update(self, det: sv.Detections, t: float, frame_seq: int, book: TrackBook) -> RuleStep:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


# A part of an object boxed on its own (the detector's 0.18 box over the back of a black SUV) lies
# almost wholly inside the object's own box; two parked cars side by side never do.
PART_COVERED = 0.7
# Queue or parked (track.near says which vehicles are neighbours): a neighbour that moves
# (TrackBook.moving) and has not stopped near it SETTLE_S later drove past; one that stopped joined
# the queue.
QUEUE_MEMORY_S = 90.0  # a red phase rarely lasts longer; traffic that has not moved for longer is parked
PASSER_SIZE = 0.6  # a passer's box diagonal, at least this share of the standing vehicle's
SETTLE_S = 3.0
MOVERS_KEPT = 64  # at 2 fps and a few movers a frame, 3 s of them (SETTLE_S) with room to spare
# Traffic: the objects of every queue-aware class. A car queues among motorbikes as much as among
# cars (a Hanoi red light), so any of them standing or moving up near it makes a queue; only its own
# kind driving past shows it is parked (motorbikes filter past queued cars at speed).
TRAFFIC = frozenset(o for c in CATALOGUE.values() if c.params(Grade.ARTERIAL).get("queue_aware") for o in c.objects)


class DwellRule(ZoneRule):
    """A tracked object stands (nearly) still inside the zone for dwell_s.

    With `queue_aware` (vehicles), standing is not enough: a vehicle that stands while the traffic
    around it stops and goes too (a queue at a light, a jam) is waiting, not parked. It is parked
    once it has stood dwell_s and no vehicle of its kind stands near it (it stands alone), or one
    has driven past it while it stood (others pass it), or none near it has moved since it stopped
    (a parked row)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dwell_s = float(self.params["dwell_s"])
        self.max_move_ratio = float(self.params["max_move_ratio"])
        self.queue_aware = bool(self.params["queue_aware"])
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

    def _still_since_birth(self, h: TrackHistory | None) -> bool:
        return h is not None and h.stood_since_birth(self.max_move_ratio, self.gap_s)

    def update(self, det, t, frame_seq, book):
        started = False
        inside, outside = self.candidates(det, book)
        tids = track_ids(det)
        for i in outside:  # seen outside the zone: it left, whatever the gap tolerance says
            self.episodes.pop(int(tids[i]), None)
        present = {int(tids[i]): i for i in self._whole_objects(det, inside, book) if tids[i] >= 0}
        for tid, i in present.items():
            obj = _objects(det, [i])
            box = obj[0].box
            centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            h = book.get(tid)
            ep = self.episodes.get(tid)
            if ep is not None and self._moved(ep, centre):
                # It moved, or its track jumped onto a merged or passing box for a frame. The old
                # episode is set aside: back at its spot within the gap tolerance, the dwell clock
                # carries on. Another track may take it over only if that track was born on the
                # spot and never moved, and, if it drove up to it, only once that violation is due
                # (_inherit): a car that drives into a space another car just left, as in a
                # creeping queue, starts its own clock.
                back = self.displaced.get(tid)
                self.displaced[tid] = self.episodes.pop(tid)
                ep = back if back is not None and not self._moved(back, centre) else None
            if (ep is None or ep.confirmed_s is None) and self._still_since_birth(h):
                ep = self._inherit(tid, h.origin, present, ep, book, confirmed_only=h.arrived)  # type: ignore[union-attr]
            if ep is None:
                # A track that has stood here since it was first boxed has stood since then, not
                # since the tracker trusted it: cars parked from the first frame are due at dwell_s.
                born = self._still_since_birth(h)
                ep = _Episode(key=f"track-{tid}", start_s=h.born_s if born else t,  # type: ignore[union-attr]
                              last_s=t, first_frame=h.born_frame if born else frame_seq,  # type: ignore[union-attr]
                              ref_centre=centre, ref_diag=diagonal(box),
                              arrived=not born or h.arrived)  # type: ignore[union-attr]
                started = True
            ep.last_s, ep.objects = t, obj
            self.episodes[tid] = ep
        for tid in [k for k, ep in self.episodes.items() if k not in present and t - ep.last_s > self._gap(ep)]:
            del self.episodes[tid]
        for tid in [k for k, ep in self.displaced.items() if t - ep.last_s > self._gap(ep)]:
            del self.displaced[tid]
        out = []
        for tid, i in present.items():
            ep = self.episodes[tid]
            if self.queue_aware and ep.confirmed_s is None:
                self._watch(det, i, ep, book, t)
            if ep.confirmed_s is None and t - ep.start_s >= self.dwell_s and not self._queued(det, i, ep, book):
                ep.confirmed_s = t
            if ep.confirmed_s is not None:
                out.append(ep.violation(self))
        return RuleStep(out, started)

    def _whole_objects(self, det: sv.Detections, idx: np.ndarray, book: TrackBook) -> list[int]:
        """`idx` without parts of other objects: a box lying PART_COVERED inside a larger box of this
        rule's kind whose track is surer of itself is a piece of that object, not a second one."""
        if len(idx) == 0:
            return []
        ours = np.flatnonzero(np.isin(det.data["class_name"], self.scene.objects))
        tids = track_ids(det)

        def sureness(i: int) -> float:
            h = book.get(int(tids[i])) if tids[i] >= 0 else None
            return h.mean_score if h is not None else float(det.confidence[i])

        boxes = det.xyxy
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = []
        for i in idx:
            part = tuple(float(v) for v in boxes[i])
            if not any(j != i and area[j] > area[i] and sureness(j) > sureness(i)
                       and covered(part, tuple(float(v) for v in boxes[j])) >= PART_COVERED for j in ours):  # type: ignore[arg-type]
                keep.append(int(i))
        return keep

    def _watch(self, det: sv.Detections, i: int, ep: _Episode, book: TrackBook, t: float) -> None:
        """Note the vehicles of its kind that move near it, and judge those seen SETTLE_S ago: one
        that has not stopped near where it was seen drove past."""
        me = _box(det, i)
        moving, names = det.data["moving"], det.data["class_name"]
        traffic = [j for j in np.flatnonzero(np.isin(names, list(TRAFFIC))) if j != i]
        for j in traffic:
            if moving[j] and near(me, _box(det, j)):
                # Only a sure box of its own kind and size passes it: a motorbike boxed as a car
                # for one frame does not make a queued taxi parked.
                passer = (names[j] in self.scene.objects and det.confidence[j] >= self.min_confidence
                          and diagonal(_box(det, j)) >= PASSER_SIZE * diagonal(me))
                ep.movers.append((t, _box(det, j), passer))
        standing = [_box(det, j) for j in traffic if det.data["standing"][j]]
        while ep.movers and t - ep.movers[0][0] >= SETTLE_S:
            seen_s, box, passer = ep.movers.popleft()
            # Stopped where it was seen, or a standing vehicle near there that was not there then.
            then = book.boxes_at(seen_s)
            arrived = [s for s in standing if near(box, s) and (
                same_place(s, box) or not same_place_matrix(np.array([s], dtype=np.float32), then).any())]
            if arrived:
                ep.joined_s = t
            elif passer:
                ep.passed = True

    def _queued(self, det: sv.Detections, i: int, ep: _Episode, book: TrackBook) -> bool:
        """Standing in traffic that stops and goes: a vehicle of its kind stands or crawls near it
        now, one has moved up near it and stopped since it stopped, and none has driven past it. A
        row of cars that nothing near has moved in since they stood is parked (a car park, a kerb at
        night); so is one that traffic drives past."""
        if not self.queue_aware or ep.passed:
            return False
        group = self._standing_group(det, i)
        if len(group) == 1:
            return False  # it stands alone
        # When traffic last stopped and went around it: a vehicle moved up to it and stopped, it drove
        # up to standing traffic itself, or one drove up and stopped in its group (a queue grows at its
        # back, far from the car at the stop line, but it is one queue; only a track seen driving up
        # counts: a parked car the detector first boxed late did not arrive).
        tids = track_ids(det)
        moments = [ep.joined_s if ep.joined_s is not None else -math.inf, ep.start_s if ep.arrived else -math.inf]
        moments += [h.born_s for j in group if j != i and tids[j] >= 0
                     and (h := book.get(int(tids[j]))) is not None and h.arrived and h.born_s > ep.start_s]
        # A queue moves within a light's cycle; a group nothing has moved in for longer is parked.
        return ep.last_s - max(moments) <= QUEUE_MEMORY_S

    def _standing_group(self, det: sv.Detections, i: int) -> list[int]:
        """It and the standing traffic connected to it, neighbour by neighbour (detection indices)."""
        names, standing = det.data["class_name"], det.data["standing"]
        others = [j for j in np.flatnonzero(np.isin(names, list(TRAFFIC))) if j != i and standing[j]]
        group, frontier = [i], [i]
        while frontier:
            k = frontier.pop()
            reached = [j for j in others if near(_box(det, k), _box(det, j))]
            others = [j for j in others if j not in reached]
            group += reached
            frontier += reached
        return group

    @property
    def confirm_s(self) -> float:
        return self.dwell_s

    def _inherit(self, tid: int, box: Box, present: dict[int, int], current: _Episode | None,
                 book: TrackBook, confirmed_only: bool) -> _Episode | None:
        """A stationary object that reappears under a new track id (the tracker lost it behind a
        passing bus, or its old track drifted onto a merged box) keeps its dwell time: it takes
        over an episode at the same place, lost or set aside, that began before its own and stood
        still long enough to be a parked object rather than a moment of passing traffic. `box` is
        where the new track was born; the caller has checked that it never moved from there.
        `confirmed_only`: the new track drove up to the spot, so it may be another car that parked
        where one just left: it continues a confirmed violation there (the case stays one while
        traffic hides the parked car), but never takes over the waiting time of one not yet due."""
        pools = [(self.episodes, k, ep) for k, ep in self.episodes.items() if k != tid and k not in present]
        # A track set aside because it moved hands its time over only while its box still covers the
        # spot (it drifted onto a box merging two cars); one that drove off left the spot empty.
        pools += [(self.displaced, k, ep) for k, ep in self.displaced.items()
                  if k != tid and ep.objects and (owner := book.get(k)) is not None
                  and box_iou(owner.box, ep.objects[0].box) > 0]
        best, best_pool, best_key = current, None, None
        for pool, key, ep in pools:
            if (ep.objects and ep.last_s - ep.start_s >= self.inherit_after_s and same_place(ep.objects[0].box, box)
                    and (ep.confirmed_s is not None or not confirmed_only)
                    and (best is None or ep.start_s < best.start_s)):
                best, best_pool, best_key = ep, pool, key
        if best_pool is not None:
            del best_pool[best_key]
        return best


def _box(det: sv.Detections, i: int) -> Box:
    return tuple(float(v) for v in det.xyxy[i])  # type: ignore[return-value]


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

    def update(self, det, t, frame_seq, book):
        inside, _ = self.candidates(det, book)
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
    book: TrackBook = field(default_factory=lambda: TrackBook(forget_s=BASE_DEFAULTS["gap_s"]))

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
        # A track unseen for longer than any rule would wait for it no longer matters to the rules.
        rs.book = TrackBook(forget_s=max([r.confirmed_gap_s for r in rs.rules], default=BASE_DEFAULTS["gap_s"]))
        return rs

    def confirm_s(self, zone_id: str, scene_class: str) -> float:
        """How long this camera's rule for (zone, class) takes to confirm a violation; 0 if none."""
        return max((r.confirm_s for r in self.rules if r.zone.id == zone_id and r.scene.code == scene_class),
                   default=0.0)

    def update(self, det: sv.Detections, t: float, wall: datetime, frame_seq: int) -> RuleStep:
        """One object is one violation per scene class, however the zones it stands in overlap:
        the first zone (in the camera's order) that confirms it holds it."""
        out: list[Violation] = []
        started = self.book.update(det, t, frame_seq)
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
                step = rule.update(seen_by[code], t, frame_seq, self.book)
            else:
                step = rule.update(det, t, frame_seq, self.book)
            out.extend(step.violations)
            started = started or step.episode_started
        held: set[tuple[str, int]] = set()
        one_each = []
        for v in out:
            track = v.objects[0].track_id if len(v.objects) == 1 else None
            if track is not None:
                if (v.scene_class, track) in held:
                    continue
                held.add((v.scene_class, track))
            one_each.append(v)
        return RuleStep(one_each, started)

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
