"""Evidence images for opened events: the clean frame, an annotated copy, and for dwell rules the
frame of first sighting (before/after the dwell), which is what a case officer checks first."""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import supervision as sv

from .catalogue import CATALOGUE
from .events import Event

if TYPE_CHECKING:
    from .verify import ZoneCheck

log = logging.getLogger(__name__)


SNAPSHOT_DIR = "snapshots"


class SnapshotStore:
    """A bounded LRU of JPEG-encoded frames by Frame.seq, kept only for frames where a rule
    started an episode, so a 10-minute dwell does not hold 10 minutes of frames."""

    def __init__(self, capacity: int = 64, quality: int = 85):
        self.capacity = capacity
        self.quality = quality
        self._jpegs: OrderedDict[int, bytes] = OrderedDict()

    def keep(self, seq: int, image: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            self._jpegs[seq] = buf.tobytes()
            self._jpegs.move_to_end(seq)
            while len(self._jpegs) > self.capacity:
                self._jpegs.popitem(last=False)

    def get(self, seq: int) -> bytes | None:
        return self._jpegs.get(seq)

    def first_from(self, seq: int, until: int) -> bytes | None:
        """The earliest picture kept from frame `seq` to `until` (a first sighting's own frame
        may not have been kept: pictures of new sightings are taken at most every few seconds)."""
        kept = [s for s in self._jpegs if seq <= s <= until]
        return self._jpegs[min(kept)] if kept else None

    def __len__(self) -> int:
        return len(self._jpegs)


class CameraPicture:
    """The camera's current picture at `OUT/snapshots/<camera>.jpg`, replaced every `interval_s`
    of stream time: what the console shows on its cameras page and draws zones on. One file per
    camera, written to a temporary name and renamed, so a reader never sees half a JPEG."""

    def __init__(self, out_dir: Path, camera_id: str, interval_s: float = 30.0, quality: int = 80):
        self.path = Path(out_dir) / SNAPSHOT_DIR / f"{camera_id}.jpg"
        self.interval_s = interval_s
        self.quality = quality
        self._last: float | None = None

    def due(self, t: float) -> bool:
        return self._last is None or t - self._last >= self.interval_s or t < self._last

    def write(self, t: float, image: np.ndarray) -> None:
        self._last = t
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".jpg.tmp")
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, self.path)


# Up to this many objects each box says what it is, how sure and which track; a crowd's boxes say
# only how sure (its names and count go in the header), or the labels cover one another.
FULL_LABELS = 4


def object_labels(objects) -> list[str]:
    if len(objects) > FULL_LABELS:
        return [f"{o.confidence:.2f}" for o in objects]
    return [
        f"{o.class_name} {o.confidence:.2f}" + (f" #{o.track_id}" if o.track_id is not None else "") for o in objects
    ]


