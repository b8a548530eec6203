#!/usr/bin/env python3
"""Build StreetScan's YOLO training set from the staged labelled sources and street footage.

    .venv/bin/python scripts/build_dataset.py --assets ../shared --out build/dataset [--footage-fps 0.5]

- Every `<assets>/datasets/<name>/` (classes.txt, images/{train,val}, labels/{train,val}) is mapped
  onto the vocabulary through models/dataset_mapping.yaml (unlisted sources are refused).
- The COCO teacher (default: coco-centernet-mbv3) adds pseudo-labels for the vocabulary objects it
  knows (person, vehicles, bikes, umbrellas, furniture) on every image, so the student does not
  learn that cars are background because a garbage set never labels them.
- Frames sampled from `<assets>/footage/*.mp4` are pseudo-labelled the same way; whole clips go to
  one split (models/dataset_mapping.yaml `footage.val`), never neighbouring frames to both.
- Images are symlinked, not copied; labels are YOLO txt with vocabulary ids; `data.yaml` is
  Ultralytics' dataset file; `report.md`/`report.json` count images and boxes per class, source,
  split and label kind (human / pseudo), and list the scene classes that have no data.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import yaml

from streetscan.pipeline.catalogue import SCENE_CLASSES
from streetscan.pipeline.decode import VideoSource
from streetscan.pipeline.detect import load_detector
from streetscan.pipeline.models import PACKAGED_MODELS_DIR, resolve_model, vocabulary

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


class DatasetBuilder:
    def __init__(self, out: Path, mapping: dict, teacher_spec: str | None = None, teacher_conf: float = 0.4):
        self.out = out
        self.mapping = mapping
        self.vocab = list(vocabulary())
        self.teacher = load_detector(resolve_model(teacher_spec), conf_threshold=teacher_conf)
        self.counts: Counter = Counter()  # (source, split, kind, class) -> boxes
        self.images: Counter = Counter()  # (source, split) -> images

    def _write(self, source: str, split: str, name: str, image_path: Path, rows: list[tuple[int, list[float]]]):
        img_dir, lbl_dir = self.out / "images" / split, self.out / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        link = img_dir / f"{source}__{name}{image_path.suffix}"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(image_path.resolve())
        (lbl_dir / f"{source}__{name}.txt").write_text(
            "".join(f"{c} {' '.join(f'{v:.6f}' for v in box)}\n" for c, box in rows))
        self.images[(source, split)] += 1

    def _pseudo(self, image: np.ndarray) -> list[tuple[int, list[float]]]:
        det = self.teacher.detect([image])[0]
        h, w = image.shape[:2]
        rows = []
        for (x1, y1, x2, y2), name in zip(det.xyxy, det.data["class_name"]):
            rows.append((self.vocab.index(str(name)), [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]))
        return rows

    def add_source(self, folder: Path) -> None:
        name = folder.name
        if name not in self.mapping["sources"]:
            raise SystemExit(f"{folder}: source not in models/dataset_mapping.yaml; map its classes first")
        classes = folder.joinpath("classes.txt").read_text(encoding="utf-8").split()
        cmap = self.mapping["sources"][name]
        unmapped = [c for c in classes if c not in cmap]
        if unmapped:
            raise SystemExit(f"{folder}: classes {unmapped} have no entry (map or null) in models/dataset_mapping.yaml")
        to_vocab = {i: (self.vocab.index(cmap[c]) if cmap[c] else None) for i, c in enumerate(classes)}
        for split in ("train", "val"):
            for img in sorted((folder / "images" / split).glob("*")):
                if img.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                rows = []
                label = folder / "labels" / split / f"{img.stem}.txt"
                for line in (label.read_text().splitlines() if label.exists() else []):
                    parts = line.split()
                    if len(parts) != 5:
                        continue  # polygons or malformed lines: not boxes
                    cid = to_vocab.get(int(parts[0]))
                    if cid is not None:
                        rows.append((cid, [float(v) for v in parts[1:]]))
                        self.counts[(name, split, "human", self.vocab[cid])] += 1
                image = cv2.imread(str(img))
                if image is None:
                    continue
                pseudo = self._pseudo(image)
                for cid, _ in pseudo:
                    self.counts[(name, split, "pseudo", self.vocab[cid])] += 1
                self._write(name, split, img.stem, img, rows + pseudo)

    def add_footage(self, clip: Path, fps: float) -> None:
        split = "val" if clip.name in self.mapping.get("footage", {}).get("val", []) else "train"
        frames_dir = self.out / "frames" / clip.stem
        frames_dir.mkdir(parents=True, exist_ok=True)
        source = f"footage:{clip.stem}"
        for frame in VideoSource(str(clip), fps).frames():
            path = frames_dir / f"{frame.seq:05d}.jpg"
            cv2.imwrite(str(path), frame.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            pseudo = self._pseudo(frame.image)
            for cid, _ in pseudo:
                self.counts[(source, split, "pseudo", self.vocab[cid])] += 1
            self._write(clip.stem, split, f"{frame.seq:05d}", path, pseudo)

    def finish(self) -> dict:
        (self.out / "data.yaml").write_text(yaml.safe_dump({
            "path": str(self.out.resolve()), "train": "images/train", "val": "images/val",
            "names": dict(enumerate(self.vocab)),
        }, allow_unicode=True, sort_keys=False))
        boxes_by_class = Counter()
        human_by_class = Counter()
        for (src, split, kind, cls), n in self.counts.items():
            boxes_by_class[cls] += n
            if kind == "human":
                human_by_class[cls] += n
        no_data = [c.code for c in SCENE_CLASSES if not any(boxes_by_class[o] for o in c.objects)]
        by_source: dict = defaultdict(lambda: defaultdict(dict))
        for (src, split, kind, cls), n in sorted(self.counts.items()):
            by_source[src.split(":")[-1]][split][f"{cls} ({kind})"] = n
        report = {
            "images": {f"{s}/{sp}": n for (s, sp), n in sorted(self.images.items())},
            "boxes": {s: {sp: dict(v) for sp, v in d.items()} for s, d in by_source.items()},
            "boxes_per_class": dict(boxes_by_class), "human_boxes_per_class": dict(human_by_class),
            "scene_classes_without_data": no_data, "teacher": self.teacher.card.name,
        }
        (self.out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1))
        lines = ["# StreetScan dataset report", "", f"Teacher for pseudo-labels: `{self.teacher.card.name}`.", "",
                 "| source/split | images |", "|---|---|"]
        lines += [f"| {k} | {n} |" for k, n in report["images"].items()]
        lines += ["", "| source | split | class (label kind) | boxes |", "|---|---|---|---|"]
        for s, d in report["boxes"].items():
            for sp, v in d.items():
                lines += [f"| {s} | {sp} | {c} | {n} |" for c, n in v.items()]
        lines += ["", "Scene classes with no data: " + (", ".join(no_data) or "none"), ""]
        (self.out / "report.md").write_text("\n".join(lines), encoding="utf-8")
        return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=Path, default=Path(os.environ["STREETSCAN_ASSETS"]) if os.environ.get("STREETSCAN_ASSETS") else None)
    ap.add_argument("--out", type=Path, default=Path("build/dataset"))
    ap.add_argument("--mapping", type=Path, default=PACKAGED_MODELS_DIR / "dataset_mapping.yaml")
    ap.add_argument("--teacher", default=None, help="model for pseudo-labels (default: the default model)")
    ap.add_argument("--footage-fps", type=float, default=0.5)
    args = ap.parse_args()
    if args.assets is None or not args.assets.is_dir():
        ap.error("no assets folder: pass --assets or set STREETSCAN_ASSETS")
    builder = DatasetBuilder(args.out, yaml.safe_load(args.mapping.read_text(encoding="utf-8")), args.teacher)
    for folder in sorted(p for p in (args.assets / "datasets").iterdir() if (p / "classes.txt").exists()):
        builder.add_source(folder)
        print(f"source {folder.name}: done")
    for clip in sorted((args.assets / "footage").glob("*.mp4")):
        builder.add_footage(clip, args.footage_fps)
        print(f"footage {clip.name}: done")
    report = builder.finish()
    print(json.dumps({"images": report["images"], "scene_classes_without_data": report["scene_classes_without_data"]},
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
