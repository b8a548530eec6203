"""Soak the live daemon: N RTSP cameras for a while, inference slower than decode on purpose.

Starts a real RTSP server (gst-rtsp-server) serving one real H.264 clip under N mount points,
runs `streetscan run` against them with a real model, and samples the daemon every few seconds:
RSS, frame age at analysis, frames sampled/analysed/dropped, batch sizes. A bounded pipeline
shows flat RSS, flat frame age and drops that grow with the overload; a queueing one shows
ages that climb. Ends with SIGTERM and records the exit code and how long the stop took.

    .venv/bin/python benchmarks/soak.py --cameras 10 --seconds 600 --json out/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from streetscan.infra.metrics import histogram_quantile
from streetscan.pipeline.models import resolve_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the real parts the tests use
from realparts import DaemonProcess, RtspServer, encode_clip, loop_clip, rss_bytes  # noqa: E402


def street_scene(t: float, img) -> None:
    """Traffic: boxes crossing a road, so detection, tracking and rules all have work."""
    h, w = img.shape[:2]
    img[:, :] = 95
    img[h // 2 :, :] = 55
    for i in range(4):
        x = int((t * (40 + 25 * i) + 150 * i) % (w + 100)) - 100
        y = h // 2 + 20 + 35 * i
        img[y : y + 30, max(0, x) : max(0, x + 70)] = (40 + 50 * i, 60, 200 - 40 * i)


def soak(
    cameras: int,
    seconds: float,
    clip: Path | None,
    model: str | None,
    analysis_fps: float,
    workdir: Path,
    sample_s: float = 5.0,
    warmup_s: float = 20.0,
    max_batch: int = 8,
) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    if clip is None:
        clip = encode_clip(workdir / "street.mp4", seconds=20, gop=25, scene=street_scene)
    long_clip = loop_clip(clip, workdir / "street_long.mp4", seconds + warmup_s + 60)
    server = RtspServer({f"cam{i:02d}": long_clip for i in range(cameras)}).start()
    card = resolve_model(model)
    streams = workdir / "streams.yaml"
    streams.write_text(
        yaml.safe_dump(
            {
                "defaults": {"analysis_fps": analysis_fps},
                "cameras": [
                    {
                        "id": f"cam{i:02d}",
                        "name": f"soak camera {i}",
                        "url": server.url(f"cam{i:02d}"),
                        "location": {"address": "soak"},
                    }
                    for i in range(cameras)
                ],
            }
        ),
        encoding="utf-8",
    )
    daemon = DaemonProcess(streams, workdir / "out", card.card_path, "--max-batch", str(max_batch)).start()
    samples = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < warmup_s + seconds:
            time.sleep(sample_s)
            m = daemon.metrics()
            if not m:
                continue

            def total(name, m=m):
                return sum(v for (n, _), v in m.items() if n == name)

            ages = [v for (n, _), v in m.items() if n == "streetscan_camera_frame_age_at_analysis_seconds"]
            samples.append(
                {
                    "t": round(time.monotonic() - t0, 1),
                    "rss_mb": round(rss_bytes(daemon.proc.pid) / 2**20, 1),
                    "sampled": total("streetscan_frames_sampled_total"),
                    "analysed": total("streetscan_frames_analysed_total"),
                    "dropped": total("streetscan_frames_dropped_total"),
                    "reconnects": total("streetscan_reconnects_total"),
                    "live": sum(
                        1
                        for (n, lab), v in m.items()
                        if n == "streetscan_camera_state" and v == 1.0 and dict(lab)["state"] == "live"
                    ),
                    "max_frame_age_s": round(max(ages, default=0.0), 3),
                    "age_buckets": [
                        (float(dict(lab)["le"]), v)
                        for (n, lab), v in m.items()
                        if n == "streetscan_frame_age_at_analysis_seconds_bucket"
                    ],
                    "inference_sum": total("streetscan_inference_latency_seconds_sum"),
                    "inference_count": total("streetscan_inference_latency_seconds_count"),
                    "batch_sum": total("streetscan_inference_batch_size_sum"),
                    "batch_count": total("streetscan_inference_batch_size_count"),
                    "batch_buckets": [
                        (float(dict(lab)["le"]), v)
                        for (n, lab), v in m.items()
                        if n == "streetscan_inference_batch_size_bucket"
                    ],
                }
            )
        t_stop = time.monotonic()
        daemon.signal(signal.SIGTERM)
        rc = daemon.wait(60)
        stop_s = time.monotonic() - t_stop
    finally:
        daemon.stop()
        server.kill()
    steady = [s for s in samples if s["t"] >= warmup_s]
    first, last = steady[0], steady[-1]
    span = last["t"] - first["t"]
    third = max(1, len(steady) // 3)
    age_buckets = sorted(last["age_buckets"])
    batches = sorted(last["batch_buckets"])
    batch_hist, prev = {}, 0.0
    for le, c in batches:
        if le != float("inf"):
            batch_hist[int(le)] = c - prev
            prev = c
    return {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "settings": {
            "cameras": cameras,
            "seconds": seconds,
            "warmup_s": warmup_s,
            "analysis_fps": analysis_fps,
            "model": card.name,
            "clip": str(clip),
            "max_batch": max_batch,
        },
        "rss_mb": {
            "first_third": statistics.median(s["rss_mb"] for s in steady[:third]),
            "last_third": statistics.median(s["rss_mb"] for s in steady[-third:]),
            "max": max(s["rss_mb"] for s in steady),
        },
        "frame_age_s": {
            "p50": histogram_quantile(0.5, age_buckets),
            "p99": histogram_quantile(0.99, age_buckets),
            "max_sampled": max(s["max_frame_age_s"] for s in steady),
            "first_third_max": max(s["max_frame_age_s"] for s in steady[:third]),
            "last_third_max": max(s["max_frame_age_s"] for s in steady[-third:]),
        },
        "rates_per_s": {
            "sampled": (last["sampled"] - first["sampled"]) / span,
            "analysed": (last["analysed"] - first["analysed"]) / span,
            "dropped": (last["dropped"] - first["dropped"]) / span,
        },
        "dropped_total": last["dropped"],
        "reconnects_total": last["reconnects"],
        "cameras_live_min": min(s["live"] for s in steady),
        "batch": {"mean": last["batch_sum"] / max(1, last["batch_count"]), "histogram_le": batch_hist},
        # Seconds per inference call over the steady part, as this run's machine delivered them.
        "inference_s_per_call": (last["inference_sum"] - first["inference_sum"])
        / max(1, last["inference_count"] - first["inference_count"]),
        "exit_code": rc,
        "stop_s": round(stop_s, 2),
        "samples": [{k: v for k, v in s.items() if not k.endswith("buckets")} for s in samples],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--clip", type=Path, help="H.264 MP4 every camera serves (default: a synthetic street scene)")
    ap.add_argument("--model", help="model name or card (default: models/DEFAULT)")
    ap.add_argument("--analysis-fps", type=float, default=2.0)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        result = soak(
            args.cameras, args.seconds, args.clip, args.model, args.analysis_fps, Path(tmp), max_batch=args.max_batch
        )
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
