"""``always-small`` and ``always-large``: baselines and manual overrides."""

from __future__ import annotations

from dataclasses import dataclass

from iccache_sidecar.core.domain import RequestFeatures, Route, RouteChoice
from iccache_sidecar.routing.base import RoutingContext


@dataclass
class FixedPolicy:
    route: Route

    @property
    def name(self) -> str:
        return f"always-{self.route.value}"

    async def decide(self, ctx: RoutingContext) -> RouteChoice:
        return RouteChoice(self.route, self.name, "fixed by policy")

    async def learn(
        self, features: RequestFeatures, route: Route, reward: float, tenant: str = ""
    ) -> None:
        return None

    async def refresh(self) -> None:
        return None

    def learned(self) -> dict[Route, int]:
        return {}
