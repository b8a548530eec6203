"""The live daemon: the runner configured for cameras, supervised.

    StreamReaders -> FrameBoard (newest frame wins) -> Runner (inference, analysis, spool, emitter)

The supervisor adds and removes cameras as streams.yaml says (a reload restarts only the cameras
whose resolved settings changed), runs evidence retention, answers the probes and publishes the
live gauges. SIGTERM/SIGINT drain and exit; SIGHUP reloads.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from ..delivery.commands import RedisCommandReader
from ..delivery.retention import EvidenceRetention
from ..delivery.sinks import CaseSink
from ..infra.metrics import Metrics
from ..infra.probes import MetricsServer
from ..infra.shard import Shard
from ..pipeline.clock import StreamClock
from ..pipeline.config import Camera, ConfigError, StreamsConfig, load_config
from ..pipeline.crops import CropPlanner
from ..pipeline.detect import Detector
from ..secrets import redact, redact_url
from .handoff import FrameBoard
from .reader import CameraState, StreamReader
from .reader_pool import ReaderPool, RemoteReader
from .runner import CameraSlot, Runner, RunnerOptions
from .verification import HTTP_STATUS, VerificationDesk

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
    shed_load: bool = True  # an overloaded full-decode camera drops to keyframes only (LoadShedder)
    verify_secret: bytes | None = None  # the case platform's shared secret: enables POST /verify
    command_redis: str | None = None  # Redis URL of the platform's command stream (verification requests)
    command_stream: str = "streetscan:commands"
    verify_timeout_s: float = 60.0
    shard: Shard | None = None  # analyse only this shard's cameras of streams.yaml (None: all of them)
    reader_processes: int = 0  # cameras' readers in this many processes (reader_pool.py); 0: threads here


def camera_state(slot: CameraSlot) -> tuple[CameraState, str]:
    if slot.reader is None:
        return CameraState.DISABLED, "enabled: false in streams.yaml"
    reader = cast("StreamReader | RemoteReader", slot.reader)  # what Daemon._reader gives a live camera
    # The reason may quote what a library said about the camera's URL: nothing leaves unredacted.
    return reader.state, redact(reader.reason)


def main_stream_state(slot: CameraSlot) -> tuple[CameraState, str] | None:
    """A substream camera's main stream (its evidence pictures): its state and why; None for others."""
    main = getattr(slot.reader, "main_stream", None)
    return None if main is None else (main.state, redact(main.reason))


def decode_mode(slot: CameraSlot) -> str | None:
    """full / keyframe-only / keyframe-only (shedding load); None for a disabled camera."""
    return getattr(slot.reader, "decode_mode", None)


