#!/usr/bin/env python3
"""Cameras sustained at 1 fps with motion-gated detection off and on, measured in one run.

    STREETSCAN_ASSETS=../shared .venv/bin/python benchmarks/gating.py [--seconds 12] [--limit 64]

Every simulated camera plays one truth-set camera's clip in a loop (`--camera`, default the
kerbside street: cars park, leave and pass; people walk), with that camera's zones and rules
from examples/footage.yaml, through the real daemon and the default model. The search is
streetscan bench's (double until a trial is not sustained, then bisect). Off and on alternate
per round so the machine's drift falls on both. Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import yaml

from streetscan.capacity import search_cameras
from streetscan.pipeline.models import resolve_model

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=12.0, help="measured seconds per trial")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--max-age", type=float, default=3.0, help="frame-age p95 bound (s) for 'sustained'")
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
    clip = Path(assets) / "footage" / chosen["url"]
    camera = {"zones": chosen["zones"], "rules": chosen.get("rules", {})}
    card = resolve_model(None)
    found: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="gating-") as tmp:
        for name, detection in (("off", {"motion_gating": False}), ("on", {"motion_gating": True, "recheck_s": 10})):
            print(f"gating {name}:", file=sys.stderr)
            work = Path(tmp) / name
            work.mkdir()
            found[name], _ = search_cameras(
                clip, card, 1.0, args.seconds, work, max_age_s=args.max_age, detector_opts={}, max_batch=8,
                limit=args.limit, log=lambda s: print(s, file=sys.stderr), camera=camera, detection=detection,
            )  # fmt: skip
    print("| motion gating | cameras sustained at 1 fps |\n|---|---|")
    for name, n in found.items():
        print(f"| {name} | {n} |")
    print(json.dumps({"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                      "model": card.name, "clip": clip.name, "cameras": found}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
