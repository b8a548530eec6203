"""Batched inference across cameras: one worker per device, one loop.

It gathers frames from the hand-off (live: the newest frame of each ready camera, round-robin;
replay: the next frames in order), up to `max_batch`, waiting at most `max_wait_ms` for the batch
to fill, runs one detector call, and hands (frame, detections) pairs on to analysis in order.
Decoding never happens on this thread. When analysis is behind, the hand-off to it blocks this
loop: live frames then pile up in the readers' slots one deep and are dropped there, replay
readers wait. Back-pressure never turns into an unbounded queue.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable

import supervision as sv

from ..infra.loop import Worker
from ..infra.metrics import Metrics
from ..pipeline.crops import FrameDetector
from ..pipeline.motion import MotionGate
from .handoff import Handoff, LiveFrame

log = logging.getLogger(__name__)

# A frame and its detections; None for a frame its camera's motion gate kept from the detector.
Batch = list[tuple[LiveFrame, sv.Detections | None]]
# The camera's motion gate, or None (every frame is detected): (camera id, generation) -> gate.
GateLookup = Callable[[str, int], MotionGate | None]


class BatchedInference(Worker):
    def __init__(
        self,
        detector: FrameDetector,
        board: Handoff,
        out: queue.Queue,
        metrics: Metrics,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 20.0,
        name: str = "cpu0",
        gate_for: GateLookup | None = None,
    ):
        self.detector = detector
        self.gate_for = gate_for
        self.board = board
        self.out = out
        self.metrics = metrics
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max_wait_ms / 1000.0
        self.name = name
        self._drain = False
        super().__init__(f"inference-{name}")

    def stop(self, drain: bool = True) -> None:
        """Stop after the frames already waiting in the slots have been analysed (drain)."""
        self._drain = drain
        super().stop()
        self.board.wake()

    def _run(self) -> None:
        while True:
            self.beat()
            stopping = self._stop.is_set()
            if stopping and not (self._drain and self.board.pending()):
                break
            batch = self.board.gather(self.max_batch, 0.0 if stopping else self.max_wait_s)
            if not batch:
                continue
            wanted = [self._wanted(lf) for lf in batch]
            chosen = [lf for lf, w in zip(batch, wanted, strict=True) if w]
            try:
                t0 = time.perf_counter()
                found = self.detector.detect([lf.frame for lf in chosen], [lf.crops for lf in chosen]) if chosen else []
                elapsed = time.perf_counter() - t0
            except Exception:
                # A bad frame must not end the worker: its batch is lost (counted as drops), the next one runs.
                log.exception("inference failed on a batch of %d; frames dropped", len(batch))
                for lf in batch:
                    self.metrics.frames_dropped.labels(lf.camera_id).inc()
                continue
            if chosen:
                self.metrics.batch_size.labels(self.name).observe(len(chosen))
                self.metrics.inference_latency.labels(self.name).observe(elapsed)
            results = iter(found)
            detections = [next(results) if w else None for w in wanted]
            for lf, w in zip(batch, wanted, strict=True):
                if not w:
                    self.metrics.frames_not_detected.labels(lf.camera_id).inc()
            self._hand_on(list(zip(batch, detections, strict=True)))
        self._hand_on(None)

    def _wanted(self, lf: LiveFrame) -> bool:
        """Whether the frame goes to the detector: its camera's gate says so, or it has none."""
        gate = self.gate_for(lf.camera_id, lf.generation) if self.gate_for else None
        if gate is None:
            return True
        try:
            return gate.wants(lf.frame.image, lf.frame.pts_s, lf.frame.source_size)
        except Exception:  # a gate's fault costs a detection, never a frame
            log.exception("%s: motion gate failed; frame detected", lf.camera_id)
            return True

    def _hand_on(self, item: Batch | None) -> None:
        while True:
            try:
                self.out.put(item, timeout=0.5)
                return
            except queue.Full:
                self.beat()  # blocked by analysis, not dead
