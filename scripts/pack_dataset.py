#!/usr/bin/env python3
"""Pack the built training set into small tar chunks for a GPU machine that starts bare.

    .venv/bin/python scripts/pack_dataset.py --data build/dataset/data.yaml --out build/gpu

The device tool carries at most 64 MiB a call (the repository included), so the set travels as
chunks of `--chunk-mib`, each a tar of re-encoded JPEGs (long side `--long-side`) and their YOLO
labels; boxes are normalised, so resizing keeps them valid. Unpack every chunk into one folder
and train on its `data.yaml`.

Class balance: rare classes (a few dozen umbrellas against thousands of cars) are oversampled by
repeat-factor sampling (Gupta et al., LVIS 2019): an image repeats r = max over its classes of
max(1, sqrt(t / f_c)), f_c the share of train images holding class c, capped at `--max-repeat`
and rounded stochastically with a fixed seed. The repeats are lines of `train.txt`, so the images
travel once. Val is a stratified subset (`--val-images`) for monitoring the run; the full val
split is evaluated off the GPU afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import tarfile
from collections import Counter
from pathlib import Path

import cv2
import yaml


def image_classes(label: Path) -> set[int]:
    if not label.exists():
        return set()
    return {int(line.split()[0]) for line in label.read_text(encoding="utf-8").splitlines() if line.strip()}


def label_for(image: Path) -> Path:
    parts = list(image.parts)
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def repeat_factors(classes: dict[Path, set[int]], threshold: float, cap: float) -> dict[Path, float]:
    n = len(classes)
    share = Counter(c for cs in classes.values() for c in cs)
    per_class = {c: max(1.0, math.sqrt(threshold / (k / n))) for c, k in share.items()}
    return {p: min(cap, max((per_class[c] for c in cs), default=1.0)) for p, cs in classes.items()}


def stratified_val(classes: dict[Path, set[int]], want: int, rng: random.Random) -> list[Path]:
    """Every class keeps its images up to an even share; the rest fills at random."""
    if want >= len(classes):
        return sorted(classes)
    by_class: dict[int, list[Path]] = {}
    for p, cs in sorted(classes.items()):
        for c in cs:
            by_class.setdefault(c, []).append(p)
    share = max(1, want // max(1, len(by_class)))
    chosen: set[Path] = set()
    for c in sorted(by_class, key=lambda c: len(by_class[c])):
        pool = [p for p in by_class[c] if p not in chosen]
        chosen.update(rng.sample(pool, min(share, len(pool))))
    rest = [p for p in sorted(classes) if p not in chosen]
    chosen.update(rng.sample(rest, max(0, min(len(rest), want - len(chosen)))))
    return sorted(chosen)


def encode(image: Path, long_side: int, quality: int) -> bytes:
    im = cv2.imread(str(image))
    if im is None:
        raise SystemExit(f"{image}: not a readable image")
    h, w = im.shape[:2]
    scale = long_side / max(h, w)
    if scale < 1:
        im = cv2.resize(im, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SystemExit(f"{image}: JPEG encoding failed")
    return buf.tobytes()


class ChunkWriter:
    """Tar files of at most `limit` bytes each, numbered from 00."""

    def __init__(self, out: Path, limit: int):
        self.out, self.limit, self.index, self.size, self.tar = out, limit, -1, 0, None
        self.paths: list[Path] = []

    def add(self, name: str, data: bytes) -> None:
        if self.tar is None or self.size + len(data) + 1024 > self.limit:
            self._next()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))
        self.size += len(data) + 512 + (-len(data) % 512)

    def _next(self) -> None:
        if self.tar is not None:
            self.tar.close()
        self.index += 1
        path = self.out / f"chunk-{self.index:02d}.tar"
        self.paths.append(path)
        self.tar, self.size = tarfile.open(path, "w"), 1024

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("build/dataset/data.yaml"))
    ap.add_argument("--out", type=Path, default=Path("build/gpu"))
    ap.add_argument("--long-side", type=int, default=512)
    ap.add_argument("--quality", type=int, default=65)
    ap.add_argument(
        "--chunk-mib",
        type=float,
        default=24,
        help="the device carries 64 MiB a call, the repository (~36 MiB with its models) included",
    )
    ap.add_argument("--val-images", type=int, default=400)
    ap.add_argument("--rfs-threshold", type=float, default=0.1)
    ap.add_argument("--max-repeat", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    spec = yaml.safe_load(args.data.read_text(encoding="utf-8"))
    root = Path(spec.get("path") or args.data.parent)
    rng = random.Random(args.seed)
    splits = {}
    for split in ("train", "val"):
        images = sorted((root / spec[split]).glob("*.jpg"))
        if not images:
            raise SystemExit(f"{root / spec[split]}: no images; build the set with scripts/build_dataset.py")
        splits[split] = {p: image_classes(label_for(p)) for p in images}
    val = stratified_val(splits["val"], args.val_images, rng)
    factors = repeat_factors(splits["train"], args.rfs_threshold, args.max_repeat)

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("chunk-*.tar"):
        old.unlink()
    writer = ChunkWriter(args.out, int(args.chunk_mib * 2**20))
    lines: list[str] = []
    for split, images in (("train", sorted(splits["train"])), ("val", val)):
        for p in images:
            writer.add(f"images/{split}/{p.name}", encode(p, args.long_side, args.quality))
            label = label_for(p)
            writer.add(f"labels/{split}/{label.name}", label.read_bytes() if label.exists() else b"")
            if split == "train":
                f = factors[p]
                lines += [f"./images/train/{p.name}"] * (int(f) + (rng.random() < f - int(f)))
    rng.shuffle(lines)
    repeats = Counter()
    for line in lines:
        repeats.update(splits["train"][root / spec["train"] / Path(line).name])
    data = {"path": ".", "train": "train.txt", "val": "images/val", "names": spec["names"]}
    writer.add("train.txt", ("\n".join(lines) + "\n").encode())
    writer.add("data.yaml", yaml.safe_dump(data, sort_keys=False).encode())
    summary = {
        "source": str(args.data),
        "long_side": args.long_side,
        "quality": args.quality,
        "train_images": len(splits["train"]),
        "train_samples_per_epoch": len(lines),
        "val_images": len(val),
        "val_images_full": len(splits["val"]),
        "rfs_threshold": args.rfs_threshold,
        "max_repeat": args.max_repeat,
        "seed": args.seed,
        "class_images_per_epoch": {spec["names"][c]: n for c, n in sorted(repeats.items())},
        "chunks": [p.name for p in writer.paths],
    }
    writer.add("pack.json", json.dumps(summary, indent=1).encode())
    writer.close()
    (args.out / "pack.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in writer.paths)
    print(f"{len(lines)} train samples ({len(splits['train'])} images), {len(val)} val images: {sizes}")


if __name__ == "__main__":
    main()
