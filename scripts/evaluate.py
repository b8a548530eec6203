#!/usr/bin/env python3
"""Per-class precision, recall, AP50 and AP50-95 of model cards on a human-labelled YOLO split.

    .venv/bin/python scripts/evaluate.py ../shared/datasets/cn_garbage_bins \\
        --model streetscan-0.3 --model coco-centernet-mbv3 [--split val] [--json out.json]
    .venv/bin/python scripts/evaluate.py build/dataset --built --model streetscan-0.2 ...

`--built` scores the val split of scripts/build_dataset.py's build instead: one table per source
(build/dataset/val/<source>.txt, human boxes only, each source on the objects it labels) and one
pooled table per object over every source that labels it. Footage frames in the build carry
teacher labels, so they are left out.

The split is a staged source folder (classes.txt, images/<split>, labels/<split>): its classes
are mapped onto the vocabulary by the data manifest models/datasets.yaml, and only the
classes the source labels are scored; a model's detections of anything else are not counted
against it (the source simply does not label cars). Models are run as the pipeline runs them
(same card, letterbox and decoder) at a low confidence for AP; precision and recall are taken at
--conf, the operating threshold. AP follows COCO (supervision's MeanAveragePrecision). Several
--model give columns side by side on the same images. Never score on pseudo-labels: a teacher
would grade itself perfect.

Each class also gets AP50 on its small boxes alone (COCO's "small": under 32 x 32 px at the
image's stored size, 640 px long side in a build): a pedestrian seen by an elevated street camera
is that size, and a model can lead on the pooled figure while missing them.

`--write-quality` (with `--built --json`) writes each model's pooled figures into its card as
the `quality:` block that `streetscan models` and the default bar (streetscan/pipeline/serving.py)
read, with a digest of the val boxes so that only figures measured on the same boxes are compared.
Evaluate the candidate and the COCO model in one run and write both.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import supervision as sv
from supervision.metrics import MeanAveragePrecision, Precision, Recall

from streetscan.dataset.formats import yolo_class_names
from streetscan.dataset.manifest import MANIFEST_PATH, load_manifest
from streetscan.pipeline.detect import load_detector
from streetscan.pipeline.models import ObjectQuality, Quality, resolve_model, vocabulary

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
SMALL_AREA = 32**2  # px², COCO's small-object bound


@dataclass
class Split:
    name: str
    images: list[Path]
    labels: list[sv.Detections]  # vocabulary class ids, boxes normalised to 0..1
    classes: list[str]  # vocabulary objects this source labels


def read_boxes(label: Path, to_vocab: dict[int, int]) -> sv.Detections:
    """A YOLO label file's boxes (normalised xyxy) of the classes `to_vocab` maps, as vocabulary ids."""
    boxes, ids = [], []
    for line in label.read_text().splitlines() if label.exists() else []:
        parts = line.split()
        if len(parts) != 5 or int(parts[0]) not in to_vocab:
            continue
        cx, cy, bw, bh = (float(v) for v in parts[1:])
        boxes.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
        ids.append(to_vocab[int(parts[0])])
    return sv.Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), class_id=np.array(ids, int))


def load_split(folder: Path, split: str, manifest_path: Path) -> Split:
    manifest = load_manifest(manifest_path)
    spec = next((s for s in manifest.sources if s.staged == folder.name), None)
    if spec is None:
        raise SystemExit(f"{folder.name}: no staged source of that name in {manifest_path}; add it first")
    names = yolo_class_names(spec, folder)
    cmap = spec.classes
    vocab = list(vocabulary())
    to_vocab = {i: vocab.index(cmap[n]) for i, n in enumerate(names) if cmap.get(n)}
    images, labels = [], []
    for img in sorted((folder / "images" / split).glob("*")):
        if img.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        images.append(img)
        labels.append(read_boxes(folder / "labels" / split / f"{img.stem}.txt", to_vocab))
    if not images:
        raise SystemExit(f"{folder / 'images' / split}: no images")
    classes = sorted({vocab[i] for i in to_vocab.values()}, key=vocab.index)
    return Split(f"{folder.name}/{split}", images, labels, classes)


def load_built(root: Path, manifest_path: Path) -> list[Split]:
    """Each manifest source's val images in a build, with the build's labels (vocabulary ids)."""
    manifest = {s.name: s for s in load_manifest(manifest_path).sources}
    vocab = list(vocabulary())
    splits = []
    for listing in sorted((root / "val").glob("*.txt")):
        spec = manifest.get(listing.stem)
        if spec is None:  # footage frames: teacher labels, nothing human to score against
            continue
        keep = {vocab.index(o): vocab.index(o) for o in spec.labelled_objects}
        images, labels = [], []
        for line in listing.read_text(encoding="utf-8").split():
            img = Path(line)
            images.append(img)
            labels.append(read_boxes(root / "labels" / "val" / f"{img.stem}.txt", keep))
        if images:
            classes = sorted(spec.labelled_objects, key=vocab.index)
            splits.append(Split(f"{spec.name}/val", images, labels, classes))
    if not splits:
        raise SystemExit(f"{root / 'val'}: no source's val listing; build the set with scripts/build_dataset.py")
    return splits


