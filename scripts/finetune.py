#!/usr/bin/env python3
"""Fine-tune the current own model on operators' labels, and measure old against new (issue #33).

    .venv/bin/python scripts/finetune.py out/exported-labels --base streetscan-0.3 \\
        --name streetscan-0.3-ft1 --out build/finetune [--replay build/dataset --replay-images 400] \\
        [--epochs 30 --imgsz 640 --device 0]

Input: folders written by `streetscan dataset export` (images/labels per split, vocabulary ids).
The base model's trainable weights are recovered from its ONNX (scripts/checkpoint_from_onnx.py).
So that the model does not forget what it knew, every training frame also carries the base
model's own confident boxes of the objects its card serves, wherever an operator drew nothing
(the teacher's labels), and `--replay` mixes in images of the public build it was trained on.
Val frames keep the operators' boxes only: a model is never scored on its own labels.

After training, the new ONNX and card are written to --out (the card keeps the base card's
thresholds and class map, and maps the objects the operators taught), and both models are run on
the val frames: AP50 per labelled object, old against new, goes into the card (`fine_tune:`) and
is printed. The card is a candidate: `streetscan models` says whether it may become the default.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

TEACHER_IOU = 0.3  # a teacher box overlapping an operator's box this much is the same object: dropped
# An object the base model was never taught has a classification output trained to say "never"
# (streetscan-0.3 scores a pasted three-wheeler 1e-6): a few hundred fine-tuning steps at a
# fine-tuning rate do not lift it. Its output starts as a copy of its nearest taught kin's, and the
# fine-tune then tells the two apart (the teacher's boxes keep the kin's own examples labelled).
KIN = {
    "tricycle": "motorcycle",
    "muck_truck": "truck",
    "stall": "umbrella",
    "goods": "furniture",
    "materials": "garbage",
    "laundry": "umbrella",
    "floating_debris": "litter",
    "water": "litter",
}


def seed_untaught(ckpt: Path, base_card, objects: list[str], out: Path) -> tuple[Path, dict[str, str]]:
    """The checkpoint with each untaught object's class outputs copied from its kin's."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = state["model"]
    head = model.model[-1]
    names = list(base_card.class_names)
    seeded = {}
    with torch.no_grad():
        for obj in objects:
            kin = KIN.get(obj)
            if base_card.class_map.get(obj) or kin is None or obj not in names:
                continue  # taught already, or no kin to start from
            row, kin_row = names.index(obj), names.index(kin)
            for branch in head.cv3:
                last = branch[-1]
                last.weight[row].copy_(last.weight[kin_row])
                last.bias[row].copy_(last.bias[kin_row])
            seeded[obj] = kin
    torch.save(state, out)
    return out, seeded


