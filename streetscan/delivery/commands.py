"""Commands from the case platform on a Redis Stream: today, verification requests (核查).

The platform XADDs `{request_id, event_id}` (as fields, or as one `payload` JSON field) to the
command stream; the daemon reads it with a consumer group, hands each command to the
verification desk and XADDs every status the request goes through (accepted, then answered or
camera_down; or at once malformed / unknown_case / camera_down) to `<stream>:replies`. A command
is acknowledged once its first reply is written, so a daemon that dies in between reads it again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from .consumer import CaseStreamConsumer, StreamWorker

log = logging.getLogger(__name__)


class RedisCommandReader(StreamWorker):
    def __init__(
        self,
        url: str,
        handle: Callable[[Any], dict[str, Any] | None],
        *,
        stream: str = "streetscan:commands",
        group: str = "streetscan",
        consumer: str | None = None,
        block_ms: int = 1000,
        replies_maxlen: int = 100_000,
    ):
        self.replies = f"{stream}:replies"
        self.handle = handle
        self.replies_maxlen = replies_maxlen
        # From the stream's end: a daemon answers the requests made while it runs, and those it
        # read before a crash without answering (its own backlog), not the platform's history.
        super().__init__(
            "redis-commands",
            CaseStreamConsumer(
                url,
                stream,
                group,
                consumer,
                claim_idle_s=None,
                batch=50,
                block_ms=block_ms,
                from_start=False,
                parse=parse,
            ),
        )
        self.client = self.reader.client

    def reply(self, reply: dict[str, Any]) -> None:
        """Write one status to the reply stream: the desk's notify callback, for every request."""
        fields: dict[FieldT, EncodableT] = {k: ("" if v is None else str(v)) for k, v in reply.items()}
        try:
            self.client.xadd(self.replies, fields, maxlen=self.replies_maxlen, approximate=True)
        except redis.RedisError as exc:
            log.warning("%s: reply to %s not written (%s)", self.replies, reply.get("request_id"), exc)

    def handle_batch(self, entries: list[tuple[bytes, Any]]) -> None:
        for _, command in entries:
            # The desk writes every status through `reply` (one of its notify callbacks), this
            # first one included; a command for another shard's camera gets none here.
            self.handle(command)


def parse(fields: dict[bytes, bytes] | None) -> Any:
    """A command entry: its `payload` JSON, else its fields as a mapping."""
    decoded = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (fields or {}).items()}
    if "payload" in decoded:
        try:
            return json.loads(decoded["payload"])
        except ValueError:
            return decoded["payload"]  # the desk answers `malformed`
    return decoded
