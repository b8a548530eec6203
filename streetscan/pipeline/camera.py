"""One camera's analysis after detection: track -> rules -> events -> evidence -> sinks."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import supervision as sv

from .catalogue import CATALOGUE
from .config import CameraConfig, StreamsConfig
from .events import Event, EventDeduplicator
from .evidence import EvidenceWriter, SnapshotStore
from .frames import Frame
from .models import ModelCard
from .rules import RuleSet
from .sinks import CaseSink
from .track import ObjectTracker, TrackerSettings

log = logging.getLogger(__name__)


class CameraPipeline:
    def __init__(self, config: StreamsConfig, camera: CameraConfig, card: ModelCard, *,
                 wall: Callable[[float], datetime], source: str, out_dir: Path, sinks: Sequence[CaseSink]):
        self.camera = camera
        tracking = config.tracking(camera)
        self.tracker = ObjectTracker(config.analysis_fps(camera), TrackerSettings.resolve(
            card.thresholds, lost_s=tracking.lost_s or config.defaults.event.resolve_grace_s,
            high=tracking.high, activate=tracking.activate, min_frames=tracking.min_frames))
        self.rules = RuleSet.build(config, camera, card.objects, card.thresholds)
        self.dedup = EventDeduplicator(camera, config.defaults.event, wall=wall, model_name=card.name,
                                       model_version=card.version, source=source)
        self.snapshots = SnapshotStore()
        self.evidence = EvidenceWriter(out_dir)
        self.sinks = list(sinks)
        self._evidence_by_event: dict[str, dict[str, str]] = {}
        self.counts: Counter[tuple[str, str]] = Counter()  # (scene class, state) -> events emitted

    def process(self, frame: Frame, detections: sv.Detections, wall: datetime) -> list[Event]:
        """`detections` are in camera pixels (crops.FrameDetector)."""
        tracked = self.tracker.update(detections, frame.pts_s)
        violations = self.rules.update(tracked, frame.pts_s, wall, frame.seq)
        if self.rules.episode_started:
            self.snapshots.keep(frame.seq, frame.full_image())
        events = [self._with_evidence(ev, frame) for ev in self.dedup.update(violations, frame.pts_s)]
        for ev in events:
            payload = ev.to_dict()
            for sink in self.sinks:
                sink.emit(payload)
            self.counts[(ev.violation.scene_class, ev.state)] += 1
            log.info("%s %s %s zone=%s id=%s", self.camera.id, ev.state, ev.violation.scene_class,
                     ev.violation.zone_id, ev.event_id)
        return events

    def snapshot(self) -> dict:
        """What must outlive a restart: open events and the evidence they point to."""
        return {"dedup": self.dedup.snapshot(), "evidence": self._evidence_by_event}

    @staticmethod
    def evidence_in(state: dict) -> set[str]:
        """Events of a saved snapshot whose evidence is still referenced (open events)."""
        return set(state.get("evidence", {}))

    def restore(self, state: dict, t: float) -> int:
        restored = self.dedup.restore(state.get("dedup", {}), t, self.rules.confirm_s)
        open_ids = {rec.event.event_id for rec in self.dedup.open.values()}
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
