"""What a camera's stream is doing, as /readyz, metrics and the console show it."""

from __future__ import annotations

from enum import StrEnum


class CameraState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    BACKOFF = "backoff"
    DISABLED = "disabled"
    STOPPED = "stopped"


LOOPED = "file played to its end; looping"  # a file standing in for a camera: not an outage
