"""Tracking: ByteTrack (roboflow `trackers`) assigns stable ids so dwell rules can time objects.

Street cameras see the objects that matter (a car parked 80 m away, a stall half behind a bus) at
low confidence. So a track starts from a modest score and is activated by *persistence* (matched
on `min_frames` consecutive analysed frames), low-score detections keep existing tracks alive
(ByteTrack's second stage), and a lost track keeps its id for the event resolve grace, so a parked
car hidden by passing traffic comes back under the same id.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import cast

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from .models import Thresholds

# Two classes on one box (a Hummer as both "car" and "truck") are one object: keep the surer one,
# or it would start a second track and a duplicate case. Distinct objects that overlap this much
# (a person on a bicycle overlaps it far less) are rare enough to lose.
SAME_OBJECT_IOU = 0.8
# `trackers` counts its lost-track buffer in frames of a 30 fps video whatever the real rate.
_BUFFER_FPS = 30.0


@dataclass(frozen=True)
class TrackerSettings:
    high: float
    activate: float
    min_frames: int
    lost_s: float

    @classmethod
    def resolve(
        cls,
        thresholds: Thresholds,
        *,
        lost_s: float,
        high: float | None = None,
        activate: float | None = None,
        min_frames: int | None = None,
    ) -> TrackerSettings:
        """The model card's calibrated values, overridden by whatever the camera sets."""
        high = thresholds.track_high if high is None else high
        activate = thresholds.track_activate if activate is None else activate
        return cls(
            high=high,
            activate=min(activate, high),
            min_frames=thresholds.track_min_frames if min_frames is None else min_frames,
            lost_s=lost_s,
        )


class ObjectTracker:
    """One camera's tracker. Untracked detections stay in the output with tracker_id -1: the
    persistence and count rules use them, only dwell rules need ids."""

    def __init__(self, analysis_fps: float, settings: TrackerSettings):
        self.settings = settings
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(settings.lost_s * _BUFFER_FPS)),
            frame_rate=analysis_fps,
            track_activation_threshold=settings.activate,
            high_conf_det_threshold=settings.high,
            minimum_consecutive_frames=settings.min_frames,
        )

    def update(self, detections: sv.Detections, t: float) -> sv.Detections:
        if len(detections) > 1:
            detections = detections.with_nms(threshold=SAME_OBJECT_IOU, class_agnostic=True)
        out = self._tracker.update(detections, timestamp=t)
        if out.tracker_id is None:
            out.tracker_id = np.full(len(out), -1, dtype=int)
        return out


Box = tuple[float, float, float, float]
# How far back the book remembers detections: to date a new track's birth through its earlier,
# untracked sightings at the same spot (a far car boxed at 0.2 for seconds before the tracker trusts
# it), and to tell what stands from what moves. Bounded per camera whatever the scene: 60 s x 2 fps x
# 200 boxes x 24 B = 0.6 MB worst case.
SIGHTINGS_KEPT_S = 60.0
SIGHTINGS_PER_FRAME = 200
# A frame with a new untracked sighting is worth keeping as the first-sighting picture of a track
# that may be born from it, at most this often (a JPEG each time: busy traffic must not pay per frame).
SIGHTING_PICTURE_EVERY_S = 2.0
# A detection stands when a box at the same place (same_place) was seen between STAND_LOOKBACK_S
# seconds and STAND_MIN_AGE_S ago: a car crawling in a jam (a tenth of its length a second) stands,
# one driving past at walking pace or faster moves. Two or three frames at 2 fps, so one missed
# detection of a parked car does not make it "moving".
STAND_LOOKBACK_S = 2.0
BIRTH_IOU = 0.6  # an untracked sighting dates a track's birth when its box overlaps the track's this much
STAND_MIN_AGE_S = 1.0


def track_ids(det: sv.Detections) -> np.ndarray:
    """Each detection's track id, -1 for the untracked (all of them when nothing was tracked)."""
    return det.tracker_id if det.tracker_id is not None else np.full(len(det), -1)


def centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def diagonal(box: Box) -> float:
    return max(1.0, math.hypot(box[2] - box[0], box[3] - box[1]))


def _inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def box_iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def covered(part: Box, whole: Box) -> float:
    """The share of `part`'s area that lies inside `whole`."""
    ix = max(0.0, min(part[2], whole[2]) - max(part[0], whole[0]))
    iy = max(0.0, min(part[3], whole[3]) - max(part[1], whole[1]))
    area = (part[2] - part[0]) * (part[3] - part[1])
    return ix * iy / area if area > 0 else 0.0


# Two vehicles are near each other when the gap between their boxes is at most NEAR_GAP times the
# smaller of their diagonals: bumper to bumper in a queue, side by side in the next lane; not the
# cross traffic beyond a stop line.
NEAR_GAP = 0.5


