"""Reading the case stream the way StreetScan means it to be read: a consumer group, at least once.

Each consumer first re-reads its own entries read before a crash and never acknowledged, then
takes over (XAUTOCLAIM) entries another consumer of the group read but left unacknowledged for
`claim_idle_s` (it died), then reads new ones (XREADGROUP >). The caller acknowledges entries
after handling them; since an entry may come twice (a crash between handling and XACK), handlers
deduplicate on (event_id, revision). Used by `streetscan consume` (the reference consumer) and by
the fleet console's case index (console.feed).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import redis

from ..infra.backoff import Backoff
from ..infra.loop import Worker
from ..secrets import remember

log = logging.getLogger(__name__)


class CaseStreamConsumer:
    def __init__(
        self,
        url: str,
        stream: str = "streetscan:events",
        group: str = "platform",
        consumer: str | None = None,
        *,
        claim_idle_s: float | None = 60.0,
        batch: int = 100,
        block_ms: int = 1000,
        from_start: bool = True,
        parse: Callable[[dict[bytes, bytes] | None], Any] | None = None,
    ):
        """`claim_idle_s` None: never take over other consumers' entries. `parse`: an entry's
        fields to what `read` returns (default: the event in its `payload` field, or None)."""
        self.stream = stream
        self.group = group
        self.consumer = consumer or socket.gethostname()
        self.claim_idle_ms = -1 if claim_idle_s is None else int(claim_idle_s * 1000)
        self.parse = parse or _event
        self.batch = batch
        self.block_ms = block_ms
        self.from_start = from_start
        remember(url)
        self.client = redis.Redis.from_url(url, socket_timeout=block_ms / 1000 + 5, socket_connect_timeout=5)
        self._own_backlog = True
        self._claim_cursor = "0-0"

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0" if self.from_start else "$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._own_backlog = True

    def read(self) -> list[tuple[bytes, Any]]:
        """The next entries to handle: (entry id, parsed entry: by default the event, or None for
        an entry without a payload)."""
        if self._own_backlog:
            entries = self._entries(
                self.client.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=self.batch)
            )
            if entries:
                return entries
            self._own_backlog = False
        if self.claim_idle_ms >= 0:
            answer = self.client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                self.claim_idle_ms,
                start_id=self._claim_cursor,
                count=self.batch,
            )
            self._claim_cursor = answer[0] if answer and answer[0] else "0-0"
            claimed = [(eid, fields) for eid, fields in (answer[1] if answer else []) if fields is not None]
            if claimed:
                log.info("%s: took over %d entries a stopped consumer left", self.stream, len(claimed))
                return [(eid, self.parse(fields)) for eid, fields in claimed]
        return self._entries(
            self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=self.batch, block=self.block_ms)
        )

    def ack(self, entry_ids: list[bytes]) -> None:
        if entry_ids:
            self.client.xack(self.stream, self.group, *entry_ids)

    def _entries(self, answer) -> list[tuple[bytes, Any]]:
        return [(eid, self.parse(fields)) for _, items in answer or [] for eid, fields in items]


def _event(fields: dict[bytes, bytes] | None) -> dict[str, Any] | None:
    payload = (fields or {}).get(b"payload")
    if payload is None:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return None


class StreamWorker(Worker):
    """A loop over a stream read with a consumer group: each batch handled, then acknowledged;
    a Redis outage retried with backoff (the group is made sure of again after it)."""

    def __init__(self, name: str, reader: CaseStreamConsumer):
        self.reader = reader
        self.stream = reader.stream
        super().__init__(name)

    def handle_batch(self, entries: list[tuple[bytes, Any]]) -> None:
        raise NotImplementedError

    def read_once(self) -> int:
        """Handle one batch and acknowledge it; returns the entries handled."""
        entries = self.reader.read()
        if entries:
            self.handle_batch(entries)
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
