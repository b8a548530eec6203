"""Replay recorded footage through the runner as fast as the machine allows.

A RecordingReader decodes the file into a blocking FrameQueue (replay wants every sampled frame,
so the reader waits instead of dropping); the runner detects in batches, analyses each frame in
order, commits events to the spool in the output folder and delivers them to the sinks, as the
live daemon does.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import cast

from ..delivery.sinks import CaseSink
from ..pipeline.clock import StreamClock
from ..pipeline.config import Camera, StreamsConfig
from ..pipeline.crops import CropPlanner
from ..pipeline.decode import MISSING_TAIL_S, VideoSource
from ..pipeline.detect import Detector
from ..pipeline.events import Event
from .handoff import FrameQueue
from .mainstream import RecordedMainStream
from .reader import RecordingReader
from .runner import Runner, RunnerOptions

log = logging.getLogger(__name__)


class OutputFull(RuntimeError):
    """The output folder could not take the replay's events (its disk is full)."""


@dataclass
class ReplayResult:
    path: str
    camera_id: str
    width: int
    height: int
    duration_s: float
    wall_s: float
    frames_decoded: int
    frames_analysed: int
    decode_errors: int
    keyframe_only: bool
    counts: Counter = field(default_factory=Counter)  # (scene class, state) -> events
    events: list[Event] = field(default_factory=list)  # as committed to the spool, in order
    still_open: int = 0
    undelivered: int = 0  # events a sink did not take before the end; they stay in the spool
    missing_s: float = 0.0  # seconds the file's header promises beyond its last decodable frame
    frames_not_detected: int = 0  # of the analysed frames, those the motion gate kept from the detector

    @property
    def ends_early(self) -> bool:
        return self.missing_s >= MISSING_TAIL_S

    @property
    def analysed_fps(self) -> float:
        return self.frames_analysed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of footage processed per second of wall time (>1: faster than real time)."""
        return self.duration_s / self.wall_s if self.wall_s > 0 else 0.0


def camera_for_path(config: StreamsConfig, path: str, camera_id: str | None = None) -> Camera:
    """The camera whose zones apply to a recording: the one named, else the one whose url names
    this file, else the only camera. KeyError (with the choices) when that leaves it ambiguous."""
    if camera_id:
        return config.camera(camera_id)
    name = Path(path).name
    cameras = config.resolved()
    matches = [c for c in cameras if Path(c.url.split("://", 1)[-1]).name == name]
    if len(matches) == 1:
        return matches[0]
    if len(cameras) == 1:
        return cameras[0]
    raise KeyError(f"no camera's url names {name}: choose one with --camera ({', '.join(c.id for c in cameras)})")


def start_time(explicit: datetime | None, creation_time: str | None, path: str) -> datetime:
    """Wall-clock time of the recording's first frame: given, else container metadata, else file mtime."""
    if explicit is not None:
        return explicit
    if creation_time:
        try:
            return datetime.fromisoformat(creation_time.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.fromtimestamp(Path(path).stat().st_mtime).astimezone()


class ReplayJob:
    """`flush_s`: how long the end of a replay waits for the sinks to take its last events."""

    def __init__(
        self,
        camera: Camera,
        detector: Detector,
        *,
        out_dir: Path,
        sinks: Sequence[CaseSink],
        batch_size: int = 4,
        start_time: datetime | None = None,
        on_progress: Callable[[float, float | None], None] | None = None,
        flush_s: float = 30.0,
        verify: Sequence[tuple[float, dict]] = (),
    ):
        """`verify`: verification requests (stream seconds, request) asked while the recording
        plays; the desk's answers go to OUT/verifications.jsonl."""
        self.camera = camera
        self.detector = detector
        self.out_dir = Path(out_dir)
        self.sinks = sinks
        self.batch_size = max(1, batch_size)
        self.start_time = start_time
        self.on_progress = on_progress
        self.flush_s = flush_s
        self.verify = sorted(verify, key=lambda r: r[0])

    def run(self, path: str) -> ReplayResult:
        camera, card = self.camera, self.detector.card
        # A camera with a substream is replayed from a pair of recordings: `path` is the main one
        # (evidence), the camera's detect_url the one detection runs on.
        source = VideoSource(camera.detect_url or path, camera.analysis_fps, fit=card.fit)
        main = RecordedMainStream(path) if camera.detect_url else None
        assert source.info is not None  # a file is probed when its VideoSource is made
        clock = StreamClock(camera.tz, origin=start_time(self.start_time, source.info.creation_time, path))
        runner = Runner(
            self.detector,
            FrameQueue(2 * self.batch_size),
            self.sinks,
            RunnerOptions(
                out_dir=self.out_dir,
                spool_path=self.out_dir / "spool.db",
                max_batch=self.batch_size,
                max_wait_ms=0.0,
                restore_state=False,
                record_events=True,
            ),
        )
        crops = CropPlanner.for_camera(camera, card.fit)
        desk = self._desk(runner) if self.verify else None

        def recording(cam: Camera, generation: int) -> RecordingReader:
            return RecordingReader(
                cam, source, runner.handoff, runner.metrics, generation=generation, crops=crops, main=main
            )

        t0 = time.perf_counter()
        runner.start()
        reader: RecordingReader | None = None
        try:
            # The slot's reader is the one `recording` made.
            reader = cast(RecordingReader, runner.add(camera, clock=clock, source=path, reader=recording).reader)
            while not reader.join(timeout=0.25):
                if self.on_progress:  # seconds of footage analysed, of the clip's length (None: unknown)
                    self.on_progress(reader.last_pts or 0.0, source.info.duration_s)
            if self.on_progress:
                self.on_progress(reader.last_pts or 0.0, source.info.duration_s)
        finally:
            _, left = runner.stop(time.monotonic() + self.flush_s)  # every frame read is analysed first
            if desk is not None:
                # The recording ended before these could be checked, or before they were due.
                desk.expire(now=float("inf"))
                for at, raw in self._due:
                    desk.refuse(raw, "camera_down", f"the recording ends before {at:g} s, when this was asked")
        if reader.failure is not None:
            raise reader.failure
        waiting = runner.analysis.waiting_events(camera.id)
        if waiting or runner.analysis.unsaved.get(camera.id):
            raise OutputFull(
                f"{self.out_dir}: disk full: {waiting} events of {Path(path).name} could not be saved "
                "(free space and replay again: event ids are the same, nothing is doubled)"
            )
        wall_s = time.perf_counter() - t0
        slot = runner.slot(camera.id)
        assert slot is not None  # added above; the runner keeps it after stop()
        analysis = slot.analysis
        declared = source.info.duration_s
        # A half-written file (its index first, the media cut off) decodes what it holds and stops
        # early without an error: the header's duration against the last frame says so.
        missing = (
            max(0.0, declared - (reader.last_pts or 0.0) - 1.0 / max(camera.analysis_fps, 1e-6)) if declared else 0.0
        )
        if missing >= MISSING_TAIL_S:
            log.warning(
                "%s ends early: frames up to %.1f s of the %.1f s its header declares (%.1f s missing: "
                "cut short or damaged)",
                path,
                reader.last_pts or 0.0,
                declared,
                missing,
            )
        assert runner.analysis.recorded is not None  # record_events=True
        return ReplayResult(
            path=path,
            camera_id=camera.id,
            width=source.info.width,
            height=source.info.height,
            duration_s=source.info.duration_s or reader.last_pts,
            wall_s=wall_s,
            frames_decoded=source.stats.decoded,
            frames_analysed=int(
                runner.metrics.registry.get_sample_value("streetscan_frames_analysed_total", {"camera": camera.id}) or 0
            ),
            decode_errors=source.stats.decode_errors,
            keyframe_only=source.stats.keyframe_only,
            counts=analysis.counts,
            events=runner.analysis.recorded.get(camera.id, []),
            still_open=len(analysis.dedup.open),
            undelivered=left,
            missing_s=round(missing, 1),
            frames_not_detected=analysis.frames_not_detected,
        )

    def _desk(self, runner: Runner):
        """A verification desk fed from `self.verify` as the stream reaches each request's time."""
        from .verification import VerificationDesk

        desk = VerificationDesk(runner, camera_live=lambda cam: (True, ""), timeout_s=float("inf"))
        replies = self.out_dir / "verifications.jsonl"

        def write(reply: dict) -> None:
            with replies.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(reply, ensure_ascii=False) + "\n")

        desk.notify.append(write)
        due = self._due = list(self.verify)

        def on_frame(t: float, wall: datetime) -> None:
            while due and due[0][0] <= t:
                desk.submit(due.pop(0)[1], requested=wall)

        def hook(analysis) -> None:
            desk.watch(analysis)
            analysis.on_frame = on_frame

        runner.camera_hooks.append(hook)
        return desk
