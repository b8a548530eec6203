"""The analyst's report of a replay: a Markdown file beside events.jsonl and the evidence folder."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from ..pipeline.catalogue import CATALOGUE
from ..pipeline.models import ModelCard
from .replay import ReplayResult


def class_totals(results: list[ReplayResult]) -> Counter:
    totals: Counter = Counter()
    for r in results:
        totals.update(r.counts)
    return totals


def write_report(out_dir: Path, results: list[ReplayResult], card: ModelCard, unserved: list[str]) -> Path:
    totals = class_totals(results)
    lines = ["# StreetScan replay report", "", f"Model: `{card.name}` version {card.version} ({card.family}).", ""]
    lines += [
        "## Footage",
        "",
        (
            "| file | camera | size | length s | frames decoded | analysed | analysed fps | real-time factor | decode "
            "errors |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.path} | {r.camera_id} | {r.width}x{r.height} | {r.duration_s:.1f} | {r.frames_decoded} | "
            f"{r.frames_analysed} | {r.analysed_fps:.1f} | {r.realtime_factor:.2f}x | {r.decode_errors} |"
        )
    lines += [
        "",
        "## Events by scene class",
        "",
        "| scene class | 中文 | opened | updated | resolved |",
        "|---|---|---|---|---|",
    ]
    for code, scene in CATALOGUE.items():
        row = [totals[(code, s)] for s in ("opened", "updated", "resolved")]
        if any(row):
            lines.append(f"| {code} | {scene.name_zh} | {row[0]} | {row[1]} | {row[2]} |")
    if not any(totals.values()):
        lines.append("| (no events) | | | | |")
    if unserved:
        lines += ["", f"Not analysed (the model has no objects for them): {', '.join(unserved)}."]
    lines += ["", "## Opened events", ""]
    for r in results:
        for ev in (e for e in r.events if e.state == "opened"):
            v = ev.violation
            scene = CATALOGUE[v.scene_class]
            lines += [
                f"### {scene.name_zh} {scene.code} — {ev.camera.name} / zone {v.zone_id}",
                "",
                f"- id `{ev.event_id}`, confirmed {ev.confirmed.isoformat()} (stream {round(v.confirmed_s, 3)} s), "
                f"first seen {ev.first_seen.isoformat()}, confidence {v.confidence:.2f}, repeat #{ev.repeat_count}",
                "",
            ]
            lines += [f"![{name}]({path})" for name, path in ev.evidence.items()] + [""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


REPLAY_FIGURES = "replay.json"


def write_replay_figures(out_dir: Path, results: list[ReplayResult]) -> Path:
    """Each camera's figures from its latest replay into this folder (merged with earlier ones):
    what the console's cameras page shows for a recorded camera, as it shows a live one's."""
    path = out_dir / REPLAY_FIGURES
    try:
        cameras = json.loads(path.read_text(encoding="utf-8")).get("cameras", {})
    except (OSError, ValueError):
        cameras = {}
    for r in results:
        cameras[r.camera_id] = {
            "file": Path(r.path).name,
            "frames_analysed": r.frames_analysed,
            # per second of footage, as a live camera's rate is per second of its stream
            "analysed_fps": round(r.frames_analysed / r.duration_s, 3) if r.duration_s else None,
            "frames_dropped": 0,  # a replay waits for the detector: it drops nothing
            "decode_errors": r.decode_errors,
            "realtime_factor": round(r.realtime_factor, 2),
        }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"cameras": cameras}, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path
