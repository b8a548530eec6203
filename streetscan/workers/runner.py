"""The one way StreetScan runs the pipeline, live or replayed:

    readers (one per camera) -> hand-off -> BatchedInference -> analysis queue -> AnalysisWorker
        (track, rules, events, evidence) -> EventSpool (durable outbox) -> EventEmitter -> sinks

`streetscan run` (workers/daemon.py) configures it with StreamReaders and a newest-frame-wins
FrameBoard; `streetscan replay` (workers/replay.py) with a RecordingReader and a blocking
FrameQueue, so every sampled frame is analysed. Both commit events to a spool and deliver them
through the emitter: at-least-once delivery and the same metrics in both modes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..delivery.emitter import EventEmitter
from ..delivery.sinks import CaseSink
from ..delivery.spool import EventSpool
from ..infra.loop import Worker
from ..infra.metrics import Metrics
from ..pipeline.camera import CameraAnalysis
from ..pipeline.clock import StreamClock
from ..pipeline.config import Camera
from ..pipeline.crops import FrameDetector
from ..pipeline.detect import Detector
from ..pipeline.motion import MotionGate
from .analysis import AnalysisWorker
from .handoff import Handoff
from .inference import BatchedInference

log = logging.getLogger(__name__)


class CameraReader(Protocol):
    """What the runner and the probes use of a camera's reader: a StreamReader or RecordingReader
    (Workers), or a RemoteReader standing in for one in a reader process."""

    last_frame_at: float | None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> bool: ...

    @property
    def alive(self) -> bool: ...


# Builds a camera's reader for the runner's hand-off: (camera, generation) -> reader, or None
# for a camera that reads nothing (disabled).
ReaderFactory = Callable[[Camera, int], CameraReader | None]


@dataclass(frozen=True)
class RunnerOptions:
    out_dir: Path  # evidence/ goes here
    spool_path: Path
    max_batch: int = 8
    max_wait_ms: float = 20.0
    analysis_queue: int = 2  # batches between inference and analysis
    restore_state: bool = True  # continue a camera's open events from the spool (live restarts)
    record_events: bool = False  # keep committed events in memory per camera (replay's report)


@dataclass
class CameraSlot:
    camera: Camera
    generation: int  # the camera's (re)start count: frames of an older generation are discarded
    analysis: CameraAnalysis
    reader: CameraReader | None


class Runner:
    def __init__(
        self,
        detector: Detector,
        handoff: Handoff,
        sinks: Sequence[CaseSink],
        options: RunnerOptions,
        metrics: Metrics | None = None,
    ):
        self.card = detector.card
        self.options = options
        self.metrics = metrics or Metrics()
        self.handoff = handoff
        self.spool = EventSpool(options.spool_path, [s.name for s in sinks])
        self.analysis_queue: queue.Queue = queue.Queue(maxsize=options.analysis_queue)
        self.inference = BatchedInference(
            FrameDetector(detector),
            handoff,
            self.analysis_queue,
            self.metrics,
            max_batch=options.max_batch,
            max_wait_ms=options.max_wait_ms,
            gate_for=self._gate_for,
        )
        self.analysis = AnalysisWorker(
            self.analysis_queue, self._analysis_for, self.spool, self.metrics, record=options.record_events
        )
        self.emitter = EventEmitter(self.spool, sinks, self.metrics)
        # Live stream time is Unix seconds advanced by the monotonic clock from here (StreamReader).
        self.epoch = (time.time(), time.monotonic())
        self._slots: dict[str, CameraSlot] = {}
        self._lock = threading.Lock()
        self._generation = 0
        # Called with each camera's new analysis before its reader starts (the verification desk).
        self.camera_hooks: list[Callable[[CameraAnalysis], None]] = []

    # -- cameras ------------------------------------------------------------------------------
    def _analysis_for(self, camera_id: str, generation: int) -> CameraAnalysis | None:
        slot = self.slot(camera_id)
        return slot.analysis if slot is not None and slot.generation == generation else None

    def _gate_for(self, camera_id: str, generation: int) -> MotionGate | None:
        analysis = self._analysis_for(camera_id, generation)
        return analysis.gate if analysis is not None else None

    def slot(self, camera_id: str) -> CameraSlot | None:
        with self._lock:
            return self._slots.get(camera_id)

    def slots(self) -> dict[str, CameraSlot]:
        with self._lock:
            return dict(self._slots)

    def add(self, camera: Camera, *, clock: StreamClock, source: str, reader: ReaderFactory) -> CameraSlot:
        """Start analysing a camera: its analysis (open events restored when the options say so),
        then its reader."""
        self._generation += 1
        analysis = CameraAnalysis(camera, self.card, clock=clock, source=source, out_dir=self.options.out_dir)
        state = self.spool.load_state(camera.id) if self.options.restore_state else None
        if state:
            now_t = self.epoch[0] + (time.monotonic() - self.epoch[1])
            n = analysis.restore(state, now_t, self.spool.known_event)
            if n:
                log.info("%s: %d open event(s) restored", camera.id, n, extra={"camera": camera.id})
        for hook in self.camera_hooks:
            hook(analysis)
        slot = CameraSlot(camera, self._generation, analysis, reader(camera, self._generation))
        with self._lock:
            self._slots[camera.id] = slot
        if slot.reader:
            self.handoff.add(camera.id)
            slot.reader.start()
        return slot

    def remove(self, camera_id: str, *, forget_metrics: bool) -> None:
        with self._lock:
            slot = self._slots.pop(camera_id, None)
        if slot is None:
            return
        self.handoff.remove(camera_id)
        if slot.reader:
            slot.reader.stop()
            if not slot.reader.join(timeout=2.0):
                # Blocked in a network read: it ends at its read timeout; its frames are discarded.
                log.info("%s: reader still closing its connection", camera_id, extra={"camera": camera_id})
        self.analysis.forget(camera_id)
        if forget_metrics:
            self.metrics.forget_camera(camera_id)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.emitter.start()
        self.analysis.start()
        self.inference.start()

    def loops(self) -> dict[str, Worker]:
        return {"inference": self.inference, "analysis": self.analysis, "emitter": self.emitter}

    def stop(self, deadline: float) -> tuple[bool, int]:
        """Stop the readers (a replay's has already read to the end), analyse the frames already
        read, deliver what the sinks take before `deadline` (monotonic), close the spool.
        Returns (every read frame analysed, events left in the spool for the next start)."""
        readers = [s.reader for s in self.slots().values() if s.reader]
        for r in readers:
            r.stop()
        for r in readers:
            r.join(timeout=max(0.1, min(3.0, deadline - time.monotonic())))
        self.inference.stop(drain=True)
        drained = self.inference.join(timeout=max(0.1, deadline - time.monotonic() - 2))
        drained = self.analysis.join(timeout=max(0.1, deadline - time.monotonic() - 2)) and drained
        self.emitter.stop()
        self.emitter.join(timeout=max(0.1, deadline - time.monotonic() - 1))
        left = self.emitter.flush(deadline)
        self.spool.close()
        return drained, left
