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

import supervision as sv

from ..infra.loop import Worker
from ..infra.metrics import Metrics
from ..pipeline.crops import FrameDetector
from .handoff import Handoff, LiveFrame

log = logging.getLogger(__name__)

Batch = list[tuple[LiveFrame, sv.Detections]]


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
    ):
        self.detector = detector
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
            try:
                t0 = time.perf_counter()
                detections = self.detector.detect([lf.frame for lf in batch], [lf.crops for lf in batch])
                elapsed = time.perf_counter() - t0
            except Exception:
                # A bad frame must not end the worker: its batch is lost (counted as drops), the next one runs.
                log.exception("inference failed on a batch of %d; frames dropped", len(batch))
                for lf in batch:
                    self.metrics.frames_dropped.labels(lf.camera_id).inc()
                continue
            self.metrics.batch_size.labels(self.name).observe(len(batch))
            self.metrics.inference_latency.labels(self.name).observe(elapsed)
            self._hand_on(list(zip(batch, detections, strict=False)))
        self._hand_on(None)

    def _hand_on(self, item: Batch | None) -> None:
        while True:
            try:
                self.out.put(item, timeout=0.5)
                return
            except queue.Full:
                self.beat()  # blocked by analysis, not dead
