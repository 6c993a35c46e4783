"""The table of routing policies, chosen by name from the settings."""

from __future__ import annotations

from collections.abc import Callable

from iccache_contract.settings import RoutingSettings
from iccache_sidecar.core.domain import Route
from iccache_sidecar.routing.bandit import BanditPolicy, BanditStateStore
from iccache_sidecar.routing.base import RoutingPolicy
from iccache_sidecar.routing.fixed import FixedPolicy
from iccache_sidecar.routing.threshold import ThresholdPolicy

Factory = Callable[[RoutingSettings, BanditStateStore | None], RoutingPolicy]

POLICIES: dict[str, Factory] = {
    "bandit": lambda s, store: BanditPolicy(
        quality_target=s.quality_target,
        quality_tolerance=s.quality_tolerance,
        exploration_rate=s.exploration_rate,
        high_load=s.high_load,
        relief=s.load_relief,
        store=store,
    ),
    "threshold": lambda s, _: ThresholdPolicy(
        similarity_threshold=s.similarity_threshold, high_load=s.high_load, relief=s.load_relief
    ),
    "always-small": lambda s, _: FixedPolicy(Route.SMALL),
    "always-large": lambda s, _: FixedPolicy(Route.LARGE),
}


def make_policy(settings: RoutingSettings, store: BanditStateStore | None = None) -> RoutingPolicy:
    return POLICIES[settings.policy](settings, store)
