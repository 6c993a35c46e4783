"""The quality budget's shared state in Redis (see ``layout``): one window of judged
answers, one counter, one offset and one pair of answer counts per scope, for every
router of a cache. Each outcome is a list entry ``"<margin> <0|1>"``, newest first; the
offset moves by compare-and-set (WATCH), so two routers that decide to move it at the
same moment move it once."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from iccache_sidecar.core.quality_budget import Steering
from iccache_sidecar.storage.layout import RedisLayout, as_text
from iccache_sidecar.storage.redis_io import redis_call


def encode_outcome(margin: float, lost: bool) -> str:
    return f"{margin:.6f} {int(lost)}"


def decode_outcome(raw: str) -> tuple[float, bool] | None:
    """None for an entry that is not an outcome (ignored rather than fatal)."""
    try:
        margin, lost = raw.split()
        return float(margin), lost == "1"
    except ValueError:
        return None


def decode_steering(raw: dict[bytes | str, bytes | str]) -> Steering:
    values = {as_text(k): as_text(v) for k, v in raw.items()}
    try:
        return Steering(float(values.get("offset", 0.0)), int(values.get("moved_at", 0)))
    except ValueError:
        return Steering()


class RedisOutcomeStore:
    def __init__(self, client: aioredis.Redis, layout: RedisLayout) -> None:
        self._r = client
        self._layout = layout
        self.name = layout.quality_prefix

    def _key(self, kind: str, scope: str) -> str:
        return self._layout.quality_key(kind, scope)

    async def add(self, scope: str, margin: float, lost: bool, size: int) -> None:
        outcomes, total = self._key("outcomes", scope), self._key("total", scope)

        async def write() -> None:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.lpush(outcomes, encode_outcome(margin, lost))
                pipe.ltrim(outcomes, 0, size - 1)
                pipe.incr(total)
                await pipe.execute()

        await redis_call(write)

    async def window(self, scope: str, size: int) -> tuple[list[tuple[float, bool]], int]:
        async def read() -> list[Any]:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.lrange(self._key("outcomes", scope), 0, size - 1)
                pipe.get(self._key("total", scope))
                return list(await pipe.execute())

        entries, total = await redis_call(read)
        decoded = [decode_outcome(as_text(e)) for e in reversed(entries)]
        return [d for d in decoded if d is not None], int(as_text(total)) if total else 0

    async def steering(self, scope: str) -> Steering:
        raw = await redis_call(lambda: self._r.hgetall(self._key("steering", scope)))
        return decode_steering(raw)

    async def move(self, scope: str, seen: Steering, new: Steering) -> Steering:
        key = self._key("steering", scope)

        async def swap() -> Steering:
            async with self._r.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                stored = decode_steering(await pipe.hgetall(key))
                if stored != seen:
                    return stored  # another router moved it first
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.hset(key, mapping={"offset": new.offset, "moved_at": new.moved_at})
                try:
                    await pipe.execute()
                except WatchError:
                    return decode_steering(await self._r.hgetall(key))
                return new

        return await redis_call(swap)

    async def count_answers(self, scope: str, small: int, large: int) -> tuple[int, int]:
        key = self._key("answers", scope)

        async def add() -> list[Any]:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hincrby(key, "small", small)
                pipe.hincrby(key, "large", large)
                return list(await pipe.execute())

        small_total, large_total = await redis_call(add)
        return int(small_total), int(large_total)
