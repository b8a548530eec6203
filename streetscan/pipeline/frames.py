"""The frame that flows from decode into detection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded, sampled video frame.

    `pts_s` is stream time in seconds from the start of the source; `seq` counts analysed frames
    of this source (0, 1, 2 ...), `decoded_index` counts every decoded frame.
    """

    seq: int
    decoded_index: int
    pts_s: float
    image: np.ndarray  # H x W x 3, BGR, uint8
    keyframe: bool

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])
