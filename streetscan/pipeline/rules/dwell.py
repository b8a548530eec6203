"""DwellRule: a tracked object stays (nearly) still inside a zone for dwell_s (parking, vendors, ...)."""

from __future__ import annotations

import math
from typing import TypeGuard

import numpy as np
import supervision as sv
from pydantic import Field

from ..catalogue import CATALOGUE
from ..track import TrackBook, TrackHistory, box_iou, covered, diagonal, near, same_place, same_place_matrix, track_ids
from ..zones import FrameZones
from .base import Box, Episode, RuleParams, RuleStep, ZoneRule, box_of, observed


class DwellParams(RuleParams):
    dwell_s: float = Field(ge=0)
    max_move_ratio: float = Field(ge=0)
    # Vehicles: standing in traffic that stands too (a queue at a light, a jam) is waiting, not a violation.
    queue_aware: bool = False


# A part of an object boxed on its own (the detector's 0.18 box over the back of a black SUV) lies
# almost wholly inside the object's own box; two parked cars side by side never do.
PART_COVERED = 0.7
# Queue or parked (track.near says which vehicles are neighbours): a neighbour that moves
# (TrackBook.moving) and has not stopped near it SETTLE_S later drove past; one that stopped joined
# the queue.
QUEUE_MEMORY_S = 90.0  # a red phase rarely lasts longer; traffic that has not moved for longer is parked
PASSER_SIZE = 0.6  # a passer's box diagonal, at least this share of the standing vehicle's
SETTLE_S = 3.0
# Traffic: the objects of every queue-aware class. A car queues among motorbikes as much as among
# cars (a Hanoi red light), so any of them standing or moving up near it makes a queue; only its own
# kind driving past shows it is parked (motorbikes filter past queued cars at speed).
TRAFFIC = frozenset(o for c in CATALOGUE.values() if c.defaults.get("queue_aware") for o in c.objects)


