"""Routing policies decide from plain snapshots: quality, examples and load."""

from __future__ import annotations

import random

import numpy as np
import pytest

from iccache_contract.settings import RoutingSettings
from iccache_sidecar.core.domain import BackendLoad, LoadSnapshot, RequestFeatures, Route
from iccache_sidecar.routing.bandit import BanditPolicy
from iccache_sidecar.routing.base import RoutingContext, load_relief
from iccache_sidecar.routing.registry import POLICIES, make_policy

IDLE = LoadSnapshot(BackendLoad(0, 8, 0.1, True), BackendLoad(0, 8, 0.5, True))
LARGE_SATURATED = LoadSnapshot(BackendLoad(0, 8, 0.1, True), BackendLoad(8, 8, 3.0, True))
LARGE_DOWN = LoadSnapshot(BackendLoad(0, 8, 0.1, True), BackendLoad(0, 8, 0.5, False))
SMALL_SATURATED = LoadSnapshot(BackendLoad(8, 8, 1.0, True), BackendLoad(0, 8, 0.5, True))


def features(sim: float, n: int = 3, value: float = 0.5) -> RequestFeatures:
    return RequestFeatures(
        max_similarity=sim,
        mean_similarity=sim if n else 0.0,
        mean_value=value,
        n_examples=n,
        max_examples=3,
        prompt_tokens=20,
    )


def bandit(epsilon: float = 0.0, tolerance: float = 0.0) -> BanditPolicy:
    return BanditPolicy(
        quality_target=0.7,
        exploration_rate=epsilon,
        high_load=0.8,
        relief=0.3,
        quality_tolerance=tolerance,
        rng=random.Random(7),
    )


async def test_bandit_prior_sends_close_paraphrases_small_and_unrelated_large() -> None:
    policy = bandit()
    assert (await policy.decide(RoutingContext(features(0.9), IDLE))).route is Route.SMALL
    assert (await policy.decide(RoutingContext(features(0.0, n=0), IDLE))).route is Route.LARGE


async def test_bandit_leans_small_when_large_is_saturated_or_down() -> None:
    policy = bandit()
    borderline = features(0.6, n=3, value=0.3)
    assert (await policy.decide(RoutingContext(borderline, IDLE))).route is Route.LARGE
    assert (await policy.decide(RoutingContext(borderline, LARGE_SATURATED))).route is Route.SMALL
    assert (await policy.decide(RoutingContext(borderline, LARGE_DOWN))).route is Route.SMALL


async def test_bandit_leans_large_when_small_is_saturated() -> None:
    policy = bandit()
    good = features(0.8)
    assert (await policy.decide(RoutingContext(good, IDLE))).route is Route.SMALL
    assert (await policy.decide(RoutingContext(good, SMALL_SATURATED))).route is Route.LARGE


async def test_bandit_learns_that_the_small_model_fails_on_similar_examples() -> None:
    policy = bandit()
    f = features(0.9)
    assert (await policy.decide(RoutingContext(f, IDLE))).route is Route.SMALL
    for _ in range(30):
        await policy.learn(f, Route.SMALL, reward=0.0)
    assert (await policy.decide(RoutingContext(f, IDLE))).route is Route.LARGE
    assert policy.observations == 30


async def test_bandit_learns_the_small_model_is_good_without_examples() -> None:
    policy = bandit()
    f = features(0.0, n=0)
    for _ in range(30):
        await policy.learn(f, Route.SMALL, reward=1.0)
    assert (await policy.decide(RoutingContext(f, IDLE))).route is Route.SMALL


async def test_outcomes_of_large_answers_do_not_move_the_small_model_estimate() -> None:
    policy = bandit()
    before = policy.theta.copy()
    await policy.learn(features(0.9), Route.LARGE, reward=0.0)
    np.testing.assert_array_equal(policy.theta, before)


async def test_the_bar_follows_the_large_model_when_it_is_weak_too() -> None:
    # A hard workload: the small model is right 11% of the time with close examples,
    # the large one 10% of the time on the same requests. A fixed 70% target
    # would keep everything on the large model for almost no gain.
    policy = bandit()
    close, unrelated = features(0.9), features(0.0, n=0)
    for _ in range(40):
        await policy.learn(close, Route.SMALL, reward=0.0)
    for _ in range(5):
        await policy.learn(close, Route.SMALL, reward=1.0)
    assert (await policy.decide(RoutingContext(close, IDLE))).route is Route.LARGE
    for _ in range(60):
        await policy.learn(close, Route.LARGE, reward=0.1)
        await policy.learn(unrelated, Route.LARGE, reward=0.9)
    assert policy.large_observations == 120
    assert policy.predict(close) >= policy.predict(close, Route.LARGE)
    assert (await policy.decide(RoutingContext(close, IDLE))).route is Route.SMALL
    # Where the large model is good, the small one still has to reach the target.
    assert (await policy.decide(RoutingContext(unrelated, IDLE))).route is Route.LARGE


