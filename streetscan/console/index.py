"""The console's queryable case index: one SQLite file holding the newest revision of every case,
every revision (the case timeline), and what operators decided about them.

It is a `CaseSink` (the daemon's emitter feeds it from the same outbox as the other sinks, so it
misses nothing the outbox delivers) and it can also read a replay's `events*.jsonl` files. Both
paths are idempotent on (event_id, revision): a redelivery or a second import changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..delivery.sinks import EventRejected
from ..pipeline.events import Event, EventFormatError, State

log = logging.getLogger(__name__)

STATES = ("opened", "updated", "resolved", "verified", "still_present", "overdue")
CLOSED = ("resolved", "verified")  # gone: rectified, or found gone when the platform asked
VERDICTS = ("confirmed", "dismissed")
LOW_CONFIDENCE = 0.4  # a case the detector was less sure of than this is worth a label

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revisions (
  event_id TEXT NOT NULL, revision INTEGER NOT NULL, state TEXT NOT NULL, at TEXT NOT NULL,
  payload TEXT NOT NULL, PRIMARY KEY (event_id, revision));
CREATE TABLE IF NOT EXISTS cases (
  event_id TEXT PRIMARY KEY, revision INTEGER NOT NULL, state TEXT NOT NULL,
  camera_id TEXT NOT NULL, zone_id TEXT NOT NULL, scene_code TEXT NOT NULL,
  first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, confidence REAL NOT NULL,
  repeat_count INTEGER NOT NULL, unit TEXT NOT NULL DEFAULT '', due TEXT NOT NULL DEFAULT '',
  rectified_at TEXT, overdue INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS cases_recent ON cases (last_seen DESC, event_id);
CREATE INDEX IF NOT EXISTS cases_by_camera ON cases (camera_id, last_seen DESC, event_id);
CREATE INDEX IF NOT EXISTS cases_by_scene ON cases (scene_code, state, last_seen DESC, event_id);
CREATE INDEX IF NOT EXISTS cases_by_zone ON cases (zone_id, last_seen DESC, event_id);
CREATE INDEX IF NOT EXISTS cases_by_state ON cases (state, last_seen DESC, event_id);
CREATE INDEX IF NOT EXISTS cases_by_unit ON cases (unit, first_seen);
CREATE TABLE IF NOT EXISTS reviews (
  event_id TEXT NOT NULL, verdict TEXT NOT NULL, reason TEXT NOT NULL, user TEXT NOT NULL,
  at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS reviews_event ON reviews (event_id, at DESC);
CREATE TABLE IF NOT EXISTS mutes (
  camera_id TEXT NOT NULL, zone_id TEXT NOT NULL, scene_code TEXT NOT NULL, until REAL NOT NULL,
  reason TEXT NOT NULL, user TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS mutes_place ON mutes (camera_id, zone_id, scene_code, until);
"""
# 2: the case row is narrow (its payload is the newest revision's), so filters scan little;
# 3: each case's responsible unit, deadline, when it was first rectified and whether it went overdue.
SCHEMA_VERSION = 3
UNASSIGNED = ""  # the unit of a case whose zone names none


