"""Redis clients and stores as the settings describe them (router, replay job, tools)."""

from __future__ import annotations

import os

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from iccache_contract.settings import RouterSettings
from iccache_sidecar.storage.examples import ExampleStore
from iccache_sidecar.storage.layout import RedisLayout


def layout_of(settings: RouterSettings) -> RedisLayout:
    return RedisLayout(index_name=settings.redis.index_name, prefix=settings.redis.key_prefix)


def redis_client(settings: RouterSettings) -> aioredis.Redis:
    r = settings.redis
    password = os.environ.get(r.password_env) if r.password_env else None
    return aioredis.from_url(
        r.url,
        password=password or None,
        socket_timeout=r.timeout_seconds,
        socket_connect_timeout=r.timeout_seconds,
        # A pooled connection to a Redis that restarted is dead; one immediate retry on a
        # fresh connection replaces it instead of failing (and degrading) the request.
        retry=Retry(NoBackoff(), retries=1),
        retry_on_error=[RedisConnectionError],
    )


def example_store(settings: RouterSettings, client: aioredis.Redis | None = None) -> ExampleStore:
    """The example store the settings describe (on a new client unless one is given)."""
    return ExampleStore(
        client or redis_client(settings),
        layout_of(settings),
        ttl_seconds=settings.cache.ttl_seconds,
        hybrid_policy=settings.retrieval.hybrid_policy,
    )
