"""Zone-crop inference: small, far zones seen at the camera's native resolution.

A 1080p camera letterboxed to 640x384 shrinks a car 80 m away to a few pixels, below what the
detector can see. A fixed camera's zones say where to look: each zone that is small in the frame
is also cut out of the camera picture at native resolution (a little context around it) and run
through the detector as a picture of its own, SAHI-style; its boxes are mapped back to camera
pixels and merged with the full-frame pass. Which zones get a crop is decided once per camera and
frame size (`CropPlanner`): `auto` crops a zone when that shows its objects at least
`MIN_GAIN` times larger than the full frame does; `on` crops every drawn zone that gains at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, cast

import numpy as np
import supervision as sv

from .config import Camera
from .detect import Detector, empty_detections
from .frames import Frame

CropMode = Literal["auto", "on", "off"]
Box = tuple[int, int, int, int]
MIN_GAIN = 2.0  # auto: a crop pays when objects in it come out at least this much larger
MAX_CROPS = 4  # per frame: bounds the cost of a camera with many small zones
CONTEXT = 0.1  # margin around a zone's bounding box, as a fraction of its size (objects overhang zones)
MERGE_IOU = 0.5  # same class, this much overlap: one object seen by two passes
EDGE_PX = 2  # a crop box touching a cut edge (not the frame's) is an object cut in half


@dataclass(frozen=True)
class CropPlanner:
    """Which parts of one camera's frames are detected again at native resolution."""

    polygons: tuple[tuple[tuple[float, float], ...], ...]  # the camera's drawn zones
    fit: tuple[int, int]  # the detector's input box (w, h)
    mode: CropMode = "auto"

    @classmethod
    def for_camera(cls, camera: Camera, fit: tuple[int, int]) -> CropPlanner:
        polygons = tuple(tuple((x, y) for x, y in z.polygon) for z in camera.zones if z.polygon is not None)
        return cls(polygons, fit, camera.zone_crops)

    @property
    def may_crop(self) -> bool:
        """Whether any frame of this camera could be cut into zone crops (which need its full picture)."""
        return self.mode != "off" and bool(self.polygons)

    def plan(self, width: int, height: int) -> tuple[Box, ...]:
        return _plan(self.polygons, self.fit, self.mode, width, height)


@lru_cache(maxsize=1024)
def _plan(polygons, fit, mode, width, height) -> tuple[Box, ...]:
    if mode == "off":
        return ()
    full_scale = min(fit[0] / width, fit[1] / height)
    scored = []
    for poly in polygons:
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        mx, my = (x2 - x1) * CONTEXT, (y2 - y1) * CONTEXT
        box = (max(0, int(x1 - mx)), max(0, int(y1 - my)), min(width, int(x2 + mx + 1)), min(height, int(y2 + my + 1)))
        w, h = box[2] - box[0], box[3] - box[1]
        if w < 8 or h < 8:
            continue
        # Native resolution at most: a crop never enlarges the camera picture.
        gain = min(fit[0] / w, fit[1] / h, 1.0) / full_scale
        if gain >= (MIN_GAIN if mode == "auto" else 1.01):
            scored.append((gain, box))
    scored.sort(key=lambda s: -s[0])
    return tuple(sorted(set(box for _, box in scored[:MAX_CROPS])))


class FrameDetector:
    """Frames in, detections in camera pixels out: the full-frame pass plus each frame's planned
    zone crops, all in one batched detector call, merged. The one detection stage both replay and
    the daemon run."""

    def __init__(self, detector: Detector):
        self.detector = detector
        self.card = detector.card

    def detect(self, frames: Sequence[Frame], crops: Sequence[tuple[Box, ...]] | None = None) -> list[sv.Detections]:
        crops = crops if crops is not None else [()] * len(frames)
        images: list[np.ndarray] = []
        for frame, boxes in zip(frames, crops, strict=False):
            images.append(frame.image)
            if boxes:
                full = frame.full_image()
                images.extend(full[y1:y2, x1:x2] for x1, y1, x2, y2 in boxes)
        results = self.detector.detect(images)
        out, k = [], 0
        for frame, boxes in zip(frames, crops, strict=False):
            dets = [frame.to_source(results[k])]
            k += 1
            for box in boxes:
                dets.append(_from_crop(results[k], box, frame.width, frame.height))
                k += 1
            out.append(_merge(dets) if len(dets) > 1 else dets[0])
        return out


def _from_crop(det: sv.Detections, box: Box, width: int, height: int) -> sv.Detections:
    """Crop pixels -> camera pixels, without boxes cut by the crop's own edges (the full frame or
    a neighbouring crop sees those objects whole)."""
    if len(det) == 0:
        return det
    x1, y1, x2, y2 = box
    xyxy = det.xyxy + np.array([x1, y1, x1, y1], dtype=np.float32)
    cut = np.zeros(len(det), dtype=bool)
    if x1 > 0:
        cut |= xyxy[:, 0] <= x1 + EDGE_PX
    if y1 > 0:
        cut |= xyxy[:, 1] <= y1 + EDGE_PX
    if x2 < width:
        cut |= xyxy[:, 2] >= x2 - EDGE_PX
    if y2 < height:
        cut |= xyxy[:, 3] >= y2 - EDGE_PX
    out = cast(sv.Detections, det[~cut])
    out.xyxy = xyxy[~cut].astype(np.float32)
    return out


def _merge(parts: list[sv.Detections]) -> sv.Detections:
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_detections()
    merged = sv.Detections.merge(parts)
    return merged.with_nms(threshold=MERGE_IOU, class_agnostic=False) if len(merged) > 1 else merged