def val_digest(splits: list[Split]) -> str:
    """A fingerprint of the images and human boxes scored: the same digest, the same val set."""
    h = hashlib.sha256()
    for split in splits:
        for path, label in zip(split.images, split.labels, strict=False):
            h.update(f"{split.name}/{path.name}:".encode())
            h.update(np.round(label.xyxy, 4).astype(np.float32).tobytes() + label.class_id.astype(np.int32).tobytes())
    return h.hexdigest()[:16]


def write_quality(
    card_specs: list[str], results: dict[str, dict[str, dict]], digest: str, images: int, results_file: Path
) -> None:
    """Each evaluated card gets these pooled figures as its quality block (objects with boxes only)."""
    today = datetime.now(UTC).date().isoformat()
    for spec in card_specs:
        card = resolve_model(spec)
        objects = {
            o: ObjectQuality(r["boxes"], r["ap50"], r["ap50_95"]) for o, r in results[spec].items() if r["boxes"]
        }
        Quality(today, digest, images, results_file.as_posix(), objects).write_into(card.card_path)
        print(f"quality written into {card.card_path}")


def predict(card_specs: list[str], split: Split) -> tuple[list[sv.Detections], dict[str, list[sv.Detections]]]:
    """One pass over the images (each read once): targets in pixels, and every model's detections
    of the classes the source labels."""
    detectors = {s: load_detector(resolve_model(s), conf_threshold=0.01) for s in card_specs}
    keep = [vocabulary().index(c) for c in split.classes]
    targets: list[sv.Detections] = []
    preds: dict[str, list[sv.Detections]] = {s: [] for s in card_specs}
    for path, label in zip(split.images, split.labels, strict=False):
        image = cv2.imread(str(path))
        h, w = image.shape[:2]
        targets.append(sv.Detections(xyxy=label.xyxy * np.array([w, h, w, h], np.float32), class_id=label.class_id))
        for spec, detector in detectors.items():
            det = detector.detect([image])[0]
            preds[spec].append(det[np.isin(det.class_id, keep)])
    return targets, preds


def score(preds: list[sv.Detections], targets: list[sv.Detections], classes: list[str], conf: float) -> dict[str, dict]:
    vocab = vocabulary()
    m = MeanAveragePrecision().update(preds, targets).compute()
    ap = {int(c): row for c, row in zip(m.matched_classes, m.ap_per_class, strict=False)}
    # COCO marks a class with no small target -1: no figure, rather than a zero it did not earn.
    small = m.small_objects
    ap_small = {
        int(c): float(row[0]) for c, row in zip(small.matched_classes, small.ap_per_class, strict=False) if row[0] >= 0
    }
    at_conf = [d[d.confidence >= conf] for d in preds]
    p = Precision().update(at_conf, targets).compute()
    r = Recall().update(at_conf, targets).compute()
    p50 = {int(c): row[0] for c, row in zip(p.matched_classes, p.precision_per_class, strict=False)}
    r50 = {int(c): row[0] for c, row in zip(r.matched_classes, r.recall_per_class, strict=False)}
    out = {}
    for name in classes:
        c = vocab.index(name)
        row = ap.get(c)
        out[name] = {
            "boxes": int(sum((t.class_id == c).sum() for t in targets)),
            "small_boxes": int(sum(((t.class_id == c) & (t.area < SMALL_AREA)).sum() for t in targets)),
            "ap50_small": ap_small.get(c),
            "precision": float(p50.get(c, 0.0)),
            "recall": float(r50.get(c, 0.0)),
            "ap50": float(row[0]) if row is not None else 0.0,
            "ap50_95": float(np.mean(row)) if row is not None else 0.0,
        }
    return out


CONF_GRID = tuple(round(0.1 + 0.05 * i, 2) for i in range(15))  # 0.10 .. 0.80


def calibrate(preds: list[sv.Detections], targets: list[sv.Detections], classes: list[str]) -> dict[str, dict]:
    """Per class, the confidence that maximises F1 (IoU 0.5) on these human boxes: the operating
    point a model card's `min_confidence` starts from."""
    vocab = vocabulary()
    best: dict[str, dict] = {}
    for conf in CONF_GRID:
        at_conf = [d[d.confidence >= conf] for d in preds]
        p = Precision().update(at_conf, targets).compute()
        r = Recall().update(at_conf, targets).compute()
        p50 = {int(c): row[0] for c, row in zip(p.matched_classes, p.precision_per_class, strict=False)}
        r50 = {int(c): row[0] for c, row in zip(r.matched_classes, r.recall_per_class, strict=False)}
        for name in classes:
            c = vocab.index(name)
            pc, rc = float(p50.get(c, 0.0)), float(r50.get(c, 0.0))
            f1 = 2 * pc * rc / (pc + rc) if pc + rc else 0.0
            if f1 > best.get(name, {"f1": -1.0})["f1"]:
                best[name] = {"conf": conf, "f1": f1, "precision": pc, "recall": rc}
    return best


