"""A camera's main stream beside its substream: evidence pictures at the camera's full resolution.

Cameras send a main stream (1080p, 4 MP) and a substream (704x576, 640x360); an NVR detects on
the substream and takes pictures from the main stream (Frigate's `roles: [detect]` and
`[record]`). With `detect_url` set, StreetScan does the same: detection, tracking, rules and the
scene model run on the substream; zones are drawn, and boxes reported, in the main stream's
pixels; evidence is the main stream's picture at the moment of the event. The main stream is never
decoded in full: live, its keyframes alone are read and the latest kept (`LiveMainStream`, a
1080p keyframe every 1-2 s); a replay opens the main recording at the moment asked for
(`RecordedMainStream`).

A substream frame is mapped onto the main stream's pixels by scaling each axis, which is exact
for a scaled copy and for an anamorphic substream (a 16:9 camera's 704x576). Its full picture is
the main stream's at that moment or, when the main stream has none (down, or not yet seen since
the camera started), the substream's scaled up to the main stream's size: counted in
`streetscan_evidence_from_substream_total`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import av
import cv2
import numpy as np

from ..infra.backoff import Backoff
from ..infra.loop import Worker
from ..pipeline.config import Camera
from ..pipeline.decode import SourceError, SourceStalled, VideoSource, is_network
from ..pipeline.frames import Frame
from ..secrets import redact_url
from .state import LOOPED, CameraState, Pacer, StopRequested

log = logging.getLogger(__name__)

# A live main-stream keyframe further than this from a substream frame is not that frame's moment:
# cameras send a keyframe every 1-2 s (GB/T 28181 defaults), so one is always nearer when the
# main stream is up.
MAX_SKEW_S = 4.0
# The picture VideoSource converts at once is this small; the full one is converted only when
# evidence asks (Frame.full_res), so a main stream costs its keyframe decode and nothing more.
THUMBNAIL = (160, 160)
SUBSTREAM_NOTE = "substream picture: no main stream"  # on the evidence of a case whose picture fell back
ASPECT_TOLERANCE = 0.03  # aspect ratios this close are one picture (encoders round sizes to even pixels)


class MainStream(Protocol):
    """Where a substream camera's full pictures come from."""

    @property
    def size(self) -> tuple[int, int] | None:
        """The main stream's (w, h): the camera pixels zones are drawn in; None until known."""
        ...

    def picture(self, frame: Frame, arrived: float) -> np.ndarray | None:
        """The main stream's picture (BGR) at the substream frame's moment, or None."""
        ...


@dataclass(frozen=True)
class Placement:
    """Where the main stream's picture lies in the substream's: its active area, as fractions of the
    substream's width and height. The whole substream, each axis scaled, unless the two aspect
    ratios differ and the substream has black bars whose removal makes them agree (a 16:9 picture
    letterboxed into a 4:3 substream); without such bars a differing substream is anamorphic (a
    16:9 camera's 704x576), scaled per axis."""

    area: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)

    @classmethod
    def of(cls, sub: np.ndarray, main_size: tuple[int, int]) -> Placement | None:
        """None while a frame cannot tell (a camera's first frames may be black all over)."""
        h, w = sub.shape[:2]
        aspect = main_size[0] / main_size[1]
        if abs(w / h / aspect - 1.0) <= ASPECT_TOLERANCE:
            return cls()
        grey = cv2.cvtColor(sub, cv2.COLOR_BGR2GRAY) if sub.ndim == 3 else sub
        if grey.mean() < 12:
            return None

        def bars(lines: np.ndarray) -> int:
            # An encoder's letterbox is flat black; a night sky or a dark wall is neither that dark nor that flat.
            n = 0
            while n < len(lines) // 2 and lines[n].mean() < 12 and lines[n].std() < 4:
                n += 1
            return n

        top, bottom, left, right = bars(grey), bars(grey[::-1]), bars(grey.T), bars(grey.T[::-1])
        x0, y0, x1, y1 = left, top, w - right, h - bottom
        if (top or bottom or left or right) and abs((x1 - x0) / max(1, y1 - y0) / aspect - 1.0) <= ASPECT_TOLERANCE:
            return cls((x0 / w, y0 / h, x1 / w, y1 / h))
        return cls()

    def crop(self, image: np.ndarray) -> np.ndarray:
        if self.area == (0.0, 0.0, 1.0, 1.0):
            return image
        h, w = image.shape[:2]
        x0, y0, x1, y1 = self.area
        return image[round(y0 * h) : round(y1 * h), round(x0 * w) : round(x1 * w)]

    @staticmethod
    def unstretch(image: np.ndarray, main_size: tuple[int, int]) -> np.ndarray:
        """An anamorphic picture brought to the main stream's aspect before detection: a model sees
        cars as they are, not 1.4x taller (a 704x576 substream of a 16:9 camera found 2 of the 5
        cars the main stream shows, stretched; measured in tests/test_substream.py)."""
        h, w = image.shape[:2]
        aspect = main_size[0] / main_size[1]
        if abs(w / h / aspect - 1.0) <= ASPECT_TOLERANCE:
            return image
        return cv2.resize(image, (w, max(1, round(w / aspect))), interpolation=cv2.INTER_AREA)


