"""Stream time to wall-clock time: the one place the wall clock enters the pipeline.

Stages work in stream seconds (`Frame.pts_s`); events and zone schedules need local wall time.
A live reader stamps frames with Unix seconds (origin None); a recording counts from its first
frame, whose wall time comes from the file (origin).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo


@dataclass(frozen=True)
class StreamClock:
    tz: tzinfo
    origin: datetime | None = None  # wall time of stream second 0; None: stream time is Unix time

    def wall(self, stream_s: float) -> datetime:
        if self.origin is None:
            return datetime.fromtimestamp(stream_s, self.tz)
        return (self.origin + timedelta(seconds=stream_s)).astimezone(self.tz)
