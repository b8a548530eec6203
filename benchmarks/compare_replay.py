#!/usr/bin/env python3
"""Replay throughput of two checkouts, measured in the same run, interleaved.

    .venv/bin/python benchmarks/compare_replay.py --before ../before --after . [--rounds 3]

Each round runs `python -m streetscan replay` on the demo clips ($STREETSCAN_ASSETS/footage, the
cameras of examples/footage.yaml) once from each checkout, alternating which goes first, and reads
the real-time factor of every clip from the report each run writes. Shared machines drift by
+-20 % over minutes, so only figures from one interleaved run are compared. Prints a Markdown
table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CLIPS = ("street_parking_overhead.mp4", "plaza_pedestrians.mp4", "motorway_overpass.mp4")


def realtime_factors(report: Path) -> dict[str, float]:
    """{clip name: real-time factor} from the footage table of a replay report."""
    out = {}
    for line in report.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[7].endswith("x") and cells[0].endswith(".mp4"):
            out[Path(cells[0]).name] = float(cells[7][:-1])
    return out


def replay(tree: Path, footage: Path, streams: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "200"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "streetscan",
            "replay",
            *(str(footage / c) for c in CLIPS),
            "--streams",
            str(streams),
            "--out",
            str(out),
        ],
        check=True,
        env=env,
        cwd=tree,
        stdout=subprocess.DEVNULL,
    )
    return realtime_factors(out / "report.md")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="checkout to compare against")
    ap.add_argument("--after", type=Path, default=Path("."), help="checkout under test")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--streams", type=Path, default=Path("examples/footage.yaml"))
    args = ap.parse_args()
    assets = os.environ.get("STREETSCAN_ASSETS")
    if not assets:
        ap.error("set STREETSCAN_ASSETS to the folder holding footage/")
    footage = Path(assets) / "footage"
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for name in order:
                out = Path(tmp) / f"{name}-{r}"
                runs[name].append(replay(trees[name], footage, args.streams.resolve(), out))
                print(f"round {r + 1} {name}: {runs[name][-1]}", file=sys.stderr)
    medians = {name: {c: statistics.median(run[c] for run in rs) for c in CLIPS} for name, rs in runs.items()}
    print("| clip | before (x real time) | after | change |\n|---|---|---|---|")
    for c in CLIPS:
        b, a = medians["before"][c], medians["after"][c]
        print(f"| {c} | {b:.2f} | {a:.2f} | {100 * (a - b) / b:+.1f} % |")
    print(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                "rounds": args.rounds,
                "runs": runs,
                "median": medians,
            }
        )
    )


if __name__ == "__main__":
    main()
