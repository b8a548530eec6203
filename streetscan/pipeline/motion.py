"""Motion-gated detection: a camera's frame goes to the detector only when something moves where
the model's rules look, when a re-check of what stands still is due, or when someone asks.

A street camera's picture is mostly still: parked cars, shuttered shops, an empty pavement at
night. Frigate runs its detector only where there is motion for the same reason. The gate keeps
a short-term background of a small grey picture (as pipeline/scene.py does) and compares cells
of it with the frame; a frame whose moving cells touch a watched zone (a zone with a rule the
model serves, grown by `margin` cells so that what walks in is caught at the edge) is detected.
A frame that is not detected keeps the camera's last detections (CameraAnalysis), so a parked
car keeps its track, its dwell clock and its case.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

Polygon = list[tuple[float, float]]


@dataclass(frozen=True)
class GateSettings:
    recheck_s: float = 10.0  # detect at least this often, moving or not (a stationary object's re-check)
    width: int = 160  # reduced picture width for the motion test
    cell: int = 8
    short_s: float = 2.0  # time constant of the background frames are compared with
    min_diff: float = 10.0  # grey levels of mean absolute difference that make a cell move
    margin: int = 2  # cells a watched zone is grown by


class MotionGate:
    """One camera's gate. `wants` is called by the inference worker, `request` by any thread."""

    def __init__(self, zones: list[Polygon | None], settings: GateSettings | None = None, phase: float = 0.0):
        """`zones`: the polygons (camera pixels) of the zones whose rules need the model; None is
        the whole picture. `phase` (0-1): where in the re-check period this camera's re-checks
        fall. Cameras started together (a daemon start, a reload) would otherwise all re-check on
        the same second, a burst of every camera's frame at once: 40 gated cameras at 1 fps with
        one phase dropped 5 frames/s and aged them ~3 s every 10 s while the CPU was 65 % idle."""
        self.settings = settings or GateSettings()
        self._phase_s = (phase % 1.0) * self.settings.recheck_s
        self._zones = zones
        self._background: np.ndarray | None = None
        self._watched: np.ndarray | None = None
        self._t: float | None = None
        self._last_detected = -np.inf
        self._requested = threading.Event()

    def request(self) -> None:
        """Detect the next frame whatever it shows (a verification request arrived)."""
        self._requested.set()

    def wants(self, image: np.ndarray, t: float, source_size: tuple[int, int] | None = None) -> bool:
        """Whether this frame must go to the detector. Every frame updates the background."""
        s = self.settings
        grey = self._reduce(image)
        if self._background is None or self._background.shape != grey.shape:
            self._background = grey
            self._watched = self._watch(grey.shape, source_size or (image.shape[1], image.shape[0]))
            self._t = t
            self._detect(t)
            self._last_detected -= self._phase_s  # the next re-check comes at this camera's phase
            return True
        assert self._watched is not None
        dt = max(0.0, t - (self._t if self._t is not None else t))
        self._t = t
        c = s.cell
        ch, cw = grey.shape[0] // c, grey.shape[1] // c
        diff = cv2.resize(np.abs(grey - self._background)[: ch * c, : cw * c], (cw, ch), interpolation=cv2.INTER_AREA)
        self._background += (1.0 - np.exp(-dt / s.short_s)) * (grey - self._background)
        moving = diff > s.min_diff
        if self._requested.is_set() or t - self._last_detected >= s.recheck_s or (moving & self._watched).any():
            return self._detect(t)
        return False

    def _detect(self, t: float) -> bool:
        self._requested.clear()
        self._last_detected = t
        return True

    def _reduce(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        size = (self.settings.width, max(self.settings.cell, round(h * self.settings.width / w)))
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)

    def _watch(self, shape: tuple[int, int], source_size: tuple[int, int]) -> np.ndarray:
        s = self.settings
        ch, cw = shape[0] // s.cell, shape[1] // s.cell
        if any(z is None for z in self._zones):
            return np.ones((ch, cw), dtype=bool)
        mask = np.zeros((ch, cw), dtype=np.uint8)
        sx, sy = cw / source_size[0], ch / source_size[1]
        for polygon in self._zones:
            assert polygon is not None
            pts = np.array([[x * sx, y * sy] for x, y in polygon], dtype=np.float32)
            cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
        grown = cv2.dilate(mask, np.ones((2 * s.margin + 1, 2 * s.margin + 1), np.uint8)) if s.margin else mask
        return np.asarray(grown, dtype=bool)
