"""What of a URL may leave the process: one rule for camera, Redis and webhook URLs alike.

雪亮 cameras are public-security cameras: their credentials must never appear in a log line, an
error, a probe, a metric, a console page or an event. Two layers, because a URL leaks both as we
hold it and as third parties print it (FFmpeg puts the URL it failed to open in its error text;
httpx logs every request's URL with its query):

- `redact_url(url)`: the URL with its password and every query value replaced by `***`;
- `redact(text)`: any text with every secret this process knows (`remember(url)`: the password as
  written, %-decoded and %-encoded, each query value) and every URL-with-credentials in it redacted.

`RedactingFilter` applies `redact` to every log record a handler emits, whichever library made it.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from urllib.parse import parse_qsl, quote, unquote

MASK = "***"
# host[:port] after the userinfo's '@': the last '@' followed by a host is the real separator, so a
# password written with a raw '@' (admin:Pw@ss@10.0.0.5) is still cut at the right place.
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s/?#@:\[\]]+)(:\d{1,5})?(?=[/?#]|$)")  # nvr_gate1, 摄像头.local
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_SHORTEST = 3  # shorter "secrets" (a query value "1") are left alone: masking them garbles text


def _split(url: str) -> tuple[str, str, str, str] | None:
    """(scheme, userinfo, host and the rest, query) of a URL, or None if it is not one."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    userinfo = ""
    for at in [i for i, c in enumerate(rest) if c == "@"][::-1]:
        if _HOST.match(rest[at + 1 :]):
            userinfo, rest = rest[:at], rest[at + 1 :]
            break
    query = rest.split("?", 1)[1].split("#", 1)[0] if "?" in rest else ""
    return scheme, userinfo, rest, query


def redact_url(url: str) -> str:
    """The URL without its password and query values, for logs, pages and events."""
    parts = _split(url)
    if parts is None:
        return url
    scheme, userinfo, rest, query = parts
    if query:
        masked = "&".join(
            f"{k}={MASK}" if "=" in pair else pair for pair in query.split("&") for k in [pair.split("=", 1)[0]]
        )
        rest = rest.replace("?" + query, "?" + masked, 1)
    if userinfo:
        user, has_password, _ = userinfo.partition(":")
        userinfo = f"{user}:{MASK}@" if has_password else f"{user}@"
    return f"{scheme}://{userinfo}{rest}"


class _Secrets:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._pattern: re.Pattern | None = None

    def remember(self, url: str | None) -> None:
        """Note the secrets in a URL this process holds (a camera's, the Redis sink's, a webhook's)."""
        parts = _split(url or "")
        if parts is None:
            return
        _, userinfo, _, query = parts
        found = set()
        if ":" in userinfo:
            password = userinfo.split(":", 1)[1]
            found |= {password, unquote(password), quote(unquote(password), safe="")}
        for _, value in parse_qsl(query, keep_blank_values=False):
            found |= {value, quote(value, safe="")}
        found = {s for s in found if len(s) >= _SHORTEST}
        with self._lock:
            if found - self._known:
                self._known |= found
                # Longest first, so a secret that contains another is masked whole.
                # Whole tokens only: a password "123456" must not eat the digits of 1234567.0.
                self._pattern = re.compile(
                    r"(?<![A-Za-z0-9.])(?:"
                    + "|".join(re.escape(s) for s in sorted(self._known, key=len, reverse=True))
                    + r")(?![A-Za-z0-9.])"
                )

    def redact(self, text: str) -> str:
        if not text:
            return text
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None else text


SECRETS = _Secrets()
remember = SECRETS.remember
redact = SECRETS.redact


class RedactingFilter(logging.Filter):
    """Redacts a record's message and traceback before any formatter sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a third party's bad format string: keep what it meant to say
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), ()
        if record.exc_info:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
            record.exc_info = None
        return True
