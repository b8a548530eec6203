"""Case sinks: where events go. One interface; JSONL on disk (the embedded default) and Redis Streams."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import redis


class SinkError(RuntimeError):
    """A sink could not take an event; the message names the sink and the cause."""


class CaseSink(Protocol):
    name: str

    def emit(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """Appends one JSON object per line; each line is flushed (and fsynced with durable=True) so a
    crash never leaves a half-written event behind a written one."""

    def __init__(self, path: Path, durable: bool = False):
        self.name = f"jsonl:{path}"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.durable = durable
        self._fh = self.path.open("a", encoding="utf-8")

    def emit(self, event: dict[str, Any]) -> None:
        self._fh.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._fh.flush()
        if self.durable:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


class RedisStreamSink:
    """XADD to a Redis Stream, trimmed to `maxlen` entries so the case queue stays bounded.

    Each entry carries the event id and revision as top-level fields, so consumers (XREADGROUP)
    can deduplicate redeliveries without parsing the payload.
    """

    def __init__(self, url: str, stream: str = "streetscan:events", maxlen: int = 100_000,
                 approximate: bool = True, timeout_s: float = 5.0):
        self.name = f"redis:{stream}"
        self.stream = stream
        self.maxlen = maxlen
        self.approximate = approximate
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def ping(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise SinkError(f"{self.name}: Redis not reachable ({exc})") from None

    def emit(self, event: dict[str, Any]) -> None:
        fields = {
            "event_id": event["event_id"],
            "revision": event["revision"],
            "state": event["state"],
            "scene_class": event["scene_class"]["code"],
            "camera_id": event["camera"]["id"],
            "payload": json.dumps(event, ensure_ascii=False, separators=(",", ":")),
        }
        try:
            self.client.xadd(self.stream, fields, maxlen=self.maxlen, approximate=self.approximate)
        except redis.RedisError as exc:
            raise SinkError(f"{self.name}: XADD failed ({exc})") from None

    def close(self) -> None:
        self.client.close()
