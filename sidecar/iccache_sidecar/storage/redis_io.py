"""One way to call Redis: every failure becomes DependencyDown, which callers degrade on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

from iccache_sidecar.core.errors import DependencyDown

T = TypeVar("T")


async def redis_call(op: Callable[[], Awaitable[T]]) -> T:
    """Run one Redis operation; its failure becomes DependencyDown (callers degrade)."""
    try:
        return await op()
    except RedisError as exc:
        raise DependencyDown(f"redis: {exc}") from exc
