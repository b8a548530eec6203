"""The analyst's report of a replay: a Markdown file beside events.jsonl and the evidence folder."""

from __future__ import annotations

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
