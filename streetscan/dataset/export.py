"""Operators' labels as a training source (issue #33): `streetscan dataset export`.

Writes the labelled frames of a console's label store as a YOLO folder the dataset builder reads
like any public set (`source.yaml` is its manifest entry): images and labels per split, the
vocabulary as class names, and a SOURCE.md naming the cameras, the time range, how many people
labelled and the licence (the operator's own footage). Frames of one camera on one day look
alike, so they never straddle the split: whole camera-days go to val. Frames marked "nothing
here" are exported with an empty label file (hard negatives); frames marked difficult stay out
of val, where they would make the measurement depend on a guess.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

import yaml

from .labels import Frame, Label, LabelStore

LICENCE = "the operator's own footage"
SCENE = r"^(.+?__\d{4}-\d{2}-\d{2})__"  # file stems are <camera>__<day>__<frame>: one scene per camera-day


def _unit(text: str) -> float:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") / 2**64


def camera_day_splits(frames: list[Frame], val_fraction: float) -> dict[str, str]:
    """camera-day -> train / val, seeded by its name; with two or more camera-days at least one is val."""
    days = sorted({f.camera_day for f in frames})
    split = {d: "val" if _unit(d) < val_fraction else "train" for d in days}
    if len(days) >= 2 and "val" not in split.values():
        split[min(days, key=_unit)] = "val"
    if len(days) >= 2 and "train" not in split.values():
        split[max(days, key=_unit)] = "train"
    return split


def export_labels(store: LabelStore, folder: Path, name: str, val_fraction: float = 0.2) -> dict:
    """Write the store's labelled frames into `folder` (replaced); returns what was written."""
    labelled: list[tuple[Frame, Label]] = store.labels()
    if not labelled:
        raise ValueError("no labelled frames to export: label some in the console first (/label)")
    if folder.exists():
        shutil.rmtree(folder)
    names = list(store.vocabulary)
    splits = camera_day_splits([f for f, _ in labelled], val_fraction)
    written: Counter[str] = Counter()
    boxes: Counter[str] = Counter()
    for frame, label in labelled:
        split = splits[frame.camera_day]
        if split == "val" and label.difficult:
            split = "train"
        stem = f"{frame.camera_id}__{frame.taken_at[:10]}__{frame.frame_id}"
        image_dir, label_dir = folder / "images" / split, folder / "labels" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.out_dir / frame.image, image_dir / f"{stem}.jpg")
        lines = []
        for obj, (x1, y1, x2, y2) in label.boxes:
            cx, cy = (x1 + x2) / 2 / frame.width, (y1 + y2) / 2 / frame.height
            w, h = (x2 - x1) / frame.width, (y2 - y1) / frame.height
            lines.append(f"{names.index(obj)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            boxes[obj] += 1
        (label_dir / f"{stem}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        written[split] += 1
    (folder / "data.yaml").write_text(
        yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val", "names": dict(enumerate(names))}),
        encoding="utf-8",
    )
    frames = [f for f, _ in labelled]
    labellers = {h.user for f in frames for h in store.history(f.frame_id)}
    cameras = sorted({f.camera_id for f in frames})
    first, last = min(f.taken_at for f in frames), max(f.taken_at for f in frames)
    spec = {
        "name": name,
        "title": f"Operators' labels on {len(cameras)} camera(s)",
        "staged": folder.name,
        "format": "yolo",
        "images": "images/{split}",
        "labels": "labels/{split}",
        "splits": {s: s for s in ("train", "val") if written[s]},
        "scene": SCENE,
        "classes": {o: o for o in names},
        "dedup": False,  # a fixed camera's frames look alike; each was labelled for what is on it
        "licence": LICENCE,
        "attribution": "the city's camera operators",
        "viewpoint": "fixed street cameras (the city's own)",
        "image_count": len(labelled),
    }
    (folder / "source.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (folder / "SOURCE.md").write_text(
        f"# {spec['title']}\n\n"
        f"- cameras: {', '.join(cameras)}\n- frames taken: {first} to {last}\n"
        f"- labelled by {len(labellers)} operator(s); {len(labelled)} frames "
        f"({written['train']} train, {written['val']} val, whole camera-days per split), "
        f"{sum(1 for _, lb in labelled if lb.nothing)} with nothing on them\n"
        f"- boxes: {', '.join(f'{o} {n}' for o, n in boxes.most_common()) or 'none'}\n"
        f"- licence: {LICENCE}\n\nThe dataset builder reads it as the source in `source.yaml` "
        "(put the folder under $STREETSCAN_ASSETS/datasets/ and the entry in the datasets manifest).\n",
        encoding="utf-8",
    )
    return {"frames": dict(written), "boxes": dict(boxes), "cameras": cameras, "labellers": len(labellers)}
