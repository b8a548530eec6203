"""The daemon's HTTP endpoints: /metrics (Prometheus text), /healthz and /readyz (JSON that says why)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from .metrics import Metrics


class MetricsServer:
    """/metrics (Prometheus text), /healthz (the process's loops are alive), /readyz (it is doing
    its job); the probes answer 200 or 503 with a JSON body that says why."""

    def __init__(self, metrics: Metrics, host: str, port: int, *,
                 health: Callable[[], tuple[bool, dict]], ready: Callable[[], tuple[bool, dict]]):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, detail = (outer.health if path == "/healthz" else outer.ready)()
                    self._send(200 if ok else 503, json.dumps({"ok": ok, **detail}).encode(), "application/json")
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # scrapes every 15 s would drown the log
                pass

        self.health, self.ready = health, ready
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
