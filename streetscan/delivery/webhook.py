"""The webhook sink: each event POSTed as JSON to a case platform's URL, signed.

Contract (README "Webhook delivery"):
- body: the event, schema v1 JSON, UTF-8;
- `Idempotency-Key: <event_id>:<revision>`: the same key is the same event revision; a receiver
  that has seen it answers 2xx again and does nothing;
- `X-StreetScan-Timestamp: <unix seconds>` and
  `X-StreetScan-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the shared secret>`:
  the receiver recomputes it and refuses an old timestamp (a replayed request);
- 2xx: delivered. 5xx, 408, 429, timeouts and connection errors: retried with backoff, in order,
  while later events wait in the spool. Any other status: refused for good, kept as a dead letter
  (`streetscan dead-letters`), and delivery goes on with the next event.

TLS certificates are verified (against the system's CAs, or a given CA file). The secret is read
from a file or the environment and never appears in logs, errors or the sink's name.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import ssl
import time
from pathlib import Path
from typing import Any

import httpx

from .. import __version__
from ..secrets import redact_url, remember
from .sinks import EventRejected, SinkError

SECRET_ENV = "STREETSCAN_WEBHOOK_SECRET"
MIN_SECRET_BYTES = 16
RETRIED_STATUSES = frozenset({408, 429})
SIGNATURE_HEADER = "X-StreetScan-Signature"
TIMESTAMP_HEADER = "X-StreetScan-Timestamp"
KEY_HEADER = "Idempotency-Key"


class WebhookConfigError(ValueError):
    pass


def load_secret(path: Path | None) -> bytes:
    """The shared secret: from `path`, else $STREETSCAN_WEBHOOK_SECRET. A webhook without one is
    refused: an unsigned case feed could be forged by anyone who can reach the receiver."""
    if path is not None:
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise WebhookConfigError(f"webhook secret file {path}: {exc.strerror or exc}") from None
        where = str(path)
    else:
        secret = os.environ.get(SECRET_ENV, "").encode()
        where = f"${SECRET_ENV}"
    if not secret:
        raise WebhookConfigError(f"a webhook needs a shared secret: --webhook-secret-file FILE or ${SECRET_ENV}")
    if len(secret) < MIN_SECRET_BYTES:
        raise WebhookConfigError(
            f"the webhook secret from {where} is {len(secret)} bytes; use at least "
            f"{MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)"
        )
    return secret


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_ok(secret: bytes, headers: Any, body: bytes, max_age_s: float = 300.0, now: float | None = None) -> bool:
    """The receiver's check (what the README shows): right signature, recent timestamp."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    try:
        age = (time.time() if now is None else now) - int(timestamp)
    except ValueError:
        return False
    return abs(age) <= max_age_s and hmac.compare_digest(
        sign(secret, timestamp, body), headers.get(SIGNATURE_HEADER, "")
    )


class WebhookSink:
    def __init__(
        self, url: str, secret: bytes, *, timeout_s: float = 10.0, ca_file: Path | None = None, name: str | None = None
    ):
        if not url.lower().startswith(("https://", "http://")):
            raise WebhookConfigError(f"webhook URL must be http(s)://, got {redact_url(url)!r}")
        self.url = url
        remember(url)  # its query token must not reach a log line (httpx logs every request's URL)
        self.name = name or f"webhook:{redact_url(url).split('?', 1)[0]}"  # no query: tokens live there
        self._secret = secret
        verify_tls: bool | ssl.SSLContext = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self.client = httpx.Client(
            timeout=timeout_s,
            verify=verify_tls,
            follow_redirects=False,
            headers={"User-Agent": f"StreetScan/{__version__}"},
        )

    def __repr__(self) -> str:  # never the secret
        return f"WebhookSink({self.name})"

    def emit(self, event: dict[str, Any]) -> None:
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            KEY_HEADER: f"{event['event_id']}:{event['revision']}",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise SinkError(f"{self.name}: no answer within {self.client.timeout.read}s") from None
        except httpx.HTTPError as exc:
            raise SinkError(f"{self.name}: {type(exc).__name__}: {redact_url(str(exc))}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = f"{self.name}: HTTP {status} for {headers[KEY_HEADER]}"
        if status >= 500 or status in RETRIED_STATUSES:
            raise SinkError(detail)
        raise EventRejected(f"{detail}: {response.text[:200]!r}")

    def close(self) -> None:
        self.client.close()
