"""``bandit`` (default): an epsilon-greedy contextual bandit, as in the IC-Cache paper.

It predicts the small model's quality for a request from the request/example features
with a ridge regression (a prior plus every observed outcome), and routes to the small
model when the prediction clears a bar. The bar is the configured quality target,
lowered when the large model is saturated and raised when the small one is, so load
shifts traffic. With probability epsilon a request the greedy rule sends to the large
model goes to the small one instead, which is how the model keeps learning where the
small model is good enough (outcomes of large-model answers say nothing about that).

The regression's sufficient statistics (A = lambda*I + sum x x^T, b = lambda*theta0 +
sum r x) are sums, so replicas share them through a store by adding deltas.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from iccache_sidecar.domain import FEATURE_NAMES, RequestFeatures, Route, RouteChoice
from iccache_sidecar.routing.base import RoutingContext, load_relief

Matrix = npt.NDArray[np.float64]

# Prior belief about the small model's quality, per feature (see FEATURE_NAMES): weak
# alone, good with similar, valued examples. Outcomes soon outweigh it.
PRIOR_THETA = (0.25, 0.6, 0.2, 0.0, 0.0)
PRIOR_STRENGTH = 5.0


class BanditStateStore(Protocol):
    """Shared, additive storage of the regression statistics."""

    async def load(self) -> tuple[Matrix, Matrix, int] | None: ...

    async def add(self, d_a: Matrix, d_b: Matrix) -> None: ...


@dataclass
class BanditPolicy:
    quality_target: float
    exploration_rate: float
    high_load: float
    relief: float
    store: BanditStateStore | None = None
    rng: random.Random = field(default_factory=random.Random)
    name: str = "bandit"

    def __post_init__(self) -> None:
        d = len(FEATURE_NAMES)
        self._prior_a = PRIOR_STRENGTH * np.eye(d)
        self._prior_b = PRIOR_STRENGTH * np.array(PRIOR_THETA, dtype=np.float64)
        self._obs_a = np.zeros((d, d))
        self._obs_b = np.zeros(d)
        self.observations = 0
        self._theta = np.array(PRIOR_THETA, dtype=np.float64)

    @property
    def theta(self) -> Matrix:
        return self._theta

    def predict(self, features: RequestFeatures) -> float:
        x = np.array(features.vector())
        return float(np.clip(self._theta @ x, 0.0, 1.0))

    async def decide(self, ctx: RoutingContext) -> RouteChoice:
        predicted = self.predict(ctx.features)
        bar = self.quality_target - load_relief(ctx.load, self.high_load, self.relief)
        if predicted >= bar:
            return RouteChoice(
                Route.SMALL, self.name, f"predicted quality {predicted:.2f} >= {bar:.2f}",
                predicted_quality=predicted,
            )  # fmt: skip
        if ctx.load.small.healthy and self.rng.random() < self.exploration_rate:
            return RouteChoice(
                Route.SMALL, self.name, f"exploring (predicted {predicted:.2f} < {bar:.2f})",
                explored=True, predicted_quality=predicted,
            )  # fmt: skip
        return RouteChoice(
            Route.LARGE, self.name, f"predicted quality {predicted:.2f} < {bar:.2f}",
            predicted_quality=predicted,
        )  # fmt: skip

    async def learn(self, features: RequestFeatures, route: Route, reward: float) -> None:
        if route is not Route.SMALL:
            return
        x = np.array(features.vector())
        d_a = np.outer(x, x)
        d_b = float(np.clip(reward, 0.0, 1.0)) * x
        self._absorb(d_a, d_b, 1)
        if self.store is not None:
            await self.store.add(d_a, d_b)

    async def refresh(self) -> None:
        """Replace the local statistics with the shared ones (all replicas' outcomes)."""
        if self.store is None:
            return
        loaded = await self.store.load()
        if loaded is None:
            return
        self._obs_a, self._obs_b, self.observations = loaded
        self._solve()

    def _absorb(self, d_a: Matrix, d_b: Matrix, n: int) -> None:
        self._obs_a = self._obs_a + d_a
        self._obs_b = self._obs_b + d_b
        self.observations += n
        self._solve()

    def _solve(self) -> None:
        theta = np.linalg.solve(self._prior_a + self._obs_a, self._prior_b + self._obs_b)
        self._theta = theta.astype(np.float64)
