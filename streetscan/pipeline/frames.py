"""The frame that flows from decode into detection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import supervision as sv


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded, sampled video frame.

    `pts_s` is stream time in seconds from the start of the source; `seq` counts analysed frames
    of this source (0, 1, 2 ...), `decoded_index` counts every decoded frame.
    `image` is what the detector sees; the decoder may have scaled it down to the detector's input
    (then `source_size` is the camera's (w, h) and `full_res` converts the camera picture on
    demand). Boxes, zones and evidence always speak camera pixels: see `to_source`.
    """

    seq: int
    decoded_index: int
    pts_s: float
    image: np.ndarray  # H x W x 3, BGR, uint8
    keyframe: bool
    source_size: tuple[int, int] | None = None
    full_res: Callable[[], np.ndarray] | None = None
    # Once full_image() has run: what its picture is when it is not the camera's own at this moment
    # (a substream camera whose main stream had none), for the evidence to say so; None otherwise.
    picture_note: Callable[[], str | None] | None = None

    @property
    def width(self) -> int:
        """Camera picture width (not the scaled `image`'s)."""
        return self.source_size[0] if self.source_size else int(self.image.shape[1])

    @property
    def height(self) -> int:
        return self.source_size[1] if self.source_size else int(self.image.shape[0])

    def full_image(self) -> np.ndarray:
        """The camera-resolution picture (for evidence)."""
        return self.full_res() if self.full_res is not None else self.image

    def to_source(self, detections: sv.Detections) -> sv.Detections:
        """Detections on `image` mapped to camera pixels."""
        if self.source_size is None or len(detections) == 0:
            return detections
        sx = self.source_size[0] / self.image.shape[1]
        sy = self.source_size[1] / self.image.shape[0]
        # A copy: the caller's object is left as it was.
        out = cast(sv.Detections, detections[np.arange(len(detections))])
        out.xyxy = (out.xyxy * np.array([sx, sy, sx, sy], dtype=np.float32)).astype(np.float32)
        return out
