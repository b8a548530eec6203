"""The console served from inside another process (the daemon): uvicorn on its own thread.

The socket is bound when the server is built, so a port already in use fails the daemon's start
with a clear error before any camera is dialled, like the metrics port.
"""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class ConsoleServer:
    def __init__(self, app: FastAPI, host: str, port: int, options: dict | None = None):
        """`options`: uvicorn's, from ConsoleSettings.server_options (which forwarded headers to believe)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise OSError(f"console port {host}:{port}: {exc.strerror or exc}") from None
        self._sock.listen(128)
        self.host = host
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, access_log=False, **(options or {"log_level": "warning"})))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="console", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("console on http://%s:%d/", self.host, self.port)

    @property
    def started(self) -> bool:
        return self._server.started

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()
