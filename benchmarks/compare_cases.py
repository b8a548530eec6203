#!/usr/bin/env python3
"""Whether two runs of `streetscan evaluate` made the same cases: event by event, clip by clip.

    .venv/bin/python benchmarks/compare_cases.py BEFORE_OUT AFTER_OUT

Each OUT is an evaluate output folder (its events-<clip>.jsonl files). Prints, per clip, the
number of event messages before and after and whether they are byte-identical; where they are
not, the (event id, revision, state, zone, class, boxes, first seen, confirmed) that only one side
has. Exits 1 when any clip differs. A restructure that must not change behaviour (#31) runs
evaluate on the whole truth set from both checkouts and compares them with this.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def messages(path: Path) -> list[tuple]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        out.append(
            (
                e["event_id"],
                e["revision"],
                e["state"],
                e["zone"]["id"],
                e["scene_class"]["code"],
                tuple(tuple(o["box"]) for o in e["objects"]),
                e["first_seen"]["stream_s"],
                e["confirmed"]["stream_s"],
            )
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args()
    differing = 0
    for f in sorted(args.before.glob("events-*.jsonl")):
        other = args.after / f.name
        if not other.is_file():
            print(f"{f.name}: missing from {args.after}")
            differing += 1
            continue
        same = f.read_bytes() == other.read_bytes()
        x, y = messages(f), messages(other)
        print(f"{f.name:70s} {len(x):4d} {len(y):4d} {'identical' if same else 'DIFFERENT'}")
        if not same:
            differing += 1
            for e in sorted(set(x) - set(y))[:5]:
                print("  only before", e)
            for e in sorted(set(y) - set(x))[:5]:
                print("  only after ", e)
    print(f"clips differing: {differing}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
