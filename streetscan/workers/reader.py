"""Camera readers: decode one source, sample it, hand frames to inference.

StreamReader (live) owns one loop and survives whatever the camera does: a refused or timed-out
connection, a stream that ends, packets that carry no decodable picture (stall watchdog), decode
falling behind the camera (lag watchdog). Each failure goes to `backoff` with a reason, then the
reader dials again after an exponentially growing, jittered, capped delay.

RecordingReader (replay) reads a file once, as fast as the hand-off takes its frames.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import replace

from ..infra.backoff import Backoff
from ..infra.loop import Worker
from ..infra.metrics import Metrics
from ..pipeline.config import Camera
from ..pipeline.crops import CropPlanner
from ..pipeline.decode import SourceError, SourceStalled, VideoSource, is_network
from ..pipeline.frames import Frame
from ..secrets import redact_url
from .handoff import LiveFrame, ReaderHandoff
from .mainstream import LiveMainStream, MainStream, MainStreamMapper
from .state import LOOPED, CameraState, Pacer, StopRequested

log = logging.getLogger(__name__)


class DecodeAccounting:
    """Moves a source's decode counters into the camera's metrics as they grow."""

    def __init__(self, metrics: Metrics, camera_id: str):
        self.metrics, self.camera_id = metrics, camera_id
        self._seen = (0, 0, 0)

    def __call__(self, source: VideoSource) -> None:
        now = (source.stats.decoded, source.stats.decode_errors, source.stats.skipped)
        decoded, errors, skipped = (a - b for a, b in zip(now, self._seen, strict=False))
        cam = self.camera_id
        if decoded:
            self.metrics.frames_decoded.labels(cam).inc(decoded)
        if errors:
            self.metrics.decode_errors.labels(cam).inc(errors)
        if skipped:  # sampled and dropped, like a frame replaced in its slot
            self.metrics.frames_sampled.labels(cam).inc(skipped)
            self.metrics.frames_dropped.labels(cam).inc(skipped)
        self._seen = now

    def restart(self) -> None:
        self._seen = (0, 0, 0)


class _Reader(Worker):
    """What both readers share: the camera, where frames go, and how a frame is handed on."""

    def __init__(
        self,
        camera: Camera,
        handoff: ReaderHandoff,
        metrics: Metrics,
        *,
        generation: int,
        fit: tuple[int, int] | None,
        crops: CropPlanner | None,
        main: MainStream | None = None,
    ):
        self.camera_id = camera.id
        # A substream camera's frames are handed on in its main stream's pixels.
        self.mapper = MainStreamMapper(camera.id, main, self._evidence_from_substream) if main is not None else None
        self.camera = camera
        self.handoff = handoff
        self.metrics = metrics
        self.generation = generation
        self.fit = fit
        self.crops = crops
        self.account = DecodeAccounting(metrics, camera.id)
        self.last_frame_at: float | None = None  # monotonic
        super().__init__(f"reader-{camera.id}")

    def hand_on(self, frame: Frame, now: float) -> None:
        self.last_frame_at = now
        self.metrics.frames_sampled.labels(self.camera_id).inc()
        if self.mapper is not None:
            frame = self.mapper.map(frame, now)
        crops = self.crops.plan(frame.width, frame.height) if self.crops else ()
        self.handoff.put(LiveFrame(self.camera_id, self.generation, frame, now, crops))

    def _evidence_from_substream(self) -> None:
        # Counted, not logged each time: the main stream's own state says why, once per outage.
        self.metrics.evidence_from_substream.labels(self.camera_id).inc()


class RecordingReader(_Reader):
    """Every sampled frame of one recording, stamped with its time in the file, then done.
    `failure` holds what ended it early (an unreadable file), for the replay to raise."""

    def __init__(
        self,
        camera: Camera,
        source: VideoSource,
        handoff: ReaderHandoff,
        metrics: Metrics,
        *,
        generation: int,
        crops: CropPlanner | None,
        main: MainStream | None = None,
    ):
        self.source = source
        self.failure: BaseException | None = None
        self.last_pts = 0.0
        super().__init__(camera, handoff, metrics, generation=generation, fit=source.fit, crops=crops, main=main)

    def _run(self) -> None:
        try:
            for frame in self.source.frames():
                if self._stop.is_set():
                    return
                self.beat()
                self.account(self.source)
                self.hand_on(frame, time.monotonic())
                self.last_pts = frame.pts_s
        except BaseException as exc:  # raised again by the replay, on its own thread
            self.failure = exc
        finally:
            self.account(self.source)


class LoadShedder:
    """Whether a camera decoded in full should drop to keyframes only: yes when most of its recent
    due frames were refused by the hand-off (inference had not taken the previous one yet), so
    decoding them was wasted, or when decoding fell behind the camera (`overrun`); for at least
    `hold_s`, then it tries full decode again."""

    def __init__(self, window: int = 10, enter_ratio: float = 0.5, hold_s: float = 60.0):
        self.window, self.enter_ratio, self.hold_s = window, enter_ratio, hold_s
        self._recent: deque[bool] = deque(maxlen=window)
        self._until: float | None = None

    def note(self, wanted: bool) -> None:
        self._recent.append(wanted)

    def overrun(self, now: float | None = None) -> None:
        """Decode itself fell behind the camera: shed now, before the lag forces a reconnect."""
        now = time.monotonic() if now is None else now
        self._until = max(self._until or 0.0, now + self.hold_s)

    def active(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self._until is not None:
            if now < self._until:
                return True
            self._until = None
            self._recent.clear()  # judge full decode afresh
            return False
        refused = sum(not w for w in self._recent)
        if len(self._recent) == self.window and refused >= self.enter_ratio * self.window:
            self._until = now + self.hold_s
            return True
        return False


class StreamReader(_Reader):
    def __init__(
        self,
        camera: Camera,
        handoff: ReaderHandoff,
        metrics: Metrics,
        *,
        generation: int = 0,
        epoch: tuple[float, float] | None = None,
        fit: tuple[int, int] | None = None,
        crops: CropPlanner | None = None,
        shed_load: bool = True,
        read_main: bool = True,
    ):
        """`read_main` False: a substream camera's main stream is read elsewhere (a reader process
        reads the substream; the daemon reads the main stream and places its frames)."""
        self.url = camera.detect_source
        self.analysis_fps = camera.analysis_fps
        self.policy = camera.reader
        # Stream time of live frames is wall-clock seconds since the Unix epoch, advanced by the
        # monotonic clock: it never repeats across reconnects or restarts (event ids stay unique)
        # and never jumps with NTP.
        self._epoch = epoch or (time.time(), time.monotonic())
        self.backoff = Backoff(self.policy.backoff_initial_s, self.policy.backoff_max_s, self.policy.backoff_jitter)
        self.state = CameraState.CONNECTING
        self.reason = "starting"
        self._loop_ends_at: float | None = None  # monotonic: when a looping file's last play would have ended
        self._seq = 0
        self._log = logging.LoggerAdapter(log, {"camera": camera.id})
        self.shedder = LoadShedder() if shed_load else None
        self.source: VideoSource | None = None
        self.main_stream = LiveMainStream(camera) if camera.detect_url and read_main else None
        super().__init__(camera, handoff, metrics, generation=generation, fit=fit, crops=crops, main=self.main_stream)

    def stream_time(self, mono: float) -> float:
        wall0, mono0 = self._epoch
        return wall0 + (mono - mono0)

    def _set_state(self, state: CameraState, reason: str) -> None:
        if state != self.state or reason != self.reason:
            level = logging.WARNING if state == CameraState.BACKOFF else logging.INFO
            self._log.log(level, "%s: %s (%s)", self.camera_id, state.value, reason)
        self.state, self.reason = state, reason

    def _run(self) -> None:
        if self.main_stream is not None:
            self.main_stream.start()
        try:
            self._sessions()
        finally:
            if self.main_stream is not None:
                self.main_stream.stop()
                self.main_stream.join(5.0)

    def _sessions(self) -> None:
        first = True
        while not self._stop.is_set():
            if not first:
                self.metrics.reconnects.labels(self.camera_id).inc()
            first = False
            if self.main_stream is not None and self.main_stream.size is None:
                # Zones are drawn in the main stream's pixels: substream frames cannot be placed before it is seen.
                self._set_state(CameraState.CONNECTING, "waiting for the main stream's picture size")
                if self.main_stream.wait_for_size(self.policy.open_timeout_s) is None:
                    if self._stop.is_set():
                        break
                    delay = self.backoff.next_delay()
                    self._set_state(
                        CameraState.BACKOFF,
                        f"main stream not seen yet ({self.main_stream.reason}); zones are in its pixels; "
                        f"retry in {delay:.1f}s",
                    )
                    self._stop.wait(delay)
                    continue
            self._set_state(CameraState.CONNECTING, f"dialling {redact_url(self.url)}")
            reason = self._session()
            if self._stop.is_set():
                break
            if reason == LOOPED:
                first = True  # play it again at once: no backoff, not a reconnect
                continue
            delay = self.backoff.next_delay()
            self._set_state(CameraState.BACKOFF, f"{reason}; retry in {delay:.1f}s")
            self._stop.wait(delay)
        self._set_state(CameraState.STOPPED, "stopped")

    def _session(self) -> str:
        """One connection, until it fails or a stop is requested; returns why it ended."""
        pacer = Pacer(paced=not is_network(self.url), resume_at=self._loop_ends_at or 0.0, stop=self._stop)
        self._loop_ends_at = None
        if self.mapper is not None:
            self.mapper.reset()
        self._last_packet = time.monotonic()
        self.account.restart()
        try:
            source = self._open(pacer)
        except SourceError as exc:
            return str(exc)
        try:
            self._read(source, pacer)
            if not pacer.paced:
                return "stream ended"
            duration = source.info.duration_s if source.info else None
            if duration and pacer.start:
                self._loop_ends_at = pacer.start[1] + duration - pacer.start[0]
            return LOOPED
        except StopRequested:
            return "stopped"
        except SourceError as exc:
            return str(exc)
        except Exception as exc:  # PyAV network errors (reset, EOF mid-packet, ...): all mean reconnect
            return f"{type(exc).__name__}: {exc}"
        finally:
            self.account(source)

    def _open(self, pacer: Pacer) -> VideoSource:
        # A waiting frame up to two analysis intervals old is kept rather than replaced: when
        # inference is behind, every other due frame is then not decoded at all (measured: 64
        # cameras on 2 cores analysed 16 frames/s while decoding 64, most of them only to drop).
        fresh_s = 2.0 / self.analysis_fps

        def watchdog() -> None:
            if self._stop.is_set():
                raise StopRequested
            idle = time.monotonic() - self._last_packet
            if idle > self.policy.stall_timeout_s:
                raise SourceStalled(f"no frame for {idle:.1f}s")

        def due(t: float) -> bool:
            """Pace a file to the camera's rate first (so the hand-off is asked when the camera
            would have sent the frame), then decode it only if it will be wanted."""
            pacer.wait_until_due(t)
            self._last_packet = time.monotonic()  # the stream is alive even when the frame is skipped
            wanted = self.handoff.wants(self.camera_id, fresh_s)
            if self.shedder is not None:
                self.shedder.note(wanted)
            return wanted

        self.source = VideoSource(
            self.url,
            self.analysis_fps,
            open_timeout_s=self.policy.open_timeout_s,
            read_timeout_s=self.policy.read_timeout_s,
            watchdog=watchdog,
            fit=self.fit,
            threads=1,
            wanted=due,
            shed=self.shedder.active if self.shedder else None,
        )
        return self.source

    @property
    def decode_mode(self) -> str:
        """full / keyframe-only / keyframe-only (shedding load), for /readyz and metrics."""
        stats = self.source.stats if self.source else None
        if stats is None or not stats.keyframe_only:
            return "full"
        return "keyframe-only (shedding load)" if stats.shedding else "keyframe-only"

    def _read(self, source: VideoSource, pacer: Pacer) -> None:
        live = False
        for frame in source.frames():
            now = time.monotonic()
            if not live:
                live = True
                self.backoff.reset()
                self._set_state(CameraState.LIVE, "receiving frames")
            behind = pacer.behind(frame.pts_s, now)  # (a file was paced in due(), before decoding)
            if self.shedder is not None and behind > self.policy.max_lag_s / 2:
                self.shedder.overrun(now)
            if behind > self.policy.max_lag_s:
                # Decoding slower than the camera sends: reconnecting drops the backlog, where
                # reading on would serve ever older frames.
                raise SourceStalled(f"decode {behind:.1f}s behind the camera")
            self._last_packet = now
            self.account(source)
            self.hand_on(replace(frame, seq=self._seq, pts_s=self.stream_time(now)), now)
            self._seq += 1
