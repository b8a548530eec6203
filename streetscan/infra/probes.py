"""The daemon's HTTP endpoints: /metrics (Prometheus text), /healthz and /readyz (JSON that says why),
and, when the daemon has the case platform's shared secret, POST /verify and GET /verify/<request>
(verification on request, signed like the webhook's requests)."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from ..secrets import redact
from .metrics import Metrics

log = logging.getLogger(__name__)


READ_TIMEOUT_S = 5.0  # a whole request must arrive within this
MAX_WORKERS = 16  # requests answered at once; more are turned away with 503 at once


class _BoundedServer(ThreadingHTTPServer):
    """A thread per request, but at most MAX_WORKERS of them: 300 stalled clients must not hold
    300 threads (each is also dropped after READ_TIMEOUT_S)."""

    daemon_threads = True

    def __init__(self, *args, **kwargs):
        self._slots = threading.BoundedSemaphore(MAX_WORKERS)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address):
        # A client that went away, or one the deadline cut off, is not an error worth a traceback
        # (socketserver would print one to stderr, which is the daemon's log).
        if isinstance(sys.exc_info()[1], OSError):
            return
        log.exception("probe request from %s failed", client_address[0])

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetricsServer:
    """/metrics (Prometheus text), /healthz (the process's loops are alive), /readyz (it is doing
    its job); the probes answer 200 or 503 with a JSON body that says why."""

    def __init__(
        self,
        metrics: Metrics,
        host: str,
        port: int,
        *,
        health: Callable[[], tuple[bool, dict]],
        ready: Callable[[], tuple[bool, dict]],
        verification: Callable[[str, str, Any, bytes], tuple[int, dict]] | None = None,
    ):
        """`verification(method, path, headers, body)`: the /verify endpoint's answer (code, JSON)."""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, detail = (outer.health if path == "/healthz" else outer.ready)()
                    self._send(200 if ok else 503, json.dumps({"ok": ok, **detail}).encode(), "application/json")
                elif path.startswith("/verify"):
                    self._verify("GET", path, b"")
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

            timeout = READ_TIMEOUT_S  # a client that stalls mid-request is dropped, not waited for

            def setup(self):
                super().setup()
                # `timeout` bounds each read; a client that sends a header line every few seconds
                # would still hold its slot for ever. The whole exchange gets READ_TIMEOUT_S.
                self._deadline = threading.Timer(READ_TIMEOUT_S, self._expire)
                self._deadline.daemon = True
                self._deadline.start()

            def _expire(self):
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def finish(self):
                self._deadline.cancel()
                try:
                    super().finish()
                except OSError:
                    pass  # the deadline closed it

            def do_POST(self):  # noqa: N802
                path = self.path.split("?", 1)[0]
                declared = (self.headers.get("Content-Length") or "0").strip()
                if not declared.isdigit():
                    self._send(400, b'{"error": "Content-Length must be a number of bytes"}', "application/json")
                    return
                length = int(declared)
                if length > 64 * 1024:
                    self._send(413, b'{"error": "request too large"}', "application/json")
                    return
                body = self.rfile.read(length)
                if path == "/verify":
                    self._verify("POST", path, body)
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _verify(self, method: str, path: str, body: bytes) -> None:
                if verification is None:
                    self._send(
                        404,
                        b'{"error": "verification over HTTP needs the webhook secret '
                        b'(--webhook-secret-file or $STREETSCAN_WEBHOOK_SECRET)"}',
                        "application/json",
                    )
                    return
                code, doc = verification(method, path, self.headers, body)
                self._send(code, json.dumps(doc, ensure_ascii=False).encode(), "application/json")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                if ctype == "application/json":  # reasons quote what libraries said: no secret, ever
                    body = redact(body.decode("utf-8", "replace")).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # scrapes every 15 s would drown the log
                pass

        self.health, self.ready = health, ready
        self.server = _BoundedServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
