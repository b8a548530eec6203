#!/usr/bin/env python3
"""A trainable Ultralytics checkpoint from one of the project's YOLO ONNX models, for fine-tuning.

    .venv/bin/python scripts/checkpoint_from_onnx.py models/streetscan-0.3.onnx build/streetscan-0.3.pt

The project keeps its models as ONNX (what the pipeline runs) and their checkpoints stayed on the
machines that trained them. An Ultralytics export folds every batch norm into the convolution
before it (`fuse`), and names each initializer after the module it came from, so the weights can
be put back: each Conv's convolution takes the folded weight, its batch norm becomes the identity
plus the folded bias (weight 1, mean 0, variance 1 - eps), and the head's plain convolutions and
the DFL take theirs as they are. The result computes what the ONNX computes (checked here on a
random input, and in tests/test_labelling.py) and trains like any checkpoint: its batch norms
learn from there.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURES = {"YOLO11n": "yolo11n.yaml", "YOLOv8n": "yolov8n.yaml"}  # as the export's description names them


def checkpoint_from_onnx(onnx_path: Path, out: Path, *, check: bool = True) -> Path:
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper
    from ultralytics.nn.modules.conv import Conv
    from ultralytics.nn.tasks import DetectionModel

    graph = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in graph.metadata_props}
    names = ast.literal_eval(meta.get("names", "{}"))
    arch = next((a for k, a in ARCHITECTURES.items() if k in meta.get("description", "")), None)
    if not names or arch is None:
        raise SystemExit(f"{onnx_path}: not an Ultralytics YOLO export this script knows ({meta.get('description')})")
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.graph.initializer}
    model = DetectionModel(arch, nc=len(names), verbose=False)
    used: set[str] = set()
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, Conv) and hasattr(module, "bn"):
                w, b = f"{name}.conv.weight", f"{name}.conv.bias"
                module.conv.weight.copy_(weights[w])
                module.bn.weight.fill_(1.0)
                module.bn.bias.copy_(weights[b])
                module.bn.running_mean.zero_()
                module.bn.running_var.fill_(1.0 - module.bn.eps)
                used |= {w, b}
        state = model.state_dict()
        for key, value in weights.items():
            if key not in used and key in state and state[key].shape == value.shape:
                state[key].copy_(value)
                used.add(key)
    left = sorted(k for k in weights if k.startswith("model.") and k not in used)
    if left:
        raise SystemExit(f"{onnx_path}: weights with no place in {arch}: {left[:5]}")
    model.names = {int(k): v for k, v in names.items()}
    model.eval()
    if check:
        import onnxruntime as ort

        size = ast.literal_eval(meta.get("imgsz", "[640, 640]"))
        x = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
        ref = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
        with torch.no_grad():
            got = model(torch.from_numpy(x))[0].numpy()
        err = float(np.abs(ref - got).max() / max(1e-6, float(np.abs(ref).max())))
        if err > 1e-3:
            raise SystemExit(f"{onnx_path}: the recovered model differs from the ONNX by {err:.2e} (relative)")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_args": {"imgsz": 640}, "epoch": -1, "date": None, "version": "recovered"}, out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    print(checkpoint_from_onnx(args.onnx, args.out))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
