"""What every rule kind shares: its typed parameters, the violations it reports, its episodes.

A rule kind is a `ZoneRule` subclass with a pydantic `Params` model; `registry.RULE_KINDS` lists
the kinds, and catalogue.py names one per scene class. The plan (plan.py) resolves each camera's
parameters once, so a rule reads typed, final values and works out nothing again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import supervision as sv
from pydantic import BaseModel, ConfigDict, Field

from ..track import TrackBook, track_ids

if TYPE_CHECKING:
    from ..catalogue import SceneClass
    from ..config import ZoneConfig
    from ..zones import FrameZones

Box = tuple[float, float, float, float]

# How many movers a queue-aware dwell episode keeps to judge (rules.dwell): at 2 fps and a few movers
# a frame, 3 s of them (SETTLE_S) with room to spare.
MOVERS_KEPT = 64


class RuleParams(BaseModel):
    """Parameters every rule kind takes; streams.yaml's `rules:` may set any of them per scene class."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    enabled: bool = True
    # None: the model card's calibrated threshold for the class (models.Thresholds), set by the plan.
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    # Missing detections shorter than this do not break a dwell/presence episode.
    gap_s: float = Field(default=10.0, ge=0)
    # What finds the class's objects: the model, or the camera's scene model (rules.scene_change).
    detector: Literal["model", "scene_change"] = "model"


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
    detector: str = "model"  # what found it: the model, or the scene model (scene_change: class unknown)


@dataclass(frozen=True)
class RuleStep:
    """What the rules made of one frame: the violations that hold on it, and whether an episode
    began on it (its picture is then kept for the before/after evidence)."""

    violations: list[Violation]
    episode_started: bool


@dataclass
class Episode:
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
            camera_id=rule.camera_id,
            zone_id=rule.zone.id,
            scene_class=rule.scene.code,
            key=self.key,
            first_seen_s=self.start_s,
            confirmed_s=self.confirmed_s or self.last_s,
            last_seen_s=self.last_s,
            confidence=max((o.confidence for o in self.objects), default=0.0),
            objects=self.objects,
            first_seen_frame=self.first_frame,
            detector=rule.params.detector,
        )


def observed(det: sv.Detections, idx) -> tuple[ObservedObject, ...]:
    tids = track_ids(det)
    confidence = det.confidence
    assert confidence is not None  # detectors score every box (make_detections, Detections.empty)
    return tuple(
        ObservedObject(
            str(det.data["class_name"][i]),
            box_of(det, i),
            float(confidence[i]),
            int(tids[i]) if tids[i] >= 0 else None,
        )
        for i in idx
    )


def box_of(det: sv.Detections, i: int) -> Box:
    x1, y1, x2, y2 = (float(v) for v in det.xyxy[i])
    return (x1, y1, x2, y2)


class ZoneRule:
    """One scene class in one zone of one camera.

    A kind says, beside its parameters, what the rest of the pipeline must know of it:
    `time_key`     the parameter that says how long a violation must hold (grade-scaled by default)
    `first_frame_evidence`  its cases show the first sighting beside the confirming frame
    `same_object_only`      a verification looks for the case's own object at its place, not any
                            object of the class in the zone (a car parked beside it is a new case)
    `needs_scene`           it reads the camera's scene model, not the model's detections
    """

    kind: ClassVar[str]
    Params: ClassVar[type[RuleParams]]
    time_key: ClassVar[str]
    first_frame_evidence: ClassVar[bool] = False
    same_object_only: ClassVar[bool] = False
    # Finds its objects without the model (the scene model's static foreground): it needs no model
    # class for its scene class, and the camera keeps a scene model for it.
    needs_scene: ClassVar[bool] = False

    def __init__(
        self,
        scene: SceneClass,
        zone: ZoneConfig,
        params: RuleParams,
        camera_id: str,
        *,
        min_confidence: float,
        confirmed_gap_s: float,
    ):
        self.scene = scene
        self.zone = zone
        self.params = params
        self.camera_id = camera_id
        self.min_confidence = min_confidence
        self.gap_s = params.gap_s
        # Once confirmed, a violation survives absences up to the event's resolve grace: a parked car
        # hidden by a bus for 30 s is the same case when it reappears, not a new dwell from zero.
        self.confirmed_gap_s = max(self.gap_s, confirmed_gap_s)

    @property
    def confirm_s(self) -> float:
        """How long a violation must hold before it is reported."""
        return float(getattr(self.params, self.time_key))

    def counts(self, det: sv.Detections, book: TrackBook) -> np.ndarray:
        """Which detections are this rule's objects with enough evidence. A tracked one is judged by
        its track's mean score over its life (a parked car's score swings from frame to frame; a
        bus shelter boxed as `bus` at 0.23-0.34 every frame stays below a 0.3 bar however long it
        stands); an untracked one by its own score."""
        ours = np.isin(det.data["class_name"], self.scene.objects)
        tids = track_ids(det)
        assert det.confidence is not None  # detectors score every box (make_detections, Detections.empty)
        score = det.confidence.astype(float).copy()
        for i in np.flatnonzero(ours & (tids >= 0)):
            h = book.get(int(tids[i]))
            if h is not None:
                score[i] = h.mean_score
        return ours & (score >= self.min_confidence)

    def candidates(self, det: sv.Detections, book: TrackBook, where: FrameZones) -> tuple[np.ndarray, np.ndarray]:
        """(indices of this rule's objects inside the zone, indices of its objects outside it)."""
        if len(det) == 0:
            return np.array([], dtype=int), np.array([], dtype=int)
        ours = self.counts(det, book)
        inside = where.inside(self.zone.id, self.scene)
        return np.flatnonzero(ours & inside), np.flatnonzero(ours & ~inside)

    def _gap(self, ep: Episode) -> float:
        return self.confirmed_gap_s if ep.confirmed_s is not None else self.gap_s

    def update(self, det: sv.Detections, t: float, frame_seq: int, book: TrackBook, where: FrameZones) -> RuleStep:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError
