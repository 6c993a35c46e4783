"""Per-backend load: requests in flight, latency (EWMA) and health."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from iccache_sidecar.core.domain import BackendLoad


class LoadTracker:
    def __init__(self, capacity: int, alpha: float = 0.2, unhealthy_seconds: float = 5.0) -> None:
        self.capacity = capacity
        self.in_flight = 0
        self.latency_ewma = 0.0
        self.requests = 0
        self._alpha = alpha
        self._unhealthy_seconds = unhealthy_seconds
        self._down_until = 0.0

    @property
    def healthy(self) -> bool:
        return time.monotonic() >= self._down_until

    def mark_down(self) -> None:
        """The backend failed to answer: prefer the other one for a while."""
        self._down_until = time.monotonic() + self._unhealthy_seconds

    def mark_up(self) -> None:
        self._down_until = 0.0

    @contextmanager
    def track(self) -> Iterator[None]:
        self.in_flight += 1
        self.requests += 1
        start = time.monotonic()
        try:
            yield
        finally:
            self.in_flight -= 1
            took = time.monotonic() - start
            self.latency_ewma = (
                took
                if self.latency_ewma == 0
                else (1 - self._alpha) * self.latency_ewma + self._alpha * took
            )

    def snapshot(self) -> BackendLoad:
        return BackendLoad(self.in_flight, self.capacity, self.latency_ewma, self.healthy)
