"""Tracking: ByteTrack (roboflow `trackers`) assigns stable ids so dwell rules can time objects."""

from __future__ import annotations

import supervision as sv
from trackers import ByteTrackTracker


class ObjectTracker:
    """One camera's tracker. Untracked detections stay in the output with tracker_id -1: the
    persistence and count rules use them, only dwell rules need ids."""

    def __init__(self, analysis_fps: float, lost_track_s: float = 30.0):
        # At 1-2 analysed fps a parked car hidden by a passing bus must survive many frames.
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, int(lost_track_s * analysis_fps)), frame_rate=analysis_fps,
            track_activation_threshold=0.4, high_conf_det_threshold=0.5, minimum_consecutive_frames=2,
        )

    def update(self, detections: sv.Detections, t: float) -> sv.Detections:
        return self._tracker.update(detections, timestamp=t)
