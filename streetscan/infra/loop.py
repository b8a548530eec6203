"""The shape every daemon worker shares: one thread that owns one loop and stops on request."""

from __future__ import annotations

import threading
import time


class Worker:
    """Subclasses implement `_run()`, checking `self._stop` (and calling `beat()` so /healthz can
    tell a busy loop from a dead one)."""

    def __init__(self, name: str):
        self._stop = threading.Event()
        self.heartbeat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread.ident is None:
            return True  # never started (a startup that failed before it, a pool driven by hand)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
