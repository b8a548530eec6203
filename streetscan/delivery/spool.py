"""The durable event spool: every live event is committed here before any sink sees it.

A SQLite database in WAL mode holds an append-only outbox (ordered by `seq`), one delivery cursor
per sink, and each camera's open-event state. A camera's events and its new state are committed
in one transaction, so a `kill -9` at any instant leaves either both or neither. Sinks are fed
from the outbox in order and acknowledged row by row: delivery is at-least-once, and consumers
(or the idempotent Redis sink) deduplicate on (event_id, revision).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..pipeline.events import Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    camera_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS camera_state (camera_id TEXT PRIMARY KEY, state TEXT NOT NULL, saved_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS known_events (
    event_id TEXT PRIMARY KEY,
    camera_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    payload TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS known_events_at ON known_events (at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    event_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    camera_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    at REAL NOT NULL,
    UNIQUE (sink, event_id, revision)
);
"""


@dataclass(frozen=True)
class DeadLetter:
    """An event a sink refused for good (e.g. HTTP 422): kept, listed and re-sent by hand."""

    id: int
    sink: str
    event_id: str
    revision: int
    camera_id: str
    reason: str
    at: float
    event: dict[str, Any]


class EventSpool:
    def __init__(self, path: str | Path, sinks: Iterable[str], *, maintenance: bool = False):
        """`maintenance`: opened beside its daemon to look at or work on its dead letters; it
        delivers nothing and registers no sink cursor."""
        self.sinks = list(sinks)
        if not self.sinks and not maintenance:
            raise ValueError("a spool needs at least one sink to deliver to")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closing = False
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # survive power loss, not only a killed process
        self._db.executescript(_SCHEMA)
        with self._lock:
            head = self._head()
            for name in self.sinks:
                # A sink new to this spool starts at the head: it is not flooded with history.
                # A known sink resumes where it stopped, so a backlog from a Redis outage is kept.
                self._db.execute("INSERT OR IGNORE INTO cursors (sink, seq) VALUES (?, ?)", (name, head))

    def _head(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0])

    def commit(self, camera_id: str, events: list[Event], state: dict[str, Any] | None) -> int:
        """Append a camera's events and save its open-event state, atomically. Events become their
        wire form here, and only here: sinks and the console read that back (Event.from_dict).

        A revision this spool already holds (the same footage replayed into the same folder gives
        the same event ids and revisions) is not appended again, so no sink gets it twice; returns
        how many were left out that way."""
        now = time.time()
        with self._changed:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ids = sorted({e.event_id for e in events})
                known: dict[str, int] = {}
                for i in range(0, len(ids), 500):  # SQLite's bound on variables per statement
                    part = ids[i : i + 500]
                    marks = ",".join("?" * len(part))
                    query = f"SELECT event_id, revision FROM known_events WHERE event_id IN ({marks})"
                    known.update(self._db.execute(query, part).fetchall())
                fresh = [e for e in events if e.revision > known.get(e.event_id, -1)]
                rows = [
                    (
                        e.event_id,
                        e.revision,
                        camera_id,
                        json.dumps(e.to_dict(), ensure_ascii=False, separators=(",", ":")),
                        now,
                    )
                    for e in fresh
                ]
                self._db.executemany(
                    "INSERT INTO outbox (event_id, revision, camera_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                # The newest revision of every event, so a verification request can be answered after
                # the outbox delivered and dropped it (pruned with the evidence, see forget_events_before).
                self._db.executemany(
                    "INSERT INTO known_events (event_id, revision, camera_id, payload, at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(event_id) DO UPDATE SET revision = excluded.revision, payload = excluded.payload, "
                    "at = excluded.at WHERE excluded.revision > known_events.revision",
                    rows,
                )
                if state is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO camera_state (camera_id, state, saved_at) VALUES (?, ?, ?)",
                        (camera_id, json.dumps(state, separators=(",", ":")), now),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a full disk can end the transaction itself
                    self._db.execute("ROLLBACK")
                raise
            if fresh:
                self._changed.notify_all()
        return len(events) - len(fresh)

    def wait_for_events(self, timeout_s: float) -> None:
        with self._changed:
            if not self._closing:
                self._changed.wait(timeout_s)

    def wake(self) -> None:
        """The emitter is stopping: `wait_for_events` waits no more, now or later (no lost wake-up)."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()

    def pending(self, sink: str, limit: int = 100, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """The sink's next events: past its saved cursor, and past `after` (what it took since)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, payload FROM outbox WHERE seq > MAX((SELECT seq FROM cursors WHERE sink = ?), ?) "
                "ORDER BY seq LIMIT ?",
                (sink, after, limit),
            ).fetchall()
        return [(seq, json.loads(payload)) for seq, payload in rows]

    def ack(self, sink: str, seq: int) -> None:
        """`sink` has taken every row up to `seq`; rows every sink has taken are deleted."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("UPDATE cursors SET seq = ? WHERE sink = ? AND seq < ?", (seq, sink, seq))
                placeholders = ",".join("?" * len(self.sinks))
                self._db.execute(
                    f"DELETE FROM outbox WHERE seq <= (SELECT MIN(seq) FROM cursors WHERE sink IN ({placeholders}))",
                    self.sinks,
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a full disk can end the transaction itself
                    self._db.execute("ROLLBACK")
                raise

    def depth(self, sink: str | None = None) -> int:
        """Events not yet delivered: to `sink`, or to the slowest sink."""
        with self._lock:
            if sink is None:
                placeholders = ",".join("?" * len(self.sinks))
                row = self._db.execute(
                    f"SELECT COUNT(*) FROM outbox WHERE seq > (SELECT MIN(seq) FROM cursors "
                    f"WHERE sink IN ({placeholders}))",
                    self.sinks,
                ).fetchone()
            else:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM outbox WHERE seq > (SELECT seq FROM cursors WHERE sink = ?)", (sink,)
                ).fetchone()
        return int(row[0])

    def load_state(self, camera_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM camera_state WHERE camera_id = ?", (camera_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def undelivered_event_ids(self) -> set[str]:
        """Events some sink has not taken yet (rows every sink took are deleted)."""
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT DISTINCT event_id FROM outbox")}

    def camera_states(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT camera_id, state FROM camera_state").fetchall()
        return {cam: json.loads(state) for cam, state in rows}

    # -- known events -------------------------------------------------------------------------
    def known_event(self, event_id: str) -> Event | None:
        """The newest revision of an event committed here (within the retention period)."""
        with self._lock:
            row = self._db.execute("SELECT payload FROM known_events WHERE event_id = ?", (event_id,)).fetchone()
        return Event.from_dict(json.loads(row[0])) if row else None

    def forget_events_before(self, at: float) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM known_events WHERE at < ?", (at,)).rowcount

    # -- dead letters ------------------------------------------------------------------------
    def dead_letter(self, sink: str, event: dict[str, Any], reason: str) -> None:
        """Keep an event `sink` refused for good; once per (sink, event, revision) however often
        it is refused (a crash before the cursor moved makes the emitter offer it again)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO dead_letters (sink, event_id, revision, camera_id, reason, payload, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    sink,
                    event["event_id"],
                    int(event["revision"]),
                    event["camera"]["id"],
                    reason,
                    json.dumps(event, ensure_ascii=False, separators=(",", ":")),
                    time.time(),
                ),
            )

    def dead_letters(self, sink: str | None = None) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, sink, event_id, revision, camera_id, reason, at, payload FROM dead_letters "
                + ("WHERE sink = ? " if sink else "")
                + "ORDER BY id",
                (sink,) if sink else (),
            ).fetchall()
        return [DeadLetter(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7])) for row in rows]

    def dead_letter_count(self, sink: str) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM dead_letters WHERE sink = ?", (sink,)).fetchone()[0])

    def forget_dead_letter(self, letter_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM dead_letters WHERE id = ?", (letter_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
