"""The build report: images and boxes per vocabulary object, per source, per split, human vs
teacher, the issue's data targets, and which scene classes still lack human-labelled data."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from streetscan.dataset.manifest import Manifest
from streetscan.pipeline.catalogue import SCENE_CLASSES
from streetscan.pipeline.models import vocabulary

# What a model needs before it can be trusted on an object (issue #15): the common road users need
# many boxes from more than one source; the street-scene objects need a few hundred at least.
CORE_OBJECTS = ("person", "car", "bus", "truck", "bicycle", "motorcycle")
CORE_MIN_BOXES, CORE_MIN_SOURCES = 500, 2
SCENE_OBJECTS = (
    "litter",
    "floating_debris",
    "materials",
    "laundry",
    "stall",
    "goods",
    "water",
    "muck_truck",
    "advertisement",
)
SCENE_MIN_BOXES = 300
SAMPLE_BAD_LABELS = 5


def build_report(manifest: Manifest, results: list, teacher: str | None) -> dict:
    vocab = vocabulary()
    human: Counter[str] = Counter()
    human_val: Counter[str] = Counter()
    pseudo: Counter[str] = Counter()
    sources_with = defaultdict(set)
    sources = []
    for r in results:
        spec = next((s for s in manifest.sources if s.name == r.name), None)
        per_object: dict = defaultdict(dict)
        for (split, kind, obj), n in sorted(r.boxes.items()):
            per_object[obj][f"{split}/{kind}"] = n
            if r.status != "built":
                continue
            if kind == "human":
                human[obj] += n
                sources_with[obj].add(r.name)
                if split == "val":
                    human_val[obj] += n
            else:
                pseudo[obj] += n
        entry = {
            "name": r.name,
            "status": r.status,
            "reason": r.reason,
            "images": dict(r.images),
            "duplicates_dropped": r.duplicates,
            "capped": r.capped,
            "bad_labels": len(r.bad_labels),
            "bad_label_samples": [f"{p}: {why}" for p, why in r.bad_labels[:SAMPLE_BAD_LABELS]],
            "dropped_boxes": dict(r.dropped_boxes),
            "boxes": dict(per_object),
        }
        if r.clip is not None:
            entry.update(
                {"origin": r.clip.origin, "licence": r.clip.licence or "not stated", "viewpoint": r.clip.viewpoint}
            )
        if spec is not None:
            entry.update(
                {
                    "origin": spec.origin,
                    "repository": spec.repository,
                    "commit": spec.commit,
                    "folder": spec.folder,
                    "licence": spec.licence,
                    "viewpoint": spec.viewpoint,
                    "labels": sorted(spec.labelled_objects),
                }
            )
        sources.append(entry)
    targets = []
    for obj in CORE_OBJECTS:
        n, k = human[obj], len(sources_with[obj])
        targets.append(
            {
                "object": obj,
                "human_boxes": n,
                "sources": k,
                "need": f">= {CORE_MIN_BOXES} boxes from >= {CORE_MIN_SOURCES} sources",
                "met": n >= CORE_MIN_BOXES and k >= CORE_MIN_SOURCES,
            }
        )
    for obj in SCENE_OBJECTS:
        n = human[obj]
        targets.append(
            {
                "object": obj,
                "human_boxes": n,
                "sources": len(sources_with[obj]),
                "need": f">= {SCENE_MIN_BOXES} boxes",
                "met": n >= SCENE_MIN_BOXES,
            }
        )
    scenes = []
    for sc in SCENE_CLASSES:
        have = {o: human[o] for o in sc.objects}
        scenes.append(
            {
                "scene_class": sc.code,
                "zh": sc.name_zh,
                "objects": have,
                "human_data": any(n > 0 for n in have.values()),
                "short": [o for o, n in have.items() if n < SCENE_MIN_BOXES],
            }
        )
    return {
        "teacher": teacher,
        "long_side": manifest.long_side,
        "images": {f"{s['name']}/{sp}": n for s in sources for sp, n in sorted(s["images"].items())},
        "objects": {
            o: {"human": human[o], "human_val": human_val[o], "pseudo": pseudo[o], "sources": sorted(sources_with[o])}
            for o in vocab
        },
        "human_boxes_per_class": {o: n for o, n in human.items() if n},
        "targets": targets,
        "scene_classes": scenes,
        "scene_classes_without_data": [s["scene_class"] for s in scenes if not s["human_data"]],
        "sources": sources,
        "skipped": {s["name"]: s["reason"] for s in sources if s["status"] != "built"},
    }


def render_markdown(report: dict) -> str:
    lines = [
        "# StreetScan training-set report",
        "",
        f"Images resized to long side {report['long_side']} px. Teacher for objects a source does not label: "
        f"`{report['teacher'] or 'none (pseudo-labels off)'}` (train split only; val holds human boxes only).",
        "",
    ]
    lines += [
        "## Objects",
        "",
        "| object | human boxes | of which val | teacher boxes | sources with human boxes |",
        "|---|---:|---:|---:|---|",
    ]
    for obj, v in report["objects"].items():
        lines.append(f"| {obj} | {v['human']} | {v['human_val']} | {v['pseudo']} | {', '.join(v['sources']) or '-'} |")
    lines += [
        "",
        "## Targets (issue #15)",
        "",
        "| object | human boxes | sources | need | met |",
        "|---|---:|---:|---|---|",
    ]
    for t in report["targets"]:
        lines.append(
            f"| {t['object']} | {t['human_boxes']} | {t['sources']} | {t['need']} | {'yes' if t['met'] else '**no**'} |"
        )
    lines += [
        "",
        "## Sources",
        "",
        "| source | status | origin | licence | viewpoint | train | val | duplicates dropped | bad labels |",
        "|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    for s in report["sources"]:
        lines.append(
            f"| {s['name']} | {s['status']} | {s.get('origin', '-')} | {s.get('licence', '-')} | "
            f"{s.get('viewpoint', '-')} | {s['images'].get('train', 0)} | {s['images'].get('val', 0)} | "
            f"{s['duplicates_dropped']} | {s['bad_labels']} |"
        )
    lines += [
        "",
        "### Boxes per source, split and label kind",
        "",
        "| source | object | boxes (split/kind) |",
        "|---|---|---|",
    ]
    for s in report["sources"]:
        for obj, counts in s["boxes"].items():
            lines.append(f"| {s['name']} | {obj} | {', '.join(f'{k} {n}' for k, n in counts.items())} |")
    if report["skipped"]:
        lines += ["", "## Skipped sources", ""]
        lines += [f"- **{name}**: {why}" for name, why in report["skipped"].items()]
    bad = [s for s in report["sources"] if s["bad_labels"]]
    if bad:
        lines += ["", "## Bad label files (image left out)", ""]
        for s in bad:
            lines.append(
                f"- **{s['name']}**: {s['bad_labels']} files, e.g. "
                + "; ".join(f"`{x}`" for x in s["bad_label_samples"])
            )
    lines += ["", "## Scene classes", "", "| scene class | objects (human boxes) | short of data |", "|---|---|---|"]
    for sc in report["scene_classes"]:
        objs = ", ".join(f"{o} {n}" for o, n in sc["objects"].items())
        lines.append(f"| {sc['scene_class']} {sc['zh']} | {objs} | {', '.join(sc['short']) or '-'} |")
    lines += [
        "",
        "Scene classes with no human-labelled data: " + (", ".join(report["scene_classes_without_data"]) or "none"),
        "",
    ]
    return "\n".join(lines)


def write_report(report: dict, out: Path) -> None:
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
