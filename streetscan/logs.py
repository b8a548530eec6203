"""Logging setup: human-readable lines, or one JSON object per line for log shippers.

Records about a camera carry `extra={"camera": id}`; the JSON form puts it in its own field so
a fleet's logs can be filtered by camera.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from .secrets import RedactingFilter


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        camera = getattr(record, "camera", None)
        if camera is not None:
            out["camera"] = camera
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def configure(level: int, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    # Every record, ours or a library's (FFmpeg errors quote camera URLs, httpx logs webhook URLs
    # with their query), is redacted before it is formatted.
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
