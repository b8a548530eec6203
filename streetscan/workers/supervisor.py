"""The live daemon: supervises the stream readers, batched inference, analysis and the emitter.

    readers (one per camera) -> FrameBoard -> BatchedInference -> analysis queue -> AnalysisWorker
        -> EventSpool (durable) -> EventEmitter -> sinks

Each box owns one loop. The supervisor starts and stops them, applies configuration reloads
camera by camera, and answers the health probes. SIGTERM/SIGINT drain and exit; SIGHUP reloads.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from ..pipeline.camera import CameraPipeline
from ..pipeline.config import CameraConfig, ConfigError, StreamsConfig, load_config
from ..pipeline.crops import FrameDetector
from ..pipeline.decode import redact_url
from ..pipeline.detect import Detector
from ..pipeline.metrics import CAMERA_STATES, Metrics, MetricsServer
from ..pipeline.sinks import CaseSink
from ..pipeline.spool import EventSpool
from .emitter import EventEmitter
from .handoff import FrameBoard
from .inference import Batch, BatchedInference
from .loop import Worker
from .reader import CameraState, StreamReader
from .retention import EvidenceRetention

log = logging.getLogger(__name__)


@dataclass
class DaemonOptions:
    streams_path: Path
    out_dir: Path
    spool_path: Path
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9108
    max_batch: int = 8
    max_wait_ms: float = 20.0
    analysis_queue: int = 2  # batches between inference and analysis
    shutdown_timeout_s: float = 20.0
    watch_config: bool = False  # reload when streams.yaml changes, as well as on SIGHUP
    evidence_days: float = 30.0  # evidence older than this goes unless still in use; 0 keeps it all


@dataclass
class CameraRuntime:
    config: CameraConfig
    generation: int
    pipeline: CameraPipeline
    reader: StreamReader | None  # None: disabled in streams.yaml
    tz: tzinfo

    @property
    def state(self) -> CameraState:
        return self.reader.state if self.reader else CameraState.DISABLED

    @property
    def reason(self) -> str:
        return self.reader.reason if self.reader else "enabled: false in streams.yaml"


class AnalysisWorker(Worker):
    """Tracker, rules and event lifecycle for each analysed frame, in each camera's frame order;
    a camera's events and its new open-event state are committed to the spool together."""

    def __init__(self, daemon: Daemon, inbox: queue.Queue):
        self.daemon = daemon
        self.inbox = inbox
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
        rt = self.daemon.runtime(lf.camera_id)
        if rt is None or rt.generation != lf.generation:
            return  # the camera was removed or restarted since this frame was read
        m = self.daemon.metrics
        events = rt.pipeline.process(lf.frame, det, datetime.fromtimestamp(lf.frame.pts_s, rt.tz))
        if events:
            self.daemon.spool.commit(lf.camera_id, [ev.to_dict() for ev in events], rt.pipeline.snapshot())
            for ev in events:
                m.events.labels(ev.violation.scene_class, ev.state).inc()
        m.frames_analysed.labels(lf.camera_id).inc()
        age = time.monotonic() - lf.arrived
        m.frame_age.observe(age)
        self.daemon.last_age[lf.camera_id] = age


