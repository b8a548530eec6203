"""The bounded-memory soak: 10 RTSP cameras against a real ONNX model made too slow for them.

Runs for STREETSCAN_SOAK_S seconds (default 180) after a 20 s warm-up. Nothing here is a speed
target: the assertions are about shape. Memory flat, frame age flat and small (a queueing
pipeline's ages would climb for the whole run), and every sampled frame either analysed or
counted as dropped.
"""

import json
import os
import sys
from pathlib import Path

import pytest
from realparts import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from soak import soak  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.soak, pytest.mark.usefixtures("rtsp_ready")]


CAMERAS, FPS, MAX_BATCH = 10, 2.0, 8


def test_ten_cameras_overloaded_stay_bounded(tmp_path):
    # The overload is made, not hoped for: the detector is slowed until one image takes three times
    # the interval at which the cameras offer frames together (150 ms against 20 frames a second),
    # measured on this machine, so a quicker machine still drops frames.
    pytest.importorskip("onnx")
    from marker_model import build_slow_model

    card, per_image_ms = build_slow_model(tmp_path / "model", min_ms=3 * 1000 / (CAMERAS * FPS))
    seconds = float(os.environ.get("STREETSCAN_SOAK_S", "180"))
    r = soak(
        cameras=CAMERAS,
        seconds=seconds,
        clip=None,
        model=str(card),
        analysis_fps=FPS,
        workdir=tmp_path,
        max_batch=MAX_BATCH,
    )
    summary = {k: v for k, v in r.items() if k != "samples"}
    (tmp_path / "soak.json").write_text(json.dumps(r, indent=2))
    if os.environ.get("STREETSCAN_SOAK_JSON"):
        Path(os.environ["STREETSCAN_SOAK_JSON"]).write_text(json.dumps(r, indent=2))
    print(json.dumps(summary, indent=1))
    assert r["exit_code"] == 0 and r["stop_s"] < 25
    assert r["cameras_live_min"] == 10
    # Inference slower than decode: frames are dropped, and counted.
    assert r["rates_per_s"]["dropped"] > 0 and r["dropped_total"] > 0
    rates = r["rates_per_s"]
    assert abs(rates["sampled"] - rates["analysed"] - rates["dropped"]) < 0.05 * rates["sampled"]
    # Memory flat: no per-frame or per-event growth over the run.
    assert r["rss_mb"]["last_third"] - r["rss_mb"]["first_third"] < 25, r["rss_mb"]
    # Latency bounded: the oldest frame analysed late in the run is no older than early on.
    age = r["frame_age_s"]
    # No frame waits longer than two full batches of this machine's slowed inference (and a margin
    # for decode): the bound follows the measured cost, not a guess at the machine's speed, and the
    # cost the run itself saw when that is higher (a shared machine slows down mid-run).
    per_call_s = max(MAX_BATCH * per_image_ms / 1000, r["inference_s_per_call"])
    longest_wait_s = 2 * per_call_s + 2.0
    assert age["last_third_max"] < age["first_third_max"] + 1.0 and age["max_sampled"] < longest_wait_s, age
