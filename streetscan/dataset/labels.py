"""Frames the cameras saw, labelled by operators (issue #33): the store behind the console's
labelling view and `streetscan dataset export`.

A frame is a copy of a case's picture or a camera's snapshot (`labelling/frames/<id>.jpg` in the
output folder: evidence retention does not take it away). Its label is a list of boxes, each an
object of the vocabulary in the frame's pixels, or "nothing here" (a hard negative), and may be
marked difficult. Every save is kept with who and when; a save names the version it was made
from, and one made from an older version than the store's is refused (`StaleLabel`), so two
operators on one frame never overwrite each other unseen.

The queue ranks unlabelled frames by what the model most needs: cases of a scene class found by
the scene model (nobody knows what they are), cases an operator dismissed (what the model
mistook), cases the detector was least sure of, and among those the objects with fewest labels.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from ..pipeline.catalogue import CATALOGUE

FRAMES_DIR = Path("labelling") / "frames"
QUEUE_REASONS = {"scene_change": 3.0, "dismissed": 2.0, "low_confidence": 1.0, "snapshot": 0.5}
MAX_BOXES = 200  # on one frame: more is a runaway client, not a street

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
  frame_id TEXT PRIMARY KEY, camera_id TEXT NOT NULL, taken_at TEXT NOT NULL, image TEXT NOT NULL,
  width INTEGER NOT NULL, height INTEGER NOT NULL, reason TEXT NOT NULL, hint TEXT NOT NULL,
  priority REAL NOT NULL, added_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS frames_queue ON frames (priority DESC, added_at);
CREATE TABLE IF NOT EXISTS labels (
  frame_id TEXT PRIMARY KEY, version INTEGER NOT NULL, boxes TEXT NOT NULL, empty INTEGER NOT NULL,
  difficult INTEGER NOT NULL, user TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS label_history (
  frame_id TEXT NOT NULL, version INTEGER NOT NULL, boxes TEXT NOT NULL, empty INTEGER NOT NULL,
  difficult INTEGER NOT NULL, user TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (frame_id, version));
"""


class BadLabel(ValueError):
    """A label that cannot be stored; the message names the box and why."""


class StaleLabel(Exception):
    """The frame was labelled again since this label's version was read."""

    def __init__(self, current: Label):
        self.current = current
        super().__init__(f"labelled again by {current.user} (version {current.version}); reload and redo")


@dataclass(frozen=True)
class Frame:
    frame_id: str
    camera_id: str
    taken_at: str  # the camera's wall time, ISO 8601
    image: str  # relative to the output folder
    width: int
    height: int
    reason: str  # why it is in the queue (QUEUE_REASONS)
    hint: str  # what the case said it was (its scene class), for the labeller

    @property
    def camera_day(self) -> str:
        """Frames of one camera on one day look alike: they go to the same split together."""
        return f"{self.camera_id}/{self.taken_at[:10]}"


@dataclass(frozen=True)
class Label:
    frame_id: str
    version: int
    boxes: tuple[tuple[str, tuple[float, float, float, float]], ...]  # (object, (x1, y1, x2, y2))
    nothing: bool  # labelled as holding none of the vocabulary's objects: a hard negative
    difficult: bool
    user: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "boxes": [{"object": o, "box": list(b)} for o, b in self.boxes],
            "nothing": self.nothing,
            "difficult": self.difficult,
            "user": self.user,
            "at": self.at,
        }


