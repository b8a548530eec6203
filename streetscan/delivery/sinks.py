"""Case sinks: where events go. One interface; JSONL on disk (the embedded default) and Redis Streams."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import redis

from ..pipeline.config import DEFAULT_STREAM
from ..secrets import remember


class SinkError(RuntimeError):
    """A sink could not take an event now; the message names the sink and the cause. The event
    stays spooled and is offered again after a backoff."""


class EventRejected(SinkError):
    """The sink's receiver refused this event for good (a 4xx other than 408/429): offering it
    again would only block the events behind it. The emitter dead-letters it and goes on."""


class CaseSink(Protocol):
    name: str

    def emit(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """Appends one JSON object per line; each line is flushed (and fsynced with durable=True) so a
    crash never leaves a half-written event behind a written one.

    With `max_bytes`, a file about to grow past it is renamed to `<stem>-<UTC time>.jsonl` first
    and a new one started, so a daemon running for months never writes one endless file; the
    parts are kept (they are the event record), and a line is never split across two."""

    def __init__(self, path: Path, durable: bool = False, max_bytes: int | None = None):
        self.name = f"jsonl:{path}"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.durable = durable
        self.max_bytes = max_bytes
        self._fh: io.TextIOWrapper | None = self.path.open("a", encoding="utf-8")

    def emit(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            if self._fh is None:
                self._fh = self.path.open("a", encoding="utf-8")
            if self.max_bytes:
                size = os.fstat(self._fh.fileno()).st_size
                if size and size + len(line.encode("utf-8")) > self.max_bytes:
                    self._rotate()
            before = os.fstat(self._fh.fileno()).st_size
            self._fh.write(line)
            self._fh.flush()
            if self.durable:
                os.fsync(self._fh.fileno())
        except OSError as exc:
            # A full disk: cut off whatever part of the line got written, so the file never holds
            # half an event, and let the emitter retry it like any sink outage.
            self._reopen(before if "before" in locals() else None)
            raise SinkError(f"{self.name}: cannot write ({exc.strerror or exc})") from None

    def _reopen(self, size: int | None) -> None:
        try:
            if self._fh is not None:
                self._fh.close()
        except OSError:
            pass  # its buffer could not be flushed either: the truncation below removes what got out
        if size is not None:
            try:
                os.truncate(self.path, size)
            except OSError:
                pass
        self._fh = None  # opened again by the next emit (which may find the disk still full)

    def _rotate(self) -> None:
        assert self._fh is not None  # only emit calls this, after opening the file
        self._fh.close()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.path.rename(self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}"))
        self._fh = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


# SET NX marks (event_id, revision) as delivered and XADD appends, in one atomic step: a retry after
# a lost reply (the spool redelivers anything not acknowledged) cannot add the entry twice.
_XADD_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], ARGV[3], '*', unpack(ARGV, 4))
end
return false
"""


class RedisStreamSink:
    """XADD to a Redis Stream, trimmed to `maxlen` entries so the case queue stays bounded.

    Each entry carries the event id and revision as top-level fields, so consumers (XREADGROUP)
    can deduplicate without parsing the payload; the sink itself adds an (event_id, revision) at
    most once within `dedupe_ttl_s`, so redeliveries after an outage or a crash are absorbed.
    """

    def __init__(
        self,
        url: str,
        stream: str = DEFAULT_STREAM,
        maxlen: int = 100_000,
        approximate: bool = True,
        timeout_s: float = 5.0,
        dedupe_ttl_s: int = 7 * 86400,
    ):
        self.name = f"redis:{stream}"
        self.stream = stream
        self.maxlen = maxlen
        self.approximate = approximate
        self.dedupe_ttl_s = dedupe_ttl_s
        remember(url)
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._xadd_once = self.client.register_script(_XADD_ONCE)

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
        args = [self.dedupe_ttl_s, "~" if self.approximate else "=", self.maxlen]
        for k, v in fields.items():
            args += [k, v]
        try:
            self._xadd_once(
                keys=[self.stream, f"{self.stream}:delivered:{event['event_id']}:{event['revision']}"], args=args
            )
        except redis.RedisError as exc:
            raise SinkError(f"{self.name}: XADD failed ({exc})") from None

    def close(self) -> None:
        self.client.close()
