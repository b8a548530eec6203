"""Readers for the label formats public sets come in: YOLO txt (boxes or polygons), COCO JSON,
Pascal VOC XML and DOTA oriented boxes. Each yields one `LabelledImage` per image, with boxes normalised to the image
(cx, cy, w, h in 0..1) and the source's own class names, or a `BadLabel` naming the file and the
reason, so one broken file costs one image, not the whole source.

The readers are small on purpose: supervision's `DetectionDataset.from_*` loaders would parse these
too, but they stop a whole set on the first bad file and cannot say which one it was.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import yaml
from PIL import Image

from streetscan.dataset.manifest import SourceSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Roboflow's export names each image `<original stem>_<ext>.rf.<hash>`: the original stem is what
# ties augmented copies and neighbouring frames together.
_RF_SUFFIX = ".rf."


@dataclass(frozen=True)
class Box:
    name: str
    cx: float
    cy: float
    w: float
    h: float

    def __post_init__(self):
        if not (self.w > 0 and self.h > 0):
            raise ValueError(f"box {self.name} has no area (w={self.w:.4f}, h={self.h:.4f})")
        if not all(-0.01 <= v <= 1.01 for v in (self.cx, self.cy, self.w, self.h)):
            raise ValueError(
                f"box {self.name} lies outside the image ({self.cx:.3f} {self.cy:.3f} {self.w:.3f} {self.h:.3f})"
            )


def original_stem(path: Path) -> str:
    """The photo's own name: Roboflow exports append `_jpg.rf.<hash>` to every copy of it."""
    return path.stem.split(_RF_SUFFIX)[0].removesuffix("_jpg").removesuffix("_png").removesuffix("_jpeg")


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    split: str  # the source's own split folder name
    boxes: tuple[Box, ...]

    @property
    def is_export_copy(self) -> bool:
        return _RF_SUFFIX in self.path.stem

    @property
    def original_stem(self) -> str:
        return original_stem(self.path)


@dataclass(frozen=True)
class BadLabel:
    path: Path
    reason: str


class SourceFormatError(ValueError):
    """The source as a whole cannot be read (no class names, unreadable annotation file)."""


def box_from_xyxy(name: str, x1: float, y1: float, x2: float, y2: float, width: float, height: float) -> Box:
    x1, x2 = max(0.0, min(x1, x2)), min(width, max(x1, x2))
    y1, y2 = max(0.0, min(y1, y2)), min(height, max(y1, y2))
    return Box(name, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def yolo_class_names(spec: SourceSpec, root: Path) -> list[str]:
    if spec.names:
        return list(spec.names)
    data_yaml = root / "data.yaml"
    if data_yaml.exists():
        try:
            names = (yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}).get("names")
        except yaml.YAMLError as exc:
            raise SourceFormatError(f"{data_yaml.name}: {exc}") from exc
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names)]
        if isinstance(names, list):
            return [str(n) for n in names]
    classes_txt = root / "classes.txt"
    if classes_txt.exists():
        return classes_txt.read_text(encoding="utf-8").split()
    raise SourceFormatError(
        "no class names: the folder has no data.yaml `names` or classes.txt, and the manifest gives no `names`"
    )


def _yolo_line(line: str, names: list[str]) -> Box:
    parts = line.split()
    try:
        cid = int(parts[0])
        values = [float(v) for v in parts[1:]]
    except (ValueError, IndexError):
        raise ValueError(f"not numbers: {line[:60]!r}") from None
    if not 0 <= cid < len(names):
        raise ValueError(f"class id {cid} outside 0..{len(names) - 1}")
    if len(values) == 4:
        return Box(names[cid], *values)
    if len(values) >= 6 and len(values) % 2 == 0:  # a polygon: its bounding box
        xs, ys = values[0::2], values[1::2]
        return box_from_xyxy(names[cid], min(xs), min(ys), max(xs), max(ys), 1.0, 1.0)
    raise ValueError(f"{len(values)} coordinates: neither a box (4) nor a polygon (>= 6, even)")


def _read_txt_per_image(
    spec: SourceSpec, root: Path, parse: Callable[[Path, list[str]], tuple[Box, ...]]
) -> Iterator[LabelledImage | BadLabel]:
    """Sources with one text label file per image (`<labels>/<image stem>.txt`): YOLO and DOTA."""
    layout = spec.layout()
    for split in spec.splits:
        labels_dir = root / layout["labels"].format(split=split)
        for image in _images_in(root / layout["images"].format(split=split)):
            label = labels_dir / f"{image.stem}.txt"
            if not label.exists():
                yield BadLabel(image, "no label file")
                continue
            try:
                boxes = parse(image, [line for line in label.read_text(encoding="utf-8").splitlines() if line.strip()])
            except (ValueError, UnicodeDecodeError, OSError) as exc:
                yield BadLabel(label, str(exc))
                continue
            yield LabelledImage(image, split, boxes)


def read_yolo(spec: SourceSpec, root: Path) -> Iterator[LabelledImage | BadLabel]:
    names = yolo_class_names(spec, root)
    yield from _read_txt_per_image(spec, root, lambda _image, lines: tuple(_yolo_line(line, names) for line in lines))