@dataclass(frozen=True)
class CaseFilter:
    """What the case list shows; every field optional. Times are ISO-8601 strings compared with
    the events' wall times as written (the cameras' UTC offset), so `since`/`until` bound
    `last_seen`."""

    camera: str | None = None
    scene: str | None = None
    zone: str | None = None
    state: State | None = None
    since: str | None = None
    until: str | None = None
    include_muted: bool = False  # also the cases of a place/class an operator muted (hidden while the mute lasts)
    unit: str | None = None  # the responsible unit the case belongs to

    def where(self) -> tuple[str, list[Any]]:
        clauses, args = [], []
        for column, value in (
            ("camera_id", self.camera),
            ("scene_code", self.scene),
            ("zone_id", self.zone),
            ("state", self.state),
            ("unit", self.unit),
        ):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if self.since:
            clauses.append("last_seen >= ?")
            args.append(self.since)
        if self.until:
            clauses.append("last_seen <= ?")
            args.append(self.until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


@dataclass(frozen=True)
class Case:
    """The newest revision of one case, with the operator's latest verdict on it."""

    event: dict[str, Any]  # its wire form, as the pages and the JSON API show it
    verdict: str | None = None
    verdict_reason: str = ""
    verdict_user: str = ""
    overdue: bool = False  # a deadline check found it still there, and it has not gone since

    @property
    def place(self) -> tuple[str, str, str]:
        """(camera, zone, scene class): what a mute silences (read as indexed, whatever version sent it)."""
        ev = self.event
        return ev["camera"]["id"], ev["zone"]["id"], ev["scene_class"]["code"]

    @property
    def event_id(self) -> str:
        return self.event["event_id"]


@dataclass(frozen=True)
class UnitFigures:
    """One responsible unit's cases (those with a deadline), as the supervision board shows them.

    A case is rectified once it went away on its own (`resolved`) or a check found it gone
    (`verified`); on time when that happened before any deadline check found it still there
    (`overdue`). The rectification rate (整改率) is rectified / cases; the on-time rate (按期整改率)
    is rectified on time / the cases that can be judged (rectified, or overdue)."""

    unit: str
    cases: int
    open_in_time: int  # not rectified, no check has found it overdue (yet)
    overdue: int  # not rectified, and a deadline check found it still there
    rectified: int
    rectified_on_time: int

    @property
    def rectification_rate(self) -> float | None:
        return self.rectified / self.cases if self.cases else None

    @property
    def on_time_rate(self) -> float | None:
        judged = self.rectified + self.overdue
        return self.rectified_on_time / judged if judged else None


class CaseIndex:
    """SQLite case index. Thread-safe: one connection, one lock (the console's request handlers
    and the emitter share it); WAL so a reader never waits for a writer's fsync."""

    name = "case-index"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._facets: tuple[tuple[int, int], dict[str, list[str]]] | None = None

    def _migrate(self) -> None:
        if self._db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        columns = [row[1] for row in self._db.execute("PRAGMA table_info(cases)")]
        if "payload" in columns:  # version 1 kept the payload in the case row too
            for name in ("cases_last_seen", "cases_camera", "cases_scene", "cases_state"):
                self._db.execute(f"DROP INDEX IF EXISTS {name}")
            self._db.execute("ALTER TABLE cases DROP COLUMN payload")
        if columns and "unit" not in columns:  # version 2's cases were sent before units and deadlines
            for column in (
                "unit TEXT NOT NULL DEFAULT ''",
                "due TEXT NOT NULL DEFAULT ''",
                "rectified_at TEXT",
                "overdue INTEGER NOT NULL DEFAULT 0",
            ):
                self._db.execute(f"ALTER TABLE cases ADD COLUMN {column}")
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- feeding ----------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """As a sink of the daemon's spool: a payload that is not an event is refused for good (a
        dead letter), not retried for ever."""
        try:
            self.add_many([event])
        except EventFormatError as exc:
            raise EventRejected(f"case index: {exc}") from None

    def add_many(self, events: Iterable[dict[str, Any]], *, skip_unreadable: bool = False) -> int:
        """Index events; returns how many (event_id, revision) pairs were new. `skip_unreadable`:
        pass over what is not a StreetScan event this version can read (a newer daemon's scene
        class on a shared stream, a damaged line), with a warning, instead of failing the batch."""
        added = 0
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for ev in events:
                    try:
                        added += self._add(ev)
                    except EventFormatError as exc:
                        if not skip_unreadable:
                            raise
                        log.warning("case index: skipped %s: %s", ev.get("event_id", "a payload"), exc)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return added

    def _add(self, raw: dict[str, Any]) -> int:
        ev = Event.from_dict(raw)  # the case list's columns are the typed event's
        payload = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
        # Wall times as sent: the list sorts and filters on these strings.
        first_seen, last_seen = raw["first_seen"]["wall"], raw["last_seen"]["wall"]
        cur = self._db.execute(
            "INSERT OR IGNORE INTO revisions VALUES (?,?,?,?,?)",
            (ev.event_id, ev.revision, ev.state, last_seen, payload),
        )
        if cur.rowcount == 0:
            return 0
        # Only a newer revision replaces the case row: revisions may arrive out of order after a
        # sink outage, and the list must show the latest state.
        unit = ev.responsible.unit if ev.responsible and ev.responsible.unit else UNASSIGNED
        self._db.execute(
            """INSERT INTO cases (event_id, revision, state, camera_id, zone_id, scene_code, first_seen, last_seen,
                 confidence, repeat_count, unit, due) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(event_id) DO UPDATE SET revision=excluded.revision, state=excluded.state,
                 last_seen=excluded.last_seen, confidence=excluded.confidence,
                 repeat_count=excluded.repeat_count, unit=excluded.unit, due=excluded.due
               WHERE excluded.revision > cases.revision""",
            (
                ev.event_id,
                ev.revision,
                ev.state,
                ev.camera.id,
                ev.violation.zone_id,
                ev.violation.scene_class,
                first_seen,
                last_seen,
                ev.violation.confidence,
                ev.repeat_count,
                unit,
                ev.deadline.due.isoformat() if ev.deadline else "",
            ),
        )
        # Supervision (per_unit): whichever revision arrives first, the case keeps its first
        # rectification (gone on its own, or found gone by a check) and whether it ever went overdue.
        if ev.state in CLOSED:
            at = raw["verification"]["checked"]["wall"] if ev.verification else last_seen
            self._db.execute(
                "UPDATE cases SET rectified_at = ? WHERE event_id = ? AND (rectified_at IS NULL OR rectified_at > ?)",
                (at, ev.event_id, at),
            )
        elif ev.state == "overdue":
            self._db.execute("UPDATE cases SET overdue = 1 WHERE event_id = ?", (ev.event_id,))
        return 1

    def import_jsonl(self, folder: Path) -> int:
        """Index every `events*.jsonl` under `folder` (a replay's output, rotated parts included)."""
        added = 0
        for path in sorted(Path(folder).glob("events*.jsonl")):
            with path.open(encoding="utf-8") as fh:
                added += self.add_many((json.loads(line) for line in fh if line.strip()), skip_unreadable=True)
        return added

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading ----------------------------------------------------------------------------
    def _where(self, flt: CaseFilter) -> tuple[str, list[Any]]:
        """The filter's WHERE, hiding muted places/classes unless asked not to. Under the lock."""
        where, args = flt.where()
        now = time.time()
        if (
            flt.include_muted
            or self._db.execute("SELECT 1 FROM mutes WHERE until > ? LIMIT 1", (now,)).fetchone() is None
        ):
            return where, args
        clause = (
            "NOT EXISTS (SELECT 1 FROM mutes m WHERE m.camera_id = cases.camera_id AND m.zone_id = cases.zone_id "
            "AND m.scene_code = cases.scene_code AND m.until > ?)"
        )
        return (f"{where} AND {clause}" if where else f" WHERE {clause}"), [*args, now]

    def count(self, flt: CaseFilter = CaseFilter()) -> int:
        with self._lock:
            where, args = self._where(flt)
            return self._db.execute(f"SELECT COUNT(*) FROM cases{where}", args).fetchone()[0]

    def cases(self, flt: CaseFilter = CaseFilter(), limit: int = 50, offset: int = 0) -> list[Case]:
        with self._lock:
            where, args = self._where(flt)
            rows = self._db.execute(
                f"""SELECT p.payload, r.verdict, r.reason, r.user, c.overdue AND c.rectified_at IS NULL FROM
                      (SELECT event_id, revision, last_seen, overdue, rectified_at FROM cases{where}
                       ORDER BY last_seen DESC, event_id LIMIT ? OFFSET ?) c
                    JOIN revisions p ON p.event_id = c.event_id AND p.revision = c.revision
                    LEFT JOIN reviews r ON r.rowid = (SELECT rowid FROM reviews WHERE event_id = c.event_id
                                                      ORDER BY at DESC LIMIT 1)
                    ORDER BY c.last_seen DESC, c.event_id""",
                [*args, limit, offset],
            ).fetchall()
        return [Case(json.loads(p), v, reason or "", user or "", bool(late)) for p, v, reason, user, late in rows]

    def case(self, event_id: str) -> Case | None:
        with self._lock:
            row = self._db.execute(
                "SELECT p.payload FROM cases c JOIN revisions p ON p.event_id = c.event_id "
                "AND p.revision = c.revision WHERE c.event_id = ?",
                (event_id,),
            ).fetchone()
            review = self._db.execute(
                "SELECT verdict, reason, user FROM reviews WHERE event_id = ? ORDER BY at DESC LIMIT 1", (event_id,)
            ).fetchone()
        if row is None:
            return None
        return Case(json.loads(row[0]), *(review or (None, "", "")))

    def timeline(self, event_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT payload FROM revisions WHERE event_id = ? ORDER BY revision", (event_id,)
            ).fetchall()
        return [json.loads(p) for (p,) in rows]

    def facets(self) -> dict[str, list[str]]:
        """The values the list can be filtered by (cameras, scene classes, zones present); worked out
        again only after new revisions arrived."""
        stamp = self.stamp()
        cached = self._facets
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with self._lock:
            facets = {
                col: [v for (v,) in self._db.execute(f"SELECT DISTINCT {col} FROM cases ORDER BY {col}")]
                for col in ("camera_id", "scene_code", "zone_id")
            }
        self._facets = (stamp, facets)
        return facets

    def per_day(self, days: int = 14) -> list[tuple[str, str, int]]:
        """(local date, scene class, cases first seen that day) for the newest `days` days that have cases."""
        with self._lock:
            rows = self._db.execute(
                """SELECT substr(first_seen, 1, 10) AS day, scene_code, COUNT(*) FROM cases
                   WHERE substr(first_seen, 1, 10) IN (SELECT DISTINCT substr(first_seen, 1, 10) FROM cases
                                                       ORDER BY 1 DESC LIMIT ?)
                   GROUP BY day, scene_code ORDER BY day""",
                (days,),
            ).fetchall()
        return [(d, c, n) for d, c, n in rows]

    def per_camera(self) -> list[tuple[str, int, int]]:
        """(camera, cases, cases still open) per camera, most cases first."""
        with self._lock:
            return [
                tuple(r)
                for r in self._db.execute(
                    """SELECT camera_id, COUNT(*), SUM(state NOT IN ('resolved', 'verified')) FROM cases
                   GROUP BY camera_id ORDER BY 2 DESC, 1"""
                )
            ]

    def per_unit(self, flt: CaseFilter = CaseFilter()) -> list[UnitFigures]:
        """Supervision figures per responsible unit over the cases with a deadline that `flt`
        selects (its since/until bound when they were last seen), worst on-time rate first."""
        with self._lock:
            where, args = self._where(flt)
            where = f"{where} AND due != ''" if where else " WHERE due != ''"
            rows = self._db.execute(
                f"""SELECT unit, COUNT(*), SUM(rectified_at IS NULL AND overdue = 0),
                          SUM(rectified_at IS NULL AND overdue = 1), SUM(rectified_at IS NOT NULL),
                          SUM(rectified_at IS NOT NULL AND overdue = 0)
                    FROM cases{where} GROUP BY unit""",
                args,
            ).fetchall()
        units = [UnitFigures(*row) for row in rows]
        return sorted(units, key=lambda u: (u.on_time_rate if u.on_time_rate is not None else 2.0, -u.cases, u.unit))

    def label_candidates(self, limit: int = 500) -> list[tuple[dict[str, Any], str]]:
        """The newest cases worth a label, with why: found by the scene model (nobody knows what it
        is), dismissed by an operator (what the model mistook), or the detector's least sure."""
        out = []
        for case in self.cases(CaseFilter(include_muted=True), limit=limit):
            ev = case.event
            if ev.get("detector") == "scene_change":
                out.append((ev, "scene_change"))
            elif case.verdict == "dismissed":
                out.append((ev, "dismissed"))
            elif float(ev.get("confidence", 1.0)) < LOW_CONFIDENCE:
                out.append((ev, "low_confidence"))
        return out

    def open_count(self) -> int:
        with self._lock:
            return self._db.execute(
                "SELECT COUNT(*) FROM cases WHERE state NOT IN ('resolved', 'verified')"
            ).fetchone()[0]

    def stamp(self) -> tuple[int, int]:
        """Changes whenever a revision or review is added: what a cached chart is keyed on."""
        with self._lock:
            return (
                self._db.execute("SELECT COALESCE(MAX(rowid), 0) FROM revisions").fetchone()[0],
                self._db.execute("SELECT COALESCE(MAX(rowid), 0) FROM reviews").fetchone()[0],
            )

    # -- retention --------------------------------------------------------------------------
    def prune(self, before: str, now: float | None = None) -> int:
        """Forget resolved cases last seen before `before` (ISO-8601) that no operator reviewed, and
        expired mutes, so a daemon's index stays bounded like its evidence. Open cases and reviewed
        ones (the hard negatives) stay. Returns the cases forgotten."""
        old = (
            "SELECT event_id FROM cases WHERE state IN ('resolved', 'verified') AND last_seen < ? "
            "AND event_id NOT IN (SELECT event_id FROM reviews)"
        )
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(f"DELETE FROM revisions WHERE event_id IN ({old})", (before,))
                n = self._db.execute(f"DELETE FROM cases WHERE event_id IN ({old})", (before,)).rowcount
                self._db.execute("DELETE FROM mutes WHERE until < ?", (time.time() if now is None else now,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return n

    # -- operators --------------------------------------------------------------------------
    def review(self, event_id: str, verdict: str, reason: str, user: str) -> None:
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
        if verdict == "dismissed" and not reason.strip():
            raise ValueError("a dismissal needs a reason")
        with self._lock:
            if self._db.execute("SELECT 1 FROM cases WHERE event_id = ?", (event_id,)).fetchone() is None:
                raise KeyError(event_id)
            self._db.execute(
                "INSERT INTO reviews VALUES (?,?,?,?,?)", (event_id, verdict, reason.strip(), user, time.time())
            )

    def mute(self, camera_id: str, zone_id: str, scene_code: str, hours: float, reason: str, user: str) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO mutes VALUES (?,?,?,?,?,?,?)",
                (camera_id, zone_id, scene_code, now + hours * 3600, reason, user, now),
            )

    def muted(self, camera_id: str, zone_id: str, scene_code: str, now: float | None = None) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM mutes WHERE camera_id=? AND zone_id=? AND scene_code=? AND until > ?",
                    (camera_id, zone_id, scene_code, time.time() if now is None else now),
                ).fetchone()
                is not None
            )

    def dismissed(self) -> Iterator[tuple[dict[str, Any], str, str]]:
        """Cases whose latest verdict is a dismissal: (event, reason, user), the hard negatives."""
        with self._lock:
            rows = self._db.execute(
                """SELECT p.payload, r.reason, r.user FROM cases c JOIN reviews r
                   ON r.rowid = (SELECT rowid FROM reviews WHERE event_id = c.event_id ORDER BY at DESC LIMIT 1)
                   JOIN revisions p ON p.event_id = c.event_id AND p.revision = c.revision
                   WHERE r.verdict = 'dismissed' ORDER BY c.last_seen DESC"""
            ).fetchall()
        for payload, reason, user in rows:
            yield json.loads(payload), reason, user


