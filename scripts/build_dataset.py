#!/usr/bin/env python3
"""Build StreetScan's YOLO training set from the data manifest (models/datasets.yaml).

    .venv/bin/python scripts/build_dataset.py --assets ../shared --mirror ../mirrors --out build/dataset

- Staged sources come from `<assets>/datasets/<name>/`; repository sources from `--mirror DIR`
  (git clones or bare mirrors, found by repository name; layouts owner+name/repo, owner/name, name)
  at the manifest's exact commit. A missing source, one whose snapshot lacks that commit, or one
  that cannot be read is reported by name and skipped; the build goes on.
- YOLO (boxes or polygons), COCO JSON, VOC XML and DOTA (oriented boxes) are normalised to YOLO boxes
  with vocabulary ids;
  images are resized to the manifest's long side; near-identical images (augmented copies) are
  dropped by perceptual hash; whole scenes go to one split; each source's own val split stays val.
- The COCO teacher adds boxes, in train only, for vocabulary objects a source does not label.
- Street clips in `<assets>/footage/*.mp4` are added with teacher labels (`--footage-fps`, 0 = off):
  boxes the teacher is sure of, and boxes on tracks its calibrated tracker activated (persistence).
- Writes images/, labels/, data.yaml, val/<source>.txt (each source's val images, for per-source
  evaluation), report.md and report.json. Exit status 0 even when sources were skipped (they are
  listed); 2 when `--require-all` is given and any was.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from streetscan.dataset.builder import TEACHER_CONF, DatasetBuilder, clean
from streetscan.dataset.manifest import MANIFEST_PATH, ManifestError, load_manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    env_assets = os.environ.get("STREETSCAN_ASSETS")
    ap.add_argument("--assets", type=Path, default=Path(env_assets) if env_assets else None)
    ap.add_argument(
        "--mirror", type=Path, action="append", default=[], help="folder of repository snapshots (repeatable)"
    )
    ap.add_argument("--manifest", type=Path, default=MANIFEST_PATH)
    ap.add_argument("--out", type=Path, default=Path("build/dataset"))
    ap.add_argument("--only", action="append", default=[], help="build only these sources (repeatable)")
    ap.add_argument("--teacher", default="coco-centernet-mbv3", help="model for pseudo-labels")
    ap.add_argument("--no-pseudo", action="store_true", help="human labels only")
    ap.add_argument("--footage-fps", type=float, default=0.5)
    ap.add_argument("--dedup-distance", type=int, default=4, help="max perceptual-hash bits for a duplicate")
    ap.add_argument("--require-all", action="store_true", help="exit 2 when any manifest source was skipped")
    args = ap.parse_args(argv)
    try:
        manifest = load_manifest(args.manifest)
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return 1
    teacher = None
    if not args.no_pseudo:
        from streetscan.pipeline.detect import load_detector
        from streetscan.pipeline.models import resolve_model

        teacher = load_detector(resolve_model(args.teacher), conf_threshold=TEACHER_CONF)
    clean(args.out)
    builder = DatasetBuilder(args.out, manifest, teacher, dedup_distance=args.dedup_distance)
    for spec in manifest.sources:
        if args.only and spec.name not in args.only:
            continue
        r = builder.add(spec, assets=args.assets, mirrors=args.mirror)
        what = (
            f"{dict(r.images)} images, {r.duplicates} duplicates, {len(r.bad_labels)} bad labels"
            if r.status == "built"
            else r.reason
        )
        print(f"{spec.name}: {r.status}: {what}", flush=True)
    if args.assets and args.footage_fps > 0 and not args.only and teacher is not None:
        for clip in sorted((args.assets / "footage").glob("*.mp4")):
            r = builder.add_footage(clip, args.footage_fps)
            print(f"{r.name}: {r.status}: {dict(r.images) or r.reason}", flush=True)
    report = builder.finish()
    print(
        json.dumps(
            {"skipped": report["skipped"], "targets_missed": [t["object"] for t in report["targets"] if not t["met"]]},
            ensure_ascii=False,
        )
    )
    print(f"report: {args.out / 'report.md'}")
    # Footage left out of training for want of a licence is a decision, not a missing source.
    missing = [spec.name for spec in manifest.sources if spec.name in report["skipped"]]
    return 2 if args.require_all and missing else 0


if __name__ == "__main__":
    sys.exit(main())
