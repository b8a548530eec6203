import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from streetscan.pipeline.detect import YoloDetector, load_detector
from streetscan.pipeline.models import ModelError, ObjectQuality, Quality, load_card, resolve_model
from streetscan.pipeline.preprocess import input_size, letterbox


def test_rect_input_for_16_9():
    assert input_size(1920, 1080, 640, 640, rect=True) == (640, 384)
    assert input_size(1280, 720, 640, 640, rect=True) == (640, 384)
    assert input_size(640, 480, 640, 640, rect=True) == (640, 480)
    assert input_size(1920, 1080, 640, 640, rect=False) == (640, 640)


def test_letterbox_round_trip():
    img = np.zeros((1080, 1920, 3), np.uint8)
    out, lb = letterbox(img, (640, 384))
    assert out.shape == (384, 640, 3)
    assert lb.scale == pytest.approx(1 / 3) and (lb.pad_x, lb.pad_y) == (0, 12)
    assert (out[:12] == 114).all() and (out[12:372] == 0).all()  # grey padding, image in the middle
    box_in_input = np.array([[100.0, 112.0, 200.0, 212.0]], np.float32)
    assert lb.to_source(box_in_input).tolist() == [[300.0, 300.0, 600.0, 600.0]]


@pytest.fixture(scope="module")
def detector(untrained_yolo) -> YoloDetector:
    return load_detector(load_card(untrained_yolo))


@pytest.mark.integration
def test_card_of_exported_model(untrained_yolo):
    card = load_card(untrained_yolo)
    assert card.family == "yolo" and card.class_names[:3] == ("person", "bicycle", "car")
    assert card.objects == {"person", "bicycle", "car", "motorcycle", "bus", "truck", "umbrella", "furniture"}


@pytest.mark.integration
def test_yolo_decoder_maps_boxes_classes_and_suppresses_duplicates(detector):
    nc = len(detector.card.class_names)
    anchors = 6
    out = np.zeros((1, 4 + nc, anchors), np.float32)

    def put(i, cx, cy, w, h, cls, score):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + cls, i] = score

    names = detector.card.class_names
    put(0, 100, 112, 40, 40, names.index("car"), 0.9)
    put(1, 102, 112, 40, 40, names.index("car"), 0.8)  # duplicate of 0: suppressed
    put(2, 300, 200, 20, 60, names.index("person"), 0.7)
    put(3, 500, 200, 20, 20, names.index("dog"), 0.95)  # not in the class map: dropped
    put(4, 50, 50, 10, 10, names.index("truck"), 0.05)  # under threshold
    _, lb = letterbox(np.zeros((1080, 1920, 3), np.uint8), (640, 384))
    det = detector._decode([out], 0, lb)
    assert list(det.data["class_name"]) == ["car", "person"]
    assert det.xyxy[0].tolist() == pytest.approx([240.0, 240.0, 360.0, 360.0])
    assert det.confidence.tolist() == pytest.approx([0.9, 0.7])


@pytest.mark.integration
def test_real_onnx_batch_of_mixed_sizes(detector):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8) for _ in range(3)]
    images.append(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    detector.conf_threshold = 0.0  # untrained weights score near zero: keep everything to exercise decoding
    try:
        results = detector.detect(images)
    finally:
        detector.conf_threshold = 0.1
    assert len(results) == 4
    for img, det in zip(images, results, strict=False):
        assert len(det) > 0
        assert set(det.data["class_name"]) <= detector.card.objects
        h, w = img.shape[:2]
        assert (det.xyxy[:, [0, 2]] <= w).all() and (det.xyxy[:, [1, 3]] <= h).all() and (det.xyxy >= 0).all()


def test_missing_model_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("STREETSCAN_MODELS", str(tmp_path))
    with pytest.raises(ModelError, match=r"model 'nope' not found in .*STREETSCAN_MODELS"):
        resolve_model("nope")
    with pytest.raises(ModelError, match="no model given and no default"):
        resolve_model(None)
    with pytest.raises(ModelError, match="have no card"):
        (tmp_path / "w.onnx").write_bytes(b"x")
        resolve_model(str(tmp_path / "w.onnx"))


def test_models_come_from_streetscan_models_else_the_package_not_the_working_directory(tmp_path, monkeypatch):
    import shutil
    import subprocess
    import sys

    import streetscan

    # From any working directory, the default model is the one installed with the package.
    code = "from streetscan.pipeline.models import resolve_model; print(resolve_model(None).weights)"
    env = {k: v for k, v in os.environ.items() if k != "STREETSCAN_MODELS"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    packaged = Path(streetscan.__file__).parent / "models"
    assert Path(out.stdout.strip()).parent == packaged and Path(out.stdout.strip()).is_file()
    # STREETSCAN_MODELS replaces it: names, DEFAULT and named class maps are looked up there.
    for name in ("DEFAULT", "coco-centernet-mbv3.yaml", "coco-centernet-mbv3.onnx"):
        shutil.copy(packaged / name, tmp_path / name)
    (tmp_path / "class_maps").mkdir()
    shutil.copy(packaged / "class_maps" / "coco.yaml", tmp_path / "class_maps" / "coco.yaml")
    monkeypatch.setenv("STREETSCAN_MODELS", str(tmp_path))
    assert resolve_model(None).weights == tmp_path / "coco-centernet-mbv3.onnx"


def test_card_with_missing_weights(tmp_path):
    card = tmp_path / "m.yaml"
    card.write_text("name: m\nfamily: yolo\nweights: m.onnx\ninput: {width: 640, height: 640}\nclass_map: coco\n")
    with pytest.raises(ModelError, match=r"weights .*m.onnx named by .*m.yaml are missing"):
        load_card(card)


@pytest.mark.parametrize("spec", ["coco-centernet-mbv3", "untrained"])
@pytest.mark.parametrize("norm", ["card", "per-channel"])
def test_tensor_matches_the_plain_arithmetic(spec, norm, request):
    from dataclasses import replace

    card = resolve_model(spec) if spec != "untrained" else load_card(request.getfixturevalue("untrained_yolo"))
    if norm == "per-channel":  # NanoDet-style BGR mean/std, as a card may give
        card = replace(card, mean=(103.53, 116.28, 123.675), std=(57.375, 57.12, 58.395))
    det = load_detector(card)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (384, 640, 3), dtype=np.uint8) for _ in range(3)]
    batch = np.stack(images).astype(np.float32)
    if card.color == "RGB":
        batch = batch[..., ::-1]
    ref = (batch - np.array(card.mean, np.float32)) / np.array(card.std, np.float32)
    if card.layout == "NCHW":
        ref = ref.transpose(0, 3, 1, 2)
    got = det._to_tensor(images)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-4)


