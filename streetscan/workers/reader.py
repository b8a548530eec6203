"""One camera's stream reader: connect, decode, sample, hand the newest frame to inference.

It owns one loop and survives whatever the camera does: a refused or timed-out connection, a
stream that ends, packets that carry no decodable picture (stall watchdog), decode falling behind
the camera (lag watchdog). Each failure goes to `backoff` with a reason, then the reader dials
again after an exponentially growing, jittered, capped delay.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace
from enum import Enum

from ..pipeline.config import ReaderPolicy
from ..pipeline.crops import CropPlanner
from ..pipeline.decode import SourceError, SourceStalled, VideoSource, is_network, redact_url
from ..pipeline.metrics import Metrics
from .handoff import FrameBoard, LiveFrame
from .loop import Worker

log = logging.getLogger(__name__)


class CameraState(str, Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    BACKOFF = "backoff"
    DISABLED = "disabled"
    STOPPED = "stopped"


class Backoff:
    """Exponential backoff with +-jitter, capped; `reset()` after a connection that worked."""

    def __init__(self, initial_s: float, max_s: float, jitter: float = 0.2, rng: random.Random | None = None):
        self.initial_s, self.max_s, self.jitter = initial_s, max_s, jitter
        self._rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self) -> float:
        base = min(self.max_s, self.initial_s * (2 ** self.attempt))
        self.attempt += 1
        return max(0.0, min(self.max_s, base * (1 + self._rng.uniform(-self.jitter, self.jitter))))

    def reset(self) -> None:
        self.attempt = 0


class _StopRequested(Exception):
    pass


LOOPED = "file played to its end; looping"  # a file standing in for a camera: not an outage


class StreamReader(Worker):
    def __init__(self, camera_id: str, url: str, analysis_fps: float, policy: ReaderPolicy, board: FrameBoard,
                 metrics: Metrics, *, generation: int = 0, epoch: tuple[float, float] | None = None,
                 fit: tuple[int, int] | None = None, crops: CropPlanner | None = None):
        self.camera_id = camera_id
        self.fit = fit
        self.crops = crops
        self.url = url
        self.analysis_fps = analysis_fps
        self.policy = policy
        self.board = board
        self.metrics = metrics
        self.generation = generation
        # Stream time of live frames is wall-clock seconds since the Unix epoch, advanced by the
        # monotonic clock: it never repeats across reconnects or restarts (event ids stay unique)
        # and never jumps with NTP.
        self._epoch = epoch or (time.time(), time.monotonic())
        self.backoff = Backoff(policy.backoff_initial_s, policy.backoff_max_s, policy.backoff_jitter)
        self.state = CameraState.CONNECTING
        self.reason = "starting"
        self.last_frame_at: float | None = None  # monotonic
        self._loop_ends_at: float | None = None  # monotonic: when a looping file's last play would have ended
        super().__init__(f"reader-{camera_id}")
        self._seq = 0
        self._log = logging.LoggerAdapter(log, {"camera": camera_id})

    def stream_time(self, mono: float) -> float:
        wall0, mono0 = self._epoch
        return wall0 + (mono - mono0)

    def _set_state(self, state: CameraState, reason: str) -> None:
        if state != self.state or reason != self.reason:
            level = logging.WARNING if state == CameraState.BACKOFF else logging.INFO
            self._log.log(level, "%s: %s (%s)", self.camera_id, state.value, reason)
        self.state, self.reason = state, reason

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            if not first:
                self.metrics.reconnects.labels(self.camera_id).inc()
            first = False
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
        opened = time.monotonic()
        watch = {"last": opened}

        def watchdog() -> None:
            if self._stop.is_set():
                raise _StopRequested
            idle = time.monotonic() - watch["last"]
            if idle > self.policy.stall_timeout_s:
                raise SourceStalled(f"no frame for {idle:.1f}s")

        paced = not is_network(self.url)  # a file stands in for a camera: play it at its real rate
        # A waiting frame up to two analysis intervals old is kept rather than replaced: when
        # inference is behind, every other due frame is then not decoded at all (measured: 64
        # cameras on 2 cores analysed 16 frames/s while decoding 64, most of them only to drop).
        fresh_s = 2.0 / self.analysis_fps
        clock: dict[str, tuple[float, float]] = {}  # "start": (pts, monotonic) of the session's first due frame
        # A looping file plays on at its real rate: the next play starts when the last one would
        # have ended, not the moment its demuxer hit the end (a camera never sends two frames at once).
        resume_at, self._loop_ends_at = self._loop_ends_at or 0.0, None

        def due(t: float) -> bool:
            """A frame is due for analysis: pace a file to the camera's rate first (so the board is
            asked when the camera would have sent it), then decode it only if it will be wanted."""
            now = time.monotonic()
            start = clock.setdefault("start", (t, max(now, resume_at)))
            ahead = (t - start[0]) - (now - start[1])
            if paced and ahead > 0 and self._stop.wait(ahead):
                raise _StopRequested
            watch["last"] = time.monotonic()  # the stream is alive even when the frame is skipped
            return self.board.wants(self.camera_id, fresh_s)

        try:
            source = VideoSource(self.url, self.analysis_fps, open_timeout_s=self.policy.open_timeout_s,
                                 read_timeout_s=self.policy.read_timeout_s, watchdog=watchdog, fit=self.fit,
                                 threads=1, wanted=due)
        except SourceError as exc:
            return str(exc)
        seen = {"decoded": 0, "errors": 0, "skipped": 0}

        def account() -> None:
            d, e, k = source.stats.decoded, source.stats.decode_errors, source.stats.skipped
            if d > seen["decoded"]:
                self.metrics.frames_decoded.labels(self.camera_id).inc(d - seen["decoded"])
            if e > seen["errors"]:
                self.metrics.decode_errors.labels(self.camera_id).inc(e - seen["errors"])
            if k > seen["skipped"]:  # sampled and dropped, like a frame replaced in its slot
                self.metrics.frames_sampled.labels(self.camera_id).inc(k - seen["skipped"])
                self.metrics.frames_dropped.labels(self.camera_id).inc(k - seen["skipped"])
            seen["decoded"], seen["errors"], seen["skipped"] = d, e, k

        live = False
        try:
            for frame in source.frames():
                now = time.monotonic()
                if not live:
                    live = True
                    self.backoff.reset()
                    self._set_state(CameraState.LIVE, "receiving frames")
                start = clock["start"]  # (a file was paced in due(), before the frame was decoded)
                behind = (now - start[1]) - (frame.pts_s - start[0])
                if behind > self.policy.max_lag_s:
                    # Decoding slower than the camera sends: reconnecting drops the backlog, where
                    # reading on would serve ever older frames.
                    raise SourceStalled(f"decode {behind:.1f}s behind the camera")
                watch["last"] = now
                self.last_frame_at = now
                account()
                self.metrics.frames_sampled.labels(self.camera_id).inc()
                lf = LiveFrame(self.camera_id, self.generation,
                               replace(frame, seq=self._seq, pts_s=self.stream_time(now)), now,
                               self.crops.plan(frame.width, frame.height) if self.crops else ())
                self._seq += 1
                self.board.put(lf)
            if not paced:
                return "stream ended"
            duration = source.info.duration_s if source.info else None
            if duration and "start" in clock:
                pts0, mono0 = clock["start"]
                self._loop_ends_at = mono0 + duration - pts0
            return LOOPED
        except _StopRequested:
            return "stopped"
        except SourceError as exc:
            return str(exc)
        except Exception as exc:  # PyAV network errors (reset, EOF mid-packet, ...): all mean reconnect
            return f"{type(exc).__name__}: {exc}"
        finally:
            account()
