"""Capacity benchmark: how many cameras this machine carries at an analysis rate.

Stage figures first (decode, preprocessing, raw inference per input size and batch size: the
compute ceiling), then the end-to-end answer: the largest number of simulated cameras (one clip
opened N times, each paced at its real frame rate by the daemon's own readers) that the daemon
sustains with every sampled frame analysed and frame age under a bound, found by search.

Run: `streetscan bench` or `benchmarks/capacity.py` (same options). Writes a table to stdout,
a JSON file and a PNG plot.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import yaml
from av.video.reformatter import VideoReformatter

from . import __version__
from .delivery.outputs import open_output
from .infra.metrics import histogram_quantile
from .pipeline.config import load_config
from .pipeline.crops import CropPlanner, FrameDetector
from .pipeline.decode import VideoSource, analysis_image, fit_size
from .pipeline.detect import ModelDetector, load_detector
from .pipeline.frames import Frame
from .pipeline.models import ModelCard, resolve_model
from .pipeline.preprocess import input_size, letterbox


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    if shutil.which("nvidia-smi"):
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True, text=True
        )
        gpu = r.stdout.strip() or None
    import onnxruntime as ort

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "versions": {
            "streetscan": __version__,
            "onnxruntime": ort.__version__,
            "av": av.__version__,
            "numpy": np.__version__,
        },
        "ort_providers": ort.get_available_providers(),
    }


def _timed(fn, min_s: float) -> tuple[int, float]:
    """Call fn() repeatedly for at least min_s; (calls, seconds)."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_s:
            return n, dt


