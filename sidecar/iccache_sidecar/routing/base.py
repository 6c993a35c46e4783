"""The one interface every routing policy implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from iccache_sidecar.core.domain import LoadSnapshot, RequestFeatures, Route, RouteChoice


@dataclass(frozen=True)
class RoutingContext:
    features: RequestFeatures
    load: LoadSnapshot
    bar_offset: float = 0.0  # from the quality budget: raises (or lowers) the quality bar
    tenant: str = ""  # whose request: policies that learn per tenant read it


class RoutingPolicy(Protocol):
    @property
    def name(self) -> str: ...

    async def decide(self, ctx: RoutingContext) -> RouteChoice:
        """Choose a route from plain snapshots; no I/O on this path."""
        ...

    async def learn(
        self, features: RequestFeatures, route: Route, reward: float, tenant: str = ""
    ) -> None:
        """Take an observed quality in [0, 1] for a request of ``tenant`` served by
        ``route``."""
        ...

    async def refresh(self) -> None:
        """Reload shared state (what other replicas learned); called periodically."""
        ...

    def learned(self) -> dict[Route, int]:
        """Outcomes learned from, by arm (empty for a policy that does not learn)."""
        ...


def load_relief(load: LoadSnapshot, high_load: float, relief: float) -> float:
    """How much to lower the small model's quality bar because the large one is busy.

    0 below ``high_load``; grows linearly to ``relief`` at full utilisation; the full
    ``relief`` when the large backend is unhealthy. Negative (raise the bar) when the
    small backend is the saturated one.
    """

    def pressure(u: float) -> float:
        if u <= high_load:
            return 0.0
        return min(1.0, (u - high_load) / max(1e-9, 1.0 - high_load))

    large = 1.0 if not load.large.healthy else pressure(load.large.utilisation)
    small = 1.0 if not load.small.healthy else pressure(load.small.utilisation)
    return relief * (large - small)
