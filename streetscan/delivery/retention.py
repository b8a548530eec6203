"""Retention: keeps the daemon's disk bounded over months of running, one loop.

Evidence folders older than `evidence_days` are deleted, except those of events still open or
not yet taken by every sink: a late sink or the case officer of an open case still needs them.
Event records are not pruned: events.jsonl rotates by size (JsonlSink) and its parts are kept. The
console's case index forgets resolved, unreviewed cases of the same age.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from ..infra.loop import Worker
from ..infra.metrics import Metrics
from ..pipeline.camera import evidence_in
from ..pipeline.evidence import prune_evidence
from .spool import EventSpool

log = logging.getLogger(__name__)


def evidence_in_use(spool: EventSpool) -> set[str]:
    ids = spool.undelivered_event_ids()
    for state in spool.camera_states().values():
        ids |= evidence_in(state)
    return ids


class EvidenceRetention(Worker):
    """`case_index`: the console's index (console.index.CaseIndex), pruned on the same schedule."""

    def __init__(
        self,
        out_dir: Path,
        spool: EventSpool,
        metrics: Metrics,
        *,
        evidence_days: float,
        interval_s: float = 3600.0,
        first_after_s: float = 60.0,
        case_index=None,
    ):
        self.out_dir = Path(out_dir)
        self.case_index = case_index
        self.spool = spool
        self.metrics = metrics
        self.evidence_days = evidence_days
        self.interval_s = interval_s
        self.first_after_s = first_after_s
        super().__init__("retention")

    def _run(self) -> None:
        wait = self.first_after_s
        while not self._stop.wait(wait):
            self.beat()
            try:
                self.sweep()
            except OSError as exc:  # a full or read-only disk must not end the loop
                log.warning("evidence retention: %s", exc)
            wait = self.interval_s

    def sweep(self, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - self.evidence_days * 86400
        pruned = prune_evidence(self.out_dir, cutoff, evidence_in_use(self.spool))
        self.spool.forget_events_before(cutoff)  # too old to verify: their evidence is gone too
        if self.case_index is not None:
            # Wall times in events carry each camera's UTC offset: compared as text with a UTC
            # cutoff they are off by that offset at most, hours against a retention of days.
            forgotten = self.case_index.prune(datetime.fromtimestamp(cutoff, UTC).isoformat())
            if forgotten:
                log.info(
                    "case index retention: %d resolved case(s) older than %g days forgotten",
                    forgotten,
                    self.evidence_days,
                )
        if pruned:
            self.metrics.evidence_pruned.inc(pruned)
            log.info("evidence retention: %d folder(s) older than %g days deleted", pruned, self.evidence_days)
        return pruned
