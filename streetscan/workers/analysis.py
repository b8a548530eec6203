"""Analysis: tracker, rules and event lifecycle for each analysed frame, one loop for all cameras.

Frames arrive in batches from inference, in each camera's frame order. A camera's events and its
new open-event state are committed to the outbox together, so a crash leaves both or neither.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..infra.loop import Worker
from ..infra.metrics import Metrics
from ..pipeline.camera import CameraAnalysis
from ..pipeline.events import Event
from .inference import Batch

log = logging.getLogger(__name__)


RATE_WINDOW = 20  # analysed frames the camera's fps is measured over
# Events a camera may hold in memory while the spool cannot be written (a full disk): about 3 kB
# each, so 2,000 is ~6 MB per camera. Past it the camera's frames are not analysed, so no event
# is made that could not be kept; nothing already made is dropped.
MAX_WAITING_EVENTS = 2000


class Outbox(Protocol):
    def commit(self, camera_id: str, events: list[Event], state: dict[str, Any] | None) -> int: ...


class AnalysisWorker(Worker):
    """`analysis_for(camera_id, generation)`: the camera's analysis, or None when the frame belongs
    to a camera removed or restarted since it was read (its result is then discarded)."""

    def __init__(
        self,
        inbox: queue.Queue,
        analysis_for: Callable[[str, int], CameraAnalysis | None],
        outbox: Outbox,
        metrics: Metrics,
        *,
        record: bool = False,
    ):
        self.inbox = inbox
        self.analysis_for = analysis_for
        self.outbox = outbox
        self.metrics = metrics
        self.last_age: dict[str, float] = {}  # camera -> age of its last analysed frame (s)
        self._recent: dict[str, deque[float]] = {}  # camera -> when its last frames were analysed
        # record: also keep each camera's committed events in memory (a replay reports them; a
        # daemon running for months must not).
        self.recorded: dict[str, list[Event]] | None = {} if record else None
        # Per camera: events made but not yet in the spool (its disk was full), oldest first, and why.
        self.waiting: dict[str, deque[list[Event]]] = {}
        self.unsaved: dict[str, str] = {}
        self._repeats_told: set[str] = set()  # cameras whose revisions already in the spool were logged
        super().__init__("analysis")

    def _run(self) -> None:
        while True:
            self.beat()
            try:
                batch: Batch | None = self.inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if batch is None:
                return
            for lf, det in batch:
                try:
                    self._analyse(lf, det)
                except Exception:
                    log.exception(
                        "%s: analysis failed on frame %d; skipped",
                        lf.camera_id,
                        lf.frame.seq,
                        extra={"camera": lf.camera_id},
                    )

    def waiting_events(self, camera_id: str | None = None) -> int:
        """Events made but not yet saved to the spool: of one camera, or of all."""
        queues = [self.waiting.get(camera_id, deque())] if camera_id else list(self.waiting.values())
        return sum(len(batch) for q in queues for batch in q)

    def _analyse(self, lf, det) -> None:
        analysis = self.analysis_for(lf.camera_id, lf.generation)
        if analysis is None:
            return
        if self.waiting_events(lf.camera_id) >= MAX_WAITING_EVENTS:
            self._save(lf.camera_id, [], analysis)  # no room in memory either: only try the disk again
            if self.waiting_events(lf.camera_id) >= MAX_WAITING_EVENTS:
                self.metrics.frames_dropped.labels(lf.camera_id).inc()
                return
        events = analysis.process(lf.frame, det) + analysis.take_answers()
        if events or lf.camera_id in self.waiting:
            self._save(lf.camera_id, events, analysis)
        self.metrics.frames_analysed.labels(lf.camera_id).inc()
        age = time.monotonic() - lf.arrived
        self.metrics.frame_age.observe(age)
        self.last_age[lf.camera_id] = age
        self._recent.setdefault(lf.camera_id, deque(maxlen=RATE_WINDOW)).append(time.monotonic())

    def _save(self, camera_id: str, events: list[Event], analysis: CameraAnalysis) -> None:
        """Commit the camera's events (those still waiting first, in order) with its state. A spool
        that cannot be written (a full disk) is a fault like a sink outage: the events wait here,
        the camera is reported as not saving, and the next frame tries again."""
        queue = self.waiting.setdefault(camera_id, deque())
        if events:
            queue.append(events)
        batch = [ev for part in queue for ev in part]
        try:
            repeated = self.outbox.commit(camera_id, batch, analysis.snapshot())
        except (sqlite3.Error, OSError) as exc:
            self.metrics.spool_write_failures.labels(camera_id).inc()
            if camera_id not in self.unsaved:
                log.error(
                    "%s: events cannot be saved (%s); %d wait in memory and are saved in order once there is room",
                    camera_id,
                    exc,
                    len(batch),
                    extra={"camera": camera_id},
                )
            self.unsaved[camera_id] = f"spool not writable: {exc}; {len(batch)} events waiting in memory"
            return
        del self.waiting[camera_id]
        if repeated and camera_id not in self._repeats_told:
            self._repeats_told.add(camera_id)
            log.warning(
                "%s: %d event revision(s) were already in this output folder's spool (the same footage replayed "
                "into it before?): not sent to the outputs again; the same goes for any more",
                camera_id,
                repeated,
                extra={"camera": camera_id},
            )
        if self.unsaved.pop(camera_id, None) is not None:
            log.info(
                "%s: spool writable again; %d waiting events saved", camera_id, len(batch), extra={"camera": camera_id}
            )
        if self.recorded is not None:
            self.recorded.setdefault(camera_id, []).extend(batch)
        for ev in batch:
            self.metrics.events.labels(ev.violation.scene_class, ev.state).inc()
            unit = ev.responsible.unit if ev.responsible and ev.responsible.unit else ""
            self.metrics.unit_events.labels(unit, ev.state).inc()

    def analysed_fps(self, camera_id: str, now: float | None = None) -> float | None:
        """The camera's analysed frames per second over its last few frames; 0 once it has had
        none for a while, None before it has had two."""
        times = list(self._recent.get(camera_id, ()))
        if len(times) < 2:
            return None
        now = time.monotonic() if now is None else now
        span = times[-1] - times[0]
        if now - times[-1] > max(10.0, 3 * span / (len(times) - 1)):
            return 0.0
        return (len(times) - 1) / span if span > 0 else None

    def forget(self, camera_id: str) -> None:
        """The camera is removed or restarted: its events still waiting for the disk are saved now
        (without its state, which its next generation rebuilds), or their loss is said aloud."""
        self.last_age.pop(camera_id, None)
        queue_ = self.waiting.pop(camera_id, None)
        self.unsaved.pop(camera_id, None)
        if queue_:
            batch = [p for part in queue_ for p in part]
            try:
                self.outbox.commit(camera_id, batch, None)
            except (sqlite3.Error, OSError) as exc:
                log.error(
                    "%s: %d events could not be saved before the camera was %s (%s): they are lost",
                    camera_id,
                    len(batch),
                    "removed or restarted",
                    exc,
                    extra={"camera": camera_id},
                )
        self._recent.pop(camera_id, None)
