"""The quality budget shared through real Redis by the routers of one cache: two
routers' outcomes make one estimate, the bar moves once for both, a router that has
seen no outcome takes the shared offset on its next refresh, and while Redis is down a
router goes on with its own copy and sends the outcomes it kept once Redis is back."""

from __future__ import annotations

import uuid
from pathlib import Path

import redis.asyncio as aioredis

from iccache_contract.settings import QualitySettings
from iccache_dev.local.redis import LocalRedis, start_redis
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.quality import OVERALL, QualityBudget
from iccache_sidecar.storage.layout import RedisLayout
from iccache_sidecar.storage.quality_store import RedisOutcomeStore

SETTINGS = QualitySettings(max_loss=0.05, window=100, min_samples=20, hold=10, step=0.02)


def routers(url: str, n: int) -> list[QualityBudget]:
    """``n`` routers of one cache (one key prefix), each with its own Redis client."""
    layout = RedisLayout(index_name="unused", prefix=f"shared{uuid.uuid4().hex[:8]}")
    return [
        QualityBudget(SETTINGS, Metrics(), RedisOutcomeStore(aioredis.from_url(url), layout))
        for _ in range(n)
    ]


async def test_two_routers_make_one_estimate_and_move_the_bar_once(
    redis_server: LocalRedis,
) -> None:
    a, b, idle = routers(redis_server.url, 3)
    # 30 outcomes each, every fifth a loss: 12 of 60 (20%), far over a 5% budget.
    for n in range(30):
        await a.record("t", margin=0.3, lost=n % 5 == 0)
        await b.record("t", margin=0.3, lost=n % 5 == 2)
    await a.refresh()  # a is one outcome behind b until its next refresh (every 5 s)
    for router in (a, b):
        (status,) = router.statuses()
        assert (status.estimate.samples, status.estimate.losses) == (60, 12)
        assert status.window is not None
    # The bar moved from what both had seen, one step each time 10 more outcomes had
    # come in (at 20, 30, ..., 60 of them): 0.10. Two routers steering apart would each
    # be at 0.04 (moves at 20 and 30 of their own).
    assert a.offset("t") == b.offset("t") == 0.1
    assert idle.offset("t") == 0.0
    await idle.refresh()
    assert idle.offset("t") == 0.1
    (seen,) = idle.statuses()
    assert (seen.estimate.samples, seen.estimate.losses) == (60, 12)


async def test_answer_counts_are_summed_through_the_store(redis_server: LocalRedis) -> None:
    a, b = routers(redis_server.url, 2)
    for _ in range(3):
        a.answered("t", small=True)
    b.answered("t", small=False)
    await a.refresh()
    await b.refresh()
    await a.refresh()
    for router in (a, b):
        (status,) = router.statuses()
        assert (status.scope, status.small_answers, status.large_answers) == (OVERALL, 3, 1)


async def test_outcomes_judged_while_redis_is_down_are_kept_and_sent_later(
    tmp_path: Path,
) -> None:
    own = start_redis(tmp_path / "redis")
    try:
        a, b = routers(own.url, 2)
        await a.record("t", margin=0.3, lost=False)
        own.stop()  # the store goes away for real
        for n in range(30):
            await a.record("t", margin=0.3, lost=n % 3 == 0)
        (status,) = a.statuses()
        assert (status.estimate.samples, status.estimate.losses) == (31, 10)
        assert a.offset("t") > 0.0  # it still steers, on what it has seen
        own = start_redis(tmp_path / "redis", port=own.port)  # back, empty
        await a.refresh()
        await b.refresh()
        (shared,) = b.statuses()
        # The 30 kept while it was down; the first outcome went with the old server.
        assert (shared.estimate.samples, shared.estimate.losses) == (30, 10)
    finally:
        own.stop()


async def test_one_tenants_verdicts_move_the_pooled_bar_a_bounded_amount(
    redis_server: LocalRedis,
) -> None:
    """Tenant "flood" tells a router thousands of times that its small answers were as
    good as the large one's; tenant "honest" reports its real losses through another.
    The pooled estimate both routers share keeps the honest losses (each tenant has a
    list of its own in Redis) and counts at most a quarter of the window from the
    flood, so the bar stays up for everyone in the pool."""
    # A long hold keeps the bar still: the test reads the estimate, not the steering.
    settings = QualitySettings(max_loss=0.05, window=400, min_samples=50, hold=5000)
    layout = RedisLayout(index_name="unused", prefix=f"pool{uuid.uuid4().hex[:8]}")
    honest, flood = (
        QualityBudget(settings, Metrics(), RedisOutcomeStore(aioredis.from_url(url), layout))
        for url in (redis_server.url, redis_server.url)
    )
    for n in range(100):
        await honest.record("honest", margin=0.3, lost=n % 5 == 0)  # 20% lost
    for _ in range(1000):
        await flood.record("flood", margin=0.3, lost=False)
    await honest.refresh()
    for router in (honest, flood):
        (status,) = router.statuses()
        assert (status.scope, status.estimate.samples, status.estimate.losses) == (
            OVERALL,
            100 + 100,
            20,
        )
        assert status.holds is False  # one list would hold 400 of the flood's: 0 losses
    assert honest.unproven("honest")
    assert flood.unproven("flood")


async def test_an_earlier_versions_window_is_still_read(redis_server: LocalRedis) -> None:
    layout = RedisLayout(index_name="unused", prefix=f"old{uuid.uuid4().hex[:8]}")
    client = aioredis.from_url(redis_server.url)
    old = layout.quality_key("outcomes", OVERALL)
    await client.lpush(old, *[f"0.200000 {int(n % 4 == 0)}" for n in range(40)])
    await client.set(layout.quality_key("total", OVERALL), 40)
    budget = QualityBudget(SETTINGS, Metrics(), RedisOutcomeStore(client, layout))
    await budget.refresh()
    (status,) = budget.statuses()
    assert (status.estimate.samples, status.estimate.losses) == (40, 10)
    await budget.record("t", margin=0.2, lost=True)
    (status,) = budget.statuses()
    assert (status.estimate.samples, status.estimate.losses) == (41, 11)
