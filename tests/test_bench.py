"""Smoke test of the capacity benchmark's quick mode: it runs end to end and reports every figure.
No timing assertions: speed targets live in benchmarks/RESULTS.md."""

import json
import os
import subprocess
import sys

import pytest

from streetscan.capacity import Trial

pytestmark = pytest.mark.integration


def test_bench_quick_reports_stages_ceiling_and_cameras(h264_clip, tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streetscan",
            "bench",
            "--quick",
            "--clip",
            str(h264_clip),
            "--limit",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads((out / "capacity.json").read_text())
    assert (out / "capacity.png").stat().st_size > 1000
    assert r["machine"]["cores"] >= 1 and r["machine"]["versions"]["onnxruntime"]
    assert r["decode"]["all_frames"]["decoded_fps"] > 0 and r["decode"]["clip"]["width"] == 640
    assert r["decode"]["as_read"]["keyframe_only"] is True  # 1 s GOP at 1 fps: keyframes suffice
    assert r["preprocess_ms"] > 0 and r["ceiling_img_s"] > 0
    assert {row["batch"] for row in r["inference"]} == {1}  # the default model takes batch 1 only
    e2e = r["e2e"]["1.0"]
    trials = e2e["trials"]
    assert trials[0]["cameras"] == 1 and {t["cameras"] for t in trials} <= {1, 2}  # doubling, within --limit
    sustained = [t["cameras"] for t in trials if Trial(**t).sustained(r["settings"]["max_age_s"])]
    assert e2e["cameras"] == max(sustained, default=0)  # the answer is the largest trial that held
    assert 0 < e2e["ratio_to_ceiling"] and "end to end @ 1.0 fps" in proc.stdout
    # Where a camera's cores go, stage by stage, and the cameras all of them together allow.
    cost = e2e["cores_per_camera"]
    assert set(cost) == {"decode", "preprocess", "inference"} and all(v > 0 for v in cost.values())
    assert e2e["combined_limit"] == pytest.approx(r["machine"]["cores"] / sum(cost.values()))
    assert e2e["ratio_to_limit"] == pytest.approx(e2e["cameras"] / e2e["combined_limit"])
    assert "where the cores go, per camera" in proc.stdout and "combined limit" in proc.stdout
    over = e2e["overload_2x"]  # graceful overload, reported at twice the load
    assert over["cameras"] == 2 * e2e["cameras"] and over["analysed_fps"] > 0 and over["min_camera_fps"] >= 0
    assert over["of_sustained"] == over["analysed_fps"] / e2e["analysed_fps"] and "at 2x" in proc.stdout


def test_a_trial_is_sustained_only_when_it_keeps_up_within_the_age_bound():
    held = Trial(
        cameras=4, analysis_fps=1.0, offered_fps=4.0, analysed_fps=3.9, dropped_fps=0.1, age_p95_s=2.0, mean_batch=2.0
    )
    assert held.sustained(max_age_s=3.0)
    assert not held.sustained(max_age_s=1.0)  # fast enough, but frames too old
    behind = Trial(
        cameras=4, analysis_fps=1.0, offered_fps=4.0, analysed_fps=3.7, dropped_fps=0.3, age_p95_s=0.5, mean_batch=2.0
    )
    assert not behind.sustained(max_age_s=3.0)  # under 95 % of the offered frames analysed