def decode_figures(clip: Path, analysis_fps: float) -> dict:
    """Per decode thread: frames/s decoding everything, and camera-seconds per second (how many
    cameras one thread keeps up with) sampling at `analysis_fps` with every frame decoded and as
    the daemon reads (keyframes only when the GOP allows, else each GOP decoded to its last
    analysed frame)."""
    t0 = time.perf_counter()
    frames = 0
    with av.open(str(clip)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in c.decode(stream):
            frames += 1
    all_s = time.perf_counter() - t0
    out: dict[str, Any] = {"all_frames": {"decoded_fps": frames / all_s}}
    info = None
    out["fps"] = analysis_fps
    for mode, keyframes in (("every_frame", "never"), ("as_read", "auto")):
        src = VideoSource(str(clip), analysis_fps, keyframes=keyframes, threads=1)  # as the daemon decodes
        assert src.info is not None  # a file is probed when its VideoSource is made
        info = src.info
        t0 = time.perf_counter()
        n = sum(1 for _ in src.frames())
        dt = time.perf_counter() - t0
        out[mode] = {
            "decoded_fps": src.stats.decoded / dt,
            "sampled": n,
            "keyframe_only": src.stats.keyframe_only,
            "decoded": src.stats.decoded,
            "cameras_per_thread": (src.info.duration_s or 0) / dt,
        }
    assert info is not None  # set by the loop above
    out["clip"] = {
        "path": str(clip),
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "duration_s": info.duration_s,
        "keyframe_interval_s": info.keyframe_interval_s,
    }
    return out


def _first_frame(clip: Path) -> av.VideoFrame:
    with av.open(str(clip)) as c:
        return next(c.decode(video=0))


def preprocess_ms(detector: ModelDetector, vf: av.VideoFrame, min_s: float) -> float:
    """Decoded picture -> model tensor, as the pipeline does it: scale + BGR in the decoder's
    scaler, letterbox padding, tensor packing."""
    scaler, size = VideoReformatter(), fit_size(vf.width, vf.height, detector.card.fit)

    def once() -> None:
        image = analysis_image(scaler, vf, size)
        detector._to_tensor([letterbox(image, detector.input_size(image))[0]])

    n, dt = _timed(once, min_s)
    return 1000 * dt / n


def inference_figures(
    detector: ModelDetector, sizes: list[tuple[int, int]], batches: list[int], min_s: float
) -> list[dict]:
    """Raw runtime throughput on ready tensors: the compute ceiling, nothing else."""
    card, run = detector.card, detector.runtime.run
    fixed = detector.runtime.input_shape
    rows = []
    for w, h in sizes:
        for b in batches:
            if fixed[0] is not None and b != fixed[0]:
                continue
            shape = (b, h, w, 3) if card.layout == "NHWC" else (b, 3, h, w)
            if any(f is not None and f != s for f, s in zip(fixed[1:], shape[1:], strict=False)):
                continue
            x = np.random.default_rng(0).random(shape, dtype=np.float32) * 255
            run(x)  # warm-up
            n, dt = _timed(lambda x=x: run(x), min_s)
            rows.append({"input": f"{w}x{h}", "batch": b, "img_s": n * b / dt, "ms_per_call": 1000 * dt / n})
    return rows


def zone_crop_figures(card: ModelCard, vf: av.VideoFrame, min_s: float, device: str = "cpu") -> dict:
    """What zone-crop inference costs a camera: ms of one inference thread per analysed frame for
    the letterboxed frame alone, then with one and two small zones (a sixth of the frame each,
    which `auto` crops) detected again at native resolution. Interleaved rounds, medians."""
    detector = FrameDetector(load_detector(card, threads=1, device=device))
    w, h = vf.width, vf.height
    scaled = analysis_image(VideoReformatter(), vf, fit_size(w, h, card.fit))
    full = vf.to_ndarray(format="bgr24")
    frame = Frame(
        seq=0, decoded_index=0, pts_s=0.0, image=scaled, keyframe=True, source_size=(w, h), full_res=lambda: full
    )
    zones = [
        ((w * 0.55, h * 0.35), (w * 0.95, h * 0.35), (w * 0.95, h * 0.75), (w * 0.55, h * 0.75)),
        ((w * 0.05, h * 0.35), (w * 0.45, h * 0.35), (w * 0.45, h * 0.75), (w * 0.05, h * 0.75)),
    ]
    plans = {n: CropPlanner(tuple(zones[:n]), card.fit, "on").plan(w, h) for n in (0, 1, 2)}
    timings: dict[int, list[float]] = {n: [] for n in plans}
    detector.detect([frame], [plans[2]])  # warm-up
    for _ in range(5):
        for n, plan in plans.items():
            k, dt = _timed(lambda p=plan: detector.detect([frame], [p]), min_s / 15)
            timings[n].append(1000 * dt / k)
    ms = {n: float(np.median(v)) for n, v in timings.items()}
    return {
        "frame": f"{w}x{h}",
        "crops": {
            str(n): {
                "boxes": [list(b) for b in plans[n]],
                "ms_per_frame": ms[n],
                "cameras_per_core_at_1fps": 1000 / ms[n],
            }
            for n in plans
        },
    }


@dataclass
class Trial:
    cameras: int
    analysis_fps: float
    offered_fps: float
    analysed_fps: float
    dropped_fps: float
    age_p95_s: float
    mean_batch: float
    min_camera_fps: float = 0.0  # the least-served camera's analysed frames/s (fairness)
    max_camera_fps: float = 0.0
    not_detected_fps: float = 0.0  # of the analysed frames, those the motion gate kept from the detector
    # Where the process's cores went over the measured window, by thread (thread_cores); {} off Linux.
    cores_by_thread: dict[str, float] = field(default_factory=dict)

    def sustained(self, max_age_s: float) -> bool:
        return self.analysed_fps >= 0.95 * self.offered_fps and self.age_p95_s <= max_age_s


AGE = "streetscan_frame_age_at_analysis_seconds"

# The daemon's workers by thread-name prefix (infra.loop.Worker names them); threads started by
# native code (ONNX Runtime's pool, FFmpeg's decoder threads) have no Python name.
THREAD_GROUPS = (
    ("reader-", "readers: demux + decode"),
    ("main-", "main streams: keyframes"),
    ("inference-", "inference loop (Python)"),
    ("analysis", "analysis: track, rules, events"),
)
NATIVE = "native pools: ONNX Runtime, FFmpeg"


def thread_seconds() -> dict[str, float]:
    """CPU seconds each group of this process's threads has used so far (Linux /proc)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended between listing and reading
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        name = names.get(int(tid))
        group = NATIVE if name is None else next((g for p, g in THREAD_GROUPS if name.startswith(p)), "other")
        out[group] = out.get(group, 0.0) + cpu
    return out


def thread_cores(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    return {g: (after.get(g, 0.0) - before.get(g, 0.0)) / seconds for g in after if seconds > 0}


def _buckets(registry, name: str) -> dict[float, float]:
    return {float(s.labels["le"]): s.value for m in registry.collect() for s in m.samples if s.name == f"{name}_bucket"}


def _quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Quantile of what a histogram observed between two readings of its buckets: the measured
    window only, not the warm-up (a daemon's first frames wait for every camera's first detection)."""
    return histogram_quantile(q, [(le, count - before.get(le, 0.0)) for le, count in after.items()])


# The overload trial measures the steady state: load shedding decides from the last 10 sampling
# decisions of a camera (10 s at 1 fps), so a shorter warm-up measures the cold start instead
# (a 3 s warm-up and 6 s window gave 12-27 % where the steady state holds ~90 %).
OVERLOAD_WARMUP_S = 15.0
OVERLOAD_SECONDS = 20.0


def e2e_trial(
    clip: Path | Sequence[Path],
    card: ModelCard,
    cameras: int,
    analysis_fps: float,
    seconds: float,
    workdir: Path,
    detector_opts: dict,
    max_batch: int,
    shed_load: bool = True,
    warmup_s: float | None = None,
    reader_processes: int = 0,
    camera: dict | None = None,
    detection: dict | None = None,
) -> Trial:
    """`clip`: what every simulated camera plays in a loop, or several (camera i plays clip i mod n:
    the same footage started at different points, so cameras do not all see the same second);
    `camera`: streams.yaml fields every simulated camera gets (zones, rules); `detection`: the
    file's detection defaults (motion gating)."""
    from .workers.supervisor import Daemon, DaemonOptions

    clips = [clip] if isinstance(clip, Path) else list(clip)
    streams = workdir / f"bench-{cameras}.yaml"
    defaults: dict = {"analysis_fps": analysis_fps, "reader": {"backoff_initial_s": 0.05, "backoff_max_s": 1}}
    if detection:
        defaults["detection"] = detection
    streams.write_text(
        yaml.safe_dump(
            {
                "defaults": defaults,
                "cameras": [
                    {
                        "id": f"sim{i:03d}",
                        "name": f"simulated {i}",
                        "url": str(clips[i % len(clips)]),
                        "location": {"address": "bench"},
                        **(camera or {}),
                    }
                    for i in range(cameras)
                ],
            }
        ),
        encoding="utf-8",
    )
    out = workdir / f"out-{cameras}"
    options = DaemonOptions(
        streams_path=streams,
        out_dir=out,
        spool_path=out / "spool.db",
        metrics_host="127.0.0.1",
        metrics_port=0,
        max_batch=max_batch,
        shed_load=shed_load,
        reader_processes=reader_processes,
    )
    daemon = Daemon(options, load_config(streams), load_detector(card, **detector_opts), [open_output("jsonl:", out)])
    m = daemon.metrics

    def totals() -> tuple[float, float, float, float]:
        vals = {"analysed": 0.0, "dropped": 0.0, "not_detected": 0.0}
        for metric in m.registry.collect():
            for s in metric.samples:
                for k in vals:
                    if s.name == f"streetscan_frames_{k}_total":
                        vals[k] += s.value
        bsum = m.registry.get_sample_value("streetscan_inference_batch_size_sum", {"worker": "cpu0"}) or 0.0
        return vals["analysed"], vals["dropped"], vals["not_detected"], bsum

    def per_camera() -> dict[str, float]:
        return {
            s.labels["camera"]: s.value
            for metric in m.registry.collect()
            for s in metric.samples
            if s.name == "streetscan_frames_analysed_total"
        }

    daemon.start()
    try:
        time.sleep(min(5.0, seconds / 2) if warmup_s is None else warmup_s)  # connect and warm up
        a0, d0, n0, b0 = totals()
        age0 = _buckets(m.registry, AGE)
        cam0 = per_camera()
        c0 = m.registry.get_sample_value("streetscan_inference_batch_size_count", {"worker": "cpu0"}) or 0.0
        cpu0 = thread_seconds()
        t0 = time.monotonic()
        time.sleep(seconds)
        a1, d1, n1, b1 = totals()
        cores = thread_cores(cpu0, thread_seconds(), time.monotonic() - t0)
        cam1 = per_camera()
        c1 = m.registry.get_sample_value("streetscan_inference_batch_size_count", {"worker": "cpu0"}) or 0.0
        dt = time.monotonic() - t0
        age = _quantile(age0, _buckets(m.registry, AGE), 0.95)
    finally:
        daemon.stop()
    rates = [(cam1.get(f"sim{i:03d}", 0.0) - cam0.get(f"sim{i:03d}", 0.0)) / dt for i in range(cameras)]
    return Trial(
        cameras,
        analysis_fps,
        cameras * analysis_fps,
        (a1 - a0) / dt,
        (d1 - d0) / dt,
        age,
        (b1 - b0) / max(1.0, c1 - c0),
        min(rates, default=0.0),
        max(rates, default=0.0),
        (n1 - n0) / dt,
        cores,
    )


def search_cameras(
    clip: Path | Sequence[Path],
    card: ModelCard,
    analysis_fps: float,
    seconds: float,
    workdir: Path,
    *,
    max_age_s: float,
    detector_opts: dict,
    max_batch: int,
    limit: int,
    log=print,
    reader_processes: int = 0,
    camera: dict | None = None,
    detection: dict | None = None,
) -> tuple[int, list[Trial]]:
    """Largest N sustained: double until a trial fails, then bisect."""
    trials: list[Trial] = []

    def ok(n: int) -> bool:
        t = e2e_trial(
            clip,
            card,
            n,
            analysis_fps,
            seconds,
            workdir,
            detector_opts,
            max_batch,
            reader_processes=reader_processes,
            camera=camera,
            detection=detection,
        )
        trials.append(t)
        log(
            f"  {n:4d} cameras @ {analysis_fps:g} fps: offered {t.offered_fps:6.1f} analysed {t.analysed_fps:6.1f} "
            f"dropped {t.dropped_fps:5.1f}/s  not detected {t.not_detected_fps:5.1f}/s  "
            f"age p95 {t.age_p95_s:.2f}s  batch {t.mean_batch:.1f}  "
            f"{'ok' if t.sustained(max_age_s) else 'over'}"
        )
        return t.sustained(max_age_s)

    good, bad = 0, None
    n = 1
    while n <= limit:
        if ok(n):
            good, n = n, n * 2
        else:
            bad = n
            break
    if bad is None:
        return good, trials
    while bad - good > 1 and bad - good > max(1, good // 8):  # within 12.5%: enough for planning
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good, trials


def plot(results: dict, path: Path) -> None:
    """Throughput against batch size; offered against analysed frames/s in every end-to-end trial
    (the line is 'all analysed'); where a camera's cores go, stage by stage, per analysis rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4))
    by_size: dict[str, list] = {}
    for r in results["inference"]:
        by_size.setdefault(r["input"], []).append((r["batch"], r["img_s"]))
    for size, pts in by_size.items():
        a.plot(*zip(*sorted(pts), strict=False), marker="o", label=size)
    a.set(xscale="log", xlabel="batch size", ylabel="images/s (raw inference)", title=results["model"])
    a.legend()
    top = 1.0
    for fps, e in results["e2e"].items():
        pts = sorted((t["offered_fps"], t["analysed_fps"]) for t in e["trials"])
        if pts:
            b.plot(*zip(*pts, strict=False), marker="o", label=f"{fps} fps: {e['cameras']} cameras sustained")
            top = max(top, max(p[0] for p in pts))
    b.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1)
    b.set(xlabel="frames/s offered (cameras x fps)", ylabel="frames/s analysed", title="end to end, every trial")
    b.legend(fontsize=8)
    rates = [fps for fps, e in results["e2e"].items() if e.get("cores_per_camera")]
    bottom = [0.0] * len(rates)
    for stage in ("decode", "preprocess", "inference"):
        values = [1000 * results["e2e"][fps]["cores_per_camera"][stage] for fps in rates]
        c.bar(rates, values, bottom=bottom, label=stage)
        bottom = [x + y for x, y in zip(bottom, values, strict=True)]
    c.set(xlabel="analysis fps", ylabel="millicores per camera", title="where a camera's cores go")
    c.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


ENCODERS = {"h264": ["-c:v", "libx264"], "hevc": ["-c:v", "libx265", "-x265-params", "log-level=error"]}


def camera_encoding(gop: int, codec: str = "h264") -> list[str]:
    """FFmpeg output arguments for footage re-encoded as a camera sends it: video only, a keyframe
    every `gop` frames and no other (no scene-cut keyframes), 4:2:0."""
    return ["-an", *ENCODERS[codec], "-preset", "veryfast", "-g", str(gop), "-keyint_min", str(gop),
            "-sc_threshold", "0", "-pix_fmt", "yuv420p"]  # fmt: skip


def default_clip(workdir: Path, quick: bool, gop_s: float = 2.0) -> Path:
    """The staged street footage at 1080p (the common camera), else a synthetic 1080p clip, with
    keyframes every `gop_s` (cameras ship with 1-2 s; keyframe-only decode needs <= 1/analysis_fps)."""
    gop = max(1, round(25 * gop_s))
    assets = os.environ.get("STREETSCAN_ASSETS")
    src = Path(assets) / "footage" / "plaza_pedestrians.mp4" if assets else None
    dst = workdir / "bench_1080p.mp4"
    gop_args = [*camera_encoding(gop), str(dst)]
    if src and src.exists():
        args = ["-i", str(src), "-t", "10" if quick else "40", "-vf", "scale=1920:1080,fps=25"]
    else:  # FFmpeg's moving test pattern: real H.264 at the same size, rate and GOP
        args = ["-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=25:duration={10 if quick else 30}"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args, *gop_args], check=True)
    return dst


def run(
    *,
    clip: Path | None,
    model: str | None,
    analysis_fps: list[float],
    quick: bool,
    out: Path,
    max_age_s: float,
    threads: int | None,
    max_batch: int,
    limit: int,
    gop_s: float = 2.0,
    device: str = "cpu",
    reader_processes: int = 0,
    log=print,
) -> dict:
    card = resolve_model(model)
    detector_opts = {"threads": threads, "device": device}
    detector = load_detector(card, **detector_opts)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        clip = clip or default_clip(work, quick, gop_s)
        stage_s = 1.0 if quick else 5.0
        log(f"machine: {machine()['cpu']}, {os.cpu_count()} cores; model {card.name}; clip {clip.name}")
        decs = {fps: decode_figures(clip, fps) for fps in analysis_fps}  # what a GOP costs depends on the rate
        dec = decs[min(analysis_fps)]
        vf = _first_frame(clip)
        pre = preprocess_ms(detector, vf, stage_s)
        rect = input_size(*fit_size(vf.width, vf.height, card.fit), card.input_width, card.input_height, card.rect)
        sizes = list(
            dict.fromkeys([rect, (card.input_width, card.input_height)] + ([] if quick else [(320, 192), (640, 640)]))
        )
        batches = [1, 2, 4] if quick else [1, 2, 4, 8, 16]
        inf = inference_figures(detector, sizes, batches, stage_s)
        crops = zone_crop_figures(card, vf, stage_s, device)
        ceiling = max((r["img_s"] for r in inf if r["input"] == f"{rect[0]}x{rect[1]}"), default=0.0)
        e2e = {}
        for fps in analysis_fps:
            n, trials = search_cameras(
                clip,
                card,
                fps,
                6.0 if quick else 20.0,
                work,
                max_age_s=max_age_s,
                detector_opts=detector_opts,
                max_batch=max_batch,
                limit=limit,
                log=log,
                reader_processes=reader_processes,
            )
            best = next((t for t in reversed(trials) if t.cameras == n), None)
            overload = None
            if n and best:
                # Graceful overload: twice the sustained count, load shedding on (the daemon's default).
                t2 = e2e_trial(
                    clip,
                    card,
                    2 * n,
                    fps,
                    OVERLOAD_SECONDS,
                    work,
                    detector_opts,
                    max_batch,
                    warmup_s=OVERLOAD_WARMUP_S,
                    reader_processes=reader_processes,
                )
                overload = {
                    **t2.__dict__,
                    "of_sustained": t2.analysed_fps / best.analysed_fps if best.analysed_fps else None,
                }
                log(
                    f"  {2 * n:4d} cameras @ {fps:g} fps (2x): analysed {t2.analysed_fps:6.1f}/s = "
                    f"{100 * (overload['of_sustained'] or 0):.0f}% of the sustained figure, least-served camera "
                    f"{t2.min_camera_fps:.2f}/s, age p95 {t2.age_p95_s:.1f}s"
                )
            budget = where_the_cores_go(decs[fps], pre, ceiling, os.cpu_count() or 1)
            limit = budget["combined_limit"]
            e2e[str(fps)] = {
                "cameras": n,
                "analysed_fps": best.analysed_fps if best else 0.0,
                "ratio_to_ceiling": (best.analysed_fps / ceiling) if best and ceiling else None,
                **budget,
                "ratio_to_limit": n / limit if limit else None,
                "search_limited": n >= limit,  # every trial up to --limit held: the answer is a lower bound
                "trials": [t.__dict__ for t in trials],
                "overload_2x": overload,
            }
    results = {
        "machine": machine(),
        "model": card.name,
        "settings": {
            "quick": quick,
            "analysis_fps": analysis_fps,
            "max_age_s": max_age_s,
            "max_batch": max_batch,
            "threads": threads,
            "device": device,
            "gop_s": gop_s,
            "clip": str(clip),
            "reader_processes": reader_processes,
        },
        "decode": dec,
        "preprocess_ms": pre,
        "inference": inf,
        "zone_crops": crops,
        "ceiling_img_s": ceiling,
        "ceiling_input": f"{rect[0]}x{rect[1]}",
        "e2e": e2e,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    plot(results, out / "capacity.png")
    return results


def where_the_cores_go(dec: dict, preprocess_ms: float, ceiling_img_s: float, cores: int) -> dict:
    """Each stage's CPU per camera at `dec`'s rate (in cores), from the stage figures, and the
    combined limit: how many cameras the machine's cores carry when every stage is paid for (cores
    / cost per camera). Decode is the daemon's, measured at that rate (keyframes only when the GOP
    allows it, else each GOP to its last analysed frame); inference is the raw ceiling's share of
    all cores per image. Tracking, rules and evidence are left out: 0.002 cores for 24 cameras
    (measured above), below this estimate's noise."""
    fps = dec["fps"]
    mode = dec["as_read"]
    decode = 1.0 / mode["cameras_per_thread"] if mode["cameras_per_thread"] else 0.0
    stages = {
        "decode": decode,
        "preprocess": fps * preprocess_ms / 1000.0,
        "inference": fps * cores / ceiling_img_s if ceiling_img_s else 0.0,
    }
    per_camera = sum(stages.values())
    return {"cores_per_camera": stages, "combined_limit": cores / per_camera if per_camera else None}


