#!/usr/bin/env python3
"""CPU latency of model cards at several input sizes, interleaved so drift hits every column alike.

    .venv/bin/python benchmarks/model_latency.py streetscan-0.2 streetscan-0.2-int8 coco-centernet-mbv3 \\
        --size 640x640 --size 640x384 --size 320x320 [--rounds 7 --runs 20] [--json out.json]

Each round runs every (model, size) pair `--runs` times on a ready tensor (batch 1, the runtime's
default threads: all cores); the table gives the median over rounds of each round's mean. This
shared VM drifts by ±20 % between minutes, so only figures from the same run are compared.
A model whose graph has a fixed input size is measured at that size alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from streetscan.capacity import machine
from streetscan.pipeline.detect import load_detector
from streetscan.pipeline.models import resolve_model


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h or w)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--size", action="append", type=parse_size, help="WxH (repeatable)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    sizes = args.size or [(640, 640), (640, 384), (320, 320)]
    cases = []
    for name in args.models:
        det = load_detector(resolve_model(name))
        fixed = det.runtime.input_shape
        for w, h in sizes:
            shape = (1, h, w, 3) if det.card.layout == "NHWC" else (1, 3, h, w)
            if any(f is not None and f != s for f, s in zip(fixed[1:], shape[1:], strict=False)):
                continue
            x = np.random.default_rng(0).random(shape, dtype=np.float32) * 255
            det.runtime.run(x)  # warm-up: first call allocates
            cases.append({"model": name, "input": f"{w}x{h}", "run": det.runtime.run, "x": x, "ms": []})
    for _ in range(args.rounds):
        for case in cases:
            t0 = time.perf_counter()
            for _ in range(args.runs):
                case["run"](case["x"])
            case["ms"].append(1000 * (time.perf_counter() - t0) / args.runs)
    rows = [
        {
            "model": c["model"],
            "input": c["input"],
            "ms_median": statistics.median(c["ms"]),
            "img_s": 1000 / statistics.median(c["ms"]),
            "ms_rounds": [round(v, 2) for v in c["ms"]],
        }
        for c in cases
    ]
    print("| model | input | ms per frame (median of rounds) | img/s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['input']} | {r['ms_median']:.1f} | {r['img_s']:.1f} |")
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "rounds": args.rounds,
        "runs": args.runs,
        "batch": 1,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
