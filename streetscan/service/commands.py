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
import socket
from collections.abc import Callable
from typing import Any

import redis

from .backoff import Backoff
from .loop import Worker

log = logging.getLogger(__name__)


class RedisCommandReader(Worker):
    def __init__(self, url: str, handle: Callable[[Any], dict[str, Any]], *, stream: str = "streetscan:commands",
                 group: str = "streetscan", consumer: str | None = None, block_ms: int = 1000,
                 replies_maxlen: int = 100_000):
        self.stream = stream
        self.replies = f"{stream}:replies"
        self.group = group
        self.consumer = consumer or socket.gethostname()
        self.handle = handle
        self.block_ms = block_ms
        self.replies_maxlen = replies_maxlen
        self.client = redis.Redis.from_url(url, socket_timeout=block_ms / 1000 + 5, socket_connect_timeout=5)
        super().__init__("redis-commands")

    def reply(self, reply: dict[str, Any]) -> None:
        """Write one status to the reply stream: the desk's notify callback, for every request."""
        fields = {k: ("" if v is None else str(v)) for k, v in reply.items()}
        try:
            self.client.xadd(self.replies, fields, maxlen=self.replies_maxlen, approximate=True)
        except redis.RedisError as exc:
            log.warning("%s: reply to %s not written (%s)", self.replies, reply.get("request_id"), exc)

    @staticmethod
    def parse(fields: dict[bytes, bytes]) -> Any:
        decoded = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        if "payload" in decoded:
            try:
                return json.loads(decoded["payload"])
            except ValueError:
                return decoded["payload"]   # the desk answers `malformed`
        return decoded

    def _run(self) -> None:
        backoff = Backoff(0.5, 30.0)
        ready = False
        while not self._stop.is_set():
            self.beat()
            try:
                if not ready:
                    try:
                        self.client.xgroup_create(self.stream, self.group, id="$", mkstream=True)
                    except redis.ResponseError as exc:
                        if "BUSYGROUP" not in str(exc):
                            raise
                    ready = True
                    backlog = "0"   # first this consumer's commands read before a crash, unanswered
                else:
                    backlog = ">"
                answer = self.client.xreadgroup(self.group, self.consumer, {self.stream: backlog}, count=50,
                                                block=None if backlog == "0" else self.block_ms)
                for _, entries in answer or []:
                    for entry_id, fields in entries:
                        # The desk writes every status through `reply` (it is one of its notify
                        # callbacks), this first one included.
                        self.handle(self.parse(fields or {}))
                        self.client.xack(self.stream, self.group, entry_id)
                backoff.reset()
            except redis.RedisError as exc:
                delay = backoff.next_delay()
                log.warning("%s: Redis not reachable (%s); retrying in %.1fs", self.stream, exc, delay)
                ready = False
                self._stop.wait(delay)