def near(a: Box, b: Box) -> bool:
    gap = max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3], 0.0)
    return gap <= NEAR_GAP * min(diagonal(a), diagonal(b))


def same_place(a: Box, b: Box) -> bool:
    """Two boxes of one stationary object seen twice: IoU >= 0.5, or each box's centre inside the
    other (a detector's box for a half-hidden or merged car can shrink or widen a lot, but two
    neighbouring parked cars never hold each other's centres)."""
    if box_iou(a, b) >= 0.5:
        return True
    return _inside(centre(a), b) and _inside(centre(b), a)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of rows of two (N, 4) and (M, 4) box arrays."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a, b = a[:, None, :].astype(np.float64), b[None, :, :].astype(np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = (
        (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    )
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def same_place_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """same_place for every pair of rows of two (N, 4) and (M, 4) box arrays: (N, M) bools."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=bool)
    iou = iou_matrix(a, b)
    a, b = a[:, None, :].astype(np.float64), b[None, :, :].astype(np.float64)
    ca = ((a[..., 0] + a[..., 2]) / 2, (a[..., 1] + a[..., 3]) / 2)
    cb = ((b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2)
    a_in_b = (b[..., 0] <= ca[0]) & (ca[0] <= b[..., 2]) & (b[..., 1] <= ca[1]) & (ca[1] <= b[..., 3])
    b_in_a = (a[..., 0] <= cb[0]) & (cb[0] <= a[..., 2]) & (a[..., 1] <= cb[1]) & (cb[1] <= a[..., 3])
    return (iou >= 0.5) | (a_in_b & b_in_a)


@dataclass
class TrackHistory:
    """What is known of one track over its life; the rules judge a track by this, not by a frame.

    `born_s` is its first sighting: the tracker's first match, or earlier where the detector boxed
    it at the same spot before the tracker trusted it. `excursion` is the furthest its centre has
    been from where it was born, in its own box diagonals (0 for a car parked all along)."""

    track_id: int
    class_name: str
    born_s: float
    born_frame: int
    origin: Box
    box: Box
    last_s: float
    frames: int = 0
    score_sum: float = 0.0
    excursion: float = 0.0
    longest_absence_s: float = 0.0  # the longest time between two of its sightings
    arrived: bool = False  # it drove up to where it was born (TrackBook._drove_up)

    @property
    def mean_score(self) -> float:
        return self.score_sum / self.frames if self.frames else 0.0

    def stood_since_birth(self, max_move_ratio: float, max_absence_s: float) -> bool:
        """Seen at its birthplace all along: it never moved further than `max_move_ratio` diagonals
        and was never out of sight longer than `max_absence_s`."""
        return self.excursion <= max_move_ratio and self.longest_absence_s <= max_absence_s

    def observe(self, box: Box, score: float, t: float) -> None:
        self.longest_absence_s = max(self.longest_absence_s, t - self.last_s)
        self.box, self.last_s = box, t
        self.frames += 1
        self.score_sum += score
        self.excursion = max(self.excursion, math.dist(centre(box), centre(self.origin)) / diagonal(self.origin))


@dataclass(frozen=True)
class _Seen:
    t: float
    seq: int
    classes: list[str]
    boxes: np.ndarray  # (N, 4) float32
    tracked: np.ndarray  # (N,) bool
    moving: np.ndarray  # (N,) bool


class TrackBook:
    """What one camera has seen lately, kept from the tracker's output (tracked and untracked
    detections alike), so that rules read a track's life and its surroundings instead of one frame.

    - A track enters the book when it gets its id; its birth is dated back through the untracked
      sightings of the same class at the same spot before it (ByteTrack starts a track only from a
      confident box and activates it after several frames, so a far car boxed at 0.2 from the first
      frame got its id, and its dwell clock, seconds late). It leaves `forget_s` after it was last seen.
    - Each detection of the latest frame is judged standing or moving (`standing`, `moving`) from
      the boxes of the last seconds, tracked or not: at 2 fps a car driving past is a new untracked
      box on every frame, which no tracker can follow."""

    def __init__(self, forget_s: float, *, sighting_gap_s: float = 3.0):
        self.forget_s = forget_s
        self.sighting_gap_s = sighting_gap_s
        self.tracks: dict[int, TrackHistory] = {}
        self._seen: deque[_Seen] = deque()
        self._last_picture_s = -math.inf
        self.standing: np.ndarray = np.zeros(0, dtype=bool)  # per detection of the latest frame (also in det.data)
        self.moving: np.ndarray = np.zeros(0, dtype=bool)  # neither: not judged yet (no frames old enough)

    def get(self, track_id: int) -> TrackHistory | None:
        return self.tracks.get(track_id)

    def update(self, det: sv.Detections, t: float, frame_seq: int) -> bool:
        """Record one analysed frame. True when it holds a sighting that may later date a track's
        birth (a new untracked box): the caller keeps its picture for the first-sighting evidence."""
        tids = track_ids(det)
        names = det.data.get("class_name", np.array([""] * len(det), dtype=object))
        for i in np.flatnonzero(tids >= 0):
            tid = int(tids[i])
            x1, y1, x2, y2 = (float(v) for v in det.xyxy[i])
            box = (x1, y1, x2, y2)
            h = self.tracks.get(tid)
            if h is None:
                born_s, born_frame = self._first_sighting(str(names[i]), box, t)
                h = self.tracks[tid] = TrackHistory(
                    tid,
                    str(names[i]),
                    born_s,
                    born_frame if born_s < t else frame_seq,
                    box,
                    box,
                    t,
                    arrived=self._drove_up(str(names[i]), box, born_s),
                )
            h.observe(box, float(det.confidence[i]) if det.confidence is not None else 1.0, t)
        for tid in [k for k, h in self.tracks.items() if t - h.last_s > self.forget_s]:
            del self.tracks[tid]
        keep = np.arange(min(len(det), SIGHTINGS_PER_FRAME))
        boxes = det.xyxy[keep].astype(np.float32) if len(det) else np.zeros((0, 4), dtype=np.float32)
        self._judge(det.xyxy.astype(np.float32) if len(det) else np.zeros((0, 4), dtype=np.float32), t)
        # Carried with the detections, so a subset taken later (sv.Detections indexing) stays aligned.
        det.data["standing"], det.data["moving"] = self.standing, self.moving
        now = _Seen(t, frame_seq, [str(names[i]) for i in keep], boxes, tids[keep] >= 0, self.moving[keep])
        new = False
        loose = ~now.tracked
        if loose.any() and t - self._last_picture_s >= SIGHTING_PICTURE_EVERY_S:
            prev = self._seen[-1] if self._seen else None
            before = prev.boxes[~prev.tracked] if prev is not None else np.zeros((0, 4), dtype=np.float32)
            new = bool((~same_place_matrix(boxes[loose], before).any(axis=1)).any())
            if new:
                self._last_picture_s = t
        self._seen.append(now)
        while self._seen and t - self._seen[0].t > SIGHTINGS_KEPT_S:
            self._seen.popleft()
        return new

    def boxes_at(self, t: float) -> np.ndarray:
        """Every box of the frame analysed at stream time `t` (empty if it is no longer kept)."""
        for seen in reversed(self._seen):
            if seen.t == t:
                return seen.boxes
            if seen.t < t:
                break
        return np.zeros((0, 4), dtype=np.float32)

    def _judge(self, boxes: np.ndarray, t: float) -> None:
        window = [s for s in self._seen if t - STAND_LOOKBACK_S <= s.t <= t - STAND_MIN_AGE_S]
        n = len(boxes)
        if not window:
            self.standing, self.moving = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
            return
        before = np.concatenate([s.boxes for s in window])
        # (N, M) -> (N,): an array, not the scalar numpy's stubs also allow for any()
        self.standing = cast(np.ndarray, same_place_matrix(boxes, before).any(axis=1)) if n else np.zeros(0, dtype=bool)
        self.moving = ~self.standing

    def _drove_up(self, class_name: str, box: Box, born_s: float) -> bool:
        """Whether a box of its class moved next to where it was born just before: it drove up and
        stopped (at 2 fps a car that drives is a new untracked box on every frame; only once it
        stands does the tracker give it an id)."""
        for seen in reversed(self._seen):
            if seen.t >= born_s:
                continue
            if born_s - seen.t > STAND_LOOKBACK_S:
                break
            for c, b, moving in zip(seen.classes, seen.boxes, seen.moving, strict=False):
                if moving and c == class_name and near(box, tuple(float(v) for v in b)):  # type: ignore[arg-type]
                    return True
        return False

    def _first_sighting(self, class_name: str, box: Box, t: float) -> tuple[float, int]:
        first_t, first_seq = t, -1
        here = np.array([box], dtype=np.float32)
        for seen in reversed(self._seen):
            if seen.t >= t:
                continue
            loose = [i for i, c in enumerate(seen.classes) if c == class_name and not seen.tracked[i]]
            # Stricter than same_place (no centre-containment allowance): a far car driving head-on
            # towards the camera stays within its own box for seconds, but its box grows.
            if loose and (iou_matrix(here, seen.boxes[loose]) >= BIRTH_IOU).any():
                first_t, first_seq = seen.t, seen.seq
            elif first_t - seen.t > self.sighting_gap_s:
                break
        return first_t, first_seq
