"""The bandit's per-tenant regressions shared through real Redis by two routers of one
cache: what one router learns for a tenant, the other routes that tenant by after its
refresh; another tenant's routing stays where the pool leaves it."""

from __future__ import annotations

import random
import uuid

import redis.asyncio as aioredis

from iccache_dev.local.redis import LocalRedis
from iccache_sidecar.core.domain import (
    FEATURE_NAMES,
    BackendLoad,
    LoadSnapshot,
    RequestFeatures,
    Route,
)
from iccache_sidecar.routing.bandit import POOL_OUTCOMES, BanditPolicy
from iccache_sidecar.routing.base import RoutingContext
from iccache_sidecar.storage.examples import RedisBanditStore
from iccache_sidecar.storage.layout import RedisLayout

IDLE = LoadSnapshot(BackendLoad(0, 8, 0.1, True), BackendLoad(0, 8, 0.5, True))
CLOSE = RequestFeatures(0.9, 0.9, 0.5, 3, 3, 20)


def router(client: aioredis.Redis, layout: RedisLayout) -> BanditPolicy:
    store = RedisBanditStore(client, layout, len(FEATURE_NAMES))
    return BanditPolicy(0.7, 0.0, 0.8, 0.3, store=store, rng=random.Random(1))


async def test_a_tenants_lessons_reach_the_other_router_and_no_other_tenant(
    redis_server: LocalRedis,
) -> None:
    layout = RedisLayout(index_name="unused", prefix=f"bt{uuid.uuid4().hex[:8]}")
    async with aioredis.from_url(redis_server.url) as ca, aioredis.from_url(redis_server.url) as cb:
        a, b = router(ca, layout), router(cb, layout)
        await b.decide(RoutingContext(CLOSE, IDLE, tenant="noisy"))  # b has seen the tenant
        for _ in range(POOL_OUTCOMES + 200):
            await a.learn(CLOSE, Route.SMALL, 0.0, tenant="noisy")
        for _ in range(30):
            await a.learn(CLOSE, Route.SMALL, 1.0, tenant="quiet")
        await b.refresh()
        assert b.observations_of("noisy") == POOL_OUTCOMES + 200
        assert b.observations == POOL_OUTCOMES + 30  # the pool heard "noisy" 100 times
        noisy = await b.decide(RoutingContext(CLOSE, IDLE, tenant="noisy"))
        await b.decide(RoutingContext(CLOSE, IDLE, tenant="quiet"))
        await b.refresh()  # now b has seen "quiet" too and loads its regressions
        quiet = await b.decide(RoutingContext(CLOSE, IDLE, tenant="quiet"))
        keys = sorted(k.decode() for k in await ca.keys(f"{layout.prefix}:bandit:t:*"))
    assert noisy.route is Route.LARGE
    assert quiet.route is Route.SMALL
    assert keys == [f"{layout.prefix}:bandit:t:{t}:small" for t in ("noisy", "quiet")]