@pytest.mark.integration
def test_int8_variant_is_a_working_card(untrained_yolo, h264_clip, tmp_path):
    import subprocess
    import sys

    import onnx
    from realparts import REPO

    # A measured source: its figures must not pass to the INT8 card, which is measured on its own.
    src = tmp_path / "source"
    src.mkdir()
    for f in untrained_yolo.parent.glob(f"{untrained_yolo.stem}.*"):
        shutil.copy(f, src)
    Quality("2026-11-24", "v", 8, "r.json", {"car": ObjectQuality(8, 0.5, 0.3)}).write_into(src / untrained_yolo.name)
    script = str(REPO / "scripts" / "quantize_model.py")
    proc = subprocess.run(
        [
            sys.executable,
            script,
            str(src / untrained_yolo.name),
            "--calibrate",
            str(h264_clip),
            "--frames",
            "4",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    source = load_card(src / untrained_yolo.name)
    card = load_card(tmp_path / f"{source.name}-int8.yaml")
    assert card.name == f"{source.name}-int8" and card.extra["quantization"]["source"] == source.name
    assert source.quality is not None and card.quality is None
    nodes = onnx.load(str(card.weights)).graph.node
    quantized_convs = {n.input[0] for n in nodes if n.op_type == "Conv"} & {
        n.output[0] for n in nodes if n.op_type == "DequantizeLinear"
    }
    assert len(quantized_convs) > 50  # the backbone runs in int8
    assert not [n for n in nodes if n.op_type == "QuantizeLinear" and "/dfl/" in n.name]  # box decoding stays float
    image = np.full((360, 640, 3), 90, np.uint8)
    assert len(load_detector(card).detect([image])) == 1
    refused = subprocess.run(
        [sys.executable, script, "coco-centernet-mbv3", "--calibrate", str(h264_clip)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "only yolo-family" in refused.stderr


def test_torch_runtime_matches_onnx_export(untrained_yolo):
    """The PyTorch path (the GPU path without an onnxruntime-gpu wheel) runs the checkpoint saved
    beside the export; on CPU its raw output is the ONNX graph's, so one yolo decoder serves both."""
    pytest.importorskip("torch")
    card = load_card(untrained_yolo)
    assert card.torch_weights is not None and card.torch_weights.exists()
    onnx_det, torch_det = load_detector(card), load_detector(card, device="torch-cpu")
    x = onnx_det._to_tensor([np.random.default_rng(1).integers(0, 256, (384, 640, 3), dtype=np.uint8)] * 2)
    ref, got = onnx_det.runtime.run(x)[0], torch_det.runtime.run(x)[0]
    assert got.shape == ref.shape == (2, 4 + 80, 5040)
    # The checkpoint is stored in fp16: boxes agree to a pixel, class scores (tiny, untrained) to 2 %.
    np.testing.assert_allclose(got[:, :4], ref[:, :4], atol=1.0)
    np.testing.assert_allclose(got[:, 4:], ref[:, 4:], rtol=0.02, atol=1e-7)


def test_torch_device_needs_a_checkpoint(untrained_yolo):
    from dataclasses import replace

    with pytest.raises(ModelError, match="torch_weights"):
        load_detector(resolve_model("coco-centernet-mbv3"), device="torch-cpu")
    card = replace(load_card(untrained_yolo), torch_weights=untrained_yolo.with_name("gone.pt"))
    with pytest.raises(ModelError, match="gone.pt.*missing"):
        load_detector(card, device="torch-cpu")
    with pytest.raises(ModelError, match="unknown device 'gpu'"):
        load_detector(card, device="gpu")
