"""``bandit`` (default): an epsilon-greedy contextual bandit, as in the IC-Cache paper.

One ridge regression per model (arm) predicts the quality that model will deliver for a
request from the request/example features; each learns from the feedback on the answers
its model gave. A request goes to the small model when its predicted quality clears a
bar: the configured quality target, or, when lower, the large model's predicted quality
for the same request less a tolerance (the small model need not beat what the large one
delivers: when the large model is right a tenth of the time, demanding 70% would never
offload; the tolerance is the quality an operator gives up for the lower cost).
The bar drops when the large model is saturated and rises when the small one is, so load
shifts traffic. With probability epsilon a request the greedy rule sends to the large
model goes to the small one instead, which is how the small model's regression keeps
learning where it is good enough.

A regression's sufficient statistics (A = lambda*I + sum x x^T, b = lambda*theta0 +
sum r x) are sums, so replicas share them through a store by adding deltas.

Each tenant routes by regressions of its own, learned from its own outcomes only, whose
prior is the pool's current estimate (so a new tenant starts from what all have
learned, not from nothing). The pool learns from each tenant's first
``POOL_OUTCOMES`` outcomes per arm only, and weighs in a tenant's regression like
``PRIOR_STRENGTH`` outcomes: however much one tenant sends, its say in another
tenant's routing is bounded, and that tenant's own outcomes soon outweigh it.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from iccache_sidecar.core.domain import FEATURE_NAMES, RequestFeatures, Route, RouteChoice
from iccache_sidecar.routing.base import RoutingContext, load_relief

Matrix = npt.NDArray[np.float64]

# Prior belief about the small model's quality, per feature (see FEATURE_NAMES): weak
# alone, good with similar, valued examples. Outcomes soon outweigh it. The large
# model's prior is the quality target plus the tolerance, so until feedback on large
# answers arrives the bar is the target.
PRIOR_THETA = (0.25, 0.6, 0.2, 0.0, 0.0)
PRIOR_STRENGTH = 5.0
MAX_TENANTS = 1000  # tenants whose own regressions a router keeps (least recent go)
POOL_OUTCOMES = 100  # outcomes per tenant and arm the pool learns from


class BanditStateStore(Protocol):
    """Shared, additive storage of each arm's regression statistics."""

    async def load(self, arm: Route, tenant: str = "") -> tuple[Matrix, Matrix, int] | None: ...

    async def add(self, arm: Route, d_a: Matrix, d_b: Matrix, tenant: str = "") -> None: ...


class _Ridge:
    """One arm's quality regression: a prior plus every observed outcome."""

    def __init__(self, prior_theta: Matrix) -> None:
        d = len(prior_theta)
        self._prior_a = PRIOR_STRENGTH * np.eye(d)
        self._prior_b = PRIOR_STRENGTH * prior_theta
        self._obs_a = np.zeros((d, d))
        self._obs_b = np.zeros(d)
        self.observations = 0
        self.theta = prior_theta.copy()

    def predict(self, x: Matrix) -> float:
        return float(np.clip(self.theta @ x, 0.0, 1.0))

    def absorb(self, d_a: Matrix, d_b: Matrix) -> None:
        self.replace(self._obs_a + d_a, self._obs_b + d_b, self.observations + 1)

    def set_prior(self, prior_theta: Matrix) -> None:
        self._prior_b = PRIOR_STRENGTH * prior_theta
        self.replace(self._obs_a, self._obs_b, self.observations)

    def replace(self, a: Matrix, b: Matrix, n: int) -> None:
        self._obs_a, self._obs_b, self.observations = a, b, n
        theta = np.linalg.solve(self._prior_a + a, self._prior_b + b)
        self.theta = theta.astype(np.float64)


