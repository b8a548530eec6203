#!/usr/bin/env python3
"""Cameras sustained at 1 fps: detection on the main stream against detection on the substream.

    STREETSCAN_ASSETS=../shared .venv/bin/python benchmarks/substream.py [--codec h264|hevc ...] [--rounds 1]

Real footage (the staged plaza clip, 1280x720, 40 s) re-encoded as a camera pair, as 雪亮 /
GB/T 28181 cameras send them: a 1920x1080 main stream and a 640x360 substream, 25 fps, keyframes
every 2 s (the cameras' default), in each codec asked for. Every simulated camera plays the pair
in a loop through the real daemon and the default model: "main" reads the main stream for
everything (the camera without `detect_url`); "pair" detects on the substream and reads the main
stream's keyframes for evidence. The search is streetscan bench's (double until a trial is not
sustained, then bisect); per codec the two run back to back, in alternating order per round.
Before them, per codec, the stage figures on the same clips, one thread each, and from them the
combined limit (cores / a camera's cost: its decode, preprocessing and its share of the raw
inference ceiling) that the end-to-end count is compared with, and at the load sustained, the
cores the process actually used, by thread (readers, main streams, the native pools of ONNX Runtime
and FFmpeg, analysis). Prints two Markdown tables and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streetscan.capacity import (
    ENCODERS,
    _first_frame,
    camera_encoding,
    inference_figures,
    preprocess_ms,
    search_cameras,
)
from streetscan.pipeline.decode import VideoSource, fit_size
from streetscan.pipeline.detect import load_detector
from streetscan.pipeline.models import resolve_model
from streetscan.pipeline.preprocess import input_size
from streetscan.workers.mainstream import THUMBNAIL


def encode(source: Path, out: Path, size: str, codec: str, seconds: float) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-t", str(seconds), "-vf", f"scale={size},fps=25",
         *camera_encoding(50, codec), str(out)],  # keyframes every 2 s at 25 fps
        check=True,
    )  # fmt: skip
    return out


def decode_cores(clip: Path, fit: tuple[int, int], keyframes: str) -> float:
    """Cores one camera's stream takes to decode at 1 fps, as the daemon reads it (one thread)."""
    source = VideoSource(str(clip), 1.0, keyframes=keyframes, fit=fit, threads=1)
    assert source.info is not None and source.info.duration_s
    t0 = time.process_time()
    for _ in source.frames():
        pass
    return (time.process_time() - t0) / source.info.duration_s


def limits(main: Path, sub: Path, card, cores: int) -> dict:
    """Each stage's cores per camera at 1 fps, and the combined limit, with and without the substream."""
    detector = load_detector(card)
    vf = _first_frame(sub)
    w, h = fit_size(vf.width, vf.height, card.fit)
    rect = input_size(w, h, card.input_width, card.input_height, card.rect)
    ceiling = max(r["img_s"] for r in inference_figures(detector, [rect], [1], 3.0))
    inference = cores / ceiling  # the ceiling was measured on all cores
    stages = {
        "main": {
            "decode main (as read: each GOP to its last analysed frame)": decode_cores(main, card.fit, "auto"),
            "preprocess": preprocess_ms(detector, _first_frame(main), 2.0) / 1000.0,
            "inference": inference,
        },
        "pair": {
            "decode sub (as read)": decode_cores(sub, card.fit, "auto"),
            "decode main (keyframes)": decode_cores(main, THUMBNAIL, "only"),
            "preprocess": preprocess_ms(detector, vf, 2.0) / 1000.0,
            "inference": inference,
        },
    }
    return {
        name: {"cores_per_camera": cost, "combined_limit": cores / sum(cost.values())} for name, cost in stages.items()
    } | {"ceiling_img_s": ceiling}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codec", action="append", choices=sorted(ENCODERS), help="repeat; default h264 then hevc")
    ap.add_argument("--seconds", type=float, default=12.0, help="measured seconds per trial")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--max-age", type=float, default=3.0, help="frame-age p95 bound (s) for 'sustained'")
    args = ap.parse_args()
    assets = os.environ.get("STREETSCAN_ASSETS")
    if not assets:
        ap.error("set STREETSCAN_ASSETS to the folder holding footage/")
    source = Path(assets) / "footage" / "plaza_pedestrians.mp4"
    card = resolve_model(None)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="substream-") as tmp:
        for codec in args.codec or ["h264", "hevc"]:
            main = encode(source, Path(tmp) / f"main-{codec}.mp4", "1920:1080", codec, 40)
            sub = encode(source, Path(tmp) / f"sub-{codec}.mp4", "640:360", codec, 40)
            budget = limits(main, sub, card, os.cpu_count() or 1)
            print(f"{codec}: {budget}", file=sys.stderr)
            for r in range(args.rounds):
                for name in ("main", "pair") if r % 2 == 0 else ("pair", "main"):
                    print(f"{codec}, round {r + 1}, detect on {name}:", file=sys.stderr)
                    work = Path(tmp) / f"{codec}-{name}{r}"
                    work.mkdir()
                    camera = {"detect_url": str(sub)} if name == "pair" else {}
                    n, trials = search_cameras(
                        main, card, 1.0, args.seconds, work, max_age_s=args.max_age, detector_opts={},
                        max_batch=8, limit=args.limit, log=lambda s: print(s, file=sys.stderr), camera=camera,
                    )  # fmt: skip
                    at = next((t for t in trials if t.cameras == n), None)
                    limit = budget[name]["combined_limit"]
                    rows.append({"codec": codec, "round": r + 1, "detect_on": name, "cameras": n,
                                 "analysed_fps": round(at.analysed_fps, 1) if at else None,
                                 "combined_limit": round(limit, 1), "of_limit": round(n / limit, 2),
                                 "cores_per_camera": budget[name]["cores_per_camera"],
                                 # measured, at the sustained trial: the process's cores by thread
                                 "cores_by_thread": {k: round(v, 3) for k, v in at.cores_by_thread.items()}
                                 if at else {}})  # fmt: skip
    print("| codec | round | detection on | millicores per camera by stage | combined limit "
          "| cameras sustained at 1 fps | of the limit |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for row in rows:
        where = "substream 640x360" if row["detect_on"] == "pair" else "main stream 1920x1080"
        cost = ", ".join(f"{k} {1000 * v:.0f}" for k, v in row["cores_per_camera"].items())
        print(f"| {row['codec']} | {row['round']} | {where} | {cost} | {row['combined_limit']} | {row['cameras']} "
              f"| {100 * row['of_limit']:.0f} % |")  # fmt: skip
    print(
        "\n| codec | round | detection on | cameras | cores by thread at that load (measured) |\n|---|---|---|---|---|"
    )
    for row in rows:
        used = ", ".join(f"{k} {v:.2f}" for k, v in sorted(row["cores_by_thread"].items(), key=lambda kv: -kv[1]))
        total = sum(row["cores_by_thread"].values())
        print(
            f"| {row['codec']} | {row['round']} | {row['detect_on']} | {row['cameras']} | {used}; total {total:.2f} |"
        )
    print(json.dumps({"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                      "model": card.name, "clip": source.name, "rows": rows}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
