"""Per-tenant requests and tokens per minute, counted in Redis so that every router
replica shares them: fixed one-minute windows, ``<prefix>:rate:<tenant>:<kind>:<minute>``.
When Redis fails the limits are not enforced (the request is served; a warning says so)."""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis

from iccache_contract.settings import TenantLimits
from iccache_sidecar.core.errors import DependencyDown, RateLimited
from iccache_sidecar.storage.layout import RedisLayout, as_text
from iccache_sidecar.storage.redis_io import redis_call

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60


class RateLimiter:
    def __init__(self, client: aioredis.Redis, layout: RedisLayout) -> None:
        self._r = client
        self._layout = layout

    async def admit(self, tenant: str, limits: TenantLimits, now: float | None = None) -> None:
        """Count one request; RateLimited when the tenant is over a limit this minute."""
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        if rpm is None and tpm is None:
            return
        at = time.time() if now is None else now
        window = int(at // WINDOW_SECONDS)
        retry = WINDOW_SECONDS - (at % WINDOW_SECONDS)
        requests_key = self._layout.rate_key(tenant, "requests", window)
        tokens_key = self._layout.rate_key(tenant, "tokens", window)

        async def count() -> list[object]:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.incr(requests_key)
                pipe.expire(requests_key, 2 * WINDOW_SECONDS)
                pipe.get(tokens_key)
                return list(await pipe.execute())

        try:
            requests, _, tokens = await redis_call(count)
        except DependencyDown as exc:
            log.warning("rate limits not enforced, redis failed: %s", exc)
            return
        if rpm is not None and int(str(requests)) > rpm:
            raise RateLimited(
                f"tenant {tenant!r} is over its limit of {rpm} requests a minute; "
                f"retry in {retry:.0f} s",
                retry,
            )
        if tpm is not None and tokens is not None and int(as_text(tokens)) >= tpm:
            raise RateLimited(
                f"tenant {tenant!r} spent its {tpm} tokens of this minute; retry in {retry:.0f} s",
                retry,
            )

    async def charge(self, tenant: str, tokens: int, now: float | None = None) -> None:
        """Add the tokens a request used to this minute's count."""
        if tokens <= 0:
            return
        at = time.time() if now is None else now
        key = self._layout.rate_key(tenant, "tokens", int(at // WINDOW_SECONDS))

        async def add() -> None:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.incrby(key, tokens)
                pipe.expire(key, 2 * WINDOW_SECONDS)
                await pipe.execute()

        try:
            await redis_call(add)
        except DependencyDown as exc:
            log.warning("tokens not counted against the limit, redis failed: %s", exc)