class Daemon:
    def __init__(self, options: DaemonOptions, config: StreamsConfig, detector: Detector, sinks: Sequence[CaseSink]):
        self.options = options
        self.config = config
        self.detector = detector
        self.sinks = list(sinks)
        self.metrics = Metrics()
        self.spool = EventSpool(options.spool_path, [s.name for s in self.sinks])
        self.board = FrameBoard(on_drop=lambda cam: self.metrics.frames_dropped.labels(cam).inc())
        self.analysis_queue: queue.Queue = queue.Queue(maxsize=options.analysis_queue)
        self.inference = BatchedInference(FrameDetector(detector), self.board, self.analysis_queue, self.metrics,
                                          max_batch=options.max_batch, max_wait_ms=options.max_wait_ms)
        self.analysis = AnalysisWorker(self, self.analysis_queue)
        self.emitter = EventEmitter(self.spool, self.sinks, self.metrics)
        self.retention = (EvidenceRetention(options.out_dir, self.spool, self.metrics, evidence_days=options.evidence_days)
                          if options.evidence_days > 0 else None)
        self.last_age: dict[str, float] = {}
        self._cameras: dict[str, CameraRuntime] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self._epoch = (time.time(), time.monotonic())
        self._stopping = threading.Event()
        self._reload_requested = threading.Event()
        self._started = False
        self._config_mtime = self._mtime()
        # Bound here, so a taken port fails the start with a clear error before any camera is dialled.
        self.server = MetricsServer(self.metrics, options.metrics_host, options.metrics_port,
                                    health=self.health, ready=self.ready)
        self._register_live_metrics()

    # -- the camera fleet -------------------------------------------------------------------
    def runtime(self, camera_id: str) -> CameraRuntime | None:
        with self._lock:
            return self._cameras.get(camera_id)

    def cameras(self) -> dict[str, CameraRuntime]:
        with self._lock:
            return dict(self._cameras)

    def _start_camera(self, cam: CameraConfig) -> None:
        self._generation += 1
        tz = self.config.timezone(cam)
        pipeline = CameraPipeline(self.config, cam, self.detector.card, wall=lambda t: datetime.fromtimestamp(t, tz),
                                  source=redact_url(cam.url), out_dir=self.options.out_dir, sinks=[])
        now_t = self._epoch[0] + (time.monotonic() - self._epoch[1])
        state = self.spool.load_state(cam.id)
        if state:
            n = pipeline.restore(state, now_t)
            if n:
                log.info("%s: %d open event(s) restored", cam.id, n, extra={"camera": cam.id})
        reader = None
        if cam.enabled:
            reader = StreamReader(cam.id, cam.url, self.config.analysis_fps(cam), self.config.defaults.reader,
                                  self.board, self.metrics, generation=self._generation, epoch=self._epoch,
                                  fit=self.detector.card.fit,
                                  crops=self.config.crop_planner(cam, self.detector.card.fit))
        rt = CameraRuntime(cam, self._generation, pipeline, reader, tz)
        with self._lock:
            self._cameras[cam.id] = rt
        if reader:
            self.board.add(cam.id)
            reader.start()
        else:
            log.info("%s: disabled in streams.yaml", cam.id, extra={"camera": cam.id})

    def _stop_camera(self, camera_id: str, forget: bool) -> None:
        with self._lock:
            rt = self._cameras.pop(camera_id, None)
        if rt is None:
            return
        self.board.remove(camera_id)
        if rt.reader:
            rt.reader.stop()
            if not rt.reader.join(timeout=2.0):
                # Blocked in a network read: it ends at its read timeout; its frames are discarded.
                log.info("%s: reader still closing its connection", camera_id, extra={"camera": camera_id})
        self.last_age.pop(camera_id, None)
        if forget:
            self.metrics.forget_camera(camera_id)

    def reload(self) -> bool:
        """Apply streams.yaml again: start added cameras, stop removed ones, restart changed ones;
        untouched cameras keep running. An invalid file is rejected and the running fleet kept."""
        path = self.options.streams_path
        self._config_mtime = self._mtime()
        try:
            new = load_config(path)
        except ConfigError as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)
            return False
        old = self.config
        old_cams = {c.id: c for c in old.cameras}
        new_cams = {c.id: c for c in new.cameras}
        defaults_changed = old.defaults != new.defaults
        added = [i for i in new_cams if i not in old_cams]
        removed = [i for i in old_cams if i not in new_cams]
        changed = [i for i in new_cams if i in old_cams and (defaults_changed or new_cams[i] != old_cams[i])]
        self.config = new
        for cam_id in removed:
            self._stop_camera(cam_id, forget=True)
        for cam_id in changed:
            self._stop_camera(cam_id, forget=False)
            self._start_camera(new_cams[cam_id])
        for cam_id in added:
            self._start_camera(new_cams[cam_id])
        log.info("reloaded %s: %d added, %d removed, %d restarted, %d untouched", path, len(added), len(removed),
                 len(changed), len(new_cams) - len(added) - len(changed))
        return True

    def _mtime(self) -> float | None:
        try:
            return self.options.streams_path.stat().st_mtime
        except OSError:
            return None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.server.start()
        self.emitter.start()
        if self.retention:
            self.retention.start()
        self.analysis.start()
        self.inference.start()
        for cam in self.config.cameras:
            self._start_camera(cam)
        self._started = True
        log.info("running %d camera(s); metrics on http://%s:%d/metrics; spool %s", len(self.config.cameras),
                 self.options.metrics_host, self.server.port, self.options.spool_path)

    def request_stop(self) -> None:
        self._stopping.set()

    def request_reload(self) -> None:
        self._reload_requested.set()

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, stop. Runs on the main thread (it owns the signals)."""
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
        self.start()
        while not self._stopping.wait(0.5):
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload()
            elif self.options.watch_config and self._mtime() != self._config_mtime:
                self.reload()
        return 0 if self.stop() else 1

    def stop(self) -> bool:
        """Stop readers, analyse the frames already read, deliver what the sinks take, within
        `shutdown_timeout_s`. Whatever a sink could not take stays in the spool for next time."""
        deadline = time.monotonic() + self.options.shutdown_timeout_s
        self._stopping.set()
        log.info("stopping: draining in-flight frames and flushing sinks")
        cams = self.cameras()
        for rt in cams.values():
            if rt.reader:
                rt.reader.stop()
        for rt in cams.values():
            if rt.reader:
                rt.reader.join(timeout=max(0.1, min(3.0, deadline - time.monotonic())))
        self.inference.stop(drain=True)
        drained = self.inference.join(timeout=max(0.1, deadline - time.monotonic() - 2))
        drained = self.analysis.join(timeout=max(0.1, deadline - time.monotonic() - 2)) and drained
        if self.retention:
            self.retention.stop()
            self.retention.join(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
        self.emitter.stop()
        self.emitter.join(timeout=max(0.1, deadline - time.monotonic() - 1))
        left = self.emitter.flush(deadline)
        if left:
            log.warning("%d event(s) not yet delivered stay in the spool %s; they are sent on the next start",
                        left, self.options.spool_path)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing %s", sink.name)
        self.server.stop()
        self.spool.close()
        log.info("stopped (%s)", "drained" if drained else "drain timed out; unanalysed frames dropped")
        return True

    # -- probes and live metrics ------------------------------------------------------------
    def health(self) -> tuple[bool, dict]:
        now = time.monotonic()
        loops = {"inference": (self.inference.alive, now - self.inference.heartbeat),
                 "analysis": (self.analysis.alive, now - self.analysis.heartbeat),
                 "emitter": (self.emitter.alive, now - self.emitter.heartbeat)}
        ok = self._started and all(alive and age < 60 for alive, age in loops.values())
        dead_readers = [i for i, rt in self.cameras().items() if rt.reader and not rt.reader.alive]
        ok = ok and not dead_readers
        return ok, {"loops": {k: {"alive": a, "heartbeat_age_s": round(age, 2)} for k, (a, age) in loops.items()},
                    "dead_readers": dead_readers}

    def ready(self) -> tuple[bool, dict]:
        cams = self.cameras()
        states = {i: {"state": rt.state.value, "reason": rt.reason} for i, rt in cams.items()}
        enabled = [rt for rt in cams.values() if rt.reader]
        live = [rt for rt in enabled if rt.state == CameraState.LIVE]
        ok = (self._started and not self._stopping.is_set() and self.health()[0] and (not enabled or bool(live)))
        return ok, {"cameras": states, "live": len(live), "enabled": len(enabled),
                    "spool_depth": self.spool.depth() if ok else None}

    def _register_live_metrics(self) -> None:
        live = self.metrics.live

        def states():
            out = {}
            for cam_id, rt in self.cameras().items():
                for s in CAMERA_STATES:
                    out[(cam_id, s)] = 1.0 if rt.state.value == s else 0.0
            return out

        def last_frame_age():
            now = time.monotonic()
            return {(cam_id,): now - rt.reader.last_frame_at for cam_id, rt in self.cameras().items()
                    if rt.reader and rt.reader.last_frame_at is not None}

        live.add("streetscan_camera_state", "1 for the camera's current state", ("camera", "state"), states)
        live.add("streetscan_camera_last_frame_age_seconds", "Seconds since the camera's reader last had a frame",
                 ("camera",), last_frame_age)
        live.add("streetscan_camera_frame_age_at_analysis_seconds", "Age of the camera's last analysed frame",
                 ("camera",), lambda: {(k,): v for k, v in dict(self.last_age).items()})
        live.add("streetscan_queue_depth", "Frames or batches waiting between stages", ("queue",),
                 lambda: {("frame_slots",): float(self.board.pending()),
                          ("analysis",): float(self.analysis_queue.qsize())})
        live.add("streetscan_spool_depth", "Events in the spool not yet delivered, per sink", ("sink",),
                 lambda: {(s.name,): float(self.spool.depth(s.name)) for s in self.sinks})
        live.add("streetscan_sink_up", "1 while the sink takes events", ("sink",),
                 lambda: {(k,): 1.0 if v else 0.0 for k, v in self.emitter.sink_ok.items()})
