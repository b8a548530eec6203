#!/usr/bin/env python3
"""Cameras sustained at 1 fps with motion-gated detection off and on, measured in one run.

    STREETSCAN_ASSETS=../shared .venv/bin/python benchmarks/gating.py [--camera ID] [--gop-s 1] [--rounds 2]

Every simulated camera plays one truth-set camera's clip in a loop (`--camera`, default the
kerbside street: cars park, leave and pass; people walk), with that camera's zones and rules
from examples/footage.yaml, through the real daemon and the default model. The clip is first
re-encoded at its own size and rate with keyframes every `--gop-s` seconds, as streetscan bench
does: cameras ship with 1-2 s, and at 1 fps a 1 s GOP lets the reader decode keyframes only,
which is what a deployment would set (a clip's own 10 s GOP would measure the decoder, which
the gate cannot save); and as `--starts` copies begun at different points, camera i playing copy
i mod n, so the simulated cameras do not all show the same second. The search is streetscan
bench's (double until a trial is not sustained, then bisect). Rounds run off, on, then on, off,
... so the machine's drift falls on both. Prints a Markdown table (cameras, and the share of
analysed frames sent to the detector at the largest sustained load) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from streetscan.capacity import camera_encoding, search_cameras
from streetscan.pipeline.models import resolve_model

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=12.0, help="measured seconds per trial")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--max-age", type=float, default=3.0, help="frame-age p95 bound (s) for 'sustained'")
    ap.add_argument("--gop-s", type=float, default=1.0, help="keyframe interval of the re-encoded clip")
    ap.add_argument("--starts", type=int, default=8, help="copies of the clip begun at different points")
    ap.add_argument("--rounds", type=int, default=1, help="off/on pairs, alternating order")
    ap.add_argument(
        "--camera",
        default="kerbside",
        help="camera of examples/footage.yaml whose clip, zones and rules every simulated camera gets",
    )
    args = ap.parse_args()
    assets = os.environ.get("STREETSCAN_ASSETS")
    if not assets:
        ap.error("set STREETSCAN_ASSETS to the folder holding footage/")
    doc = yaml.safe_load((REPO / "examples" / "footage.yaml").read_text(encoding="utf-8"))
    chosen = next(c for c in doc["cameras"] if c["id"] == args.camera)
    folders = (Path(assets) / "footage", REPO / "build" / "footage")  # staged, then rebuilt by scripts/footage.py
    source = next(p for d in folders if (p := d / chosen["url"]).exists())
    camera = {"zones": chosen["zones"], "rules": chosen.get("rules", {})}
    card = resolve_model(None)
    settings = {"off": {"motion_gating": False}, "on": {"motion_gating": True, "recheck_s": 10}}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gating-") as tmp:
        clips = reencode(source, Path(tmp), args.gop_s, args.starts)
        for r in range(args.rounds):
            for name in ("off", "on") if r % 2 == 0 else ("on", "off"):
                print(f"round {r + 1}, gating {name}:", file=sys.stderr)
                work = Path(tmp) / f"{name}{r}"
                work.mkdir()
                n, trials = search_cameras(
                    clips, card, 1.0, args.seconds, work, max_age_s=args.max_age, detector_opts={}, max_batch=8,
                    limit=args.limit, log=lambda s: print(s, file=sys.stderr), camera=camera,
                    detection=settings[name],
                )  # fmt: skip
                at = next((t for t in trials if t.cameras == n), None)
                kept = 1.0 - at.not_detected_fps / at.analysed_fps if at and at.analysed_fps else None
                rows.append({"round": r + 1, "gating": name, "cameras": n, "detected_share": kept})
    print(f"{source.name} (camera {args.camera}), keyframes every {args.gop_s:g} s, {args.starts} starts, 1 fps:\n")
    print("| round | motion gating | cameras sustained at 1 fps | analysed frames detected |\n|---|---|---|---|")
    for row in rows:
        share = "" if row["detected_share"] is None else f"{row['detected_share']:.2f}"
        print(f"| {row['round']} | {row['gating']} | {row['cameras']} | {share} |")
    print(json.dumps({"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                      "model": card.name, "clip": source.name, "camera": args.camera, "gop_s": args.gop_s,
                      "starts": args.starts, "rows": rows}))  # fmt: skip
    return 0


def reencode(source: Path, workdir: Path, gop_s: float, starts: int) -> list[Path]:
    """The clip at its own size and rate, keyframes every `gop_s` seconds (fixed, no scene cuts), as
    `starts` copies each begun at a different point (k/starts of its length, then wrapping round):
    cameras started together must not all see the same second, their loop's jump included."""
    import av

    with av.open(str(source)) as c:
        video = c.streams.video[0]
        rate = float(video.average_rate or 25)
        length = float(c.duration or 0) / 1e6 or float((video.duration or 0) * (video.time_base or 0))
    gop = max(1, round(rate * gop_s))
    encode = camera_encoding(gop)
    out = []
    for k in range(starts):
        at = round(length * k / starts, 2)
        path = workdir / f"{source.stem}-gop{gop_s:g}-from{at:g}.mp4"
        rotate = (
            []
            if at == 0
            else ["-filter_complex", f"[0:v]trim=start={at},setpts=PTS-STARTPTS[a];[0:v]trim=end={at},"
                  "setpts=PTS-STARTPTS[b];[a][b]concat=n=2:v=1[v]", "-map", "[v]"]
        )  # fmt: skip
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *rotate, *encode, str(path)], check=True)
        out.append(path)
    return out


if __name__ == "__main__":
    sys.exit(main())
