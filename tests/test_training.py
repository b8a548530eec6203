"""The training path cannot rot: evaluation of a real ONNX model on a tiny labelled fixture, and a
CPU smoke run of scripts/train.py (real Ultralytics training and export, 160 px, one epoch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from marker_model import SIZE
from realparts import REPO

from streetscan.pipeline.detect import load_detector
from streetscan.pipeline.models import load_card

sys.path.insert(0, str(REPO / "scripts"))
import evaluate  # noqa: E402


def make_source(
    root: Path, n_train: int = 16, n_val: int = 8, shift: float = 0.0, sizes: tuple[int, int] = (40, 100)
) -> tuple[Path, Path]:
    """A staged-source-shaped folder ('markers': one class) of red squares on a grey street, and
    its data manifest. `shift` moves every label right by that fraction of the image (wrong labels);
    `sizes`: the range of marker sides in px."""
    src = root / "markers"
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        (src / "images" / split).mkdir(parents=True, exist_ok=True)
        (src / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.full((SIZE, SIZE, 3), 90, np.uint8)
            img[SIZE // 2 :] = 60
            w, h = rng.integers(*sizes, 2)
            x, y = rng.integers(0, SIZE - w), rng.integers(0, SIZE - h)
            img[y : y + h, x : x + w] = (0, 0, 230)
            cv2.imwrite(str(src / "images" / split / f"{i:03d}.png"), img)
            cx, cy = (x + w / 2) / SIZE + shift, (y + h / 2) / SIZE
            (src / "labels" / split / f"{i:03d}.txt").write_text(f"0 {cx:.5f} {cy:.5f} {w / SIZE:.5f} {h / SIZE:.5f}\n")
    (src / "classes.txt").write_text("marker\n")
    return src, manifest(root, "markers")


def manifest(root: Path, staged: str) -> Path:
    """A data manifest with one staged source mapping `marker` onto car."""
    path = root / "datasets.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {
                        "name": staged,
                        "staged": staged,
                        "format": "yolo",
                        "images": "images/{split}",
                        "labels": "labels/{split}",
                        "splits": {"train": "train", "val": "val"},
                        "classes": {"marker": "car"},
                        "licence": "test",
                        "attribution": "test",
                        "viewpoint": "test",
                        "image_count": 24,
                    }
                ]
            }
        )
    )
    return path


def test_evaluate_scores_a_real_model(tmp_path, marker_model):
    src, mapping = make_source(tmp_path / "good")
    report = evaluate.main([str(src), "--model", str(marker_model), "--manifest", str(mapping)])
    car = report["models"][str(marker_model)]["car"]
    assert report["images"] == 8 and car["boxes"] == 8
    assert car["ap50"] > 0.95 and car["precision"] > 0.95 and car["recall"] > 0.95
    assert car["ap50_95"] <= car["ap50"]


def test_evaluate_scores_small_boxes_apart(tmp_path, marker_model):
    big, mapping = make_source(tmp_path / "big")
    car = evaluate.main([str(big), "--model", str(marker_model), "--manifest", str(mapping)])["models"][
        str(marker_model)
    ]["car"]
    assert car["small_boxes"] == 0 and car["ap50_small"] is None  # no small box: no figure, not a zero
    small, mapping = make_source(tmp_path / "small", sizes=(8, 30))
    car = evaluate.main([str(small), "--model", str(marker_model), "--manifest", str(mapping)])["models"][
        str(marker_model)
    ]["car"]
    assert car["small_boxes"] == 8 and car["ap50_small"] > 0.95
    wrong, mapping = make_source(tmp_path / "small-shifted", sizes=(8, 30), shift=0.35)
    car = evaluate.main([str(wrong), "--model", str(marker_model), "--manifest", str(mapping)])["models"][
        str(marker_model)
    ]["car"]
    assert car["small_boxes"] == 8 and car["ap50_small"] < 0.2


def test_evaluate_punishes_wrong_boxes(tmp_path, marker_model):
    src, mapping = make_source(tmp_path / "shifted", shift=0.35)
    report = evaluate.main([str(src), "--model", str(marker_model), "--manifest", str(mapping)])
    car = report["models"][str(marker_model)]["car"]
    assert car["ap50"] < 0.2 and car["recall"] < 0.2


def test_evaluate_refuses_an_unmapped_source(tmp_path, marker_model):
    src, _ = make_source(tmp_path / "x")
    other = manifest(tmp_path, "somewhere_else")
    with pytest.raises(SystemExit, match="no staged source of that name"):
        evaluate.main([str(src), "--model", str(marker_model), "--manifest", str(other)])


@pytest.mark.integration
def test_train_smoke_run_exports_a_working_card(tmp_path, marker_model):
    pytest.importorskip("ultralytics", reason="training needs the [train] extra (scripts/setup.sh --train)")
    src, _ = make_source(tmp_path / "data", n_train=32, n_val=8)
    data = tmp_path / "data.yaml"
    data.write_text(
        yaml.safe_dump({"path": str(src), "train": "images/train", "val": "images/val", "names": {0: "car"}})
    )
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "cfg")}
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "train.py"),
        "--data",
        str(data),
        "--imgsz",
        "160",
        "--epochs",
        "1",
        "--batch",
        "16",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--project",
        str(tmp_path / "runs"),
        "--name",
        "smoke",
        "--export-out",
        str(tmp_path / "models"),
    ]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (tmp_path / "runs" / "smoke" / "weights" / "last.pt").exists()
    card = load_card(tmp_path / "models" / "streetscan-0.2.yaml")
    assert card.family == "yolo" and card.class_names == ("car",) and card.class_map == {"car": "car"}
    assert "trained from scratch" in card.provenance
    detections = load_detector(card).detect([cv2.imread(str(next((src / "images" / "val").glob("*.png"))))])
    assert len(detections) == 1  # runs through the pipeline's YOLO decoder (one epoch learns little)
    # Run again: the finished run is not trained again, only exported.
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "nothing to train" in again.stdout, again.stdout[-2000:] + again.stderr[-2000:]

    # Fine-tune from that checkpoint. At learning rate 0 the weights must come through unchanged,
    # which they only do if the checkpoint was loaded rather than a fresh network built.
    best = tmp_path / "runs" / "smoke" / "weights" / "best.pt"
    tune = [
        *cmd[: cmd.index("--name")],
        "--name",
        "tune",
        "--model",
        str(best),
        "--optimizer",
        "SGD",
        "--lr0",
        "0",
        "--warmup_epochs",
        "0",
        "--scale",
        "0.9",
        "--export-out",
        str(tmp_path / "models-tuned"),
    ]
    tuned = subprocess.run(tune, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert tuned.returncode == 0, tuned.stdout[-3000:] + tuned.stderr[-3000:]
    # The augmentation flag reaches Ultralytics (its own record of the run's arguments).
    run_args = yaml.safe_load((tmp_path / "runs" / "tune" / "args.yaml").read_text())
    assert run_args["scale"] == 0.9 and run_args["lr0"] == 0
    import torch

    def conv_weights(path: Path) -> list:
        model = torch.load(path, map_location="cpu", weights_only=False)["model"].float()
        return [v for k, v in model.state_dict().items() if k.endswith("conv.weight")]

    start, after = conv_weights(best), conv_weights(tmp_path / "runs" / "tune" / "weights" / "best.pt")
    assert len(start) == len(after) > 10 and all(torch.equal(a, b) for a, b in zip(start, after, strict=False))
    assert "fine-tuned from" in load_card(tmp_path / "models-tuned" / "streetscan-0.2.yaml").provenance


def test_pack_dataset_ships_the_set_in_bounded_chunks_with_rare_classes_repeated(tmp_path):
    """The GPU machine starts bare and takes ≤ 64 MiB a call: every chunk stays under its limit,
    the chunks together hold every train image once, and train.txt repeats the rare class's images."""
    import json
    import tarfile

    import pack_dataset

    root = tmp_path / "build"
    rng = np.random.default_rng(1)
    for split, n in (("train", 40), ("val", 12)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 255, (300, 500, 3), np.uint8)  # noise: JPEGs that do not shrink
            cv2.imwrite(str(root / "images" / split / f"s__{i:03d}.jpg"), img)
            cls = 1 if i % 20 == 0 else 0  # class 1 is rare: 2 of 40 train images
            (root / "labels" / split / f"s__{i:03d}.txt").write_text(f"{cls} 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(
        yaml.safe_dump(
            {"path": str(root), "train": "images/train", "val": "images/val", "names": {0: "car", 1: "umbrella"}}
        )
    )
    out = tmp_path / "gpu"
    pack_dataset.main(
        [
            "--data",
            str(root / "data.yaml"),
            "--out",
            str(out),
            "--chunk-mib",
            "0.25",
            "--long-side",
            "320",
            "--quality",
            "90",
            "--val-images",
            "6",
            "--rfs-threshold",
            "0.5",
        ]
    )
    chunks = sorted(out.glob("chunk-*.tar"))
    assert len(chunks) > 2 and all(c.stat().st_size <= 0.25 * 2**20 for c in chunks)
    unpacked = tmp_path / "ds"
    for c in chunks:
        with tarfile.open(c) as tar:
            tar.extractall(unpacked, filter="data")
    assert len(list((unpacked / "images" / "train").glob("*.jpg"))) == 40
    assert len(list((unpacked / "images" / "val").glob("*.jpg"))) == 6
    assert max(cv2.imread(str(next((unpacked / "images" / "train").glob("*.jpg")))).shape[:2]) == 320
    lines = (unpacked / "train.txt").read_text().split()
    assert all((unpacked / line).exists() for line in lines)
    rare = [line for line in lines if line.endswith(("s__000.jpg", "s__020.jpg"))]
    common = [line for line in lines if line.endswith("s__001.jpg")]
    assert len(rare) >= 6 and len(common) == 1  # sqrt(0.5 / 0.05) = 3.2 repeats of each rare image
    summary = json.loads((unpacked / "pack.json").read_text())
    assert summary["train_images"] == 40 and summary["train_samples_per_epoch"] == len(lines)
    assert yaml.safe_load((unpacked / "data.yaml").read_text())["names"] == {0: "car", 1: "umbrella"}