def teacher_rows(detector, card, image, labelled: list[list[float]], vocab: list[str]) -> list[str]:
    """YOLO lines of the base model's confident boxes of objects its card serves, off the operators'."""
    from streetscan.pipeline.track import box_iou

    h, w = image.shape[:2]
    det = detector.detect([image])[0]
    served = {o for o in card.class_map.values() if o}
    conf = card.thresholds.min_confidence.get("default", 0.3)
    rows = []
    for box, name, score in zip(det.xyxy, det.data["class_name"], det.confidence, strict=False):
        if name not in served or score < conf:
            continue
        if any(box_iou(tuple(box), tuple(b)) >= TEACHER_IOU for b in labelled):
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
        rows.append(f"{vocab.index(name)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return rows


def assemble(sources: list[Path], base_card, work: Path, replay: Path | None, replay_images: int, seed: int) -> Path:
    """The training folder: operators' frames (+ teacher boxes on train), and replayed build images."""
    import cv2

    from streetscan.pipeline.detect import load_detector
    from streetscan.pipeline.models import vocabulary

    vocab = list(vocabulary())
    detector = load_detector(base_card)
    if work.exists():
        shutil.rmtree(work)
    for split in ("train", "val"):
        (work / "images" / split).mkdir(parents=True)
        (work / "labels" / split).mkdir(parents=True)
    for src in sources:
        for split in ("train", "val"):
            for img in sorted((src / "images" / split).glob("*.jpg")):
                label = src / "labels" / split / f"{img.stem}.txt"
                lines = (
                    [ln for ln in label.read_text(encoding="utf-8").splitlines() if ln.strip()]
                    if label.exists()
                    else []
                )
                if split == "train":
                    image = cv2.imread(str(img))
                    h, w = image.shape[:2]
                    drawn = []
                    for ln in lines:
                        _, cx, cy, bw, bh = (float(v) for v in ln.split())
                        drawn.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
                    lines += teacher_rows(detector, base_card, image, drawn, vocab)
                shutil.copyfile(img, work / "images" / split / f"{src.name}__{img.name}")
                (work / "labels" / split / f"{src.name}__{img.stem}.txt").write_text(
                    "".join(ln + "\n" for ln in lines), encoding="utf-8"
                )
    if replay is not None and replay_images:
        listing = replay / "train.txt"
        images = [Path(p) for p in listing.read_text(encoding="utf-8").split()] if listing.exists() else []
        random.Random(seed).shuffle(images)
        for img in images[:replay_images]:
            label = replay / "labels" / "train" / f"{img.stem}.txt"
            shutil.copyfile(img, work / "images" / "train" / f"replay__{img.name}")
            if label.exists():
                shutil.copyfile(label, work / "labels" / "train" / f"replay__{img.stem}.txt")
    data = work / "data.yaml"
    data.write_text(
        yaml.safe_dump(
            {"path": str(work), "train": "images/train", "val": "images/val", "names": dict(enumerate(vocab))}
        ),
        encoding="utf-8",
    )
    return data


def ap50(card_specs: list[str], sources: list[Path]) -> dict[str, dict[str, float]]:
    """AP50 per object the operators labelled in val, for each model: {object: {model: ap50}}."""
    from evaluate import Split, predict, read_boxes, score

    from streetscan.pipeline.models import vocabulary

    vocab = list(vocabulary())
    images, labels = [], []
    for src in sources:
        for img in sorted((src / "images" / "val").glob("*.jpg")):
            images.append(img)
            labels.append(read_boxes(src / "labels" / "val" / f"{img.stem}.txt", {i: i for i in range(len(vocab))}))
    classes = sorted({vocab[int(c)] for lb in labels for c in lb.class_id}, key=vocab.index)
    if not classes:
        raise SystemExit("the exported val frames hold no boxes to score on")
    split = Split("operators/val", images, labels, classes)
    targets, preds = predict(card_specs, split)
    out: dict[str, dict[str, float]] = {c: {} for c in classes}
    for spec in card_specs:
        for obj, row in score(preds[spec], targets, classes, 0.3).items():
            out[obj][spec] = round(row["ap50"], 4)
    return out


def kept(base_card, new_card, sources: list[Path]) -> dict[str, float]:
    """Per object the base model served, on the val frames: the share of its confident boxes the
    new model still finds (same object, IoU >= 0.5, at the base card's operating confidence), the
    check that fine-tuning forgot nothing the operators did not label."""
    import cv2

    from streetscan.pipeline.detect import load_detector
    from streetscan.pipeline.track import box_iou

    old, new = load_detector(base_card), load_detector(new_card)
    conf = base_card.thresholds.min_confidence.get("default", 0.3)
    found: dict[str, list[int]] = {}
    for src in sources:
        for img in sorted((src / "images" / "val").glob("*.jpg")):
            image = cv2.imread(str(img))
            a, b = old.detect([image])[0], new.detect([image])[0]
            theirs = [
                (n, tuple(x)) for n, x, c in zip(b.data["class_name"], b.xyxy, b.confidence, strict=False) if c >= conf
            ]
            for name, box, score in zip(a.data["class_name"], a.xyxy, a.confidence, strict=False):
                if score < conf or not base_card.class_map.get(name):
                    continue
                hit = any(n == name and box_iou(tuple(box), x) >= 0.5 for n, x in theirs)
                found.setdefault(str(name), [0, 0])[0] += hit
                found[str(name)][1] += 1
    return {o: round(h / n, 3) for o, (h, n) in sorted(found.items())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", type=Path, nargs="+", help="folders from `streetscan dataset export`")
    ap.add_argument("--base", default="streetscan-0.3", help="the model to fine-tune (a YOLO card)")
    ap.add_argument("--name", required=True, help="the new model's name")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "finetune")
    ap.add_argument("--replay", type=Path, help="a build (scripts/build_dataset.py) to mix images from")
    ap.add_argument("--replay-images", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr0", type=float, default=0.002)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from checkpoint_from_onnx import checkpoint_from_onnx
    from export_yolo import export_yolo
    from train import offline_ultralytics

    from streetscan.pipeline.models import resolve_model

    base = resolve_model(args.base)
    if base.family != "yolo":
        raise SystemExit(f"{args.base}: only a YOLO model can be fine-tuned here (this one is {base.family})")
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_from_onnx(base.weights, args.out / f"{base.name}-recovered.pt")
    data = assemble(args.sources, base, args.out / "data", args.replay, args.replay_images, args.seed)
    labelled = sorted({list(yaml.safe_load(data.read_text())["names"].values())[int(ln.split()[0])]
                       for src in args.sources for f in (src / "labels").glob("*/*.txt")
                       for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()})  # fmt: skip
    ckpt, seeded = seed_untaught(ckpt, base, labelled, args.out / f"{base.name}-seeded.pt")

    from ultralytics import YOLO

    offline_ultralytics()
    run = args.out / "runs" / args.name
    if run.exists():
        shutil.rmtree(run)
    YOLO(str(ckpt)).train(
        data=str(data), imgsz=args.imgsz, epochs=args.epochs, batch=args.batch, workers=0, device=args.device,
        seed=args.seed, deterministic=True, lr0=args.lr0, warmup_epochs=0, optimizer="AdamW", pretrained=True,
        project=str(run.parent), name=run.name, exist_ok=True, plots=False, amp=args.device != "cpu", val=False,
        save_period=-1, verbose=False, mosaic=0.0,
    )  # fmt: skip
    weights = run / "weights" / "last.pt"
    card_path = export_yolo(
        str(weights), args.out, args.name, version=args.name.rsplit("-", 1)[-1], imgsz=args.imgsz,
        provenance=f"fine-tuned from {base.name} by scripts/finetune.py on {', '.join(s.name for s in args.sources)} "
                   f"({args.epochs} epochs, imgsz {args.imgsz}, {args.device})",
        licence="AGPL-3.0 (Ultralytics code); data: the base model's, and the operators' own footage",
    )  # fmt: skip
    scores = ap50([str(base.card_path), str(card_path)], args.sources)
    still = kept(base, resolve_model(str(card_path)), args.sources)
    card = yaml.safe_load(card_path.read_text(encoding="utf-8"))
    base_card = yaml.safe_load(base.card_path.read_text(encoding="utf-8"))
    card["thresholds"] = base_card["thresholds"]
    taught = sorted(o for o, by in scores.items() if by[str(card_path)] > by[str(base.card_path)])
    card["class_map"] = {**base_card["class_map"], **{o: o for o in taught}}
    card["fine_tune"] = {
        "base": base.name,
        "sources": [s.name for s in args.sources],
        "ap50_on_operator_val": {
            o: {"base": by[str(base.card_path)], "new": by[str(card_path)]} for o, by in scores.items()
        },
        "taught": taught,
        "seeded_from": seeded,
        "base_boxes_kept_on_val": still,
    }
    card_path.write_text(yaml.safe_dump(card, allow_unicode=True, sort_keys=False), encoding="utf-8")
    summary = {"card": str(card_path), "ap50": card["fine_tune"]["ap50_on_operator_val"], "taught": taught,
               "kept": still}  # fmt: skip
    print(json.dumps(summary, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
