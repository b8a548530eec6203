#!/usr/bin/env python3
"""Export an Ultralytics YOLO model to ONNX and write its StreetScan model card.

    python scripts/export_yolo.py runs/train/weights/best.pt --name streetscan-0.3 --out models/
    python scripts/export_yolo.py yolo11n.yaml --untrained --name yolo11n-untrained --out /tmp/m

`--untrained` builds the architecture from its YAML with random weights (no download): the
pipeline's mechanics can be exercised on a real ONNX graph before any trained weights exist.
The export has a dynamic batch and dynamic H/W (so the 16:9 rectangular input works), opset 17.
The checkpoint is saved beside it (`<name>.pt`, fp16) for the torch devices.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import yaml

COCO_CLASS_MAP = "coco"


def export_yolo(
    source: str,
    out_dir: Path,
    name: str,
    *,
    version: str = "0",
    imgsz: int = 640,
    class_map: str | dict | None = None,
    untrained: bool = False,
    provenance: str = "",
    licence: str = "AGPL-3.0 (Ultralytics)",
) -> Path:
    from ultralytics import YOLO

    out_dir.mkdir(parents=True, exist_ok=True)
    model = YOLO(source)
    # The checkpoint travels with the ONNX: the torch devices (PyTorch fp16 on GPU) run it.
    torch_target = out_dir / f"{name}.pt"
    model.save(torch_target)
    onnx_path = Path(model.export(format="onnx", imgsz=imgsz, dynamic=True, simplify=False, opset=17, batch=1))
    target = out_dir / f"{name}.onnx"
    shutil.move(str(onnx_path), target)
    names = [model.names[i] for i in sorted(model.names)]
    if untrained and names[0] == "0":
        # Architecture YAMLs name classes 0..79; name them as COCO so the coco class map applies.
        from ultralytics.utils import ROOT, YAML

        coco = YAML.load(ROOT / "cfg/datasets/coco.yaml")["names"]
        names = [coco[i] for i in sorted(coco)][: len(names)]
    if class_map is None:
        # An untrained yolo11n.yaml has COCO's 80 names; a StreetScan model's names are vocabulary names.
        class_map = COCO_CLASS_MAP if untrained else {n: n for n in names}
    card = {
        "name": name,
        "version": version,
        "family": "yolo",
        "weights": target.name,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "torch_weights": torch_target.name,
        "torch_sha256": hashlib.sha256(torch_target.read_bytes()).hexdigest(),
        "input": {
            "width": imgsz,
            "height": imgsz,
            "rect": True,
            "layout": "NCHW",
            "color": "RGB",
            "mean": [0, 0, 0],
            "std": [255, 255, 255],
        },
        "max_batch": 16,
        "classes": names,
        "class_map": class_map,
        "provenance": provenance
        or (
            f"Ultralytics {source} built with random weights (untrained); for pipeline tests only"
            if untrained
            else f"exported from {source}"
        ),
        "licence": licence,
    }
    card_path = target.with_suffix(".yaml")
    card_path.write_text(yaml.safe_dump(card, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return card_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a .pt checkpoint, or an architecture .yaml with --untrained")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", type=Path, default=Path("models"))
    ap.add_argument("--version", default="0")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--untrained", action="store_true")
    args = ap.parse_args()
    if args.source.endswith(".yaml") and not args.untrained:
        ap.error("an architecture .yaml has no weights: pass --untrained to export it anyway")
    print(
        export_yolo(args.source, args.out, args.name, version=args.version, imgsz=args.imgsz, untrained=args.untrained)
    )


if __name__ == "__main__":
    main()
