"""Where cases go, named by URL: one registry for `streetscan run`, `replay`, `dead-letters resend`
and the `outputs:` section of streams.yaml.

    jsonl:[PATH]                    JSON lines; PATH relative to the output folder (default events.jsonl)
    redis://[:PASSWORD@]HOST[:PORT][/DB][?stream=KEY]   a Redis Stream (rediss:// with TLS)
    https://HOST/PATH               a webhook, HMAC-signed with the shared secret (or http://)

Each scheme maps to a function that opens its sink; a new kind of output is one opener here and
its scheme in config.OUTPUT_SCHEMES (what streams.yaml accepts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import ValidationError

from ..pipeline.config import DEFAULT_STREAM, OUTPUT_SCHEMES, OutputConfig, output_scheme
from .sinks import CaseSink, JsonlSink, RedisStreamSink
from .webhook import WebhookConfigError, WebhookSink, load_secret

DEFAULT_JSONL = "events.jsonl"


class OutputError(ValueError):
    """An output URL or its settings cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Opened:
    """What an opener is given besides the output's settings."""

    out_dir: Path


def _jsonl(spec: OutputConfig, ctx: Opened) -> CaseSink:
    rel = spec.url.split(":", 1)[1] or DEFAULT_JSONL
    path = Path(rel) if Path(rel).is_absolute() else ctx.out_dir / rel
    return JsonlSink(path, max_bytes=int(spec.max_mb * 2**20) if spec.max_mb > 0 else None)


def _redis(spec: OutputConfig, ctx: Opened) -> CaseSink:
    parts = urlsplit(spec.url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    stream = next((v for k, v in reversed(query) if k == "stream"), DEFAULT_STREAM)
    # The rest of the query is redis-py's own (ssl_cert_reqs=..., socket_timeout=...).
    rest = urlencode([(k, v) for k, v in query if k != "stream"])
    return RedisStreamSink(urlunsplit(parts._replace(query=rest)), stream=stream)


def redis_output(url: str, stream: str) -> str:
    """A Redis URL with its stream as an output URL (what --redis URL --redis-stream KEY mean)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "stream"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("stream", stream)])))


def _webhook(spec: OutputConfig, ctx: Opened) -> CaseSink:
    try:
        return WebhookSink(spec.url, load_secret(spec.secret_file), timeout_s=spec.timeout_s, ca_file=spec.ca_file)
    except WebhookConfigError as exc:
        raise OutputError(str(exc)) from None


OPENERS: dict[str, Callable[[OutputConfig, Opened], CaseSink]] = {
    "jsonl": _jsonl,
    "redis": _redis,
    "rediss": _redis,
    "http": _webhook,
    "https": _webhook,
}
assert set(OPENERS) == set(OUTPUT_SCHEMES), "every scheme streams.yaml accepts needs an opener here"


def open_output(spec: OutputConfig | str, out_dir: Path) -> CaseSink:
    """The sink for one output (each sink notes the secrets in its URL: secrets.remember)."""
    if not isinstance(spec, OutputConfig):
        try:
            spec = OutputConfig(url=spec)
        except ValidationError as exc:
            raise OutputError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    return OPENERS[output_scheme(spec.url)](spec, Opened(out_dir))


def open_outputs(specs: list[OutputConfig], out_dir: Path) -> list[CaseSink]:
    """Each output's sink, in order; two outputs that would be one sink (the same name, so one
    cursor in the spool) are an error."""
    sinks: list[CaseSink] = []
    try:
        for spec in specs:
            sink = open_output(spec, out_dir)
            if any(s.name == sink.name for s in sinks):
                raise OutputError(f"output {sink.name} is named twice")
            sinks.append(sink)
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return sinks
