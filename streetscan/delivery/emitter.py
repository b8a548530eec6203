"""The event emitter: delivers the spool to each sink in order, one loop.

Each sink has its own cursor, so a Redis outage never holds back the JSONL file (or the other
way round). A failing sink is retried with backoff; its events wait in the spool meanwhile.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence

from ..infra.backoff import Backoff
from ..infra.loop import Worker
from ..infra.metrics import Metrics
from .sinks import CaseSink, EventRejected, SinkError
from .spool import EventSpool

log = logging.getLogger(__name__)


class EventEmitter(Worker):
    def __init__(
        self,
        spool: EventSpool,
        sinks: Sequence[CaseSink],
        metrics: Metrics,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        batch: int = 200,
    ):
        self.spool = spool
        self.sinks = list(sinks)
        self.metrics = metrics
        self.batch = batch
        self._backoff = {s.name: Backoff(backoff_initial_s, backoff_max_s) for s in self.sinks}
        self._retry_at = {s.name: 0.0 for s in self.sinks}
        self.sink_ok = {s.name: True for s in self.sinks}
        # What each sink has taken, as far as this process knows: ahead of the spool's saved cursor
        # while the disk is too full to save it, so nothing is sent twice meanwhile.
        self._taken: dict[str, int] = {}
        self._cursor_unsaved: set[str] = set()
        super().__init__("event-emitter")

    def stop(self) -> None:
        super().stop()
        self.spool.wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.beat()
            if not self.deliver():
                self.spool.wait_for_events(0.5)

    def deliver(self, force: bool = False) -> bool:
        """One pass over the sinks; True when some sink still has events it could take now."""
        more = False
        now = time.monotonic()
        for sink in self.sinks:
            if not force and now < self._retry_at[sink.name]:
                continue
            rows = self.spool.pending(sink.name, self.batch, after=self._taken.get(sink.name, 0))
            last = None
            try:
                for seq, event in rows:
                    try:
                        sink.emit(event)
                    except EventRejected as exc:
                        self.spool.dead_letter(sink.name, event, str(exc))
                        self.metrics.sink_dead_letters.labels(sink.name).inc()
                        log.warning("%s; kept as a dead letter (streetscan dead-letters list)", exc)
                    else:
                        self.metrics.sink_delivered.labels(sink.name).inc()
                    last = seq
            except (SinkError, sqlite3.Error, OSError) as exc:  # a full disk is an outage like any other
                self.metrics.sink_errors.labels(sink.name).inc()
                delay = self._backoff[sink.name].next_delay()
                self._retry_at[sink.name] = time.monotonic() + delay
                if self.sink_ok[sink.name]:
                    log.warning("%s; events stay in the spool, retrying (next in %.1fs)", exc, delay)
                self.sink_ok[sink.name] = False
            else:
                if not self.sink_ok[sink.name]:
                    log.info("%s: delivering again", sink.name)
                self.sink_ok[sink.name] = True
                self._backoff[sink.name].reset()
                more = more or len(rows) == self.batch
            finally:
                if last is not None:
                    self._taken[sink.name] = last
                self._save_cursor(sink.name)
        return more

    def _save_cursor(self, sink: str) -> None:
        if sink not in self._taken:
            return
        try:
            self.spool.ack(sink, self._taken[sink])
        except (sqlite3.Error, OSError) as exc:
            # The disk is full: the cursor waits in memory and is saved on a later pass.
            if sink not in self._cursor_unsaved:
                log.warning("%s: delivered up to %d, cursor not saved yet: %s", sink, self._taken[sink], exc)
            self._cursor_unsaved.add(sink)
        else:
            del self._taken[sink]
            self._cursor_unsaved.discard(sink)

    def flush(self, deadline: float) -> int:
        """Deliver what the sinks take before `deadline` (monotonic); returns what stays spooled."""
        while time.monotonic() < deadline:
            self.deliver(force=True)
            if self.spool.depth() == 0 or not all(self.sink_ok.values()) or self._cursor_unsaved:
                break
        return self.spool.depth()