def on_main_stream(
    frame: Frame, main: MainStream, arrived: float, fallback: Callable[[], None], placement: Placement = Placement()
) -> Frame:
    """The substream `frame` in the main stream's pixels, its full picture the main stream's."""
    size = main.size
    assert size is not None  # a reader hands substream frames on only once the main stream's size is known
    picture: list[np.ndarray] = []
    note: list[str] = []

    def full() -> np.ndarray:
        if not picture:
            got = main.picture(frame, arrived)
            if got is None or (got.shape[1], got.shape[0]) != size:
                fallback()
                note.append(SUBSTREAM_NOTE)
                got = cv2.resize(placement.crop(frame.full_image()), size, interpolation=cv2.INTER_LINEAR)
            picture.append(got)
        return picture[0]

    return replace(
        frame,
        image=Placement.unstretch(placement.crop(frame.image), size),
        source_size=size,
        full_res=full,
        picture_note=lambda: note[0] if note else None,
    )


class MainStreamMapper:
    """A substream's frames handed on in its main stream's pixels: where the main picture lies in
    the substream's (decided on a session's first frame that shows one) and, for evidence, the main
    stream's picture. One per camera, in whichever process holds the main stream: the reader
    thread's, or the daemon's for a camera read in a reader process."""

    def __init__(self, camera_id: str, main: MainStream, fallback: Callable[[], None]):
        self.camera_id, self.main, self.fallback = camera_id, main, fallback
        self.placement: Placement | None = None
        self._placed_size: tuple[int, int] | None = None  # the substream's (w, h) when placed

    def reset(self) -> None:
        """A reconnected substream may come in another format: place it again."""
        self.placement = None

    def map(self, frame: Frame, arrived: float) -> Frame:
        if (frame.width, frame.height) != self._placed_size:
            self.placement, self._placed_size = None, (frame.width, frame.height)
        if self.placement is None:
            self.placement = self._place(frame)
        placement = self.placement or Placement()  # (a black frame: decided on the next one)
        return on_main_stream(frame, self.main, arrived, self.fallback, placement)

    def _place(self, frame: Frame) -> Placement | None:
        assert self.main.size is not None  # frames are mapped only once the main stream's size is known
        placement = Placement.of(frame.image, self.main.size)
        if placement is None:
            return None
        h, w = frame.image.shape[:2]
        how = "scaled per axis" if placement == Placement() else f"letterboxed, active area {placement.area}"
        log.info(
            "%s: substream %dx%d (as analysed) onto main stream %dx%d, %s",
            self.camera_id, w, h, *self.main.size, how, extra={"camera": self.camera_id},
        )  # fmt: skip
        return placement


class RecordedMainStream:
    """A replay's main recording: opened at the moment asked for, the frame at or after it decoded.
    Evidence is written a few times per case, so a seek each time costs less than decoding the
    whole main recording."""

    def __init__(self, path: str):
        self.path = path
        self.size: tuple[int, int] | None = None
        with av.open(path) as container:
            stream = container.streams.video[0]
            self.size = (stream.codec_context.width, stream.codec_context.height)

    def picture(self, frame: Frame, arrived: float) -> np.ndarray | None:
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                assert stream.time_base is not None  # libavformat gives every demuxed stream one
                start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
                container.seek(int((start + frame.pts_s) / stream.time_base), stream=stream, backward=True)
                for vf in container.decode(stream):
                    if vf.pts is not None and float(vf.pts * stream.time_base) - start >= frame.pts_s - 0.02:
                        return vf.to_ndarray(format="bgr24")
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("%s: no main-stream picture at %.2f s (%s)", redact_url(self.path), frame.pts_s, exc)
        return None


