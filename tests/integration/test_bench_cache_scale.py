"""A small run of the cache-scale benchmark on the session's Redis (figures not judged,
only that they are figures of what happened)."""

from __future__ import annotations

from iccache_dev.bench.cache_scale import DIMENSIONS, measure
from iccache_dev.local.redis import LocalRedis


async def test_cache_scale_measures_a_loaded_index_and_cleans_up(redis_server: LocalRedis) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    try:
        before = set(await client.execute_command("FT._LIST"))
        result = await measure(client, 1000, 50)
        assert result.examples == 1000
        assert result.load_rate > 0
        assert result.memory_bytes_per_example > DIMENSIONS * 4  # at least the vector
        assert 0 < result.knn_p50_ms <= result.knn_p99_ms
        assert 0 < result.batches_p50_ms <= result.batches_p99_ms
        assert result.foreign == 0  # both policies keep to the tenant
        assert set(await client.execute_command("FT._LIST")) == before  # index dropped
    finally:
        await client.aclose()
