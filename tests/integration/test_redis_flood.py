"""A flood of unique prompts against ``iccache serve`` (real Redis and embedder, stand-in
models that answer at once): admission stops at ``cache.capacity``, Redis stays under a
memory limit set just above what it holds, and every request is still answered."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from iccache_dev.bench.standin import standin_router
from iccache_dev.local.redis import LocalRedis, start_redis

CAPACITY = 120
FLOOD = 360
MEMORY_FLOOD = 900
WORDS = (
    "river",
    "mountain",
    "violin",
    "quantum",
    "harbor",
    "lantern",
    "falcon",
    "orchard",
    "glacier",
    "pepper",
    "ledger",
    "canyon",
    "meteor",
    "saddle",
    "tunnel",
    "velvet",
    "walnut",
    "zephyr",
    "beacon",
    "cobalt",
    "dynamo",
    "ember",
    "fjord",
    "gazette",
    "hammock",
    "igloo",
    "jasmine",
    "kettle",
    "lagoon",
    "marble",
    "nectar",
    "oyster",
    "parsec",
    "quiver",
    "rhubarb",
    "sapphire",
    "tundra",
    "umbrella",
    "vortex",
    "wombat",
    "yodel",
    "zenith",
)


@contextlib.contextmanager
def flooded_router(workdir: Path, **sections: dict[str, Any]) -> Iterator[tuple[str, LocalRedis]]:
    """A router on a Redis of its own (limits set here must not reach other tests)."""
    server = start_redis(workdir / "redis")
    try:
        with standin_router(workdir, server.url, prefix="flood", **sections) as r:
            yield r.url, server
    finally:
        server.stop()


def unique_prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"Tell me about {' '.join(rng.sample(WORDS, 6))} ({i})" for i in range(n)]


async def flood(url: str, prompts: list[str], model: str) -> list[int]:
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(prompt: str) -> int:
            async with limit:
                body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
                return (await client.post("/v1/chat/completions", json=body)).status_code

        return list(await asyncio.gather(*(one(p) for p in prompts)))


def examples(r: redis.Redis) -> int:
    return int(r.ft("flood").info()["num_docs"])


async def test_a_flood_stops_at_the_capacity_and_everyone_is_answered(tmp_path: Path) -> None:
    with flooded_router(tmp_path, cache={"capacity": CAPACITY}) as (url, server):
        codes = await flood(url, unique_prompts(FLOOD, 1), "large")  # large answers are kept
        with server.client() as r:
            kept = examples(r)
    assert codes == [200] * FLOOD
    assert CAPACITY - 10 <= kept <= CAPACITY + 8  # the 8 in flight may pass the check at once


async def test_redis_at_its_memory_limit_keeps_the_router_answering(tmp_path: Path) -> None:
    with flooded_router(tmp_path) as (url, server):
        with server.client() as r:
            ceiling = int(r.info("memory")["used_memory"]) + 2 * 2**20
            r.config_set("maxmemory", ceiling)
            r.config_set("maxmemory-policy", "volatile-lru")
        codes = await flood(url, unique_prompts(MEMORY_FLOOD, 2), "large")
        with server.client() as r:
            kept, full = examples(r), int(r.info("memory")["used_memory"])
        more = await flood(url, unique_prompts(MEMORY_FLOOD // 3, 3), "large")
        with server.client() as r:
            kept_later, later = examples(r), int(r.info("memory")["used_memory"])
    assert codes == [200] * MEMORY_FLOOD  # answered while admissions failed
    assert more == [200] * (MEMORY_FLOOD // 3)
    assert kept < MEMORY_FLOOD  # the limit was reached: later answers were not kept
    # Redis checks the limit before each write; the search index's own allocations for
    # the last admitted examples come on top: a little over, then no further.
    assert full <= ceiling * 1.1
    assert kept_later == kept
    assert later <= full + 256 * 1024
