"""``threshold``: small when good examples were found, with the bar lowered under load."""

from __future__ import annotations

from dataclasses import dataclass

from iccache_sidecar.core.domain import RequestFeatures, Route, RouteChoice
from iccache_sidecar.routing.base import RoutingContext, load_relief


@dataclass
class ThresholdPolicy:
    similarity_threshold: float
    high_load: float
    relief: float
    name: str = "threshold"

    async def decide(self, ctx: RoutingContext) -> RouteChoice:
        f = ctx.features
        bar = self.similarity_threshold - load_relief(ctx.load, self.high_load, self.relief)
        if f.n_examples and f.mean_similarity >= bar:
            return RouteChoice(
                Route.SMALL,
                self.name,
                f"examples similar enough ({f.mean_similarity:.2f}>={bar:.2f})",
            )
        return RouteChoice(Route.LARGE, self.name, f"no examples above {bar:.2f}")

    async def learn(
        self, features: RequestFeatures, route: Route, reward: float, tenant: str = ""
    ) -> None:
        return None

    async def refresh(self) -> None:
        return None

    def learned(self) -> dict[Route, int]:
        return {}