class LabelStore:
    """SQLite, one connection and one lock, WAL; thread-safe like the case index."""

    def __init__(self, out_dir: Path, vocabulary: tuple[str, ...], path: Path | None = None):
        self.out_dir = Path(out_dir)
        self.vocabulary = vocabulary
        self.path = path or self.out_dir / "labels.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a label is an operator's minute: keep it
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- frames -----------------------------------------------------------------------------
    def add_frame(
        self, frame_id: str, camera_id: str, taken_at: str, picture: Path, reason: str, hint: str = ""
    ) -> Frame | None:
        """Copy a picture in as a frame to label; None when it cannot be read. A frame already
        here is left as it is (cases are offered again on every refill)."""
        if reason not in QUEUE_REASONS:
            raise ValueError(f"reason must be one of {', '.join(QUEUE_REASONS)}")
        known = self.frame(frame_id)
        if known is not None:
            return known
        image = cv2.imread(str(picture))
        if image is None:
            return None
        rel = FRAMES_DIR / f"{frame_id}.jpg"
        (self.out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / rel.with_suffix(".tmp")
        shutil.copyfile(picture, tmp)
        tmp.replace(self.out_dir / rel)
        h, w = image.shape[:2]
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO frames VALUES (?,?,?,?,?,?,?,?,?,?)",
                (frame_id, camera_id, taken_at, str(rel), w, h, reason, hint, QUEUE_REASONS[reason], time.time()),
            )
        return self.frame(frame_id)

    def frame(self, frame_id: str) -> Frame | None:
        with self._lock:
            row = self._db.execute(
                "SELECT frame_id, camera_id, taken_at, image, width, height, reason, hint FROM frames "
                "WHERE frame_id = ?",
                (frame_id,),
            ).fetchone()
        return Frame(*row) if row else None

    def frames(self) -> list[Frame]:
        with self._lock:
            rows = self._db.execute(
                "SELECT frame_id, camera_id, taken_at, image, width, height, reason, hint FROM frames "
                "ORDER BY priority DESC, added_at, frame_id"
            ).fetchall()
        return [Frame(*r) for r in rows]

    def queue(self, limit: int = 200) -> list[Frame]:
        """Unlabelled frames, most needed first: by reason, then the objects with fewest labels
        (a frame whose case hints at a rarely labelled object first), then the oldest."""
        counts = self.object_counts()
        with self._lock:
            rows = self._db.execute(
                "SELECT frame_id, camera_id, taken_at, image, width, height, reason, hint, priority FROM frames "
                "WHERE frame_id NOT IN (SELECT frame_id FROM labels) ORDER BY priority DESC, added_at, frame_id"
            ).fetchall()

        def need(row) -> tuple:
            objects = CATALOGUE[row[7]].objects if row[7] in CATALOGUE else ()
            fewest = min((counts.get(o, 0) for o in objects), default=0)
            return (-row[8], fewest)

        return [Frame(*r[:8]) for r in sorted(rows, key=need)[:limit]]

    def offer_cases(self, candidates: list[tuple[dict[str, Any], str]]) -> int:
        """Take cases' pictures into the queue: (event, reason) pairs, as the case index picks them
        (console.index.CaseIndex.label_candidates). Returns how many frames were new."""
        added = 0
        evidence = (self.out_dir / "evidence").resolve()
        for ev, reason in candidates:
            picture = ev.get("evidence", {}).get("clean")
            if not picture or self.frame(f"case-{ev['event_id']}") is not None:
                continue
            path = (self.out_dir / picture).resolve()
            if not path.is_relative_to(evidence):
                continue  # an event names its evidence inside evidence/, nowhere else
            frame = self.add_frame(
                f"case-{ev['event_id']}", ev["camera"]["id"], ev["last_seen"]["wall"], path, reason,
                ev["scene_class"]["code"],
            )  # fmt: skip
            added += frame is not None
        return added

    # -- labels -----------------------------------------------------------------------------
    def label(self, frame_id: str) -> Label | None:
        with self._lock:
            row = self._db.execute(
                "SELECT frame_id, version, boxes, empty, difficult, user, at FROM labels WHERE frame_id = ?",
                (frame_id,),
            ).fetchone()
        return _label(row) if row else None

    def labels(self) -> list[tuple[Frame, Label]]:
        out = []
        for frame in self.frames():
            label = self.label(frame.frame_id)
            if label is not None:
                out.append((frame, label))
        return out

    def history(self, frame_id: str) -> list[Label]:
        with self._lock:
            rows = self._db.execute(
                "SELECT frame_id, version, boxes, empty, difficult, user, at FROM label_history "
                "WHERE frame_id = ? ORDER BY version",
                (frame_id,),
            ).fetchall()
        return [_label(r) for r in rows]

    def save(
        self,
        frame_id: str,
        boxes: Any,
        *,
        nothing: bool,
        difficult: bool,
        user: str,
        version: int,
    ) -> Label:
        """Store a label made from `version` (0: the frame had none). Boxes are checked against the
        vocabulary and the frame's size; a label made from an older version is refused."""
        frame = self.frame(frame_id)
        if frame is None:
            raise KeyError(frame_id)
        checked = self._checked(boxes, frame)
        if nothing and checked:
            raise BadLabel("nothing here: a frame marked empty cannot have boxes")
        if not nothing and not checked:
            raise BadLabel("no boxes: draw the objects, or mark the frame as holding nothing")
        row = (json.dumps([[o, list(b)] for o, b in checked]), int(nothing), int(difficult), user, time.time())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                current = self._db.execute("SELECT version FROM labels WHERE frame_id = ?", (frame_id,)).fetchone()
                now = current[0] if current else 0
                if now != version:
                    self._db.execute("ROLLBACK")
                    stale = self._db.execute(
                        "SELECT frame_id, version, boxes, empty, difficult, user, at FROM labels WHERE frame_id = ?",
                        (frame_id,),
                    ).fetchone()
                    raise StaleLabel(_label(stale))
                self._db.execute("INSERT OR REPLACE INTO labels VALUES (?,?,?,?,?,?,?)", (frame_id, now + 1, *row))
                self._db.execute("INSERT INTO label_history VALUES (?,?,?,?,?,?,?)", (frame_id, now + 1, *row))
                self._db.execute("COMMIT")
            except StaleLabel:
                raise
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        label = self.label(frame_id)
        assert label is not None
        return label

    def _checked(self, boxes: Any, frame: Frame) -> list[tuple[str, tuple[float, float, float, float]]]:
        if not isinstance(boxes, list):
            raise BadLabel("boxes: expected a list")
        if len(boxes) > MAX_BOXES:
            raise BadLabel(f"boxes: at most {MAX_BOXES} on one frame")
        out = []
        for i, b in enumerate(boxes):
            if not isinstance(b, dict) or b.get("object") not in self.vocabulary:
                raise BadLabel(f"boxes[{i}].object: one of the vocabulary's objects ({', '.join(self.vocabulary)})")
            xyxy = b.get("box")
            if not isinstance(xyxy, list) or len(xyxy) != 4 or not all(isinstance(v, int | float) for v in xyxy):
                raise BadLabel(f"boxes[{i}].box: [x1, y1, x2, y2] in the frame's pixels")
            x1, y1, x2, y2 = (float(v) for v in xyxy)
            x1, x2 = max(0.0, min(x1, x2)), min(float(frame.width), max(x1, x2))
            y1, y2 = max(0.0, min(y1, y2)), min(float(frame.height), max(y1, y2))
            if x2 - x1 < 2 or y2 - y1 < 2:
                raise BadLabel(f"boxes[{i}].box: smaller than 2x2 pixels inside the frame")
            out.append((b["object"], (round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1))))
        return out

    def object_counts(self) -> dict[str, int]:
        """Boxes labelled so far per object."""
        counts: dict[str, int] = {}
        with self._lock:
            rows = self._db.execute("SELECT boxes FROM labels").fetchall()
        for (boxes,) in rows:
            for obj, _ in json.loads(boxes):
                counts[obj] = counts.get(obj, 0) + 1
        return counts


def _label(row) -> Label:
    frame_id, version, boxes, nothing, difficult, user, at = row
    return Label(
        frame_id, version, tuple((o, tuple(b)) for o, b in json.loads(boxes)), bool(nothing), bool(difficult), user, at
    )
