"""Tracking: ByteTrack (roboflow `trackers`) assigns stable ids so dwell rules can time objects.

Street cameras see the objects that matter (a car parked 80 m away, a stall half behind a bus) at
low confidence. So a track starts from a modest score and is activated by *persistence* (matched
on `min_frames` consecutive analysed frames), low-score detections keep existing tracks alive
(ByteTrack's second stage), and a lost track keeps its id for the event resolve grace, so a parked
car hidden by passing traffic comes back under the same id.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    def resolve(cls, thresholds: Thresholds, *, lost_s: float, high: float | None = None,
                activate: float | None = None, min_frames: int | None = None) -> TrackerSettings:
        """The model card's calibrated values, overridden by whatever the camera sets."""
        high = thresholds.track_high if high is None else high
        activate = thresholds.track_activate if activate is None else activate
        return cls(high=high, activate=min(activate, high),
                   min_frames=thresholds.track_min_frames if min_frames is None else min_frames, lost_s=lost_s)


class ObjectTracker:
    """One camera's tracker. Untracked detections stay in the output with tracker_id -1: the
    persistence and count rules use them, only dwell rules need ids."""

    def __init__(self, analysis_fps: float, settings: TrackerSettings):
        self.settings = settings
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(settings.lost_s * _BUFFER_FPS)), frame_rate=analysis_fps,
            track_activation_threshold=settings.activate, high_conf_det_threshold=settings.high,
            minimum_consecutive_frames=settings.min_frames,
        )

    def update(self, detections: sv.Detections, t: float) -> sv.Detections:
        if len(detections) > 1:
            detections = detections.with_nms(threshold=SAME_OBJECT_IOU, class_agnostic=True)
        out = self._tracker.update(detections, timestamp=t)
        if out.tracker_id is None:
            out.tracker_id = np.full(len(out), -1, dtype=int)
        return out
