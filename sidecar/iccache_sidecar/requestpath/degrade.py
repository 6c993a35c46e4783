"""Degraded serving: what was down is recorded in one place, and a failed Redis is
skipped for a while instead of being asked (and waited for) on every request."""

from __future__ import annotations

import logging
import time

from iccache_sidecar.core.domain import Decision
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.ports import ExampleIndex

log = logging.getLogger(__name__)

DEPENDENCIES = ("redis", "embedder")  # what a request can be served without


def mark_degraded(decision: Decision, metrics: Metrics, what: str) -> None:
    """Note once per request that ``what`` ("redis", "embedder") was not used."""
    if what not in decision.degraded:
        decision.degraded.append(what)
        metrics.degraded.labels(what).inc()


class CacheGate:
    """The example index while it works; nothing for ``retry_after`` seconds after it
    failed."""

    def __init__(self, index: ExampleIndex | None, retry_after: float, metrics: Metrics) -> None:
        self._index = index
        self._retry_after = retry_after
        self._metrics = metrics
        self._down_until = 0.0

    @property
    def index(self) -> ExampleIndex | None:
        """The index whatever its health (after-response work tries it anyway)."""
        return self._index

    def usable(self, decision: Decision) -> ExampleIndex | None:
        if self._index is not None and time.monotonic() >= self._down_until:
            return self._index
        mark_degraded(decision, self._metrics, "redis")
        return None

    def failed(self, decision: Decision, exc: Exception) -> None:
        log.warning("redis failed, serving without the cache: %s", exc)
        self._down_until = time.monotonic() + self._retry_after
        mark_degraded(decision, self._metrics, "redis")
