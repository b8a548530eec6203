"""Synthetic detections and configs for unit tests of rules and events (no video, no model)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import supervision as sv

from streetscan.pipeline.config import parse_config
from streetscan.pipeline.models import vocabulary

TZ = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=TZ)  # a Friday


def dets(*objects: tuple[str, tuple[float, float, float, float], float, int]) -> sv.Detections:
    """objects: (vocabulary class, (x1, y1, x2, y2), confidence, track id or -1)."""
    if not objects:
        d = sv.Detections.empty()
        d.tracker_id = np.array([], dtype=int)
        d.data["class_name"] = np.array([], dtype=object)
        return d
    vocab = vocabulary()
    return sv.Detections(
        xyxy=np.array([o[1] for o in objects], dtype=np.float32),
        confidence=np.array([o[2] for o in objects], dtype=np.float32),
        class_id=np.array([vocab.index(o[0]) for o in objects]),
        tracker_id=np.array([o[3] for o in objects]),
        data={"class_name": np.array([o[0] for o in objects], dtype=object)},
    )


def config(zones: list[dict], rules: dict | None = None, defaults: dict | None = None):
    """A one-camera streams.yaml, resolved: the Camera "cam"."""
    cam = {
        "id": "cam",
        "name": "Test cam",
        "url": "test.mp4",
        "location": {"address": "Test St 1"},
        "zones": zones,
        "rules": rules or {},
    }
    return parse_config({"defaults": defaults or {}, "cameras": [cam]}).camera("cam")


def car(x: float, tid: int = 1, conf: float = 0.9, cls: str = "car"):
    """A car-sized box whose bottom centre is at (x + 50, 560), inside a lower-half kerb zone."""
    return (cls, (x, 480.0, x + 100.0, 560.0), conf, tid)


KERB = {"id": "kerb", "kind": "no_parking", "polygon": [[0, 400], [1280, 400], [1280, 720], [0, 720]]}


def run(ruleset, frames: list[tuple[float, sv.Detections]], start: datetime = NOON):
    """Feed (t, detections) frames; return the violations per frame."""
    out = []
    for seq, (t, d) in enumerate(frames):
        out.append(ruleset.update(d, t, start + timedelta(seconds=t), seq).violations)
    return out
