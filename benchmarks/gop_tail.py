#!/usr/bin/env python3
"""What skipping a GOP's tail saves: decode cores per camera, every frame against as the daemon reads.

    STREETSCAN_ASSETS=../shared .venv/bin/python benchmarks/gop_tail.py [--seconds 40] [--rounds 2]
    STREETSCAN_ASSETS=../shared .venv/bin/python benchmarks/gop_tail.py --phase

Real footage (the staged plaza clip, looped to 40 s) re-encoded as cameras send it (25 fps,
keyframes every 2 s or 4 s, no other keyframes, H.264 and H.265) at 1920x1080 and at 640x360 (a
substream), decoded as a camera's reader does (one thread, scaled into the default model's input
box) at 1 and 2 analysed frames/s: once with every frame decoded (`keyframes="never"`), once as
the daemon reads (`"auto"`: a GOP's frames after its last analysed one are not decoded). Both
modes of one row run back to back, alternating which goes first per round, and their analysed
pictures are compared.
Prints a Markdown table and one JSON line.

--phase: frames decoded (counts, no timing) at 1 fps for GOPs that are and are not a whole number
of seconds (25 fps GOP 50/55/60, 30 fps GOP 60, 29.97 fps GOP 60), H.264 640x360, 60 s.
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

import numpy as np

from streetscan.capacity import camera_encoding
from streetscan.pipeline.decode import VideoSource
from streetscan.pipeline.models import resolve_model


def decode(clip: Path, fps: float, keyframes: str, fit: tuple[int, int]) -> tuple[float, VideoSource, list]:
    source = VideoSource(str(clip), fps, keyframes=keyframes, fit=fit, threads=1)
    assert source.info is not None and source.info.duration_s
    t0 = time.process_time()
    frames = [(round(f.pts_s, 2), f.image) for f in source.frames()]
    return (time.process_time() - t0) / source.info.duration_s, source, frames


def phase(source: Path, fit: tuple[int, int], tmp: Path) -> int:
    print("| camera | GOP | frames decoded at 1 fps, as read / every |")
    print("|---|---|---|")
    for rate, label, gop in (
        (25, "25", 50),
        (30, "30", 60),
        (25, "25", 55),
        (25, "25", 60),
        (30000 / 1001, "29.97", 60),
    ):
        clip = tmp / f"phase-{label}-{gop}.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(source), "-t", "60",
             "-vf", f"scale=640:360,fps={rate}", *camera_encoding(gop, "h264"), str(clip)],
            check=True,
        )  # fmt: skip
        every = VideoSource(str(clip), 1.0, keyframes="never", fit=fit, threads=1)
        n_every = sum(1 for _ in every.frames())
        read = VideoSource(str(clip), 1.0, fit=fit, threads=1)
        n_read = sum(1 for _ in read.frames())
        assert n_every == n_read
        share = read.stats.decoded / every.stats.decoded
        print(f"| {label} fps | {gop} frames = {gop / rate:.3f} s | {100 * share:.0f} % |")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=40.0, help="clip length (the source looped)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--phase", action="store_true", help="frames decoded by where the keyframes fall")
    args = ap.parse_args()
    assets = os.environ.get("STREETSCAN_ASSETS")
    if not assets:
        ap.error("set STREETSCAN_ASSETS to the folder holding footage/")
    source = Path(assets) / "footage" / "plaza_pedestrians.mp4"
    fit = resolve_model(None).fit
    if args.phase:
        with tempfile.TemporaryDirectory(prefix="goptail-") as tmp:
            return phase(source, fit, Path(tmp))
    rows = []
    with tempfile.TemporaryDirectory(prefix="goptail-") as tmp:
        for codec in ("h264", "hevc"):
            for size in ("1920:1080", "640:360"):
                for gop_s in (2, 4):
                    clip = Path(tmp) / f"{codec}-{size.replace(':', 'x')}-g{gop_s}.mp4"
                    subprocess.run(
                        ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(source),
                         "-t", str(args.seconds), "-vf", f"scale={size},fps=25", *camera_encoding(25 * gop_s, codec),
                         str(clip)],
                        check=True,
                    )  # fmt: skip
                    for fps in (1.0, 2.0):
                        cost: dict[str, list[float]] = {"never": [], "auto": []}
                        stats = {}
                        for r in range(args.rounds):
                            order = ("never", "auto") if r % 2 == 0 else ("auto", "never")
                            got = {}
                            for mode in order:
                                cores, src, frames = decode(clip, fps, mode, fit)
                                cost[mode].append(cores)
                                stats[mode], got[mode] = src.stats, frames
                            same = len(got["never"]) == len(got["auto"]) and all(
                                a[0] == b[0] and np.array_equal(a[1], b[1])
                                for a, b in zip(got["never"], got["auto"], strict=True)
                            )
                        never, auto = min(cost["never"]), min(cost["auto"])
                        rows.append(
                            {
                                "codec": codec,
                                "size": size.replace(":", "x"),
                                "gop_s": gop_s,
                                "fps": fps,
                                "millicores_every_frame": round(1000 * never, 1),
                                "millicores_as_read": round(1000 * auto, 1),
                                "saved": round(1 - auto / never, 3),
                                "decoded_every_frame": stats["never"].decoded,
                                "decoded_as_read": stats["auto"].decoded,
                                "same_pictures": same,
                                "held_peak_kb": round(stats["auto"].tail_held_peak / 1024),
                            }
                        )
                        print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(
        "| codec | size | GOP | analysed fps | frames decoded: every / as read "
        "| millicores per camera: every / as read | saved | same pictures | packets held, peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['codec']} | {r['size']} | {r['gop_s']} s | {r['fps']:g} | {r['decoded_every_frame']} / "
            f"{r['decoded_as_read']} | {r['millicores_every_frame']} / {r['millicores_as_read']} | "
            f"{100 * r['saved']:.0f} % | {'yes' if r['same_pictures'] else 'NO'} | {r['held_peak_kb']} KB |"
        )
    print(json.dumps({"gop_tail": rows}))
    return 0 if all(r["same_pictures"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
