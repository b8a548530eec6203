"""scripts/build_dataset.py on a tiny fixture: mapping, dropped classes, pseudo-labels, splits, report."""

import importlib.util
import json

import cv2
import numpy as np
import pytest
import yaml

from streetscan.pipeline.models import vocabulary

from conftest import REPO, encode_clip


def load_builder():
    spec = importlib.util.spec_from_file_location("build_dataset", REPO / "scripts" / "build_dataset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.DatasetBuilder


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "datasets" / "tiny_bins"
    (src / "classes.txt").parent.mkdir(parents=True)
    (src / "classes.txt").write_text("garbage\nwindow\noverflow\n")
    for split, n in (("train", 2), ("val", 1)):
        (src / "images" / split).mkdir(parents=True)
        (src / "labels" / split).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(src / "images" / split / f"{i}.jpg"), np.full((64, 96, 3), 120, np.uint8))
            (src / "labels" / split / f"{i}.txt").write_text(
                "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.05 0.05\n2 0.3 0.3 0.1 0.1\n0 0.1 0.2 0.3 0.4 0.5 0.6\n")
    return src


MAPPING = {"sources": {"tiny_bins": {"garbage": "garbage", "window": None, "overflow": "overflowing_bin"}},
           "footage": {"val": ["val_clip.mp4"]}}


def test_builds_mapped_labels_report_and_data_yaml(source, tmp_path):
    builder = load_builder()(tmp_path / "out", MAPPING)
    builder.add_source(source)
    clips = [encode_clip(tmp_path / n, seconds=2, gop=25) for n in ("train_clip.mp4", "val_clip.mp4")]
    for clip in clips:
        builder.add_footage(clip, fps=1)
    report = builder.finish()
    vocab = list(vocabulary())
    label = (tmp_path / "out" / "labels" / "train" / "tiny_bins__0.txt").read_text().splitlines()
    # window dropped, polygon line skipped, classes renumbered to vocabulary ids; grey frames get no pseudo boxes
    assert [l.split()[0] for l in label] == [str(vocab.index("garbage")), str(vocab.index("overflowing_bin"))]
    assert (tmp_path / "out" / "images" / "train" / "tiny_bins__0.jpg").is_symlink()
    assert report["images"] == {"tiny_bins/train": 2, "tiny_bins/val": 1, "train_clip/train": 2, "val_clip/val": 2}
    assert report["human_boxes_per_class"] == {"garbage": 3, "overflowing_bin": 3}
    assert "exposed_garbage" not in report["scene_classes_without_data"]
    assert {"street_laundry", "waterlogging", "illegal_parking"} <= set(report["scene_classes_without_data"])
    data = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert data["names"][vocab.index("car")] == "car" and data["val"] == "images/val"
    assert json.loads((tmp_path / "out" / "report.json").read_text())["teacher"] == "coco-centernet-mbv3"
    assert "Scene classes with no data" in (tmp_path / "out" / "report.md").read_text()


def test_unmapped_source_class_is_refused(source, tmp_path):
    mapping = {"sources": {"tiny_bins": {"garbage": "garbage"}}}
    with pytest.raises(SystemExit, match=r"classes \['window', 'overflow'\] have no entry"):
        load_builder()(tmp_path / "out", mapping).add_source(source)
