"""Who must act on a case, and by when (报—派—督): the responsible unit and the rectification
deadline every case carries, and the camera's own checks at and after that deadline (自动核查).

A case is checked where it was found when its deadline passes, through the same check a
platform's verification request gets (verify.ZoneCheck): gone on most of the frames looked at
is `verified` (rectified, the fresh picture proves it) and ends the checks; still there is
`overdue`, and it is looked at again every `recheck_s` until it is gone or `give_up_s` after the
deadline. The pending checks are part of the camera's saved state (CameraAnalysis.snapshot),
committed with the events that made or answered them, so a restart keeps them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import DeadlineChecks
    from .events import Event

# A camera's pending checks are bounded: more open cases than this on one camera is a config or
# model fault, and the oldest deadlines are the ones a platform has already acted on.
MAX_PENDING_CHECKS = 2000


@dataclass(frozen=True)
class Responsibility:
    """A zone's responsible unit (责任单位), its contact, the shop answering for the frontage (门前三包)
    and the road section with its road chief (路长), resolved once per zone (config.resolve_camera)."""

    unit: str | None = None
    contact: str | None = None
    shop: str | None = None
    section_id: str | None = None
    section_name: str | None = None
    road_chief: str | None = None

    @property
    def named(self) -> bool:
        return any((self.unit, self.shop, self.section_id))

    def as_dict(self) -> dict[str, Any]:
        section = (
            {"id": self.section_id, "name": self.section_name, "road_chief": self.road_chief}
            if self.section_id
            else None
        )
        return {"unit": self.unit, "contact": self.contact, "shop": self.shop, "section": section}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Responsibility:
        section = d.get("section") or {}
        return cls(d.get("unit"), d.get("contact"), d.get("shop"), section.get("id"), section.get("name"),
                   section.get("road_chief"))  # fmt: skip


@dataclass(frozen=True)
class Deadline:
    """By when a case must be rectified: `rectify_s` after it was opened (confirmed)."""

    rectify_s: float
    due: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"rectify_s": round(self.rectify_s, 3), "due": self.due.isoformat()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Deadline:
        return cls(float(d["rectify_s"]), datetime.fromisoformat(d["due"]))


@dataclass
class PendingCheck:
    event: Event  # the newest revision this camera made of the case
    due_ts: float  # Unix seconds on the camera's wall clock (a replay's is the footage's)
    attempt: int = 0  # checks made so far
    checking: bool = False  # handed to the camera's checks, not answered yet


class DeadlineWatch:
    """One camera's cases waiting for their deadline check, in the camera's analysis thread."""

    def __init__(self, policy: DeadlineChecks):
        self.policy = policy
        self.pending: dict[str, PendingCheck] = {}

    def saw(self, event: Event) -> None:
        """Every event and answer the camera makes passes here: an opened case with a deadline is
        watched, a watched case's newest revision kept, and a verified one is done."""
        watched = self.pending.get(event.event_id)
        if event.state == "verified":
            self.pending.pop(event.event_id, None)
        elif watched is not None:
            watched.event = event
            if event.state == "overdue":
                self._again(watched, event)
        elif event.state == "opened" and event.deadline is not None and self.policy.enabled:
            if len(self.pending) >= MAX_PENDING_CHECKS:
                oldest = min(self.pending, key=lambda k: self.pending[k].due_ts)
                del self.pending[oldest]
            self.pending[event.event_id] = PendingCheck(event, event.deadline.due.timestamp())

    def _again(self, watched: PendingCheck, answer: Event) -> None:
        assert answer.deadline is not None and answer.verification is not None
        watched.attempt += 1
        watched.checking = False
        watched.due_ts = answer.verification.checked.timestamp() + self.policy.recheck_s
        if watched.due_ts > answer.deadline.due.timestamp() + self.policy.give_up_s:
            self.pending.pop(answer.event_id, None)

    def due(self, now_ts: float) -> list[PendingCheck]:
        """The checks whose time has come, marked as being checked."""
        out = [p for p in self.pending.values() if not p.checking and p.due_ts <= now_ts]
        for p in out:
            p.checking = True
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        """The checks as saved with the camera's state: a few numbers each, not the events (the
        spool keeps every event's newest revision, and a camera's state is written on every commit)."""
        return [{"event_id": k, "due_ts": p.due_ts, "attempt": p.attempt} for k, p in self.pending.items()]

    def restore(self, saved: list[dict[str, Any]], known_event: Callable[[str], Event | None]) -> int:
        """Reload saved checks; `known_event` gives a case's newest revision (the spool's)."""
        for item in saved[-MAX_PENDING_CHECKS:]:
            event = known_event(item["event_id"])
            if event is not None and event.state != "verified":
                self.pending[event.event_id] = PendingCheck(event, float(item["due_ts"]), int(item["attempt"]))
        return len(self.pending)
