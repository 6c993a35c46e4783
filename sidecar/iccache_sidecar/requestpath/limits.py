"""The router's own limit on requests in hand, and the peak it reports as load."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from iccache_sidecar.core.errors import Overloaded
from iccache_sidecar.metrics import Metrics


class InFlight:
    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.active = 0
        self._peak = 0
        self._metrics = metrics
        self._by_tenant: dict[str, int] = {}

    @contextlib.contextmanager
    def slot(self, tenant: str = "", tenant_limit: int | None = None) -> Iterator[None]:
        """Hold one of ``limit`` places for a request, and one of its tenant's
        ``tenant_limit``; Overloaded (429) when none is free."""
        if self.active >= self.limit:
            self._metrics.rejected.inc()
            raise Overloaded(
                f"the router is handling {self.active} requests, its limit; retry shortly"
            )
        held = self._by_tenant.get(tenant, 0)
        if tenant_limit is not None and held >= tenant_limit:
            self._metrics.rejected.inc()
            raise Overloaded(
                f"tenant {tenant!r} has {held} requests in hand on this router, its "
                "concurrent_requests limit; retry shortly"
            )
        self.active += 1
        self._by_tenant[tenant] = held + 1
        self._peak = max(self._peak, self.active)
        try:
            yield
        finally:
            self.active -= 1
            left = self._by_tenant[tenant] - 1
            if left:
                self._by_tenant[tenant] = left
            else:
                del self._by_tenant[tenant]

    def take_peak(self) -> int:
        """The most requests in hand since the last call."""
        peak, self._peak = self._peak, self.active
        return peak
