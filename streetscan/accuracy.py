"""Event-level accuracy: the cases StreetScan reported, scored against what the footage shows.

A truth file (YAML, one per clip, `benchmarks/truth/`) lists each true violation with its scene
class, zone, start/end stream seconds and an approximate box, optional ones (half out of frame,
ambiguous) that neither count as missed nor make an event false, and "must not fire" spans. The
scorer groups event messages by `event_id`, matches each case to a truth (same camera, class and
zone, overlapping time, box IoU >= 0.3 or the case's object centre inside the truth box) and
reports per scene class what an operator feels: missed violations, duplicate cases for one
violation, false cases per camera-hour, how long a violation stood before its case opened, and
cases resolved while the violation was still there.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .pipeline.catalogue import CATALOGUE
from .pipeline.events import Event
from .pipeline.track import box_iou

Box = tuple[float, float, float, float]
BOX_IOU = 0.3  # approximate, hand-drawn truth boxes: loose on purpose, the centre test backs it up
TIME_SLACK_S = 1.0  # one analysis interval of tolerance at either end of a truth span
EARLY_RESOLVE_SLACK_S = 5.0  # a case may lose sight of its object this long before the truth ends


class TruthError(ValueError):
    """A truth file problem, phrased with the file and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrueViolation(_Model):
    id: str = Field(min_length=1, description="Name of this violation within the clip (e.g. far-silver-car).")
    scene_class: str = Field(description="Scene class code from the catalogue.")
    zone: str = Field(min_length=1, description="Zone id in the camera's streams.yaml entry.")
    start_s: float = Field(ge=0, description="Stream seconds when the violation is first true.")
    end_s: float = Field(gt=0, description="Stream seconds when it stops (or the clip ends).")
    box: Box | None = Field(
        default=None, description="Approximate box in source pixels; omitted: anywhere in the zone."
    )
    optional: bool = Field(default=False, description="Ambiguous or cut off: neither a miss nor a false case.")
    note: str = ""

    @model_validator(mode="after")
    def _check(self) -> TrueViolation:
        if self.scene_class not in CATALOGUE:
            raise ValueError(f"unknown scene class {self.scene_class!r}")
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s {self.end_s} must be after start_s {self.start_s}")
        if self.box is not None and (self.box[2] <= self.box[0] or self.box[3] <= self.box[1]):
            raise ValueError(f"box {list(self.box)} is not x1, y1, x2, y2 with x2 > x1 and y2 > y1")
        return self


class NoFireSpan(_Model):
    scene_class: str
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    zone: str | None = Field(default=None, description="Zone id; omitted: every zone of the camera.")
    note: str = ""


class ClipTruth(_Model):
    clip: str = Field(min_length=1, description="File name under $STREETSCAN_ASSETS/footage.")
    camera: str = Field(min_length=1, description="Camera id in the streams file whose zones apply.")
    duration_s: float = Field(gt=0)
    split: Literal["tune", "holdout"] = Field(
        description="tune: thresholds were calibrated on it; holdout: only scored."
    )
    drawn_by: str = ""
    violations: list[TrueViolation] = Field(default_factory=list)
    must_not_fire: list[NoFireSpan] = Field(default_factory=list)
    path: str = ""


def load_truth(path: str | Path) -> ClipTruth:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TruthError(f"{path}: cannot read: {exc}") from None
    if not isinstance(raw, dict):
        raise TruthError(f"{path}: expected a mapping")
    try:
        return ClipTruth.model_validate({**raw, "path": str(path)})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise TruthError(f"{path}: {problems}") from None


