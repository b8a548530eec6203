"""A console for a multi-node fleet: the case index fed from the Redis Stream every daemon writes
to (service.sinks.RedisStreamSink), read with a consumer group.

An entry is acknowledged only after its event is in the index, so a console that crashes reads
its unacknowledged entries again at the next start (the index ignores what it already has).
Each console keeps its own group, so two consoles each see every case.
"""

from __future__ import annotations

import logging

import redis

from ..service.backoff import Backoff
from ..service.consumer import CaseStreamConsumer
from ..service.loop import Worker
from .index import CaseIndex

log = logging.getLogger(__name__)


class RedisCaseFeed(Worker):
    def __init__(self, index: CaseIndex, url: str, stream: str = "streetscan:events", group: str = "console",
                 consumer: str | None = None, batch: int = 500, block_ms: int = 1000):
        self.index = index
        self.stream = stream
        self.reader = CaseStreamConsumer(url, stream, group, consumer, batch=batch, block_ms=block_ms)
        self.indexed = 0
        super().__init__("redis-case-feed")

    def _ensure_group(self) -> None:
        self.reader.ensure_group()

    def read_once(self) -> int:
        """Index one batch and acknowledge it; returns the entries handled."""
        entries = self.reader.read()
        if not entries:
            return 0
        for entry_id, event in entries:
            if event is None:   # not a StreetScan event: acknowledged, so it is not read forever
                log.warning("%s: entry %s has no event payload; skipped", self.stream, entry_id)
        self.indexed += self.index.add_many(e for _, e in entries if e is not None)
        self.reader.ack([eid for eid, _ in entries])
        return len(entries)

    def _run(self) -> None:
        backoff = Backoff(0.5, 30.0)
        ready = False
        while not self._stop.is_set():
            self.beat()
            try:
                if not ready:
                    self.reader.ensure_group()
                    ready = True
                self.read_once()
                backoff.reset()
            except redis.RedisError as exc:
                delay = backoff.next_delay()
                log.warning("%s: Redis not reachable (%s); retrying in %.1fs", self.stream, exc, delay)
                ready = False
                self._stop.wait(delay)