class DwellRule(ZoneRule):
    """A tracked object stands (nearly) still inside the zone for dwell_s.

    With `queue_aware` (vehicles), standing is not enough: a vehicle that stands while the traffic
    around it stops and goes too (a queue at a light, a jam) is waiting, not parked. It is parked
    once it has stood dwell_s and no vehicle of its kind stands near it (it stands alone), or one
    has driven past it while it stood (others pass it), or none near it has moved since it stopped
    (a parked row)."""

    kind = "dwell"
    Params = DwellParams
    time_key = "dwell_s"
    first_frame_evidence = True
    same_object_only = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.params, DwellParams)
        self.dwell_s = self.params.dwell_s
        self.max_move_ratio = self.params.max_move_ratio
        self.queue_aware = self.params.queue_aware
        self.episodes: dict[int, Episode] = {}  # by current track id
        self.displaced: dict[int, Episode] = {}  # by track id: where it stood before it moved
        # Only an object that stood still this long may pass its dwell time to a new track id (a
        # parked car the tracker lost behind a bus); a car seen for a moment at a spot that passing
        # traffic keeps visiting must not.
        self.inherit_after_s = min(0.25 * self.dwell_s, 10.0)

    def reset(self) -> None:
        self.episodes.clear()
        self.displaced.clear()

    def _moved(self, ep: Episode, centre: tuple[float, float]) -> bool:
        return math.dist(centre, ep.ref_centre) > self.max_move_ratio * ep.ref_diag

    def _still_since_birth(self, h: TrackHistory | None) -> TypeGuard[TrackHistory]:
        return h is not None and h.stood_since_birth(self.max_move_ratio, self.gap_s)

    def update(self, det: sv.Detections, t: float, frame_seq: int, book: TrackBook, where: FrameZones) -> RuleStep:
        started = False
        inside, outside = self.candidates(det, book, where)
        tids = track_ids(det)
        for i in outside:  # seen outside the zone: it left, whatever the gap tolerance says
            self.episodes.pop(int(tids[i]), None)
        present = {int(tids[i]): i for i in self._whole_objects(det, inside, book) if tids[i] >= 0}
        for tid, i in present.items():
            obj = observed(det, [i])
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
                ep = self._inherit(tid, h.origin, present, ep, book, confirmed_only=h.arrived)
            if ep is None:
                # A track that has stood here since it was first boxed has stood since then, not
                # since the tracker trusted it: cars parked from the first frame are due at dwell_s.
                born = h if self._still_since_birth(h) else None
                ep = Episode(
                    key=f"track-{tid}",
                    start_s=born.born_s if born else t,
                    last_s=t,
                    first_frame=born.born_frame if born else frame_seq,
                    ref_centre=centre,
                    ref_diag=diagonal(box),
                    arrived=born is None or born.arrived,
                )
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
        confidence = det.confidence
        assert confidence is not None  # detectors score every box (make_detections, Detections.empty)

        def sureness(i: int) -> float:
            h = book.get(int(tids[i])) if tids[i] >= 0 else None
            return h.mean_score if h is not None else float(confidence[i])

        boxes = det.xyxy
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = []
        for i in idx:
            part = box_of(det, int(i))
            if not any(
                j != i
                and area[j] > area[i]
                and sureness(int(j)) > sureness(int(i))
                and covered(part, box_of(det, int(j))) >= PART_COVERED
                for j in ours
            ):
                keep.append(int(i))
        return keep

    def _watch(self, det: sv.Detections, i: int, ep: Episode, book: TrackBook, t: float) -> None:
        """Note the vehicles of its kind that move near it, and judge those seen SETTLE_S ago: one
        that has not stopped near where it was seen drove past."""
        me = box_of(det, i)
        moving, names = det.data["moving"], det.data["class_name"]
        traffic = [int(j) for j in np.flatnonzero(np.isin(names, list(TRAFFIC))) if j != i]
        for j in traffic:
            if moving[j] and near(me, box_of(det, j)):
                assert det.confidence is not None  # detectors score every box (make_detections, Detections.empty)
                # Only a sure box of its own kind and size passes it: a motorbike boxed as a car
                # for one frame does not make a queued taxi parked.
                passer = (
                    names[j] in self.scene.objects
                    and det.confidence[j] >= self.min_confidence
                    and diagonal(box_of(det, j)) >= PASSER_SIZE * diagonal(me)
                )
                ep.movers.append((t, box_of(det, j), passer))
        standing = [box_of(det, j) for j in traffic if det.data["standing"][j]]
        while ep.movers and t - ep.movers[0][0] >= SETTLE_S:
            seen_s, box, passer = ep.movers.popleft()
            # Stopped where it was seen, or a standing vehicle near there that was not there then.
            then = book.boxes_at(seen_s)
            arrived = [
                s
                for s in standing
                if near(box, s)
                and (same_place(s, box) or not same_place_matrix(np.array([s], dtype=np.float32), then).any())
            ]
            if arrived:
                ep.joined_s = t
            elif passer:
                ep.passed = True

    def _queued(self, det: sv.Detections, i: int, ep: Episode, book: TrackBook) -> bool:
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
        moments += [
            h.born_s
            for j in group
            if j != i
            and tids[j] >= 0
            and (h := book.get(int(tids[j]))) is not None
            and h.arrived
            and h.born_s > ep.start_s
        ]
        # A queue moves within a light's cycle; a group nothing has moved in for longer is parked.
        return ep.last_s - max(moments) <= QUEUE_MEMORY_S

    def _standing_group(self, det: sv.Detections, i: int) -> list[int]:
        """It and the standing traffic connected to it, neighbour by neighbour (detection indices)."""
        names, standing = det.data["class_name"], det.data["standing"]
        others = [int(j) for j in np.flatnonzero(np.isin(names, list(TRAFFIC))) if j != i and standing[j]]
        group, frontier = [i], [i]
        while frontier:
            k = frontier.pop()
            reached = [j for j in others if near(box_of(det, k), box_of(det, j))]
            others = [j for j in others if j not in reached]
            group += reached
            frontier += reached
        return group

    def _inherit(
        self,
        tid: int,
        box: Box,
        present: dict[int, int],
        current: Episode | None,
        book: TrackBook,
        confirmed_only: bool,
    ) -> Episode | None:
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
        pools += [
            (self.displaced, k, ep)
            for k, ep in self.displaced.items()
            if k != tid
            and ep.objects
            and (owner := book.get(k)) is not None
            and box_iou(owner.box, ep.objects[0].box) > 0
        ]
        best, best_pool, best_key = current, None, None
        for pool, key, ep in pools:
            if (
                ep.objects
                and ep.last_s - ep.start_s >= self.inherit_after_s
                and same_place(ep.objects[0].box, box)
                and (ep.confirmed_s is not None or not confirmed_only)
                and (best is None or ep.start_s < best.start_s)
            ):
                best, best_pool, best_key = ep, pool, key
        if best_pool is not None:
            assert best_key is not None  # set together with best_pool
            del best_pool[best_key]
        return best