@dataclass
class Case:
    """All messages of one event id, reduced to what scoring needs."""

    event_id: str
    camera_id: str
    zone_id: str
    scene_class: str
    first_seen_s: float
    opened_s: float  # stream time the case was confirmed (its `opened` message)
    last_seen_s: float
    resolved: bool
    boxes: tuple[Box, ...]

    @classmethod
    def from_messages(cls, messages: list[Event]) -> Case:
        messages = sorted(messages, key=lambda m: m.revision)
        first, last = messages[0].violation, messages[-1].violation
        # As sent: boxes to 0.1 px, stream times to the ms (Event.to_dict).
        boxes = tuple(_rounded(o.box) for m in messages for o in m.violation.objects)
        return cls(
            event_id=messages[0].event_id,
            camera_id=first.camera_id,
            zone_id=first.zone_id,
            scene_class=first.scene_class,
            first_seen_s=round(first.first_seen_s, 3),
            opened_s=round(first.confirmed_s, 3),
            last_seen_s=round(last.last_seen_s, 3),
            resolved=any(m.state == "resolved" for m in messages),
            boxes=boxes,
        )


def _rounded(box: Box) -> Box:
    x1, y1, x2, y2 = box
    return (round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1))


def cases_from_events(events: Iterable[Event]) -> list[Case]:
    """Cases from their messages: events as made, or read back with Event.from_dict."""
    by_id: dict[str, list[Event]] = defaultdict(list)
    for ev in events:
        by_id[ev.event_id].append(ev)
    return sorted((Case.from_messages(msgs) for msgs in by_id.values()), key=lambda c: (c.camera_id, c.opened_s))


def box_match(truth: Box | None, boxes: tuple[Box, ...]) -> float:
    """How well a case's objects sit on a truth box: IoU, or BOX_IOU when only the centre is inside
    (a loose hand-drawn box around a car); 0 for no match. No truth box: anywhere matches."""
    if truth is None:
        return 1.0
    best = 0.0
    for b in boxes:
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        inside = truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3]
        best = max(best, box_iou(truth, b), BOX_IOU if inside else 0.0)
    return best if best >= BOX_IOU else 0.0


@dataclass
class ClassScore:
    scene_class: str
    truths: int = 0  # non-optional true violations
    found: int = 0  # of those, matched by at least one case
    cases: int = 0  # cases counted for precision (those on optional truths excluded)
    true_cases: int = 0  # cases matched to a truth (duplicates included)
    duplicates: int = 0  # cases beyond the first on one violation
    false_cases: int = 0
    must_not_fire_hits: int = 0  # false cases inside a "must not fire" span
    resolved_too_early: int = 0
    delays_s: list[float] = field(default_factory=list)  # violation start -> case opened, first case per truth
    beyond_s: list[float] = field(default_factory=list)  # the same, less the camera's dwell/hold for the class
    missed: list[str] = field(default_factory=list)  # "clip:truth id"
    false: list[str] = field(default_factory=list)  # "clip:event id@opened_s"

    @property
    def recall(self) -> float | None:
        return self.found / self.truths if self.truths else None

    @property
    def precision(self) -> float | None:
        return self.true_cases / self.cases if self.cases else None

    @property
    def duplicates_per_violation(self) -> float | None:
        return self.duplicates / self.found if self.found else None

    @property
    def median_delay_s(self) -> float | None:
        return statistics.median(self.delays_s) if self.delays_s else None

    @property
    def median_beyond_s(self) -> float | None:
        """How much later than its rule's time threshold a case opens, median (0: at the dwell)."""
        return statistics.median(self.beyond_s) if self.beyond_s else None

    def false_per_camera_hour(self, camera_hours: float) -> float | None:
        return self.false_cases / camera_hours if camera_hours else None

    def as_dict(self, camera_hours: float) -> dict[str, Any]:
        return {
            "scene_class": self.scene_class,
            "truths": self.truths,
            "found": self.found,
            "cases": self.cases,
            "true_cases": self.true_cases,
            "false_cases": self.false_cases,
            "duplicates": self.duplicates,
            "recall": self.recall,
            "precision": self.precision,
            "duplicates_per_violation": self.duplicates_per_violation,
            "median_time_to_open_s": self.median_delay_s,
            "median_s_beyond_threshold": self.median_beyond_s,
            "false_per_camera_hour": self.false_per_camera_hour(camera_hours),
            "must_not_fire_hits": self.must_not_fire_hits,
            "resolved_too_early": self.resolved_too_early,
            "missed": self.missed,
            "false": self.false,
        }


