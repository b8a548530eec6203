#!/usr/bin/env python3
"""Per-box recall on the truth clips' frames, by box size: does the detector box the vehicles the
truth files list, before any tracker or rule sees them?

For every non-optional true violation with a box, one frame a second inside its span is decoded and
given to each model; the truth box counts as found on that frame when the model returns a box of one
of the scene class's objects at or above a score (default: the card's track_high, the score a box
needs to start a track) whose IoU with it is at least 0.3, or whose centre lies inside it (truth boxes
are drawn by hand). Sizes are the truth box's sqrt(area) in source pixels: the detector sees the frame
letterboxed to its input, so a far car of 30 px in a 1280 px frame is 12 px to a 512 px model.

    .venv/bin/python scripts/box_recall.py --model coco-centernet-mbv3 --model streetscan-0.3 \\
        --json benchmarks/results/box-recall.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streetscan.accuracy import box_match, find_clip, load_truth  # noqa: E402
from streetscan.capacity import machine  # noqa: E402
from streetscan.pipeline.catalogue import CATALOGUE  # noqa: E402
from streetscan.pipeline.detect import load_detector  # noqa: E402
from streetscan.pipeline.models import resolve_model  # noqa: E402

SIZES = ((0, 32, "< 32 px"), (32, 64, "32-64 px"), (64, 96, "64-96 px"), (96, 10_000, ">= 96 px"))


def frames_at(path: Path, times: list[float]) -> dict[float, np.ndarray]:
    """The first decoded frame at or after each time (one pass through the clip)."""
    want, out = sorted(set(times)), {}
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for frame in c.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else 0.0
            while want and t >= want[0]:
                out[want.pop(0)] = frame.to_ndarray(format="bgr24")
            if not want:
                break
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("truths", nargs="*", type=Path)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--footage", action="append", type=Path)
    ap.add_argument("--min-score", type=float, help="default: each card's track_high")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    folders = a.footage or [
        Path(os.environ.get("STREETSCAN_ASSETS") or REPO.parent / "shared") / "footage",
        REPO / "build" / "footage",
    ]
    truths = [load_truth(p) for p in (a.truths or sorted((REPO / "benchmarks" / "truth").glob("*.yaml")))]
    cards = [resolve_model(m) for m in a.model]
    detectors = [load_detector(c) for c in cards]
    # (model, split, size) -> [found, seen]; and per truth box, per model
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    per_box: list[dict] = []
    for truth in truths:
        clip = find_clip(truth.clip, folders)
        if clip is None:
            print(f"skipped {truth.clip}: not found", file=sys.stderr)
            continue
        boxes = [v for v in truth.violations if v.box is not None and not v.optional]
        if not boxes:
            continue
        times = sorted(
            {float(s) for v in boxes for s in np.arange(v.start_s, min(v.end_s, truth.duration_s - 0.5), 1.0)}
        )
        images = frames_at(clip, times)
        dets = {
            c.name: dict(zip(images, d.detect(list(images.values())), strict=False))
            for c, d in zip(cards, detectors, strict=False)
        }
        for v in boxes:
            side = float(np.sqrt((v.box[2] - v.box[0]) * (v.box[3] - v.box[1])))
            size = next(label for lo, hi, label in SIZES if lo <= side < hi)
            row = {"clip": truth.clip, "split": truth.split, "truth": v.id, "side_px": round(side, 1), "size": size}
            for card in cards:
                floor = card.thresholds.track_high if a.min_score is None else a.min_score
                found = seen = 0
                for t, det in dets[card.name].items():
                    if not v.start_s <= t <= v.end_s:
                        continue
                    keep = np.isin(det.data["class_name"], CATALOGUE[v.scene_class].objects) & (det.confidence >= floor)
                    seen += 1
                    found += bool(box_match(v.box, tuple(tuple(float(x) for x in b) for b in det.xyxy[keep])))
                for key in ((card.name, truth.split, size), (card.name, "all", size), (card.name, truth.split, "all")):
                    counts[key][0] += found
                    counts[key][1] += seen
                row[card.name] = round(found / seen, 2) if seen else None
            per_box.append(row)
    labels = [label for *_, label in SIZES] + ["all"]
    print("| model | split | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for card in cards:
        for split in ("holdout", "tune", "all"):
            cells = []
            for label in labels:
                f, n = counts.get((card.name, split, label), [0, 0])
                cells.append(f"{f / n:.2f} ({n})" if n else "—")
            print(f"| {card.name} | {split} | " + " | ".join(cells) + " |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(
            json.dumps(
                {
                    "date": datetime.now().astimezone().isoformat(timespec="seconds"),
                    "machine": machine(),
                    "models": [
                        {"name": c.name, "min_score": c.thresholds.track_high if a.min_score is None else a.min_score}
                        for c in cards
                    ],
                    "recall": {f"{m}|{s}|{z}": {"found": f, "frames": n} for (m, s, z), (f, n) in counts.items()},
                    "boxes": per_box,
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