def table(results: dict) -> str:
    d = results["decode"]
    lines = [
        f"model {results['model']} on {results['machine']['cpu']} ({results['machine']['cores']} cores)",
        f"decode {d['clip']['width']}x{d['clip']['height']}: all frames {d['all_frames']['decoded_fps']:.0f} fps; "
        f"at {d['fps']:g} fps, every frame {d['every_frame']['cameras_per_thread']:.1f} cameras/thread; "
        f"as the daemon reads {d['as_read']['cameras_per_thread']:.1f} cameras/thread "
        f"({'keyframes only' if d['as_read']['keyframe_only'] else 'each GOP to its last analysed frame'})",
        f"preprocess {results['preprocess_ms']:.2f} ms/frame",
        "inference (raw):  input     batch   img/s   ms/call",
    ]
    for r in results["inference"]:
        lines.append(f"                  {r['input']:9s} {r['batch']:5d} {r['img_s']:7.1f} {r['ms_per_call']:8.1f}")
    zc = results.get("zone_crops")
    if zc:
        lines.append(
            "zone crops (1 thread, "
            + zc["frame"]
            + "): "
            + "; ".join(
                f"{n} crop(s) {c['ms_per_frame']:.1f} ms/frame = "
                f"{c['cameras_per_core_at_1fps']:.1f} cameras/core @ 1 fps"
                for n, c in zc["crops"].items()
            )
        )
    for fps, e in results["e2e"].items():
        ratio = (
            f"{100 * e['ratio_to_ceiling']:.0f}% of the {results['ceiling_img_s']:.1f} img/s ceiling"
            if e["ratio_to_ceiling"]
            else "n/a"
        )
        lines.append(
            f"end to end @ {fps} fps: {e['cameras']} cameras, {e['analysed_fps']:.1f} frames/s analysed ({ratio})"
        )
        if e.get("combined_limit"):
            cost = ", ".join(f"{k} {1000 * v:.0f}" for k, v in e["cores_per_camera"].items())
            bound = ">= " if e.get("search_limited") else ""
            lines.append(
                f"  where the cores go, per camera (millicores): {cost}; combined limit "
                f"{e['combined_limit']:.1f} cameras; end to end = {bound}{100 * e['ratio_to_limit']:.0f}% of it"
                + (" (the search stopped at --limit)" if bound else "")
            )
        o = e.get("overload_2x")
        if o and o.get("of_sustained") is not None:
            lines.append(
                f"  at 2x ({o['cameras']} cameras): {o['analysed_fps']:.1f} frames/s = "
                f"{100 * o['of_sustained']:.0f}% of sustained; least-served camera {o['min_camera_fps']:.2f}/s"
            )
    return "\n".join(lines)
