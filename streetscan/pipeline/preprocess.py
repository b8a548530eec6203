"""Letterbox frames to the detector's input, and map boxes back to source pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114  # the grey Ultralytics pads with; models trained on it expect it


@dataclass(frozen=True, slots=True)
class Letterbox:
    scale: float
    pad_x: int
    pad_y: int
    src_w: int
    src_h: int

    def to_source(self, xyxy: np.ndarray) -> np.ndarray:
        out = (xyxy - np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)) / self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.src_w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.src_h)
        return out


def input_size(src_w: int, src_h: int, width: int, height: int, rect: bool, stride: int = 32) -> tuple[int, int]:
    """(w, h) of the network input. With `rect`, the long side is fitted and the short side is the
    smallest stride multiple that holds the frame: a 16:9 camera at 640 runs at 640x384, not 640x640."""
    if not rect:
        return width, height
    scale = min(width / src_w, height / src_h)
    w = min(width, math.ceil(src_w * scale / stride) * stride)
    h = min(height, math.ceil(src_h * scale / stride) * stride)
    return w, h


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    w, h = size
    src_h, src_w = image.shape[:2]
    scale = min(w / src_w, h / src_h)
    new_w, new_h = round(src_w * scale), round(src_h * scale)
    resized = (
        cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR) if (new_w, new_h) != (src_w, src_h) else image
    )
    pad_x, pad_y = (w - new_w) // 2, (h - new_h) // 2
    out = cv2.copyMakeBorder(
        resized,
        pad_y,
        h - new_h - pad_y,
        pad_x,
        w - new_w - pad_x,
        cv2.BORDER_CONSTANT,
        value=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )
    return out, Letterbox(scale, pad_x, pad_y, src_w, src_h)