class Service(Protocol):
    """A part that runs beside the fleet for the daemon's life (the operator console): started
    after the probes and stopped after the runner has drained, before the sinks close."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Prunable(Protocol):
    def prune(self, before: str, now: float | None = None) -> int: ...


class Daemon:
    """`sinks`: where cases go (delivery.outputs), one cursor each in the spool. `case_index`: a
    sink among them that also keeps evidence references (the console's), pruned with retention.
    `services` are started and stopped with the daemon (startup.Startup adds the console)."""

    def __init__(
        self,
        options: DaemonOptions,
        config: StreamsConfig,
        detector: Detector,
        sinks: Sequence[CaseSink],
        *,
        case_index: Prunable | None = None,
    ):
        self.options = options
        self.config = config
        self.card = detector.card
        self.sinks = list(sinks)
        self.services: list[Service] = []
        metrics = Metrics()
        self.board = FrameBoard(on_drop=lambda cam: metrics.frames_dropped.labels(cam).inc())
        self.pool: ReaderPool | None = None
        self.runner = Runner(
            detector,
            self.board,
            self.sinks,
            RunnerOptions(
                out_dir=options.out_dir,
                spool_path=options.spool_path,
                max_batch=options.max_batch,
                max_wait_ms=options.max_wait_ms,
                analysis_queue=options.analysis_queue,
            ),
            metrics,
        )
        if options.reader_processes > 0:
            self.pool = ReaderPool(
                options.reader_processes,
                self.board,
                metrics,
                fit=self.card.fit,
                epoch=self.runner.epoch,
                shed_load=options.shed_load,
            )
        self.retention = (
            EvidenceRetention(
                options.out_dir, self.runner.spool, metrics, evidence_days=options.evidence_days, case_index=case_index
            )
            if options.evidence_days > 0
            else None
        )
        self._stopping = threading.Event()
        self._reload_requested = threading.Event()
        self._started = False
        self._config_mtime = self._mtime()
        self.desk = VerificationDesk(
            self.runner, self._camera_live, timeout_s=options.verify_timeout_s, shard=options.shard
        )
        self.runner.camera_hooks.append(self.desk.watch)
        # One consumer group per shard: every shard sees every request and answers its cameras'.
        group = f"streetscan-shard-{options.shard.index}" if options.shard else "streetscan"
        self.commands = (
            RedisCommandReader(options.command_redis, self.desk.submit, stream=options.command_stream, group=group)
            if options.command_redis
            else None
        )
        if self.commands:
            self.desk.notify.append(self.commands.reply)
        # Bound here, so a taken port fails the start with a clear error before any camera is dialled.
        self.server = MetricsServer(
            metrics,
            options.metrics_host,
            options.metrics_port,
            health=self.health,
            ready=self.ready,
            verification=self._http_verify if options.verify_secret else None,
        )
        register_live_gauges(self)

    @property
    def metrics(self) -> Metrics:
        return self.runner.metrics

    # -- the camera fleet -------------------------------------------------------------------
    def _reader(self, camera: Camera, generation: int) -> StreamReader | RemoteReader | None:
        if not camera.enabled:
            log.info("%s: disabled in streams.yaml", camera.id, extra={"camera": camera.id})
            return None
        fit = self.card.fit
        crops = CropPlanner.for_camera(camera, fit)
        # Zone crops cut the full picture, which a reader process does not hand over: a thread here
        # keeps it. (A substream camera's main stream is read here either way: reader_pool.py.)
        if self.pool is not None and not crops.may_crop:
            return self.pool.reader(camera, generation)
        return StreamReader(
            camera,
            self.board,
            self.metrics,
            generation=generation,
            epoch=self.runner.epoch,
            fit=fit,
            crops=crops,
            shed_load=self.options.shed_load,
        )

    def _start_camera(self, camera: Camera) -> None:
        self.runner.add(camera, clock=StreamClock(camera.tz), source=redact_url(camera.url), reader=self._reader)

    # -- verification on request ------------------------------------------------------------
    def _camera_live(self, camera_id: str) -> tuple[bool, str]:
        slot = self.runner.slot(camera_id)
        if slot is None:
            return False, "not in this fleet"
        state, reason = camera_state(slot)
        return state == CameraState.LIVE, f"{state.value}" + (f" ({reason})" if reason else "")

    def _http_verify(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict]:
        """POST /verify {request_id, event_id}, signed over its body; GET /verify/<request_id>,
        signed over its path. The shared secret is the webhook's (README "Verification on request")."""
        from ..delivery.webhook import signature_ok

        assert self.options.verify_secret is not None  # the server gets this handler only with a secret
        # A GET is signed over its path, so the headers that read one request cannot read another.
        if not signature_ok(self.options.verify_secret, headers, body if method == "POST" else path.encode()):
            return 401, {"error": "missing, wrong or stale X-StreetScan-Signature / X-StreetScan-Timestamp"}
        if method == "GET":
            reply = self.desk.status(path.removeprefix("/verify/"))
            return (200, reply) if reply else (404, {"status": "unknown_request"})
        try:
            raw = json.loads(body or b"null")
        except ValueError:
            raw = body.decode(errors="replace")
        reply = self.desk.submit(raw)
        return HTTP_STATUS.get(reply["status"], 200), reply

    def reload(self) -> bool:
        """Apply streams.yaml again: start added cameras, stop removed ones, restart those whose
        resolved settings changed; the others keep running. An invalid file is rejected and the
        running fleet kept."""
        path = self.options.streams_path
        self._config_mtime = self._mtime()
        try:
            new = load_config(path)
        except ConfigError as exc:
            log.error("reload rejected, keeping the running configuration: %s", exc)
            return False
        if new.outputs != self.config.outputs:
            log.warning(
                "reload: streams.yaml's outputs changed; they apply at the next start (the running sinks keep "
                "their cursors in the spool)"
            )
        old = {c.id: c for c in self._mine(self.config)}
        cams = {c.id: c for c in self._mine(new)}
        added = [i for i in cams if i not in old]
        removed = [i for i in old if i not in cams]
        changed = [i for i in cams if i in old and cams[i] != old[i]]
        self.config = new
        for cam_id in removed:
            self.runner.remove(cam_id, forget_metrics=True)
        for cam_id in changed:
            self.runner.remove(cam_id, forget_metrics=False)
            self._start_camera(cams[cam_id])
        for cam_id in added:
            self._start_camera(cams[cam_id])
        log.info(
            "reloaded %s: %d added, %d removed, %d restarted, %d untouched",
            path,
            len(added),
            len(removed),
            len(changed),
            len(cams) - len(added) - len(changed),
        )
        return True

    def _mine(self, config: StreamsConfig) -> list[Camera]:
        """The file's cameras this daemon analyses: its shard's, or all."""
        shard = self.options.shard
        return [c for c in config.resolved() if shard is None or shard.owns(c.id)]

    def _mtime(self) -> float | None:
        try:
            return self.options.streams_path.stat().st_mtime
        except OSError:
            return None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.server.start()
        if self.commands:
            self.commands.start()
        for service in self.services:
            service.start()
        self.runner.start()
        if self.pool:
            self.pool.start()
        if self.retention:
            self.retention.start()
        mine = self._mine(self.config)
        for camera in mine:
            self._start_camera(camera)
        self._started = True
        shard = f" (shard {self.options.shard} of {len(self.config.cameras)} in the file)" if self.options.shard else ""
        log.info(
            "running %d camera(s)%s; metrics on http://%s:%d/metrics; spool %s",
            len(mine),
            shard,
            self.options.metrics_host,
            self.server.port,
            self.options.spool_path,
        )

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
            self.desk.expire()
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
        if self.retention:
            self.retention.stop()
            self.retention.join(timeout=2.0)
        if self.commands:
            self.commands.stop()
            self.commands.join(timeout=3.0)
        drained, left = self.runner.stop(deadline)
        if self.pool:
            self.pool.close()
        if left:
            log.warning(
                "%d event(s) not yet delivered stay in the spool %s; they are sent on the next start",
                left,
                self.options.spool_path,
            )
        for service in self.services:
            service.stop()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing %s", sink.name)
        self.server.stop()
        log.info("stopped (%s)", "drained" if drained else "drain timed out; unanalysed frames dropped")
        return True

    # -- probes ---------------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict]:
        now = time.monotonic()
        workers = dict(self.runner.loops(), **({"reader_pool": self.pool} if self.pool else {}))
        loops = {name: (w.alive, now - w.heartbeat) for name, w in workers.items()}
        ok = self._started and all(alive and age < 60 for alive, age in loops.values())
        dead_readers = [i for i, s in self.runner.slots().items() if s.reader and not s.reader.alive]
        ok = ok and not dead_readers
        return ok, {
            "loops": {k: {"alive": a, "heartbeat_age_s": round(age, 2)} for k, (a, age) in loops.items()},
            "dead_readers": dead_readers,
        }

    def ready(self) -> tuple[bool, dict]:
        slots = self.runner.slots()
        states = {i: camera_state(s) for i, s in slots.items()}
        enabled = [i for i, s in slots.items() if s.reader]
        live = [i for i in enabled if states[i][0] == CameraState.LIVE]
        unsaved = dict(self.runner.analysis.unsaved)  # a full disk: events wait in memory
        ok = (
            self._started
            and not self._stopping.is_set()
            and self.health()[0]
            and (not enabled or bool(live))
            and not unsaved
        )
        decode = {i: decode_mode(s) for i, s in slots.items() if s.reader}
        mains = {i: m for i, s in slots.items() if (m := main_stream_state(s))}
        return ok, {
            "shard": str(self.options.shard) if self.options.shard else None,
            "cameras": {
                i: {
                    "state": st.value,
                    "reason": why,
                    **({"decode": decode[i]} if i in decode else {}),
                    **({"main_stream": {"state": mains[i][0].value, "reason": mains[i][1]}} if i in mains else {}),
                }
                for i, (st, why) in states.items()
            },
            "live": len(live),
            "enabled": len(enabled),
            **({"events_not_saved": unsaved} if unsaved else {}),
            **({"reader_processes": self.pool.describe()} if self.pool else {}),
            "spool_depth": self.runner.spool.depth() if ok else None,
        }


def register_live_gauges(daemon: Daemon) -> None:
    """Values that are a property of the moment, read at scrape time."""
    runner, live = daemon.runner, daemon.metrics.live

    def states():
        out = {}
        for cam_id, slot in runner.slots().items():
            current = camera_state(slot)[0]
            for s in CameraState:
                out[(cam_id, s.value)] = 1.0 if s == current else 0.0
        return out

    def last_frame_age():
        now = time.monotonic()
        return {
            (cam_id,): now - s.reader.last_frame_at
            for cam_id, s in runner.slots().items()
            if s.reader and s.reader.last_frame_at is not None
        }

    shard = daemon.options.shard
    live.add(
        "streetscan_shard",
        "This daemon's shard of streams.yaml (index of count; 0 of 1 when unsharded)",
        ("index", "count"),
        lambda: {(str(shard.index if shard else 0), str(shard.count if shard else 1)): 1.0},
    )

    def main_states():
        out = {}
        for cam_id, slot in runner.slots().items():
            if (main := main_stream_state(slot)) is not None:
                for s in CameraState:
                    out[(cam_id, s.value)] = 1.0 if s == main[0] else 0.0
        return out

    live.add("streetscan_camera_state", "1 for the camera's current state", ("camera", "state"), states)
    live.add(
        "streetscan_camera_main_stream_state",
        "1 for the current state of a substream camera's main stream (its evidence pictures)",
        ("camera", "state"),
        main_states,
    )
    live.add(
        "streetscan_camera_shedding",
        "1 while an overloaded camera decodes keyframes only",
        ("camera",),
        lambda: {
            # A daemon's readers (StreamReader, RemoteReader) all have a decode_mode.
            (cam_id,): 1.0 if cast(str, decode_mode(s)).endswith("(shedding load)") else 0.0
            for cam_id, s in runner.slots().items()
            if s.reader
        },
    )
    live.add(
        "streetscan_camera_last_frame_age_seconds",
        "Seconds since the camera's reader last had a frame",
        ("camera",),
        last_frame_age,
    )
    live.add(
        "streetscan_camera_frame_age_at_analysis_seconds",
        "Age of the camera's last analysed frame",
        ("camera",),
        lambda: {(k,): v for k, v in dict(runner.analysis.last_age).items()},
    )
    live.add(
        "streetscan_queue_depth",
        "Frames or batches waiting between stages",
        ("queue",),
        lambda: {("frame_slots",): float(daemon.board.pending()), ("analysis",): float(runner.analysis_queue.qsize())},
    )
    live.add(
        "streetscan_spool_depth",
        "Events in the spool not yet delivered, per sink",
        ("sink",),
        lambda: {(s.name,): float(runner.spool.depth(s.name)) for s in daemon.sinks},
    )
    live.add(
        "streetscan_dead_letters",
        "Events a sink refused for good, kept until re-sent",
        ("sink",),
        lambda: {(s.name,): float(runner.spool.dead_letter_count(s.name)) for s in daemon.sinks},
    )
    live.add(
        "streetscan_sink_up",
        "1 while the sink takes events",
        ("sink",),
        lambda: {(k,): 1.0 if v else 0.0 for k, v in runner.emitter.sink_ok.items()},
    )
