"""Replay recorded footage through the pipeline as fast as the machine allows.

A decode thread feeds sampled frames into a small bounded queue (replay wants every sampled frame,
so it blocks instead of dropping); the main loop detects in batches and runs each frame through
its camera's pipeline in order.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from ..pipeline.camera import CameraPipeline
from ..pipeline.config import CameraConfig, Location, StreamsConfig
from ..pipeline.crops import FrameDetector
from ..pipeline.decode import VideoSource
from ..pipeline.detect import Detector
from ..pipeline.frames import Frame
from ..pipeline.sinks import CaseSink

_END = object()


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
    events: list[dict] = field(default_factory=list)
    still_open: int = 0

    @property
    def analysed_fps(self) -> float:
        return self.frames_analysed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of footage processed per second of wall time (>1: faster than real time)."""
        return self.duration_s / self.wall_s if self.wall_s > 0 else 0.0


def camera_for_file(path: str) -> CameraConfig:
    """A stand-in camera for footage without a streams.yaml entry: one `any` zone over the frame."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(path).stem).strip("-") or "replay"
    return CameraConfig(id=stem, name=Path(path).name, url=str(path), location=Location(address=f"replay of {path}"))


def camera_for_path(config: StreamsConfig, path: str, camera_id: str | None = None) -> CameraConfig:
    """The camera whose zones apply to a recording: the one named, else the one whose url names
    this file, else the only camera. KeyError (with the choices) when that leaves it ambiguous."""
    if camera_id:
        return config.camera(camera_id)
    name = Path(path).name
    matches = [c for c in config.cameras if Path(c.url.split("://", 1)[-1]).name == name]
    if len(matches) == 1:
        return matches[0]
    if len(config.cameras) == 1:
        return config.cameras[0]
    raise KeyError(f"no camera's url names {name}: choose one with --camera "
                   f"({', '.join(c.id for c in config.cameras)})")


def _start_time(explicit: datetime | None, creation_time: str | None, path: str) -> datetime:
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
    def __init__(self, config: StreamsConfig, camera: CameraConfig, detector: Detector, *, out_dir: Path,
                 sinks: Sequence[CaseSink], batch_size: int = 4, start_time: datetime | None = None,
                 on_progress: Callable[[float], None] | None = None):
        self.config = config
        self.camera = camera
        self.detector = detector
        self.out_dir = Path(out_dir)
        self.sinks = sinks
        self.batch_size = max(1, batch_size)
        self.start_time = start_time
        self.on_progress = on_progress

    def run(self, path: str) -> ReplayResult:
        source = VideoSource(path, self.config.analysis_fps(self.camera), fit=self.detector.card.fit)
        tz = self.config.timezone(self.camera)
        start = _start_time(self.start_time, source.info.creation_time, path).astimezone(tz)

        def wall(t: float) -> datetime:
            return start + timedelta(seconds=t)

        planner = self.config.crop_planner(self.camera, self.detector.card.fit)
        detector = FrameDetector(self.detector)
        pipeline = CameraPipeline(self.config, self.camera, self.detector.card, wall=wall, source=path,
                                  out_dir=self.out_dir, sinks=self.sinks)
        frames: queue.Queue = queue.Queue(maxsize=2 * self.batch_size)
        failure: list[BaseException] = []
        stop = threading.Event()

        def decode() -> None:
            try:
                for frame in source.frames():
                    while not stop.is_set():
                        try:
                            frames.put(frame, timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as exc:  # surfaced in the main thread
                failure.append(exc)
            finally:
                while not stop.is_set():  # the consumer may have stopped on an error: never block forever
                    try:
                        frames.put(_END, timeout=0.2)
                        break
                    except queue.Full:
                        continue

        t0 = time.perf_counter()
        reader = threading.Thread(target=decode, name=f"decode-{self.camera.id}", daemon=True)
        reader.start()
        events: list[dict] = []
        last_pts = 0.0
        try:
            done = False
            while not done:
                batch: list[Frame] = []
                item = frames.get()
                while item is not _END:
                    batch.append(item)
                    if len(batch) >= self.batch_size:
                        break
                    try:
                        item = frames.get_nowait()
                    except queue.Empty:
                        break
                done = item is _END
                if not batch:
                    continue
                crops = [planner.plan(f.width, f.height) for f in batch]
                for frame, det in zip(batch, detector.detect(batch, crops)):
                    events.extend(ev.to_dict() for ev in pipeline.process(frame, det, wall(frame.pts_s)))
                    last_pts = frame.pts_s
                if self.on_progress:
                    self.on_progress(last_pts)
        finally:
            stop.set()
            reader.join(timeout=5)
        if failure:
            raise failure[0]
        wall_s = time.perf_counter() - t0
        duration = source.info.duration_s or last_pts
        return ReplayResult(
            path=path, camera_id=self.camera.id, width=source.info.width, height=source.info.height,
            duration_s=duration, wall_s=wall_s, frames_decoded=source.stats.decoded,
            frames_analysed=source.stats.sampled, decode_errors=source.stats.decode_errors,
            keyframe_only=source.stats.keyframe_only, counts=pipeline.counts, events=events,
            still_open=len(pipeline.dedup.open),
        )