def read_coco(spec: SourceSpec, root: Path) -> Iterator[LabelledImage | BadLabel]:
    layout = spec.layout()
    for split in spec.splits:
        ann_path = root / layout["labels"].format(split=split)
        if not ann_path.exists():
            continue
        try:
            doc = json.loads(ann_path.read_text(encoding="utf-8"))
            categories = {c["id"]: str(c["name"]) for c in doc["categories"]}
            images = {im["id"]: im for im in doc["images"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceFormatError(f"{ann_path.name}: not a COCO detection file ({exc})") from exc
        per_image: dict = {i: [] for i in images}
        bad: dict = {}
        for ann in doc.get("annotations", []):
            iid = ann.get("image_id")
            if iid not in images:
                continue
            im = images[iid]
            try:
                name = categories[ann["category_id"]]
                w, h = float(im["width"]), float(im["height"])
                if ann.get("bbox"):
                    x, y, bw, bh = (float(v) for v in ann["bbox"])
                    per_image[iid].append(box_from_xyxy(name, x, y, x + bw, y + bh, w, h))
                else:
                    pts = [float(v) for poly in ann["segmentation"] for v in poly]
                    per_image[iid].append(
                        box_from_xyxy(name, min(pts[0::2]), min(pts[1::2]), max(pts[0::2]), max(pts[1::2]), w, h)
                    )
            except (KeyError, ValueError, TypeError) as exc:
                bad[iid] = f"annotation {ann.get('id')}: {exc}"
        image_dir = root / layout["images"].format(split=split)
        for iid, im in images.items():
            path = image_dir / str(im["file_name"])
            if iid in bad:
                yield BadLabel(path, bad[iid])
            elif not path.exists():
                yield BadLabel(path, "image listed in the COCO file is missing")
            else:
                yield LabelledImage(path, split, tuple(per_image[iid]))


def _voc_file(xml_path: Path, image_dir: Path) -> LabelledImage:
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    filename = root.findtext("filename") or ""
    image = image_dir / filename
    if not filename or not image.exists():
        found = next((p for p in _images_in(image_dir) if p.stem == xml_path.stem), None)
        if found is None:
            raise ValueError(f"no image for it (filename {filename!r})")
        image = found
    try:
        # A missing element gives None, and float(None) the TypeError caught below.
        width = float(cast(str, root.findtext("size/width")))
        height = float(cast(str, root.findtext("size/height")))
    except (TypeError, ValueError):
        raise ValueError("no <size> width/height") from None
    if width <= 0 or height <= 0:
        raise ValueError("<size> is zero")
    boxes = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if not name or bb is None:
            raise ValueError("an <object> without <name> or <bndbox>")
        # As above, a missing coordinate raises TypeError from float(None).
        x1, y1, x2, y2 = [float(cast(str, bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")]
        boxes.append(box_from_xyxy(name, x1, y1, x2, y2, width, height))
    return LabelledImage(image, "", tuple(boxes))


def read_voc(spec: SourceSpec, root: Path) -> Iterator[LabelledImage | BadLabel]:
    layout = spec.layout()
    for split in spec.splits:
        ann_dir = root / layout["labels"].format(split=split)
        image_dir = root / layout["images"].format(split=split)
        if not ann_dir.is_dir():
            continue
        for xml_path in sorted(ann_dir.glob("*.xml")):
            try:
                item = _voc_file(xml_path, image_dir)
            except (ValueError, TypeError) as exc:
                yield BadLabel(xml_path, str(exc))
                continue
            yield LabelledImage(item.path, split, item.boxes)


def _dota_line(line: str, width: float, height: float) -> Box | None:
    parts = line.split()
    if len(parts) < 9:
        if parts and parts[0].startswith(("imagesource:", "gsd:")):  # DOTA's optional header lines
            return None
        raise ValueError(f"{len(parts)} fields: a DOTA line has 8 corner coordinates and a class name")
    try:
        xy = [float(v) for v in parts[:8]]
    except ValueError:
        raise ValueError(f"not numbers: {line[:60]!r}") from None
    # The detector is axis-aligned: an oriented box becomes the upright box around its corners.
    return box_from_xyxy(parts[8], min(xy[0::2]), min(xy[1::2]), max(xy[0::2]), max(xy[1::2]), width, height)


def _dota_boxes(image: Path, lines: list[str]) -> tuple[Box, ...]:
    with Image.open(image) as im:  # reads the header only
        width, height = im.size
    return tuple(b for b in (_dota_line(line, width, height) for line in lines) if b is not None)


def read_dota(spec: SourceSpec, root: Path) -> Iterator[LabelledImage | BadLabel]:
    yield from _read_txt_per_image(spec, root, _dota_boxes)


READERS = {"yolo": read_yolo, "coco": read_coco, "voc": read_voc, "dota": read_dota}


def read_source(spec: SourceSpec, root: Path) -> Iterator[LabelledImage | BadLabel]:
    return READERS[spec.format](spec, root)
