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


def build_marker_model(
    out_dir: Path, *, score: float = 0.9, name: str = "red-marker", thresholds: dict | None = None
) -> Path:
    """`score`: the confidence every marker detection gets (a far, low-confidence object: 0.3);
    `thresholds`: the card's calibrated tracking thresholds (models.Thresholds), if any."""
    from onnx import TensorProto, helper

    def const(name, value, dtype=np.float32):
        arr = np.asarray(value, dtype=dtype)
        return helper.make_node(
            "Constant",
            [],
            [name],
            value=helper.make_tensor(
                name + "_t",
                TensorProto.FLOAT if dtype == np.float32 else TensorProto.INT64,
                arr.shape,
                arr.flatten().tolist(),
            ),
        )

    nodes = [
        const("c0", [0], np.int64),
        const("c1", [1], np.int64),
        const("c2", [2], np.int64),
        const("c3", [3], np.int64),
        const("ax3", [3], np.int64),
        const("hi", 180.0),
        const("lo", 80.0),
        const("big", [1e6]),
        const("neg", [-1.0]),
        const("one", [1.0]),
        const("minpx", 30.0),
        const("score", [score]),
        const("zero", [0.0]),
        const("cls", [2.0]),
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
    return _save(nodes, "red_marker", 1, out_dir, name, thresholds)


def _save(nodes: list, graph_name: str, rows: int, out_dir: Path, name: str, thresholds: dict | None) -> Path:
    """The graph of `nodes` (input `image`, output `detections` [1, rows, 6]) and its model card."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        graph_name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [1, rows, 6])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="streetscan-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out_dir / f"{name}.onnx")
    card = {
        "name": name,
        "version": "1",
        "family": "centernet",
        "weights": f"{name}.onnx",
        "input": {
            "width": SIZE,
            "height": SIZE,
            "rect": False,
            "layout": "NHWC",
            "color": "BGR",
            "mean": [0, 0, 0],
            "std": [1, 1, 1],
        },
        "max_batch": 1,
        "classes": ["person", "bicycle", "car"],
        "class_map": "coco",
        "provenance": "tests/marker_model.py (built, not trained)",
        "licence": "same as StreetScan",
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
        img[img.shape[0] // 2 :, :] = 60
        if present(t):
            img[y1:y2, x1:x2] = (0, 0, 230)

    return scene


# Pure colours (B, G, R on/off) for build_markers_model: one detection per colour, so a scene can
# hold several objects. The background of encode_clip (grey 90 / 60) matches none of them.
MARKER_COLOURS = {
    "red": (0, 0, 1),
    "green": (0, 1, 0),
    "blue": (1, 0, 0),
    "yellow": (0, 1, 1),
    "magenta": (1, 0, 1),
    "cyan": (1, 1, 0),
}


def build_markers_model(out_dir: Path, *, name: str = "markers", thresholds: dict | None = None) -> Path:
    """A real ONNX detector for scenes of several objects: each colour of MARKER_COLOURS is one COCO
    'car', boxed around that colour's pixels, with a score the scene sets: the colour's brightness
    (`marker_colour(name, score)`), so a test can make an object faint, flickering or sure."""
    from onnx import TensorProto, helper

    def const(cname, value, dtype=np.float32):
        arr = np.asarray(value, dtype=dtype)
        return helper.make_node(
            "Constant",
            [],
            [cname],
            value=helper.make_tensor(
                cname + "_t",
                TensorProto.FLOAT if dtype == np.float32 else TensorProto.INT64,
                arr.shape,
                arr.flatten().tolist(),
            ),
        )

    nodes = [
        const("c0", [0], np.int64),
        const("c1", [1], np.int64),
        const("c2", [2], np.int64),
        const("c3", [3], np.int64),
        const("ax3", [3], np.int64),
        const("on_min", 40.0),
        const("off_max", 30.0),
        const("big", [1e6]),
        const("neg", [-1.0]),
        const("one", [1.0]),
        const("minpx", 30.0),
        const("zero", [0.0]),
        const("cls", [2.0]),
        const("scale", [1 / 255]),
        helper.make_node("Slice", ["image", "c0", "c1", "ax3"], ["ch0"]),
        helper.make_node("Slice", ["image", "c1", "c2", "ax3"], ["ch1"]),
        helper.make_node("Slice", ["image", "c2", "c3", "ax3"], ["ch2"]),
    ]
    rows = []
    for cname, bgr in MARKER_COLOURS.items():
        p = f"{cname}_"
        tests = []
        for ch, on in enumerate(bgr):
            nodes.append(
                helper.make_node(
                    "Greater" if on else "Less", [f"ch{ch}", "on_min" if on else "off_max"], [p + f"t{ch}"]
                )
            )
            tests.append(p + f"t{ch}")
        nodes += [
            helper.make_node("And", [tests[0], tests[1]], [p + "t01"]),
            helper.make_node("And", [p + "t01", tests[2]], [p + "mask"]),
        ]
        lit = f"ch{bgr.index(1)}"  # a lit channel: its brightness is the score
        nodes += [
            helper.make_node("NonZero", [p + "mask"], [p + "idx"]),
            helper.make_node("Gather", [p + "idx", "c1"], [p + "ys_i"], axis=0),
            helper.make_node("Gather", [p + "idx", "c2"], [p + "xs_i"], axis=0),
            helper.make_node("Cast", [p + "ys_i"], [p + "ys2"], to=TensorProto.FLOAT),
            helper.make_node("Cast", [p + "xs_i"], [p + "xs2"], to=TensorProto.FLOAT),
            helper.make_node("Flatten", [p + "ys2"], [p + "ys_f"], axis=0),
            helper.make_node("Flatten", [p + "xs2"], [p + "xs_f"], axis=0),
            helper.make_node("Squeeze", [p + "ys_f", "c0"], [p + "ys"]),
            helper.make_node("Squeeze", [p + "xs_f", "c0"], [p + "xs"]),
            helper.make_node("Concat", [p + "ys", "big"], [p + "ymin_in"], axis=0),
            helper.make_node("Concat", [p + "xs", "big"], [p + "xmin_in"], axis=0),
            helper.make_node("Concat", [p + "ys", "neg"], [p + "ymax_in"], axis=0),
            helper.make_node("Concat", [p + "xs", "neg"], [p + "xmax_in"], axis=0),
            helper.make_node("ReduceMin", [p + "ymin_in"], [p + "y1"], keepdims=1),
            helper.make_node("ReduceMin", [p + "xmin_in"], [p + "x1"], keepdims=1),
            helper.make_node("ReduceMax", [p + "ymax_in"], [p + "y2m"], keepdims=1),
            helper.make_node("ReduceMax", [p + "xmax_in"], [p + "x2m"], keepdims=1),
            helper.make_node("Add", [p + "y2m", "one"], [p + "y2"]),
            helper.make_node("Add", [p + "x2m", "one"], [p + "x2"]),
            helper.make_node("Cast", [p + "mask"], [p + "mask_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", [p + "mask_f"], [p + "count"], keepdims=0),
            helper.make_node("Mul", [lit, p + "mask_f"], [p + "lit_on"]),
            helper.make_node("ReduceSum", [p + "lit_on"], [p + "lit_sum"], keepdims=0),
            helper.make_node("Max", [p + "count", "one"], [p + "count1"]),
            helper.make_node("Div", [p + "lit_sum", p + "count1"], [p + "lit_mean"]),
            helper.make_node("Mul", [p + "lit_mean", "scale"], [p + "bright"]),
            helper.make_node("Greater", [p + "count", "minpx"], [p + "found"]),
            helper.make_node("Where", [p + "found", p + "bright", "zero"], [p + "conf"]),
            helper.make_node(
                "Concat", [p + "x1", p + "y1", p + "x2", p + "y2", p + "conf", "cls"], [p + "row"], axis=0
            ),
        ]
        rows.append(p + "row")
    nodes += [
        const("shape", [1, len(rows), 6], np.int64),
        helper.make_node("Concat", rows, ["flat"], axis=0),
        helper.make_node("Reshape", ["flat", "shape"], ["detections"]),
    ]
    return _save(nodes, "markers", len(rows), out_dir, name, thresholds)


def marker_colour(name: str, score: float = 0.9) -> tuple[int, int, int]:
    """The BGR fill that build_markers_model reads as a `name` object with this score (0.2-1)."""
    v = int(round(255 * score))
    return tuple(v * on for on in MARKER_COLOURS[name])  # type: ignore[return-value]


def build_slow_model(out_dir: Path, *, min_ms: float, name: str = "slow-marker") -> tuple[Path, float]:
    """The red-marker detector made slow on purpose: each image also runs a chain of matrix
    products that depends on its pixels (so ONNX Runtime cannot fold it away) and adds nothing to the
    output. The chain is lengthened until one image takes at least `min_ms` here, measured with the
    project's own runtime, so a test can offer more frames than inference can take on any machine.
    Returns the card and the milliseconds one image took when measured."""
    import time

    import onnx
    from onnx import helper, numpy_helper

    from streetscan.pipeline.detect import load_detector
    from streetscan.pipeline.models import resolve_model

    base = build_marker_model(out_dir / "base", name=name)
    n = 256
    rng = np.random.default_rng(0)

    def build(links: int) -> Path:
        model = onnx.load(base.with_suffix(".onnx"))
        g = model.graph
        out_node = next(nd for nd in g.node if "detections" in nd.output)
        out_node.output[0] = "detections_raw"
        g.initializer.extend(
            [
                numpy_helper.from_array((rng.random((n, n)) / n).astype(np.float32), "slow_w"),
                numpy_helper.from_array(np.eye(n, dtype=np.float32), "slow_eye"),
                numpy_helper.from_array(np.zeros(1, dtype=np.float32), "slow_zero"),
            ]
        )
        nodes = [
            helper.make_node("ReduceMean", ["image"], ["slow_mean"], keepdims=0),
            helper.make_node("Mul", ["slow_w", "slow_mean"], ["slow_m0"]),
        ]
        for k in range(links):
            nodes.append(helper.make_node("MatMul", [f"slow_m{k}", "slow_eye"], [f"slow_m{k + 1}"]))
        nodes += [
            helper.make_node("ReduceSum", [f"slow_m{links}"], ["slow_sum"], keepdims=0),
            helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nothing"]),
            helper.make_node("Add", ["detections_raw", "slow_nothing"], ["detections"]),
        ]
        g.node.extend(nodes)
        onnx.checker.check_model(model)
        onnx.save(model, out_dir / f"{name}.onnx")
        card = yaml.safe_load(base.read_text())
        card["provenance"] = f"tests/marker_model.py build_slow_model ({links} matrix products per image)"
        path = out_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
        return path

    links = 8
    image = np.full((360, 640, 3), 90, dtype=np.uint8)
    while True:
        card = build(links)
        detector = load_detector(resolve_model(str(card)))
        detector.detect([image])  # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            detector.detect([image])
        per_image_ms = (time.perf_counter() - t0) / 3 * 1000
        if per_image_ms >= min_ms or links >= 50000:
            return card, per_image_ms
        # Aim just past the mark: each link costs the same, so scale by the shortfall (and at
        # least by a fifth, so a noisy first timing still converges).
        links = int(links * max(1.2, 1.1 * min_ms / max(per_image_ms, 1e-3)))
