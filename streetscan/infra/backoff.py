"""Retry delays for whatever reconnects: cameras (readers) and sinks (emitter)."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with +-jitter, capped; `reset()` after a connection that worked."""

    def __init__(self, initial_s: float, max_s: float, jitter: float = 0.2, rng: random.Random | None = None):
        self.initial_s, self.max_s, self.jitter = initial_s, max_s, jitter
        self._rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self) -> float:
        base = min(self.max_s, self.initial_s * (2**self.attempt))
        self.attempt += 1
        return max(0.0, min(self.max_s, base * (1 + self._rng.uniform(-self.jitter, self.jitter))))

    def reset(self) -> None:
        self.attempt = 0
