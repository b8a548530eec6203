"""One camera's analysis after detection: track -> rules -> events -> evidence.

It returns the frame's events; where they go (the spool, then the sinks) is the runner's job.
"""

from __future__ import annotations

import logging
import math
import queue
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from .catalogue import CATALOGUE
from .clock import StreamClock
from .config import Camera
from .duty import DeadlineWatch
from .events import Event, EventDeduplicator
from .evidence import CameraPicture, EvidenceWriter, SnapshotStore
from .frames import Frame
from .models import ModelCard
from .motion import GateSettings, MotionGate
from .plan import CameraPlan
from .rules import RuleSet, rule_kind
from .scene import SceneModel
from .track import SIGHTING_PICTURE_EVERY_S, ObjectTracker
from .verify import VerificationRequest, ZoneCheck
from .zones import FrameZones

log = logging.getLogger(__name__)


class CameraAnalysis:
    def __init__(self, camera: Camera, card: ModelCard, *, clock: StreamClock, source: str, out_dir: Path):
        self.camera = camera
        self.clock = clock
        self.plan = CameraPlan.for_model(camera, card)
        self.tracker = ObjectTracker(camera.analysis_fps, self.plan.tracker)
        self.rules = RuleSet.of(self.plan)
        # Only where a rule finds objects without the model (detector: scene_change).
        self.scene = SceneModel() if self.plan.needs_scene else None
        self.gate = self._gate(camera) if camera.detection.motion_gating else None
        self._last_tracked = sv.Detections.empty()  # kept for frames the gate did not send to the detector
        self.frames_not_detected = 0
        self.dedup = EventDeduplicator(
            camera, clock=clock, model_name=card.name, model_version=card.version, source=source
        )
        self.snapshots = SnapshotStore()
        self.evidence = EvidenceWriter(out_dir, {z.id: z.polygon for z in camera.zones})
        self._evidence_by_event: dict[str, dict[str, str]] = {}
        self.picture = CameraPicture(out_dir, camera.id)
        self.counts: Counter[tuple[str, str]] = Counter()  # (scene class, state) -> events emitted
        # Verification requests (核查) for this camera, handed over from other threads.
        self._incoming: queue.SimpleQueue[ZoneCheck] = queue.SimpleQueue()
        self.checks: list[ZoneCheck] = []
        self._answers: list[Event] = []
        self.on_answer: Callable[[ZoneCheck, Event], None] | None = None
        self.on_frame: Callable[[float, datetime], None] | None = None  # replay: requests due at stream time
        self.deadlines = DeadlineWatch(camera.deadline_checks)  # cases waiting for their deadline check

    def process(self, frame: Frame, detections: sv.Detections | None) -> list[Event]:
        """`detections` are in camera pixels (crops.FrameDetector); None for a frame the motion gate
        kept from the detector: nothing moved where the rules look, so what stood still stands
        still and the last detections hold (tracks, dwell clocks and cases carry on). Verification
        answers this frame completed are taken with `take_answers()`."""
        if self.on_frame is not None:
            self.on_frame(frame.pts_s, self.clock.wall(frame.pts_s))
        if self.picture.due(frame.pts_s):
            try:
                self.picture.write(frame.pts_s, frame.full_image())
            except OSError as exc:  # a full disk costs the console its picture, not the analysis
                log.warning("%s: snapshot not written: %s", self.camera.id, exc, extra={"camera": self.camera.id})
        if detections is None:
            tracked = self._last_tracked
            if len(tracked):  # nothing moved where the rules look: nothing near them drives past
                tracked.data["moving"] = np.zeros(len(tracked), dtype=bool)
            self.frames_not_detected += 1
        else:
            tracked = self._last_tracked = self.tracker.update(detections, frame.pts_s)
        scene = None
        if self.scene is not None:
            scene = self.scene.update(
                frame.image, frame.pts_s, frame.source_size, self._known_objects(tracked), self._held()
            )
        where = self.rules.zones.frame(tracked, scene)
        step = self.rules.update(tracked, frame.pts_s, self.clock.wall(frame.pts_s), frame.seq, where)
        if step.episode_started:
            self.snapshots.keep(frame.seq, frame.full_image())
        events = [self._with_evidence(ev, frame) for ev in self.dedup.update(step.violations, frame.pts_s)]
        for ev in events:
            self.deadlines.saw(ev)
            self.counts[(ev.violation.scene_class, ev.state)] += 1
            log.info(
                "%s %s %s zone=%s id=%s",
                self.camera.id,
                ev.state,
                ev.violation.scene_class,
                ev.violation.zone_id,
                ev.event_id,
                extra={"camera": self.camera.id},
            )
        self._check(frame, tracked, where, detected=detections is not None)
        return events

    # -- verification on request ------------------------------------------------------------
    def check(self, zc: ZoneCheck) -> None:
        """Look for `zc`'s violation on the next analysed frames (any thread may call this)."""
        self._incoming.put(zc)
        if self.gate is not None:
            self.gate.request()

    def cancel(self, request_id: str) -> None:
        self._incoming.put(ZoneCheck.cancelled(request_id))

    def take_answers(self) -> list[Event]:
        out, self._answers = self._answers, []
        return out

    def _check(self, frame: Frame, det: sv.Detections, where: FrameZones, *, detected: bool) -> None:
        now = self.clock.wall(frame.pts_s)
        for due in self.deadlines.due(now.timestamp()):
            request = VerificationRequest(f"deadline:{due.attempt + 1}", due.event.event_id, now)
            self.checks.append(ZoneCheck(request, due.event, at_deadline=True))
        while not self._incoming.empty():
            zc = self._incoming.get()
            if zc.is_cancel:
                self.checks = [c for c in self.checks if c.request.request_id != zc.request.request_id]
            else:
                self.checks.append(zc)
        if self.checks and self.gate is not None:
            self.gate.request()  # a check looks at detected frames only: keep them coming
        if not detected:
            return
        finished = []
        for zc in self.checks:
            zc.look(self.plan, det, where)
            if zc.done:
                finished.append(zc)
        for zc in finished:
            self.checks.remove(zc)
            event_id = zc.case.event_id
            revision = self.dedup.answer_revision(event_id, zc.case.revision)
            wall = self.clock.wall(frame.pts_s)
            evidence = self.evidence.write_check(event_id, zc, frame.full_image(), wall)
            answer = zc.answer(revision, frame.pts_s, wall, evidence)
            self.counts[(answer.violation.scene_class, answer.state)] += 1
            log.info(
                "%s %s %s id=%s request=%s",
                self.camera.id,
                answer.state,
                answer.violation.scene_class,
                event_id,
                zc.request.request_id,
                extra={"camera": self.camera.id},
            )
            self._answers.append(answer)
            self.deadlines.saw(answer)
            if self.on_answer is not None and not zc.at_deadline:  # the desk answers requests, not deadlines
                self.on_answer(zc, answer)

    def snapshot(self) -> dict:
        """What must outlive a restart: open events, the evidence they point to, and the cases
        waiting for their deadline check."""
        return {
            "dedup": self.dedup.snapshot(),
            "evidence": self._evidence_by_event,
            "deadlines": self.deadlines.snapshot(),
        }

    def restore(self, state: dict, t: float, known_event: Callable[[str], Event | None] = lambda _: None) -> int:
        """Reload what `snapshot` saved; `known_event`: a case's newest revision (the spool's), for
        the cases waiting for their deadline check."""
        restored = self.dedup.restore(state.get("dedup", {}), t, self.rules.confirm_s)
        zones = {z.id for z in self.camera.zones}  # a zone removed while the daemon was down has no place to check

        def here(event_id: str) -> Event | None:
            event = known_event(event_id)
            return event if event is not None and event.violation.zone_id in zones else None

        self.deadlines.restore(state.get("deadlines", []), here)
        open_ids = {rec.event_id for rec in self.dedup.open.values()}
        self._evidence_by_event = {k: v for k, v in state.get("evidence", {}).items() if k in open_ids}
        return restored

    def _with_evidence(self, ev: Event, frame: Frame) -> Event:
        if ev.state == "opened":
            v = ev.violation
            first = None
            rule = self.plan.rule(v.zone_id, v.scene_class)
            kind = rule.kind if rule else rule_kind(CATALOGUE[v.scene_class].rule)
            if kind.needs_scene and self.scene is not None:
                first = self._reference_picture(ev, frame)  # the empty scene, the region boxed on it
            elif kind.first_frame_evidence and v.first_seen_frame != frame.seq:
                # The first sighting's own picture, or one taken within a picture interval of it; an
                # older store may have let it go, and then there is no first picture, not a later one.
                near = v.first_seen_frame + math.ceil(SIGHTING_PICTURE_EVERY_S * self.camera.analysis_fps) + 1
                first = self.snapshots.first_from(v.first_seen_frame, min(frame.seq - 1, near))
            picture = frame.full_image()
            note = frame.picture_note() if frame.picture_note else None
            self._evidence_by_event[ev.event_id] = self.evidence.write(ev, picture, first, note)
        files = self._evidence_by_event.get(ev.event_id, {})
        if ev.state == "resolved":
            self._evidence_by_event.pop(ev.event_id, None)
        return replace(ev, evidence=files)

    def _gate(self, camera: Camera) -> MotionGate:
        """Watched: the zones with a rule; frames with motion elsewhere need no detection."""
        zones = {r.zone.id: r.zone.polygon for r in self.plan.rules}
        recheck = camera.detection.recheck_s
        phase = zlib.crc32(camera.id.encode()) / 2**32  # fixed per camera: a restart keeps its re-check times apart
        return MotionGate(list(zones.values()), GateSettings(recheck_s=recheck) if recheck else None, phase)

    def _held(self) -> np.ndarray:
        """Boxes of the scene-change cases still open or waiting for a deadline check: the scene model
        must not take them into the empty scene while someone is answerable for them."""
        boxes = [rec.violation.objects[0].box for rec in self.dedup.open.values()
                 if rec.violation.detector == "scene_change" and rec.violation.objects]  # fmt: skip
        boxes += [p.event.violation.objects[0].box for p in self.deadlines.pending.values()
                  if p.event.violation.detector == "scene_change" and p.event.violation.objects]  # fmt: skip
        return np.array(boxes, dtype=np.float32).reshape(-1, 4)

    def _known_objects(self, tracked: sv.Detections) -> np.ndarray:
        """Boxes of what the detector is sure of on this frame (the card's track_activate, the score
        that may start a track). Fainter boxes are guesses, a track's included: a COCO model boxes a
        garbage pile as a 0.1 'truck', and PETS 2006's left rucksack as a 0.1-0.28 'person', onto
        which the track of the man who put it down carried on, hiding the bag for good. The scene
        model keeps a cell known for `known_hold_s` after its last sure box, which bridges the frames
        where a real person or car scores low."""
        if len(tracked) == 0:
            return np.zeros((0, 4), dtype=np.float32)
        assert tracked.confidence is not None  # every detector scores its boxes
        return tracked.xyxy[tracked.confidence >= self.plan.tracker.activate]

    def _reference_picture(self, ev: Event, frame: Frame) -> bytes | None:
        assert self.scene is not None
        reference = self.scene.reference()
        if reference is None:
            return None
        return self.evidence.reference(ev, cv2.resize(reference, (frame.width, frame.height)))


def evidence_in(state: dict) -> set[str]:
    """Events of a saved camera state (CameraAnalysis.snapshot) whose evidence is still referenced."""
    return set(state.get("evidence", {}))