@dataclass
class Score:
    classes: dict[str, ClassScore]
    camera_hours: float
    clips: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "camera_hours": self.camera_hours,
            "clips": self.clips,
            "classes": {k: v.as_dict(self.camera_hours) for k, v in sorted(self.classes.items())},
        }


def score(
    truths: list[ClipTruth],
    cases_by_clip: dict[str, list[Case]],
    thresholds: dict[tuple[str, str, str], float] | None = None,
) -> Score:
    """Score each clip's cases against its truth; `cases_by_clip` is keyed by `ClipTruth.clip`;
    `thresholds`: (clip, zone, scene class) -> the rule's dwell/hold seconds on that camera."""
    thresholds = thresholds or {}
    classes: dict[str, ClassScore] = {}

    def cls(code: str) -> ClassScore:
        return classes.setdefault(code, ClassScore(code))

    for truth in truths:
        for v in truth.violations:
            cls(v.scene_class)  # a class with truths is reported even when no case came
        matched: dict[str, list[Case]] = defaultdict(list)
        for case in cases_by_clip.get(truth.clip, []):
            best, best_q = None, 0.0
            for v in truth.violations:
                if (
                    v.scene_class != case.scene_class
                    or v.zone != case.zone_id
                    or case.last_seen_s < v.start_s - TIME_SLACK_S
                    or case.first_seen_s > v.end_s + TIME_SLACK_S
                ):
                    continue
                q = box_match(v.box, case.boxes)
                # Prefer a violation not yet taken, so two cases on two cars are not one car's duplicate.
                q += 1.0 if q and not matched[v.id] else 0.0
                if q > best_q:
                    best, best_q = v, q
            s = cls(case.scene_class)
            if best is None:
                s.cases += 1
                s.false_cases += 1
                s.false.append(f"{truth.clip}:{case.event_id}@{case.opened_s:.1f}s")
                if any(
                    n.scene_class == case.scene_class
                    and (n.zone in (None, case.zone_id))
                    and case.opened_s >= n.start_s
                    and case.opened_s <= n.end_s
                    for n in truth.must_not_fire
                ):
                    s.must_not_fire_hits += 1
                continue
            matched[best.id].append(case)
            if not best.optional:
                s.cases += 1
                s.true_cases += 1
        for v in truth.violations:
            if v.optional:
                continue
            s = cls(v.scene_class)
            s.truths += 1
            found = sorted(matched[v.id], key=lambda c: c.opened_s)
            if not found:
                s.missed.append(f"{truth.clip}:{v.id}")
                continue
            s.found += 1
            s.duplicates += len(found) - 1
            s.delays_s.append(max(0.0, found[0].opened_s - v.start_s))
            s.beyond_s.append(
                max(0.0, found[0].opened_s - v.start_s) - thresholds.get((truth.clip, v.zone, v.scene_class), 0.0)
            )
            if any(c.resolved and c.last_seen_s + EARLY_RESOLVE_SLACK_S < v.end_s for c in found):
                s.resolved_too_early += 1
    hours = sum(t.duration_s for t in truths) / 3600.0
    return Score(classes=classes, camera_hours=hours, clips=[t.clip for t in truths])


