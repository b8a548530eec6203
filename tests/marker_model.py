"""A real ONNX detector for tests: finds one saturated red marker and calls it a COCO 'car'.

Built with onnx.helper and run by ONNX Runtime through the project's CenterNet decoder, so the
daemon under test loads, batches and decodes a real model. Scenes drawn with `red_marker`
produce detections exactly where the marker is; everything else yields none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

SIZE = 320


def build_marker_model(out_dir: Path, *, score: float = 0.9, name: str = "red-marker",
                       thresholds: dict | None = None) -> Path:
    """`score`: the confidence every marker detection gets (a far, low-confidence object: 0.3);
    `thresholds`: the card's calibrated tracking thresholds (models.Thresholds), if any."""
    import onnx
    from onnx import TensorProto, helper

    def const(name, value, dtype=np.float32):
        arr = np.asarray(value, dtype=dtype)
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(
            name + "_t", TensorProto.FLOAT if dtype == np.float32 else TensorProto.INT64, arr.shape, arr.flatten().tolist()))

    nodes = [
        const("c0", [0], np.int64), const("c1", [1], np.int64), const("c2", [2], np.int64), const("c3", [3], np.int64),
        const("ax3", [3], np.int64), const("hi", 180.0), const("lo", 80.0), const("big", [1e6]), const("neg", [-1.0]),
        const("one", [1.0]), const("minpx", 30.0), const("score", [score]), const("zero", [0.0]), const("cls", [2.0]),
        const("shape", [1, 1, 6], np.int64),
        helper.make_node("Slice", ["image", "c0", "c1", "ax3"], ["B"]),
        helper.make_node("Slice", ["image", "c1", "c2", "ax3"], ["G"]),
        helper.make_node("Slice", ["image", "c2", "c3", "ax3"], ["R"]),
        helper.make_node("Greater", ["R", "hi"], ["r_hi"]),
        helper.make_node("Less", ["G", "lo"], ["g_lo"]),
        helper.make_node("Less", ["B", "lo"], ["b_lo"]),
        helper.make_node("And", ["r_hi", "g_lo"], ["rg"]),
        helper.make_node("And", ["rg", "b_lo"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["idx"]),  # [4, N]: n, y, x, c
        helper.make_node("Gather", ["idx", "c1"], ["ys_i"], axis=0),
        helper.make_node("Gather", ["idx", "c2"], ["xs_i"], axis=0),
        helper.make_node("Cast", ["ys_i"], ["ys2"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["xs_i"], ["xs2"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["ys2"], ["ys_f"], axis=0),
        helper.make_node("Flatten", ["xs2"], ["xs_f"], axis=0),
        helper.make_node("Squeeze", ["ys_f", "c0"], ["ys"]),
        helper.make_node("Squeeze", ["xs_f", "c0"], ["xs"]),
        # Sentinels keep the reductions defined when nothing is red (the score is 0 then).
        helper.make_node("Concat", ["ys", "big"], ["ys_min_in"], axis=0),
        helper.make_node("Concat", ["xs", "big"], ["xs_min_in"], axis=0),
        helper.make_node("Concat", ["ys", "neg"], ["ys_max_in"], axis=0),
        helper.make_node("Concat", ["xs", "neg"], ["xs_max_in"], axis=0),
        helper.make_node("ReduceMin", ["ys_min_in"], ["y1"], keepdims=1),
        helper.make_node("ReduceMin", ["xs_min_in"], ["x1"], keepdims=1),
        helper.make_node("ReduceMax", ["ys_max_in"], ["y2m"], keepdims=1),
        helper.make_node("ReduceMax", ["xs_max_in"], ["x2m"], keepdims=1),
        helper.make_node("Add", ["y2m", "one"], ["y2"]),
        helper.make_node("Add", ["x2m", "one"], ["x2"]),
        helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["mask_f"], ["count"], keepdims=0),
        helper.make_node("Greater", ["count", "minpx"], ["found"]),
        helper.make_node("Where", ["found", "score", "zero"], ["conf"]),
        helper.make_node("Concat", ["x1", "y1", "x2", "y2", "conf", "cls"], ["flat"], axis=0),
        helper.make_node("Reshape", ["flat", "shape"], ["detections"]),
    ]
    graph = helper.make_graph(
        nodes, "red_marker",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [1, 1, 6])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="streetscan-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out_dir / f"{name}.onnx")
    card = {
        "name": name, "version": "1", "family": "centernet", "weights": f"{name}.onnx",
        "input": {"width": SIZE, "height": SIZE, "rect": False, "layout": "NHWC", "color": "BGR",
                  "mean": [0, 0, 0], "std": [1, 1, 1]},
        "max_batch": 1, "classes": ["person", "bicycle", "car"], "class_map": "coco",
        "provenance": "tests/marker_model.py (built, not trained)", "licence": "same as StreetScan",
    }
    if thresholds:
        card["thresholds"] = thresholds
    path = out_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    return path


def red_marker(box=(260, 200, 380, 260), present=lambda t: True):
    """A scene for conftest.encode_clip: a still red 'car' on the road while present(t)."""
    x1, y1, x2, y2 = box

    def scene(t, img):
        img[:, :] = 90
        img[img.shape[0] // 2:, :] = 60
        if present(t):
            img[y1:y2, x1:x2] = (0, 0, 230)
    return scene
