#!/usr/bin/env python3
"""Make an INT8 variant of a model card (ONNX Runtime static quantization, QDQ, per-channel).

    .venv/bin/python scripts/quantize_model.py streetscan-0.3 --calibrate ../shared/footage/*.mp4 \\
        ../shared/datasets/cn_garbage_bins/images/train ../shared/datasets/facade_ads/images/train
    # -> models/<name>-int8.onnx + card; select it per deployment with --model <name>-int8

The whole network is quantized (weights int8 per channel, activations uint8: quantizing only the
convolutions leaves a float SiLU between every pair and gains nothing), calibrated on frames
letterboxed exactly as the pipeline feeds the model; the detection head's decoding (YOLO's DFL,
anchors, strides) stays float, since its distances do not survive 8 bits. Measure what it costs before you
deploy it: scripts/evaluate.py on a human-labelled split, both cards, side by side.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import cv2
import numpy as np
import yaml

from streetscan.pipeline.decode import VideoSource
from streetscan.pipeline.detect import ModelDetector, load_detector
from streetscan.pipeline.models import ModelCard, resolve_model
from streetscan.pipeline.preprocess import letterbox

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def _calibration_images(source: Path, card: ModelCard, limit: int):
    """BGR frames from a clip (1 per second), an image, or a folder of images: `limit` spread
    evenly over its sorted names, since a build's names begin with their source and the first
    few would all be one source's scenes."""
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in paths[:: max(1, len(paths) // max(1, limit))]:
            yield cv2.imread(str(path))
    elif source.suffix.lower() in IMAGE_SUFFIXES:
        yield cv2.imread(str(source))
    else:
        for frame in VideoSource(str(source), analysis_fps=1.0, fit=card.fit).frames():
            yield frame.image


def _label(source: Path) -> str:
    """A folder named by its dataset too (`cn_garbage_bins/images/train`, not `train`)."""
    return "/".join(source.parts[-3:]) if source.is_dir() else source.name


def calibration_tensors(det: ModelDetector, sources: list[Path], frames: int) -> list[np.ndarray]:
    """`frames` tensors split evenly over the sources, letterboxed exactly as the pipeline does."""
    per_source = max(1, frames // max(1, len(sources)))
    out = []
    for source in sources:
        for taken, image in enumerate(_calibration_images(source, det.card, per_source)):
            if taken == per_source:
                break
            out.append(det._to_tensor([letterbox(image, det.input_size(image))[0]]))
    if not out:
        raise SystemExit("no calibration frames: give --calibrate clips, images or image folders")
    return out


def quantize(card: ModelCard, sources: list[Path], out_dir: Path, frames: int = 64) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    detector = load_detector(card)
    tensors = calibration_tensors(detector, sources, frames)
    input_name = detector.runtime.input_name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(tensors)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    name = f"{card.name}-int8"
    target = out_dir / f"{name}.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(card.weights), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        # Ultralytics' Detect module: its conv branches (cv2 boxes, cv3 classes) are quantized like
        # the rest; what follows them (DFL, anchors, strides, the class sigmoid) stays float.
        head = card.extra.get("float_head", "/model.23/")
        keep_float = [
            n.name
            for n in graph.node
            if n.name.startswith(head) and not n.name.startswith((head + "cv2", head + "cv3"))
        ]
        quantize_static(
            str(pre),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=keep_float,
        )
    # INT8 is ONNX only; and its quality is its own, to be measured (scripts/evaluate.py --write-quality).
    data = {k: v for k, v in card.extra.items() if not k.startswith("torch_") and k != "quality"}
    data.update(
        {
            "name": name,
            "weights": target.name,
            "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
            "provenance": f"INT8 (ONNX Runtime static QDQ, per-channel, float head) of {card.name} {card.version}, "
            f"calibrated on {len(tensors)} frames of {', '.join(_label(s) for s in sources)}. "
            f"Source model: {card.provenance}",
            "quantization": {
                "source": card.name,
                "calibration_frames": len(tensors),
                "format": "QDQ",
                "activations": "uint8",
                "weights": "int8 per channel",
            },
        }
    )
    target.with_suffix(".yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return target.with_suffix(".yaml")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="name, card or ONNX path of the float model")
    ap.add_argument(
        "--calibrate",
        type=Path,
        nargs="+",
        required=True,
        help="clips (1 frame/s), images or image folders to calibrate on; mix scenes and objects",
    )
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--out", type=Path, help="default: beside the source card")
    args = ap.parse_args()
    card = resolve_model(args.model)
    if card.family != "yolo":
        # Measured on coco-centernet-mbv3: whole-graph INT8 loses every detection (its peak picking
        # does not survive 8 bits) and conv-only INT8 runs at 0.8x float speed. Not offered.
        ap.error(f"{card.name}: only yolo-family models have an INT8 recipe (see benchmarks/RESULTS.md)")
    print(quantize(card, args.calibrate, args.out or card.weights.parent, args.frames))


if __name__ == "__main__":
    main()