CSV_COLUMNS = (
    "event_id",
    "state",
    "revision",
    "camera_id",
    "camera_address",
    "zone_id",
    "scene_code",
    "scene_name_zh",
    "platform_code",
    "confidence",
    "first_seen",
    "last_seen",
    "repeat_count",
    "responsible_unit",
    "deadline_due",
    "verdict",
    "verdict_reason",
)


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (=, +, -, @, tab, CR first: an operator's
    dismiss reason `=HYPERLINK(...)`) is quoted with a leading apostrophe, as OWASP advises."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def cases_csv(cases: Iterable[Case]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for c in cases:
        e = c.event
        writer.writerow(
            tuple(
                spreadsheet_safe(v)
                for v in (
                    e["event_id"],
                    e["state"],
                    e["revision"],
                    e["camera"]["id"],
                    e["camera"].get("address", ""),
                    e["zone"]["id"],
                    e["scene_class"]["code"],
                    e["scene_class"]["name_zh"],
                    e.get("platform", {}).get("code", ""),
                    f"{e['confidence']:.3f}",
                    e["first_seen"]["wall"],
                    e["last_seen"]["wall"],
                    e.get("repeat_count", 0),
                    (e.get("responsible") or {}).get("unit") or "",
                    (e.get("deadline") or {}).get("due", ""),
                    c.verdict or "",
                    c.verdict_reason,
                )
            )
        )
    return buf.getvalue()


UNIT_CSV_COLUMNS = (
    "unit",
    "cases",
    "open_in_time",
    "overdue",
    "rectified",
    "rectified_on_time",
    "rectification_rate",
    "on_time_rate",
)


def units_csv(units: Iterable[UnitFigures]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(UNIT_CSV_COLUMNS)
    for u in units:
        rates = (u.rectification_rate, u.on_time_rate)
        writer.writerow(
            (
                spreadsheet_safe(u.unit),
                u.cases,
                u.open_in_time,
                u.overdue,
                u.rectified,
                u.rectified_on_time,
                *("" if r is None else f"{r:.4f}" for r in rates),
            )
        )
    return buf.getvalue()
