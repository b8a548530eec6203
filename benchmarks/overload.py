"""Graceful overload (issue #19): analysed frames/s at 1×, 2× and 3× the sustainable camera count,
with and without load shedding (an overloaded full-decode camera dropping to keyframes only).

Cameras whose keyframes come less often than the analysis rate need full decode (the common
1080p camera with a 2 s GOP, analysed at 1 fps); past the sustainable count their decode threads
take the cores inference needs. All figures come from the same run (this VM drifts ±20 %).

    .venv/bin/python benchmarks/overload.py --cameras 5 --json benchmarks/results/overload-cpu-2core.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import datetime
from pathlib import Path

from streetscan.capacity import default_clip, e2e_trial, machine
from streetscan.pipeline.models import resolve_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, default=5, help="the sustained count measured by `streetscan bench`")
    ap.add_argument("--model", default=None)
    ap.add_argument("--analysis-fps", type=float, default=1.0)
    ap.add_argument("--gop-s", type=float, default=2.0)
    ap.add_argument("--seconds", type=float, default=30.0, help="each trial, after 5 s of warm-up")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    card = resolve_model(args.model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="overload-") as tmp:
        work = Path(tmp)
        clip = default_clip(work, quick=False, gop_s=args.gop_s)
        plan = [(1, True), (2, False), (2, True), (3, False), (3, True)]
        for factor, shed in plan:
            n = args.cameras * factor
            (work / f"{factor}-{shed}").mkdir()
            t = e2e_trial(
                clip,
                card,
                n,
                args.analysis_fps,
                args.seconds,
                work / f"{factor}-{shed}",
                {"threads": None},
                8,
                shed_load=shed,
            )
            row = {"load": f"{factor}x", "cameras": n, "shedding": shed, **t.__dict__}
            rows.append(row)
            print(
                f"{factor}x ({n:3d} cameras) shedding {'on ' if shed else 'off'}: offered {t.offered_fps:5.1f}/s "
                f"analysed {t.analysed_fps:5.1f}/s dropped {t.dropped_fps:5.1f}/s age p95 {t.age_p95_s:.1f}s "
                f"per camera {t.min_camera_fps:.2f}-{t.max_camera_fps:.2f}/s",
                flush=True,
            )
    base = rows[0]["analysed_fps"]
    for r in rows:
        r["of_sustained"] = round(r["analysed_fps"] / base, 3) if base else None
    doc = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "model": card.name,
        "analysis_fps": args.analysis_fps,
        "gop_s": args.gop_s,
        "seconds": args.seconds,
        "rows": rows,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({r["load"] + (" shed" if r["shedding"] else ""): r["of_sustained"] for r in rows}))


if __name__ == "__main__":
    main()
