"""What a camera's stream is doing (as /readyz, metrics and the console show it), and the clock a
file standing in for a camera is played by: what the substream and main-stream readers share."""

from __future__ import annotations

import threading
import time
from enum import StrEnum


class CameraState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    BACKOFF = "backoff"
    DISABLED = "disabled"
    STOPPED = "stopped"


LOOPED = "file played to its end; looping"  # a file standing in for a camera: not an outage


class StopRequested(Exception):
    """A reader's stop was asked for while it waited."""


class Pacer:
    """A session's clock: paces a file to the camera's real rate and measures decode lag."""

    def __init__(self, paced: bool, resume_at: float, stop: threading.Event):
        self.paced, self.resume_at, self._stop = paced, resume_at, stop
        self.start: tuple[float, float] | None = None  # (pts, monotonic) of the session's first due frame

    def wait_until_due(self, t: float) -> None:
        now = time.monotonic()
        if self.start is None:
            # A looping file plays on at its real rate: the next play starts when the last one would
            # have ended, not the moment its demuxer hit the end (a camera never sends two frames at once).
            self.start = (t, max(now, self.resume_at))
        ahead = (t - self.start[0]) - (now - self.start[1])
        if self.paced and ahead > 0 and self._stop.wait(ahead):
            raise StopRequested

    def behind(self, t: float, now: float) -> float:
        return (now - self.start[1]) - (t - self.start[0]) if self.start else 0.0