def _fmt(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def markdown_table(result: Score) -> str:
    lines = [
        "| scene class | truths | found | cases | recall | precision | duplicates / violation | "
        "median s to open | median s beyond dwell | false / camera-hour | must-not-fire hits | resolved too early |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for code in CATALOGUE:
        s = result.classes.get(code)
        if s is None:
            continue
        fph = s.false_per_camera_hour(result.camera_hours)
        lines.append(
            f"| {code} | {s.truths} | {s.found} | {s.cases} | {_fmt(s.recall)} | {_fmt(s.precision)} | "
            f"{_fmt(s.duplicates_per_violation)} | {_fmt(s.median_delay_s, 1)} | {_fmt(s.median_beyond_s, 1)} | "
            f"{_fmt(fph, 0)} | {s.must_not_fire_hits} | {s.resolved_too_early} |"
        )
    return "\n".join(lines)


SUBSTREAM_CRF = "17"


def substream_copy(clip: Path, size: tuple[int, int], folder: Path) -> Path:
    """The clip as a camera's substream: scaled to fit `size` (aspect kept, never enlarged), same
    rate, a keyframe every 50 frames (2 s at 25 fps, as cameras send them), encoded near-losslessly
    (CRF 17): what the pairs are compared on is the pairing and the smaller picture, not a second
    encoder's loss. At x264's default CRF 23 the copy of a 640x480 clip kept its size and still lost
    far cars (courtyard car park 3 -> 2 found, benchmarks/ACCURACY.md)."""
    import subprocess

    from .capacity import camera_encoding

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / clip.name
    fit = f"scale='min({size[0]},iw)':'min({size[1]},ih)':force_original_aspect_ratio=decrease:force_divisible_by=2"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(clip),
            "-map",
            "0:v:0",
            "-vf",
            fit,
            *camera_encoding(50),
            "-crf",
            SUBSTREAM_CRF,
            str(out),
        ],  # fmt: skip
        check=True,
    )
    return out


def find_clip(name: str, folders: Sequence[Path]) -> Path | None:
    """The first folder holding the clip, in order (the staged footage, then a rebuilt folder)."""
    return next((f / name for f in folders if (f / name).is_file()), None)


def all_classes(result: Score) -> ClassScore:
    """Every scene class's cases and violations counted together: the figure that decides which
    model is the default (benchmarks/ACCURACY.md)."""
    total = ClassScore("all classes")
    for s in result.classes.values():
        total.truths += s.truths
        total.found += s.found
        total.cases += s.cases
        total.true_cases += s.true_cases
        total.duplicates += s.duplicates
        total.false_cases += s.false_cases
        total.must_not_fire_hits += s.must_not_fire_hits
        total.beyond_s += s.beyond_s
        total.delays_s += s.delays_s
    return total


def event_f1(s: ClassScore) -> float | None:
    """One figure for a class's cases: the harmonic mean of recall (violations found) and
    precision (cases that were true), the two things an operator feels."""
    if s.recall is None or s.precision is None:
        return None
    return 0.0 if s.recall + s.precision == 0 else 2 * s.recall * s.precision / (s.recall + s.precision)


@dataclass
class Evaluation:
    """One model's replay of the truth set: the score of all clips together, and each clip's cases."""

    score: Score
    settings: dict[str, Any]
    cases: dict[str, list[Case]]
    thresholds: dict[tuple[str, str, str], float]

    def pooled(self, truths: list[ClipTruth]) -> Score:
        """The score over a subset of the clips (a split), from the same replays."""
        return score(truths, self.cases, self.thresholds)


