"""Analysis: tracker, rules and event lifecycle for each analysed frame, one loop for all cameras.

Frames arrive in batches from inference, in each camera's frame order. A camera's events and its
new open-event state are committed to the outbox together, so a crash leaves both or neither.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..pipeline.camera import CameraAnalysis
from ..service.loop import Worker
from ..service.metrics import Metrics
from .inference import Batch

log = logging.getLogger(__name__)


RATE_WINDOW = 20  # analysed frames the camera's fps is measured over


class Outbox(Protocol):
    def commit(self, camera_id: str, events: list[dict[str, Any]], state: dict[str, Any] | None) -> None: ...


class AnalysisWorker(Worker):
    """`analysis_for(camera_id, generation)`: the camera's analysis, or None when the frame belongs
    to a camera removed or restarted since it was read (its result is then discarded)."""

    def __init__(self, inbox: queue.Queue, analysis_for: Callable[[str, int], CameraAnalysis | None],
                 outbox: Outbox, metrics: Metrics, *, record: bool = False):
        self.inbox = inbox
        self.analysis_for = analysis_for
        self.outbox = outbox
        self.metrics = metrics
        self.last_age: dict[str, float] = {}  # camera -> age of its last analysed frame (s)
        self._recent: dict[str, deque[float]] = {}  # camera -> when its last frames were analysed
        # record: also keep each camera's committed events in memory (a replay reports them; a
        # daemon running for months must not).
        self.recorded: dict[str, list[dict[str, Any]]] | None = {} if record else None
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
                    log.exception("%s: analysis failed on frame %d; skipped", lf.camera_id, lf.frame.seq,
                                  extra={"camera": lf.camera_id})

    def _analyse(self, lf, det) -> None:
        analysis = self.analysis_for(lf.camera_id, lf.generation)
        if analysis is None:
            return
        events = analysis.process(lf.frame, det)
        answers = analysis.take_answers()
        if events or answers:
            payloads = [ev.to_dict() for ev in events] + answers
            self.outbox.commit(lf.camera_id, payloads, analysis.snapshot())
            if self.recorded is not None:
                self.recorded.setdefault(lf.camera_id, []).extend(payloads)
            for p in payloads:
                self.metrics.events.labels(p["scene_class"]["code"], p["state"]).inc()
        self.metrics.frames_analysed.labels(lf.camera_id).inc()
        age = time.monotonic() - lf.arrived
        self.metrics.frame_age.observe(age)
        self.last_age[lf.camera_id] = age
        self._recent.setdefault(lf.camera_id, deque(maxlen=RATE_WINDOW)).append(time.monotonic())

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
        self.last_age.pop(camera_id, None)
        self._recent.pop(camera_id, None)