@dataclass
class BanditPolicy:
    quality_target: float
    exploration_rate: float
    high_load: float
    relief: float
    quality_tolerance: float = 0.0
    store: BanditStateStore | None = None
    rng: random.Random = field(default_factory=random.Random)
    name: str = "bandit"

    def __post_init__(self) -> None:
        large_prior = np.zeros(len(FEATURE_NAMES))
        large_prior[0] = self.quality_target + self.quality_tolerance
        self._arms = {  # the pool
            Route.SMALL: _Ridge(np.array(PRIOR_THETA, dtype=np.float64)),
            Route.LARGE: _Ridge(large_prior),
        }
        self._tenants: OrderedDict[str, dict[Route, _Ridge]] = OrderedDict()

    @property
    def theta(self) -> Matrix:
        """The small model's regression weights."""
        return self._arms[Route.SMALL].theta

    @property
    def observations(self) -> int:
        """Outcomes of small-model answers learned from."""
        return self._arms[Route.SMALL].observations

    @property
    def large_observations(self) -> int:
        return self._arms[Route.LARGE].observations

    def observations_of(self, tenant: str) -> int:
        """Outcomes of the tenant's own small-model answers learned from."""
        own = self._tenants.get(tenant)
        return own[Route.SMALL].observations if own is not None else 0

    def _own(self, tenant: str) -> dict[Route, _Ridge] | None:
        """The tenant's regressions (made from the pool's estimate when new)."""
        if not tenant:
            return None
        own = self._tenants.get(tenant)
        if own is None:
            own = {arm: _Ridge(pool.theta.copy()) for arm, pool in self._arms.items()}
            self._tenants[tenant] = own
            while len(self._tenants) > MAX_TENANTS:
                self._tenants.popitem(last=False)
        else:
            self._tenants.move_to_end(tenant)
        return own

    def predict(
        self, features: RequestFeatures, arm: Route = Route.SMALL, tenant: str = ""
    ) -> float:
        arms = self._own(tenant) or self._arms
        return arms[arm].predict(np.array(features.vector()))

    async def decide(self, ctx: RoutingContext) -> RouteChoice:
        predicted = self.predict(ctx.features, Route.SMALL, ctx.tenant)
        large = self.predict(ctx.features, Route.LARGE, ctx.tenant) - self.quality_tolerance
        target = min(self.quality_target, large)
        base = target - load_relief(ctx.load, self.high_load, self.relief)
        bar, margin = base + ctx.bar_offset, predicted - base
        if predicted >= bar:
            return RouteChoice(
                Route.SMALL,
                self.name,
                f"predicted quality {predicted:.2f} >= {bar:.2f}",
                predicted_quality=predicted,
                margin=margin,
            )
        if ctx.load.small.healthy and self.rng.random() < self.exploration_rate:
            return RouteChoice(
                Route.SMALL,
                self.name,
                f"exploring (predicted {predicted:.2f} < {bar:.2f})",
                explored=True,
                predicted_quality=predicted,
                margin=margin,
            )
        return RouteChoice(
            Route.LARGE,
            self.name,
            f"predicted quality {predicted:.2f} < {bar:.2f}",
            predicted_quality=predicted,
            margin=margin,
        )

    async def learn(
        self, features: RequestFeatures, route: Route, reward: float, tenant: str = ""
    ) -> None:
        """The tenant's own regression learns the outcome; the pool too, while the
        tenant has given it fewer than ``POOL_OUTCOMES`` (see the module's notes)."""
        x = np.array(features.vector())
        d_a = np.outer(x, x)
        d_b = float(np.clip(reward, 0.0, 1.0)) * x
        own = self._own(tenant)
        if own is not None:
            own[route].absorb(d_a, d_b)
            if self.store is not None:
                await self.store.add(route, d_a, d_b, tenant)
        if own is None or own[route].observations <= POOL_OUTCOMES:
            pool = self._arms[route]
            pool.absorb(d_a, d_b)
            if own is not None:
                own[route].set_prior(pool.theta)
            if self.store is not None:
                await self.store.add(route, d_a, d_b)

    def learned(self) -> dict[Route, int]:
        return {arm: ridge.observations for arm, ridge in self._arms.items()}

    async def refresh(self) -> None:
        """Replace the local statistics with the shared ones (all replicas' outcomes):
        the pool's, and those of the tenants this router has seen lately."""
        if self.store is None:
            return
        for arm, ridge in self._arms.items():
            loaded = await self.store.load(arm)
            if loaded is not None:
                ridge.replace(*loaded)
        for tenant, own in list(self._tenants.items()):
            for arm, ridge in own.items():
                ridge.set_prior(self._arms[arm].theta)
                loaded = await self.store.load(arm, tenant)
                if loaded is not None:
                    ridge.replace(*loaded)