def run_evaluation(
    truths: list[ClipTruth],
    *,
    footage: Sequence[Path],
    config,
    detector,
    out_dir: Path,
    batch_size: int = 4,
    substream: tuple[int, int] | None = None,
) -> Evaluation:
    """Replay each truth clip through the real pipeline (its camera from `config`), then score.
    `footage`: the folders to look for clips in, in order. `substream` (w, h): run each clip as a
    camera pair, the clip as main stream and a copy scaled to fit (w, h) as its substream. The
    settings say what it was measured with (model, per-camera effective rules)."""
    from .delivery.sinks import JsonlSink
    from .pipeline.plan import CameraPlan
    from .workers.replay import ReplayJob

    cases: dict[str, list[Case]] = {}
    thresholds: dict[tuple[str, str, str], float] = {}
    settings: dict[str, Any] = {"model": {"name": detector.card.name, "version": detector.card.version}, "cameras": {}}
    for truth in truths:
        clip = find_clip(truth.clip, footage)
        if clip is None:
            raise TruthError(
                f"{truth.path}: clip {truth.clip} not found in {', '.join(map(str, footage))} "
                "(set STREETSCAN_ASSETS or --footage; scripts/footage.py rebuilds the fetched clips)"
            )
        camera = config.camera(truth.camera)
        if substream is not None:
            sub = substream_copy(clip, substream, out_dir / "substreams")
            camera = replace(camera, detect_url=str(sub), zone_crops="off")
        sink = JsonlSink(out_dir / f"events-{Path(truth.clip).stem}.jsonl")
        try:
            result = ReplayJob(camera, detector, out_dir=out_dir, sinks=[sink], batch_size=batch_size).run(str(clip))
        finally:
            sink.close()
        cases[truth.clip] = cases_from_events(result.events)
        for rule in CameraPlan.for_model(camera, detector.card).rules:
            thresholds[(truth.clip, rule.zone.id, rule.scene.code)] = rule.confirm_s
        settings["cameras"][camera.id] = {
            "clip": truth.clip,
            "split": truth.split,
            "analysis_fps": camera.analysis_fps,
            "rules": {code: rules for code in CATALOGUE if (rules := camera.rule_overrides(code))},
            "zones": [z.model_dump(mode="json", exclude_none=True) for z in camera.zones],
            "frames_analysed": result.frames_analysed,
            "frames_not_detected": result.frames_not_detected,
            # Where the copy lies in the output folder, not a machine's path.
            **({"substream": str(Path(str(camera.detect_url)).relative_to(out_dir))} if substream else {}),
            "wall_s": round(result.wall_s, 2),
        }
    return Evaluation(score(truths, cases, thresholds), settings, cases, thresholds)


def comparison_table(truths: list[ClipTruth], runs: dict[str, Evaluation], scene_class: str) -> str:
    """Models side by side for one scene class: each clip, then each split pooled (holdout first)."""
    head = ["clip", "split", "truths"] + [f"{m}: found / cases / false / dup" for m in runs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in truths:
        cells = []
        for run in runs.values():
            s = run.pooled([t]).classes.get(scene_class) or ClassScore(scene_class)
            cells.append(f"{s.found} / {s.cases} / {s.false_cases} / {s.duplicates}")
        n = sum(1 for v in t.violations if v.scene_class == scene_class and not v.optional)
        lines.append(f"| {t.clip} | {t.split} | {n} | " + " | ".join(cells) + " |")
    head2 = ["pooled", "clips", "truths"] + [
        f"{m}: recall / precision / F1 / dup per violation / false per cam-h / "
        "must-not-fire per cam-h / median s beyond dwell"
        for m in runs
    ]
    lines += ["", "| " + " | ".join(head2) + " |", "|" + "---|" * len(head2)]
    for split in ("holdout", "tune", "all"):
        subset = [t for t in truths if split == "all" or t.split == split]
        if not subset:
            continue
        cells, n = [], 0
        for run in runs.values():
            pooled = run.pooled(subset)
            s = pooled.classes.get(scene_class) or ClassScore(scene_class)
            n = s.truths
            cells.append(
                f"{_fmt(s.recall)} / {_fmt(s.precision)} / {_fmt(event_f1(s))} / "
                f"{_fmt(s.duplicates_per_violation)} / {_fmt(s.false_per_camera_hour(pooled.camera_hours), 1)} / "
                f"{_fmt(s.must_not_fire_hits / pooled.camera_hours if pooled.camera_hours else None, 1)} / "
                f"{_fmt(s.median_beyond_s, 1)}"
            )
        lines.append(f"| {split} | {len(subset)} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def decision_table(truths: list[ClipTruth], runs: dict[str, Evaluation]) -> str:
    """All scene classes pooled, per split: event F1 on the holdout split decides the default."""
    lines = [
        "| model | split | truths | found | cases | true cases | recall | precision | event F1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        for split in ("holdout", "tune", "all"):
            subset = [t for t in truths if split == "all" or t.split == split]
            if not subset:
                continue
            s = all_classes(run.pooled(subset))
            lines.append(
                f"| {name} | {split} | {s.truths} | {s.found} | {s.cases} | {s.true_cases} | {_fmt(s.recall)} | "
                f"{_fmt(s.precision)} | {_fmt(event_f1(s))} |"
            )
    return "\n".join(lines)
