"""The committed default model (COCO CenterNet bootstrap) on a fresh checkout and on real footage."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from streetscan.pipeline.detect import CenterNetDetector, load_detector
from streetscan.pipeline.models import resolve_model


def test_default_model_is_committed_and_loads():
    card = resolve_model(None)
    assert card.name == "coco-centernet-mbv3" and card.family == "centernet"
    assert {"person", "car", "bus", "truck", "bicycle", "motorcycle"} <= card.objects
    det = load_detector(card)
    assert isinstance(det, CenterNetDetector) and det.max_batch == 1  # the TF.js graph is batch 1
    out = det.detect([np.full((720, 1280, 3), 127, np.uint8)] * 2)
    assert len(out) == 2 and all(len(d) == 0 for d in out)  # a grey frame holds nothing


@pytest.mark.assets
def test_demo_replay_finds_people_and_cars_on_real_footage(assets, tmp_path):
    clips = [str(assets / "footage" / n) for n in ("plaza_pedestrians.mp4", "street_parking_overhead.mp4")]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streetscan",
            "replay",
            *clips,
            "--streams",
            str(REPO / "examples" / "footage.yaml"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    crowd = [e for e in events if e["scene_class"]["code"] == "crowd_gathering" and e["state"] == "opened"]
    assert crowd and crowd[0]["camera"]["id"] == "plaza"
    assert len(crowd[0]["objects"]) >= 15 and {o["class_name"] for o in crowd[0]["objects"]} == {"person"}
    parking = [e for e in events if e["scene_class"]["code"] == "illegal_parking" and e["state"] == "opened"]
    assert parking and parking[0]["camera"]["id"] == "kerbside" and parking[0]["objects"][0]["class_name"] == "car"
    assert (tmp_path / parking[0]["evidence"]["first"]).exists()