class LiveMainStream(Worker):
    """A live camera's main stream, keyframes only, the latest kept for evidence; it reconnects
    on its own, and its state is shown beside the substream's."""

    def __init__(self, camera: Camera):
        self.camera_id = camera.id
        self.url = camera.url
        self.policy = camera.reader
        self.size: tuple[int, int] | None = None
        self.state = CameraState.CONNECTING
        self.reason = "starting"
        self._latest: tuple[float, Frame] | None = None  # (monotonic arrival, keyframe)
        self._known = threading.Event()  # set once the size is known
        self._last_packet = time.monotonic()
        self.backoff = Backoff(self.policy.backoff_initial_s, self.policy.backoff_max_s, self.policy.backoff_jitter)
        super().__init__(f"main-{camera.id}")

    def wait_for_size(self, timeout: float) -> tuple[int, int] | None:
        self._known.wait(timeout)
        return self.size

    def picture(self, frame: Frame, arrived: float) -> np.ndarray | None:
        latest = self._latest
        if latest is None or self.state != CameraState.LIVE or abs(arrived - latest[0]) > MAX_SKEW_S:
            return None
        return latest[1].full_image()

    def _set_state(self, state: CameraState, reason: str) -> None:
        if state != self.state or reason != self.reason:
            level = logging.WARNING if state == CameraState.BACKOFF else logging.INFO
            extra = {"camera": self.camera_id}
            log.log(level, "%s: main stream %s (%s)", self.camera_id, state.value, reason, extra=extra)
        self.state, self.reason = state, reason

    def _run(self) -> None:
        while not self._stop.is_set():
            self._set_state(CameraState.CONNECTING, f"dialling {redact_url(self.url)}")
            reason = self._session()
            if self._stop.is_set():
                break
            if reason == LOOPED:
                continue  # a file standing in for a camera plays again at once: not an outage
            delay = self.backoff.next_delay()
            self._latest = None
            self._set_state(CameraState.BACKOFF, f"{reason}; retry in {delay:.1f}s")
            self._stop.wait(delay)
        self._set_state(CameraState.STOPPED, "stopped")

    def _session(self) -> str:
        pacer = Pacer(paced=not is_network(self.url), resume_at=0.0, stop=self._stop)

        def watchdog() -> None:
            # Called before each packet: a connection that delivers packets is alive even between
            # keyframes (a long GOP); one that delivers none ends on the read timeout. Pictures older
            # than MAX_SKEW_S are not used, whatever the state says.
            if self._stop.is_set():
                raise StopRequested
            idle = time.monotonic() - self._last_packet
            if idle > self.policy.stall_timeout_s:
                raise SourceStalled(f"no packet for {idle:.1f}s")
            self._last_packet = time.monotonic()

        def due(t: float) -> bool:
            pacer.wait_until_due(t)  # a file standing in for a camera plays at its own rate
            return True

        self._last_packet = time.monotonic()
        source = VideoSource(
            self.url,
            1.0,
            keyframes="only",
            open_timeout_s=self.policy.open_timeout_s,
            read_timeout_s=self.policy.read_timeout_s,
            watchdog=watchdog,
            fit=THUMBNAIL,
            threads=1,
            wanted=due,
        )
        seen = False
        try:
            for frame in source.frames():
                seen = True
                self._latest = (time.monotonic(), frame)
                if self.size is None:
                    self.size = (frame.width, frame.height)
                    self._known.set()
                elif (frame.width, frame.height) != self.size:
                    # Zones are in the pixels first seen; a camera whose main stream changed size needs a restart.
                    return f"its size changed from {self.size[0]}x{self.size[1]} to {frame.width}x{frame.height}"
                if self.state != CameraState.LIVE:
                    self.backoff.reset()
                    self._set_state(CameraState.LIVE, "receiving keyframes")
            if not seen:
                return "no keyframe in the stream"
            return LOOPED if pacer.paced else "stream ended"
        except StopRequested:
            return "stopped"
        except SourceError as exc:
            return str(exc)
        except Exception as exc:  # PyAV network errors (reset, EOF mid-packet, ...): all mean reconnect
            return f"{type(exc).__name__}: {exc}"
