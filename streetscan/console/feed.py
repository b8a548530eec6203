"""A console for a multi-node fleet: the case index fed from the Redis Stream every daemon writes
to (delivery.sinks.RedisStreamSink), read with a consumer group.

An entry is acknowledged only after its event is in the index, so a console that crashes reads
its unacknowledged entries again at the next start (the index ignores what it already has).
Each console keeps its own group, so two consoles each see every case.
"""

from __future__ import annotations

import logging
from typing import Any

from ..delivery.consumer import CaseStreamConsumer, StreamWorker
from ..pipeline.config import DEFAULT_STREAM
from .index import CaseIndex

log = logging.getLogger(__name__)


class RedisCaseFeed(StreamWorker):
    def __init__(
        self,
        index: CaseIndex,
        url: str,
        stream: str = DEFAULT_STREAM,
        group: str = "console",
        consumer: str | None = None,
        batch: int = 500,
        block_ms: int = 1000,
    ):
        self.index = index
        self.indexed = 0
        super().__init__(
            "redis-case-feed", CaseStreamConsumer(url, stream, group, consumer, batch=batch, block_ms=block_ms)
        )

    def handle_batch(self, entries: list[tuple[bytes, Any]]) -> None:
        for entry_id, event in entries:
            if event is None:  # not a StreetScan event: acknowledged, so it is not read forever
                log.warning("%s: entry %s has no event payload; skipped", self.stream, entry_id)
        self.indexed += self.index.add_many((e for _, e in entries if e is not None), skip_unreadable=True)
