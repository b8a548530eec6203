"""A console for a multi-node fleet: the case index fed from the Redis Stream every daemon writes
to (service.sinks.RedisStreamSink), read with a consumer group.

An entry is acknowledged only after its event is in the index, so a console that crashes reads
its unacknowledged entries again at the next start (the index ignores what it already has).
Each console keeps its own group, so two consoles each see every case.
"""

from __future__ import annotations

import json
import logging
import socket

import redis

from ..service.backoff import Backoff
from ..service.loop import Worker
from .index import CaseIndex

log = logging.getLogger(__name__)


class RedisCaseFeed(Worker):
    def __init__(self, index: CaseIndex, url: str, stream: str = "streetscan:events", group: str = "console",
                 consumer: str | None = None, batch: int = 500, block_ms: int = 1000):
        self.index = index
        self.stream = stream
        self.group = group
        self.consumer = consumer or socket.gethostname()
        self.batch = batch
        self.block_ms = block_ms
        self.client = redis.Redis.from_url(url, socket_timeout=block_ms / 1000 + 5, socket_connect_timeout=5)
        self.indexed = 0
        super().__init__("redis-case-feed")

    def _ensure_group(self) -> None:
        try:
            # From the stream's start: a new console indexes the cases the stream still holds.
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_once(self, pending: bool = False) -> int:
        """Index one batch and acknowledge it; `pending`: this consumer's entries read before but
        never acknowledged (a crash between reading and indexing). Returns the entries handled."""
        answer = self.client.xreadgroup(self.group, self.consumer, {self.stream: "0" if pending else ">"},
                                        count=self.batch, block=None if pending else self.block_ms)
        entries = [e for _, items in answer or [] for e in items]
        if not entries:
            return 0
        events, ids = [], []
        for entry_id, fields in entries:
            ids.append(entry_id)
            payload = fields.get(b"payload") if fields else None
            if payload is None:   # not a StreetScan event: acknowledged, so it is not read forever
                log.warning("%s: entry %s has no payload; skipped", self.stream, entry_id)
                continue
            events.append(json.loads(payload))
        self.indexed += self.index.add_many(events)
        self.client.xack(self.stream, self.group, *ids)
        return len(entries)

    def _run(self) -> None:
        backoff = Backoff(0.5, 30.0)
        recovered = False
        while not self._stop.is_set():
            self.beat()
            try:
                if not recovered:
                    self._ensure_group()
                    while self.read_once(pending=True):
                        pass
                    recovered = True
                self.read_once()
                backoff.reset()
            except redis.RedisError as exc:
                delay = backoff.next_delay()
                log.warning("%s: Redis not reachable (%s); retrying in %.1fs", self.stream, exc, delay)
                recovered = False
                self._stop.wait(delay)