def table(split: Split, results: dict[str, dict[str, dict]]) -> str:
    models = list(results)
    head = "| class | boxes | " + " | ".join(f"{m} P / R / AP50 / AP50-95" for m in models) + " |"
    lines = [f"{split.name}: {len(split.images)} images, human labels", "", head, "|" + "---|" * (2 + len(models))]
    for cls in split.classes:
        cells = [
            f"{r[cls]['precision']:.2f} / {r[cls]['recall']:.2f} / {r[cls]['ap50']:.3f} / {r[cls]['ap50_95']:.3f}"
            for r in results.values()
        ]
        lines.append(f"| {cls} | {results[models[0]][cls]['boxes']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def small_table(results: dict[str, dict[str, dict]]) -> str:
    """AP50 on small boxes (area < 32² px) for the classes that have any."""
    models = list(results)
    first = results[models[0]]
    lines = [
        "",
        "small boxes only (< 32 x 32 px):",
        "",
        "| class | small boxes | " + " | ".join(f"{m} AP50" for m in models) + " |",
        "|" + "---|" * (2 + len(models)),
    ]
    for cls, row in first.items():
        if row["small_boxes"]:
            cells = [
                f"{r[cls]['ap50_small']:.3f}" if r[cls]["ap50_small"] is not None else "-" for r in results.values()
            ]
            lines.append(f"| {cls} | {row['small_boxes']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "source", type=Path, help="a staged source folder (classes.txt, images/, labels/), or a build with --built"
    )
    ap.add_argument(
        "--built", action="store_true", help="source is scripts/build_dataset.py's output: score its val split"
    )
    ap.add_argument("--model", action="append", required=True, help="model name, card or ONNX (repeatable)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--manifest", type=Path, default=MANIFEST_PATH)
    ap.add_argument("--conf", type=float, default=0.25, help="operating threshold for precision and recall")
    ap.add_argument("--limit", type=int, help="first N images only")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--write-quality",
        action="store_true",
        help="with --built and --json: write the pooled figures into each model's card",
    )
    args = ap.parse_args(argv)
    if args.write_quality and not (args.built and args.json and not args.limit):
        ap.error("--write-quality needs --built and --json (the card cites the results file), and no --limit")
    if args.built:
        return evaluate_built(args)
    split = load_split(args.source, args.split, args.manifest)
    if args.limit:
        split.images, split.labels = split.images[: args.limit], split.labels[: args.limit]
    targets, preds = predict(args.model, split)
    results = {m: score(preds[m], targets, split.classes, args.conf) for m in args.model}
    print(table(split, results))
    report = {"split": split.name, "images": len(split.images), "conf": args.conf, "models": results}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def evaluate_built(args) -> dict:
    vocab = list(vocabulary())
    pooled_targets: list[sv.Detections] = []
    pooled_preds: dict[str, list[sv.Detections]] = {m: [] for m in args.model}
    splits = load_built(args.source, args.manifest)
    for split in splits:
        if args.limit:
            split.images, split.labels = split.images[: args.limit], split.labels[: args.limit]
    digest = val_digest(splits)
    report = {"build": str(args.source), "val_digest": digest, "conf": args.conf, "sources": {}, "pooled": {}}
    for split in splits:
        targets, preds = predict(args.model, split)
        results = {m: score(preds[m], targets, split.classes, args.conf) for m in args.model}
        print(table(split, results), end="\n\n", flush=True)
        report["sources"][split.name] = {"images": len(split.images), "models": results}
        pooled_targets += targets
        for m in args.model:
            pooled_preds[m] += preds[m]
    objects = sorted({o for s in report["sources"].values() for o in next(iter(s["models"].values()))}, key=vocab.index)
    pooled = Split(
        "all sources (each object scored on the sources that label it)",
        [None] * len(pooled_targets),
        pooled_targets,
        objects,
    )
    results = {m: score(pooled_preds[m], pooled_targets, objects, args.conf) for m in args.model}
    print(table(pooled, results), flush=True)
    print(small_table(results), flush=True)
    report["pooled"] = {"images": len(pooled_targets), "models": results}
    report["calibration"] = {m: calibrate(pooled_preds[m], pooled_targets, objects) for m in args.model}
    for m, per_class in report["calibration"].items():
        print(
            f"\n{m}: F1-best confidence per class (pooled val): "
            + ", ".join(f"{c} {v['conf']:.2f} (F1 {v['f1']:.2f})" for c, v in per_class.items())
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    if args.write_quality:
        write_quality(args.model, results, digest, len(pooled_targets), args.json)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
