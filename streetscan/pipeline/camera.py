"""One camera's analysis after detection: track -> rules -> events -> evidence.

It returns the frame's events; where they go (the spool, then the sinks) is the runner's job.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path

import supervision as sv

from .catalogue import CATALOGUE
from .clock import StreamClock
from .config import Camera
from .events import Event, EventDeduplicator
from .evidence import CameraPicture, EvidenceWriter, SnapshotStore
from .frames import Frame
from .models import ModelCard
from .rules import RuleSet
from .track import ObjectTracker, TrackerSettings

log = logging.getLogger(__name__)


class CameraAnalysis:
    def __init__(self, camera: Camera, card: ModelCard, *, clock: StreamClock, source: str, out_dir: Path):
        self.camera = camera
        self.clock = clock
        tracking = camera.tracking
        self.tracker = ObjectTracker(camera.analysis_fps, TrackerSettings.resolve(
            card.thresholds, lost_s=tracking.lost_s or camera.event.resolve_grace_s,
            high=tracking.high, activate=tracking.activate, min_frames=tracking.min_frames))
        self.rules = RuleSet.build(camera, card.objects, card.thresholds)
        self.dedup = EventDeduplicator(camera, clock=clock, model_name=card.name, model_version=card.version,
                                       source=source)
        self.snapshots = SnapshotStore()
        self.evidence = EvidenceWriter(out_dir, {z.id: z.polygon for z in camera.zones})
        self._evidence_by_event: dict[str, dict[str, str]] = {}
        self.picture = CameraPicture(out_dir, camera.id)
        self.counts: Counter[tuple[str, str]] = Counter()  # (scene class, state) -> events emitted

    def process(self, frame: Frame, detections: sv.Detections) -> list[Event]:
        """`detections` are in camera pixels (crops.FrameDetector)."""
        if self.picture.due(frame.pts_s):
            try:
                self.picture.write(frame.pts_s, frame.full_image())
            except OSError as exc:  # a full disk costs the console its picture, not the analysis
                log.warning("%s: snapshot not written: %s", self.camera.id, exc, extra={"camera": self.camera.id})
        tracked = self.tracker.update(detections, frame.pts_s)
        step = self.rules.update(tracked, frame.pts_s, self.clock.wall(frame.pts_s), frame.seq)
        if step.episode_started:
            self.snapshots.keep(frame.seq, frame.full_image())
        events = [self._with_evidence(ev, frame) for ev in self.dedup.update(step.violations, frame.pts_s)]
        for ev in events:
            self.counts[(ev.violation.scene_class, ev.state)] += 1
            log.info("%s %s %s zone=%s id=%s", self.camera.id, ev.state, ev.violation.scene_class,
                     ev.violation.zone_id, ev.event_id, extra={"camera": self.camera.id})
        return events

    def snapshot(self) -> dict:
        """What must outlive a restart: open events and the evidence they point to."""
        return {"dedup": self.dedup.snapshot(), "evidence": self._evidence_by_event}

    def restore(self, state: dict, t: float) -> int:
        restored = self.dedup.restore(state.get("dedup", {}), t, self.rules.confirm_s)
        open_ids = {rec.event_id for rec in self.dedup.open.values()}
        self._evidence_by_event = {k: v for k, v in state.get("evidence", {}).items() if k in open_ids}
        return restored

    def _with_evidence(self, ev: Event, frame: Frame) -> Event:
        if ev.state == "opened":
            v = ev.violation
            first = None
            if CATALOGUE[v.scene_class].rule == "dwell" and v.first_seen_frame != frame.seq:
                first = self.snapshots.get(v.first_seen_frame)
            self._evidence_by_event[ev.event_id] = self.evidence.write(ev, frame.full_image(), first)
        files = self._evidence_by_event.get(ev.event_id, {})
        if ev.state == "resolved":
            self._evidence_by_event.pop(ev.event_id, None)
        return replace(ev, evidence=files)


def evidence_in(state: dict) -> set[str]:
    """Events of a saved camera state (CameraAnalysis.snapshot) whose evidence is still referenced."""
    return set(state.get("evidence", {}))