async def test_a_strong_large_model_does_not_raise_the_bar_above_the_target() -> None:
    policy = bandit()
    good = features(0.8)
    for _ in range(50):
        await policy.learn(good, Route.LARGE, reward=1.0)
    assert policy.predict(good, Route.LARGE) > 0.9
    assert (await policy.decide(RoutingContext(good, IDLE))).route is Route.SMALL


async def test_the_tolerance_is_the_quality_traded_for_the_lower_cost() -> None:
    # Same request kind, both models observed: small right 9%, large 10% of the time.
    close = features(0.9)
    strict, tolerant = bandit(), bandit(tolerance=0.02)
    for policy in (strict, tolerant):
        for i in range(1000):
            await policy.learn(close, Route.SMALL, reward=1.0 if i % 100 < 9 else 0.0)
            await policy.learn(close, Route.LARGE, reward=1.0 if i % 10 == 0 else 0.0)
    assert strict.predict(close) < strict.predict(close, Route.LARGE)
    assert (await strict.decide(RoutingContext(close, IDLE))).route is Route.LARGE
    assert (await tolerant.decide(RoutingContext(close, IDLE))).route is Route.SMALL


async def test_without_large_feedback_the_tolerance_leaves_the_target_as_the_bar() -> None:
    borderline = features(0.6, n=3, value=0.3)
    for policy in (bandit(), bandit(tolerance=0.1)):
        bar = policy.predict(borderline, Route.LARGE) - policy.quality_tolerance
        assert bar == pytest.approx(0.7)
        assert (await policy.decide(RoutingContext(borderline, IDLE))).route is Route.LARGE


async def test_exploration_sends_a_share_of_large_requests_small() -> None:
    policy = bandit(epsilon=0.2)
    choices = [await policy.decide(RoutingContext(features(0.0, n=0), IDLE)) for _ in range(2000)]
    explored = sum(c.explored for c in choices)
    assert all(c.route is Route.SMALL for c in choices if c.explored)
    assert 300 < explored < 500  # about 20% of 2000


async def test_threshold_policy() -> None:
    policy = make_policy(RoutingSettings(policy="threshold", similarity_threshold=0.75))
    assert (await policy.decide(RoutingContext(features(0.8), IDLE))).route is Route.SMALL
    assert (await policy.decide(RoutingContext(features(0.7), IDLE))).route is Route.LARGE
    assert (
        await policy.decide(RoutingContext(features(0.7), LARGE_SATURATED))
    ).route is Route.SMALL


@pytest.mark.parametrize(
    ("name", "route"), [("always-small", Route.SMALL), ("always-large", Route.LARGE)]
)
async def test_fixed_policies(name: str, route: Route) -> None:
    policy = make_policy(RoutingSettings(policy=name))  # type: ignore[arg-type]
    assert policy.name == name
    assert (await policy.decide(RoutingContext(features(0.99), IDLE))).route is route
    assert (await policy.decide(RoutingContext(features(0.0, n=0), IDLE))).route is route


def test_every_configurable_policy_is_in_the_table() -> None:
    from typing import get_args

    from iccache_contract.settings import PolicyName

    assert set(POLICIES) == set(get_args(PolicyName))


def test_load_relief_is_zero_when_idle_and_bounded() -> None:
    assert load_relief(IDLE, 0.8, 0.3) == 0.0
    assert load_relief(LARGE_SATURATED, 0.8, 0.3) == pytest.approx(0.3)
    assert load_relief(SMALL_SATURATED, 0.8, 0.3) == pytest.approx(-0.3)


async def test_one_tenants_feedback_moves_its_own_routing_not_the_others() -> None:
    policy = bandit()
    close = features(0.9)
    # Tenant "noisy" rates every small answer 0, five thousand times; tenant "quiet"
    # found thirty of them good. One shared regression would follow the noisy one.
    for _ in range(5000):
        await policy.learn(close, Route.SMALL, reward=0.0, tenant="noisy")
    for _ in range(30):
        await policy.learn(close, Route.SMALL, reward=1.0, tenant="quiet")
    noisy = await policy.decide(RoutingContext(close, IDLE, tenant="noisy"))
    quiet = await policy.decide(RoutingContext(close, IDLE, tenant="quiet"))
    assert noisy.route is Route.LARGE  # it learned from its own outcomes
    assert quiet.route is Route.SMALL  # the other tenant still offloads
    assert policy.observations == 100 + 30  # the pool heard the noisy one 100 times only


async def test_a_new_tenant_starts_from_what_the_pool_has_learned() -> None:
    policy = bandit()
    close = features(0.9)
    for tenant in ("a", "b", "c"):
        for _ in range(60):
            await policy.learn(close, Route.SMALL, reward=0.0, tenant=tenant)
    fresh = await policy.decide(RoutingContext(close, IDLE, tenant="new"))
    assert fresh.route is Route.LARGE  # the pool's lesson: close paraphrases fail here
    assert policy.observations_of("new") == 0
