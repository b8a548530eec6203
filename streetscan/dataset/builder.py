"""Assemble the YOLO training set from the manifest's sources.

    sources (staged folders, repository snapshots) -> readers (yolo/coco/voc) -> split by scene
    -> resize -> near-duplicate filter -> human labels (+ teacher labels for objects the source
    does not label) -> images/{train,val}, labels/{train,val}, data.yaml, report

A source that is missing, pinned to a commit the snapshot lacks, or unreadable is reported by name
and skipped; a broken label file costs its image only. Both end up in the report.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import cv2
import imagehash
import numpy as np
import yaml
from PIL import Image

from streetscan.dataset.formats import (
    BadLabel,
    LabelledImage,
    SourceFormatError,
    original_stem,
    read_source,
    yolo_class_names,
)
from streetscan.dataset.manifest import FootageClip, Manifest, SourceSpec
from streetscan.pipeline.models import vocabulary

if TYPE_CHECKING:
    import supervision as sv

HUMAN, PSEUDO = "human", "pseudo"


class SourceUnavailable(Exception):
    """The source cannot be used in this build; the message says why."""


# ---------------------------------------------------------------------------------------------
# Where a source's files are


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def find_mirror(mirrors: Iterable[Path], repository: str) -> Path | None:
    """A git clone or bare mirror of owner/name under one of `mirrors`, in the layouts people use
    (owner+name/repo as the fetch tool writes it, owner/name, name, with or without .git)."""
    owner, name = repository.split("/")
    for base in mirrors:
        for cand in (
            base / f"{owner}+{name}" / "repo",
            base / f"{owner}+{name}",
            base / owner / name,
            base / f"{owner}__{name}",
            base / name,
            base / f"{name}.git",
            base / f"{owner}+{name}.git",
        ):
            if cand.is_dir() and _git(cand, "rev-parse", "--git-dir").returncode == 0:
                return cand
    return None


def checkout_source(spec: SourceSpec, mirrors: list[Path], work: Path) -> Path:
    """Extract the source's folder at the manifest's commit into `work`; return the folder."""
    # Not staged, so a repository source, which SourceSpec._one_origin requires to name its commit.
    assert spec.repository is not None and spec.commit is not None
    repo = find_mirror(mirrors, spec.repository)
    if repo is None:
        raise SourceUnavailable(
            f"missing: no snapshot of {spec.repository} under "
            f"{', '.join(str(m) for m in mirrors) or '(no --mirror given)'}"
        )
    if _git(repo, "cat-file", "-e", f"{spec.commit}^{{commit}}").returncode != 0:
        head = _git(repo, "rev-parse", "HEAD").stdout.strip() or "unknown"
        raise SourceUnavailable(
            f"at another commit: {spec.repository} snapshot lacks {spec.commit} (its HEAD is {head})"
        )
    if not _git(repo, "ls-tree", "-d", spec.commit, spec.folder.rstrip("/")).stdout.strip() and spec.folder != ".":
        raise SourceUnavailable(f"folder {spec.folder!r} is not in {spec.repository}@{spec.commit[:12]}")
    work.mkdir(parents=True, exist_ok=True)
    pathspec = [] if spec.folder == "." else [spec.folder]
    archive = subprocess.Popen(
        ["git", "-C", str(repo), "archive", "--format=tar", spec.commit, *pathspec],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    tar = subprocess.run(["tar", "-x", "-C", str(work)], stdin=archive.stdout, capture_output=True)
    assert archive.stdout is not None and archive.stderr is not None  # both opened with PIPE
    archive.stdout.close()
    err = archive.stderr.read().decode(errors="replace")
    if archive.wait() != 0 or tar.returncode != 0:
        raise SourceUnavailable(
            f"malformed snapshot: git archive of {spec.folder!r} failed: "
            f"{(err or tar.stderr.decode(errors='replace')).strip()[:200]}"
        )
    return work / spec.folder


def staged_source(spec: SourceSpec, assets: Path | None) -> Path:
    if assets is None:
        raise SourceUnavailable("missing: no assets folder (set STREETSCAN_ASSETS or pass --assets)")
    assert spec.staged is not None  # only called for a staged source
    root = assets / "datasets" / spec.staged / spec.folder
    if not root.is_dir():
        raise SourceUnavailable(f"missing: {root} does not exist")
    return root


# ---------------------------------------------------------------------------------------------
# Splits and duplicates


def _unit_hash(*parts: str) -> float:
    digest = hashlib.sha1("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(spec: SourceSpec, items: list[LabelledImage], val_fraction: float) -> dict[Path, str]:
    """Our split for every image. Images of one scene (the manifest's `scene` pattern, or else one
    original photo and its augmented copies) stay together; a scene that has any image in the
    source's own val split goes to val whole. A source without a val split gives up a seeded
    `val_fraction` of its scenes."""
    pattern = re.compile(spec.scene) if spec.scene else None

    def scene_of(item: LabelledImage) -> str:
        stem = item.original_stem
        if pattern:
            m = pattern.search(stem)
            if m:
                return m.group(1)
        return stem

    scenes: dict[str, list[LabelledImage]] = defaultdict(list)
    for item in items:
        if spec.splits[item.split] != "drop":
            scenes[scene_of(item)].append(item)
    has_val = any(v == "val" for v in spec.splits.values())
    out: dict[Path, str] = {}
    train_scenes: list[tuple[float, str]] = []
    for scene, members in scenes.items():
        if has_val:
            split = "val" if any(spec.splits[m.split] == "val" for m in members) else "train"
        else:
            split = "val" if _unit_hash(spec.name, scene) < val_fraction else "train"
        if split == "train":
            train_scenes.append((_unit_hash("cap", spec.name, scene), scene))
        for m in members:
            out[m.path] = split
    if spec.max_images:
        kept = 0
        for _, scene in sorted(train_scenes):
            if kept >= spec.max_images:
                for m in scenes[scene]:
                    out[m.path] = "capped"
            kept += len(scenes[scene])
    return out


class NearDuplicates:
    """Perceptual-hash index over every image kept so far. Exports carry augmented copies
    (exposure, blur, flips) of one photo; a copy within `max_distance` bits of a kept image, or of
    its mirror image, is a duplicate."""

    def __init__(self, max_distance: int = 4):
        self.max_distance = max_distance
        self._hashes = np.zeros(0, dtype=np.uint64)
        self._owners: list[str] = []

    @staticmethod
    def _phash(image: np.ndarray) -> np.uint64:
        grey = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        bits = imagehash.phash(grey).hash.flatten()
        return np.uint64(int("".join("1" if b else "0" for b in bits), 2))

    def check_and_add(self, image: np.ndarray, owner: str) -> str | None:
        """The owner of the kept image this one duplicates, or None (and it is now kept)."""
        h = self._phash(image)
        if len(self._hashes):
            for probe in (h, self._phash(image[:, ::-1])):
                dist = np.bitwise_count(self._hashes ^ probe)
                i = int(np.argmin(dist))
                if dist[i] <= self.max_distance:
                    return self._owners[i]
        self._hashes = np.append(self._hashes, h)
        self._owners.append(owner)
        return None


# ---------------------------------------------------------------------------------------------
# The build


@dataclass
class SourceResult:
    name: str
    status: str = "built"  # built | skipped
    reason: str = ""
    images: Counter = field(default_factory=Counter)  # split -> images written
    boxes: Counter = field(default_factory=Counter)  # (split, kind, object) -> boxes
    duplicates: int = 0
    capped: int = 0
    bad_labels: list[tuple[str, str]] = field(default_factory=list)
    dropped_boxes: Counter = field(default_factory=Counter)  # source class -> boxes mapped to null
    clip: FootageClip | None = None  # a footage clip's manifest entry


# Teacher boxes on a single image count from this confidence (scripts/build_dataset.py loads the
# teacher with it); on footage, boxes on an activated track count at any confidence.
TEACHER_CONF = 0.4
# A parked car hidden by a passing bus keeps its track this long (as the pipeline's resolve grace).
FOOTAGE_TRACK_LOST_S = 30.0


class DatasetBuilder:
    def __init__(self, out: Path, manifest: Manifest, teacher=None, dedup_distance: int = 4):
        self.out = out
        self.manifest = manifest
        self.vocab = list(vocabulary())
        self.teacher = teacher
        self.dedup = NearDuplicates(dedup_distance)
        self.results: list[SourceResult] = []
        for split in ("train", "val"):
            (out / "images" / split).mkdir(parents=True, exist_ok=True)
            (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        (out / "val").mkdir(exist_ok=True)

    # -- one labelled source ------------------------------------------------------------------

    def add(self, spec: SourceSpec, *, assets: Path | None = None, mirrors: Sequence[Path] = ()) -> SourceResult:
        result = SourceResult(spec.name)
        self.results.append(result)
        with tempfile.TemporaryDirectory(dir=self.out, prefix=".checkout-") as work:
            try:
                root = staged_source(spec, assets) if spec.staged else checkout_source(spec, list(mirrors), Path(work))
                self._add_from(spec, root, result)
            except (SourceUnavailable, SourceFormatError) as exc:
                result.status, result.reason = "skipped", str(exc)
                self._forget(spec.name)
        return result

    def _forget(self, name: str) -> None:
        for split in ("train", "val"):
            for p in (self.out / "images" / split).glob(f"{name}__*"):
                p.unlink()
            for p in (self.out / "labels" / split).glob(f"{name}__*"):
                p.unlink()

    def _add_from(self, spec: SourceSpec, root: Path, result: SourceResult) -> None:
        if spec.format == "yolo":
            names = set(yolo_class_names(spec, root))
        else:
            names = set()
        items: list[LabelledImage] = []
        for item in read_source(spec, root):
            if not spec.includes(original_stem(item.path)):
                continue
            if isinstance(item, BadLabel):
                result.bad_labels.append((str(item.path.relative_to(root)), item.reason))
            else:
                items.append(item)
                names.update(b.name for b in item.boxes)
        unmapped = sorted(names - set(spec.classes))
        if unmapped:
            raise SourceFormatError(f"classes {unmapped} have no entry in the manifest (map them or null)")
        if not items:
            raise SourceFormatError(
                f"no labelled images under {spec.layout()['images']} for splits {list(spec.splits)}"
            )
        splits = assign_splits(spec, items, self.manifest.val_fraction)
        val_list = []
        originals: set[str] = set()
        # Val first: when a train image duplicates a val image it is the train copy that goes.
        for item in sorted(items, key=lambda i: (splits.get(i.path, "drop") != "val", str(i.path))):
            split = splits.get(item.path, "drop")
            if split == "capped":
                result.capped += 1
            if split not in ("train", "val"):
                continue
            # Roboflow names every augmented copy after its original photo; the copies differ by
            # shear, noise and blur more than a perceptual hash can tell apart from other photos.
            if item.is_export_copy:
                if item.original_stem in originals:
                    result.duplicates += 1
                    continue
                originals.add(item.original_stem)
            written = self._write(spec, root, item, split, result)
            if written and split == "val":
                val_list.append(str(written.resolve()))
        (self.out / "val" / f"{spec.name}.txt").write_text("".join(f"{p}\n" for p in val_list))

    def _write(
        self, spec: SourceSpec, root: Path, item: LabelledImage, split: str, result: SourceResult
    ) -> Path | None:
        image = cv2.imread(str(item.path))
        if image is None:
            result.bad_labels.append((str(item.path.relative_to(root)), "unreadable image"))
            return None
        image = self._resize(image)
        stem = f"{spec.name}__{_safe(item.path.stem)}"
        if (self.out / "images" / split / f"{stem}.jpg").exists():  # same name in two source splits
            stem = f"{stem}__{_safe(item.split)}"
        if spec.dedup and self.dedup.check_and_add(image, stem) is not None:
            result.duplicates += 1
            return None
        rows = []
        for box in item.boxes:
            obj = spec.classes[box.name]
            if obj is None:
                result.dropped_boxes[box.name] += 1
                continue
            rows.append((self.vocab.index(obj), (box.cx, box.cy, box.w, box.h)))
            result.boxes[(split, HUMAN, obj)] += 1
        # Teacher labels fill in what this source never labels (cars in a garbage set), and only in
        # train: val holds human boxes alone, so evaluation measures against people.
        if split == "train" and self.teacher is not None:
            for cid, xywh in self._teacher_rows(image, spec.labelled_objects):
                rows.append((cid, xywh))
                result.boxes[(split, PSEUDO, self.vocab[cid])] += 1
        path = self.out / "images" / split / f"{stem}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        _write_label(self.out / "labels" / split / f"{stem}.txt", rows)
        result.images[split] += 1
        return path

    def _resize(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        scale = self.manifest.long_side / max(h, w)
        if scale < 1:
            image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        return image

    def _teacher_rows(self, image: np.ndarray, labelled: frozenset[str]) -> list[tuple[int, tuple]]:
        return self._rows(self.teacher.detect([image])[0], image, labelled)

    def _rows(self, det, image: np.ndarray, labelled: frozenset[str]) -> list[tuple[int, tuple]]:
        """Teacher detections as YOLO label rows, leaving out objects the source labels by hand."""
        h, w = image.shape[:2]
        rows = []
        for (x1, y1, x2, y2), name in zip(det.xyxy, det.data["class_name"], strict=False):
            if str(name) in labelled:
                continue
            rows.append(
                (self.vocab.index(str(name)), ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h))
            )
        return rows

    # -- street footage (teacher labels only) ----------------------------------------------------

    def add_footage(self, clip: Path, fps: float) -> SourceResult:
        """Frames of a street clip, labelled by the teacher the way the pipeline trusts it: a box
        counts when it is sure (>= TEACHER_CONF) or when it persists, i.e. sits on a track the
        teacher's own calibrated tracker activated (card `thresholds`, ACCURACY.md). On a steep
        kerbside view the teacher scores the near parked cars 0.25-0.58: a single-frame 0.4 cut
        labelled 1-2 of ~7 cars and taught the student that the rest is background."""
        from streetscan.pipeline.decode import VideoSource
        from streetscan.pipeline.detect import load_detector
        from streetscan.pipeline.track import ObjectTracker, TrackerSettings

        result = SourceResult(f"footage_{_safe(clip.stem)}", clip=self.manifest.footage.clips.get(clip.name))
        self.results.append(result)
        if self.teacher is None:
            result.status, result.reason = "skipped", "footage needs the teacher (pseudo-labels are off)"
            return result
        split = "val" if clip.name in self.manifest.footage.val else "train"
        if split == "train" and (result.clip is None or result.clip.licence is None):
            # Training on a picture needs its owner's leave; scoring on a held-out clip does not copy it.
            result.status = "skipped"
            result.reason = (
                "no licence stated for this clip (models/datasets.yaml footage.clips): not used for training"
            )
            return result
        card = self.teacher.card
        low = load_detector(card, conf_threshold=card.thresholds.detect)
        tracker = ObjectTracker(fps, TrackerSettings.resolve(card.thresholds, lost_s=FOOTAGE_TRACK_LOST_S))
        for frame in VideoSource(str(clip), fps).frames():
            image = self._resize(frame.image)
            stem = f"{result.name}__{frame.seq:05d}"
            det = tracker.update(low.detect([image])[0], frame.pts_s)
            # The detector scores every box and ObjectTracker.update gives every box a track id (-1: none).
            assert det.confidence is not None and det.tracker_id is not None
            det = cast("sv.Detections", det[(det.confidence >= TEACHER_CONF) | (det.tracker_id >= 0)])
            rows = self._rows(det, image, frozenset())
            for cid, _ in rows:
                result.boxes[(split, PSEUDO, self.vocab[cid])] += 1
            cv2.imwrite(str(self.out / "images" / split / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            _write_label(self.out / "labels" / split / f"{stem}.txt", rows)
            result.images[split] += 1
        return result

    # -- the end ----------------------------------------------------------------------------------

    def finish(self) -> dict:
        from streetscan.dataset.report import build_report, write_report

        (self.out / "data.yaml").write_text(
            yaml.safe_dump(
                {
                    "path": str(self.out.resolve()),
                    "train": "images/train",
                    "val": "images/val",
                    "names": dict(enumerate(self.vocab)),
                },
                allow_unicode=True,
                sort_keys=False,
            )
        )
        report = build_report(self.manifest, self.results, self.teacher.card.name if self.teacher else None)
        write_report(report, self.out)
        return report


def _safe(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:120]


def _write_label(path: Path, rows: list[tuple[int, tuple]]) -> None:
    path.write_text("".join(f"{c} {' '.join(f'{min(max(v, 0.0), 1.0):.6f}' for v in xywh)}\n" for c, xywh in rows))


def clean(out: Path) -> None:
    """Remove a previous build's outputs (never anything else in `out`)."""
    for sub in ("images", "labels", "val"):
        shutil.rmtree(out / sub, ignore_errors=True)
