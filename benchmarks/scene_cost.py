#!/usr/bin/env python3
"""What the scene model and the motion gate cost a camera, as the daemon runs them.

    STREETSCAN_ASSETS=../shared .venv/bin/python benchmarks/scene_cost.py [--camera ID ...] [--fps 2]

Each camera of examples/footage.yaml named is decoded the product's way (`VideoSource` with the
default model's fit: the decoder scales the picture to the detector's input, and that picture is
what the detector, the scene model and the gate all see), and per analysed frame the CPU time of
each part is taken on the same frame: reading (demux, decode, scale), the detector (batch 1),
`SceneModel.update` with the frame's sure boxes as known objects (as CameraAnalysis gives them),
and `MotionGate.wants`. Prints per camera the medians (ms), the scene model's p95 and its share of
the camera's per-frame CPU (read + detect + scene), one Markdown table, then one JSON line.
CPU time, not wall time: the process's for reading and the detector (their own decoder and ONNX
Runtime threads count), the calling thread's for the scene model and the gate (which run on it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from streetscan.pipeline.config import load_config
from streetscan.pipeline.decode import VideoSource
from streetscan.pipeline.detect import load_detector
from streetscan.pipeline.models import resolve_model
from streetscan.pipeline.motion import MotionGate
from streetscan.pipeline.plan import CameraPlan
from streetscan.pipeline.scene import SceneModel

REPO = Path(__file__).resolve().parents[1]


def cpu_ms(fn, *args, clock=time.process_time):
    t0 = clock()
    out = fn(*args)
    return out, (clock() - t0) * 1000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--camera", action="append", help="camera id of examples/footage.yaml (repeat); default three")
    ap.add_argument("--fps", type=float, default=2.0, help="analysis fps")
    args = ap.parse_args()
    assets = os.environ.get("STREETSCAN_ASSETS")
    if not assets:
        ap.error("set STREETSCAN_ASSETS to the folder holding footage/")
    config = load_config(REPO / "examples" / "footage.yaml")
    card = resolve_model(None)
    detector = load_detector(card)
    folders = (Path(assets) / "footage", REPO / "build" / "footage")
    rows = []
    for camera_id in args.camera or ["kerbside", "plaza", "night_lane_motorbike"]:
        camera = config.camera(camera_id)
        clip = next((p for d in folders if (p := d / camera.url).exists()), None)
        if clip is None:
            print(f"{camera_id}: {camera.url} not found (scripts/footage.py rebuilds it)", file=sys.stderr)
            continue
        plan = CameraPlan.for_model(camera, card)
        scene = SceneModel()
        gate = MotionGate(list({r.zone.id: r.zone.polygon for r in plan.rules}.values()))
        parts: dict[str, list[float]] = {"read": [], "detect": [], "scene": [], "gate": []}
        size = None
        frames = VideoSource(str(clip), args.fps, fit=card.fit).frames()
        while True:
            frame, read_ms = cpu_ms(next, frames, None)
            if frame is None:
                break
            size = (frame.width, frame.height, frame.image.shape[1], frame.image.shape[0])
            (found,), detect_ms = cpu_ms(detector.detect, [frame.image])
            found = frame.to_source(found)
            sure = found.xyxy[found.confidence >= plan.tracker.activate] if len(found) else np.zeros((0, 4))
            own = time.thread_time  # on the calling thread; the process clock would also count the
            # detector's ONNX Runtime pool threads, which spin a while after each run (+1-1.5 ms here)
            _, scene_ms = cpu_ms(scene.update, frame.image, frame.pts_s, frame.source_size, sure, clock=own)
            _, gate_ms = cpu_ms(gate.wants, frame.image, frame.pts_s, frame.source_size, clock=own)
            for k, v in (("read", read_ms), ("detect", detect_ms), ("scene", scene_ms), ("gate", gate_ms)):
                parts[k].append(v)
        med = {k: float(np.median(v[1:])) for k, v in parts.items()}  # the first frame builds the backgrounds
        total = med["read"] + med["detect"] + med["scene"]
        rows.append(
            {
                "camera": camera_id,
                "clip": clip.name,
                "camera_size": f"{size[0]}x{size[1]}" if size else "",
                "analysed_size": f"{size[2]}x{size[3]}" if size else "",
                "frames": len(parts["scene"]),
                **{f"{k}_ms": round(v, 2) for k, v in med.items()},
                "scene_p95_ms": round(float(np.percentile(parts["scene"][1:], 95)), 2),
                "scene_share": round(med["scene"] / total, 3),
                "gate_share": round(med["gate"] / total, 3),
                "scene_mb": round(scene.memory_bytes / 2**20, 2),
            }
        )
        print(rows[-1], file=sys.stderr)
    print("| camera (clip) | camera / analysed size | read | detect | scene model (p95) | gate | scene share | MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['camera']} ({r['clip']}) | {r['camera_size']} / {r['analysed_size']} | {r['read_ms']} | "
            f"{r['detect_ms']} | {r['scene_ms']} ({r['scene_p95_ms']}) | {r['gate_ms']} | "
            f"{100 * r['scene_share']:.1f} % | {r['scene_mb']} |"
        )
    print(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                "model": card.name,
                "fps": args.fps,
                "rows": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
