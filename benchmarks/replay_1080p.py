#!/usr/bin/env python3
"""Replay speed on 1080p H.264 at analysis_fps 2: the real-time factor of `streetscan replay`.

    .venv/bin/python benchmarks/replay_1080p.py --model models/<card>.yaml [--clip CLIP]

The clip (default: $STREETSCAN_ASSETS/footage/plaza_pedestrians.mp4, real 720p street footage)
is scaled to 1920x1080, looped 3 times and re-encoded with a 2 s GOP (typical CCTV settings) by
ffmpeg, then replayed through the whole pipeline. Prints one JSON line; figures go to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

from streetscan.delivery.sinks import JsonlSink
from streetscan.pipeline.config import camera_for_file
from streetscan.pipeline.detect import load_detector
from streetscan.pipeline.models import resolve_model
from streetscan.workers.replay import ReplayJob


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    assets = os.environ.get("STREETSCAN_ASSETS")
    ap.add_argument("--clip", type=Path, default=Path(assets) / "footage" / "plaza_pedestrians.mp4" if assets else None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--analysis-fps", type=float, default=2.0)
    args = ap.parse_args()
    if args.clip is None or not args.clip.exists():
        ap.error("no clip: pass --clip or set STREETSCAN_ASSETS")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip_1080p.mp4"
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-stream_loop",
                "2",
                "-i",
                str(args.clip),
                "-vf",
                "scale=1920:1080",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-g",
                "50",
                "-an",
                str(clip),
            ],
            check=True,
        )
        card = resolve_model(args.model)
        cam = camera_for_file(str(clip)).with_analysis_fps(args.analysis_fps)
        sink = JsonlSink(Path(tmp) / "events.jsonl")
        result = ReplayJob(cam, load_detector(card), out_dir=Path(tmp), sinks=[sink]).run(str(clip))
        sink.close()
    print(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                "model": card.name,
                "size": f"{result.width}x{result.height}",
                "duration_s": round(result.duration_s, 1),
                "wall_s": round(result.wall_s, 2),
                "frames_decoded": result.frames_decoded,
                "frames_analysed": result.frames_analysed,
                "analysed_fps": round(result.analysed_fps, 2),
                "realtime_factor": round(result.realtime_factor, 2),
                "keyframe_only": result.keyframe_only,
            }
        )
    )


if __name__ == "__main__":
    main()