class EvidenceWriter:
    """`zones`: the camera's zone polygons by zone id (None: the whole frame), drawn on the annotated copy."""

    def __init__(self, out_dir: Path, zones: Mapping[str, Sequence[tuple[float, float]] | None], quality: int = 90):
        self.out_dir = Path(out_dir)
        self.zones = dict(zones)
        self.quality = quality
        self._boxes = sv.BoxAnnotator(thickness=3)
        # smart_position: labels of a crowd kept apart and inside the frame (they overlapped and were cut).
        self._labels = sv.LabelAnnotator(text_scale=0.6, text_padding=4, smart_position=True)

    def write(
        self, event: Event, image: np.ndarray, first_jpeg: bytes | None, note: str | None = None
    ) -> dict[str, str]:
        """The pictures written, by role: only those that are whole on disk (a full disk leaves an
        event without its pictures rather than pointing at missing or truncated files). `note`:
        what the picture is when it is not the camera's own (Frame.picture_note), in the header."""
        rel = Path("evidence") / event.event_id
        pictures = {
            "clean": self._jpeg(image),
            "annotated": self._jpeg(self.annotate(event, image, note)),
            "first": first_jpeg,
        }
        return self._save(rel, {f"{role}.jpg": data for role, data in pictures.items()}, event.event_id)

    def reference(self, event: Event, empty_scene: np.ndarray) -> bytes | None:
        """The scene model's empty scene with the event's region boxed: what the place looked like
        before (a scene_change case's `first` picture)."""
        out = empty_scene.copy()
        for o in event.violation.objects:
            x1, y1, x2, y2 = (int(round(c)) for c in o.box)
            cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 255), 2)
        out = self._header(out, f"REFERENCE (empty scene) | {event.violation.scene_class} | {event.violation.zone_id}")
        return self._jpeg(out)

    def _jpeg(self, image: np.ndarray) -> bytes | None:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        return buf.tobytes() if ok else None

    def _save(self, rel: Path, pictures: dict[str, bytes | None], event_id: str) -> dict[str, str]:
        """Each picture to a temporary name, then renamed: whole or not there at all."""
        written: dict[str, str] = {}
        try:
            (self.out_dir / rel).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("%s: no evidence written: %s", event_id, exc)
            return written
        for name, data in pictures.items():
            if data is None:
                continue
            path = self.out_dir / rel / name
            tmp = path.with_name(path.name + ".tmp")
            try:
                tmp.write_bytes(data)
                os.replace(tmp, path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                log.warning("%s: %s not written: %s", event_id, name, exc)
                continue
            written[name.removesuffix(".jpg")] = str(rel / name)
        return written

    def write_check(self, event_id: str, check: ZoneCheck, image: np.ndarray, wall: datetime) -> dict[str, str]:
        """A verification's pictures beside the event's: `verify-<request>-clean.jpg` and, with
        the zone and what was found drawn, `verify-<request>-annotated.jpg`."""
        rel = Path("evidence") / event_id
        stem = f"verify-{check.request.request_id.replace(':', '_')}"
        files = {"clean": rel / f"{stem}-clean.jpg", "annotated": rel / f"{stem}-annotated.jpg"}
        out = image.copy()
        v = check.case.violation
        polygon = self.zones.get(v.zone_id)
        if polygon:
            out = sv.draw_polygon(out, np.array(polygon, dtype=np.int32), sv.Color.YELLOW, thickness=2)
        if check.still_present and check.last_objects:
            det = sv.Detections(
                xyxy=np.array([o.box for o in check.last_objects], dtype=np.float32),
                class_id=np.zeros(len(check.last_objects), dtype=int),
            )
            out = self._boxes.annotate(out, det)
        verdict = "STILL PRESENT" if check.still_present else "VERIFIED GONE"
        deadline = check.case.deadline
        if check.at_deadline and check.still_present and deadline is not None:
            verdict = f"OVERDUE since {deadline.due.astimezone(wall.tzinfo).strftime('%H:%M:%S')}"
        header = (
            f"{verdict} | {v.scene_class} | {v.camera_id} / {v.zone_id} | {wall.strftime('%Y-%m-%d %H:%M:%S')} | "
            f"{check.present}/{check.frames} frames"
        )
        out = self._header(out, header)
        return self._save(
            rel, {files["clean"].name: self._jpeg(image), files["annotated"].name: self._jpeg(out)}, event_id
        ) and {k: str(p) for k, p in files.items() if (self.out_dir / p).is_file()}

    def annotate(self, event: Event, image: np.ndarray, note: str | None = None) -> np.ndarray:
        v = event.violation
        scene = CATALOGUE[v.scene_class]
        out = image.copy()
        polygon = self.zones.get(v.zone_id)
        if polygon:
            out = sv.draw_polygon(out, np.array(polygon, dtype=np.int32), sv.Color.YELLOW, thickness=2)
        if v.objects:
            det = sv.Detections(
                xyxy=np.array([o.box for o in v.objects], dtype=np.float32),
                confidence=np.array([o.confidence for o in v.objects], dtype=np.float32),
                class_id=np.zeros(len(v.objects), dtype=int),
            )
            out = self._boxes.annotate(out, det)
            out = self._labels.annotate(out, det, labels=object_labels(v.objects))
        wall = event.confirmed.strftime("%Y-%m-%d %H:%M:%S")
        header = f"{scene.code} | {event.camera.id} / {v.zone_id} | {wall} | for {v.last_seen_s - v.first_seen_s:.0f}s"
        if len(v.objects) > FULL_LABELS:
            names = Counter(o.class_name for o in v.objects)
            header += " | " + ", ".join(f"{n} {name}" for name, n in names.most_common())
        out = self._header(out, header + (f" | {note}" if note else ""))
        return out

    @staticmethod
    def _header(picture: np.ndarray, header: str) -> np.ndarray:
        """The picture under a strip holding the header: above it, not over it, so nothing at the
        picture's top edge (a box, its label) is hidden (issue #35: a crowd's labels were)."""
        # Sized to the picture: readable on a 1080p frame, whole on a 512-px one.
        font, width = cv2.FONT_HERSHEY_SIMPLEX, picture.shape[1]
        (text_w, _), _ = cv2.getTextSize(header, font, 1.0, 2)
        scale = min(0.7 * max(1.0, width / 1280), (width - 16) / text_w)
        bar = int(round(48 * scale))
        out = np.vstack([np.zeros((bar, width, 3), dtype=picture.dtype), picture])
        cv2.putText(
            out,
            header,
            (8, int(round(34 * scale))),
            font,
            scale,
            (255, 255, 255),
            max(1, round(2.5 * scale)),
            cv2.LINE_AA,
        )
        return out


def prune_evidence(out_dir: Path, written_before: float, keep: set[str]) -> int:
    """Delete the evidence folders last written before `written_before` (epoch seconds) whose
    event is not in `keep`; returns how many went."""
    root = Path(out_dir) / "evidence"
    if not root.is_dir():
        return 0
    pruned = 0
    for folder in root.iterdir():
        if folder.name in keep or not folder.is_dir():
            continue
        try:
            if folder.stat().st_mtime >= written_before:
                continue
            shutil.rmtree(folder)
        except FileNotFoundError:
            continue
        pruned += 1
    return pruned
