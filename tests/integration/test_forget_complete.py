"""Forget on real Redis: a request's answer goes with the replay job's companions made
from it, and a forget that races an admission (or a replay step) still wins."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
import redis.asyncio as aioredis

from iccache_dev.local.redis import LocalRedis
from iccache_sidecar.storage.examples import ExampleStore
from iccache_sidecar.storage.forget import forget
from iccache_sidecar.storage.layout import ExampleField, RedisLayout

V = np.array([1.0, 0.0, 0.0], dtype=np.float32)


@pytest.fixture
async def store(redis_server: LocalRedis) -> AsyncIterator[ExampleStore]:
    name = f"forget{uuid.uuid4().hex[:8]}"
    async with aioredis.from_url(redis_server.url) as client:
        s = ExampleStore(client, RedisLayout(index_name=name, prefix=name))
        await s.ensure_index(3)
        yield s


async def test_forgetting_a_request_takes_the_companions_made_from_its_answer(
    store: ExampleStore,
) -> None:
    answer = await store.add("acme", "q", "a", V, "m", request_id="r1")
    companions = [
        await store.add("acme", f"q{i}", "a", V, "m", extra={ExampleField.PARENT: answer})
        for i in range(2)
    ]
    other = await store.add("acme", "other", "b", V, "m", request_id="r2")
    done = await forget(store, who="test", request_id="r1")
    assert done.examples == 3
    for gone in (answer, *companions):
        assert await store.get(gone) is None
    assert await store.get(other) is not None


async def test_an_admission_that_races_a_forget_is_undone(store: ExampleStore) -> None:
    began = time.time()  # a request in flight when its tenant is forgotten
    await forget(store, who="test", tenant="acme")
    # Its answer is written after the forget's scan: the tombstone tells it to go.
    assert await store.forgotten("acme", "r-late", began)
    assert not await store.forgotten("acme", "r-new", time.time() + 1)  # began after
    assert not await store.forgotten("globex", "r-other", began)  # another tenant
    await forget(store, who="test", request_id="r-one")
    assert await store.forgotten("globex", "r-one", time.time() + 1)  # that request, ever
