"""The quality budget's shared state in Redis (see ``layout``): per scope, each tenant's
last judged answers, one counter, one offset and one pair of answer counts, for every
router of a cache. Each outcome is a list entry ``"<seq> <margin> <0|1>"``, newest
first, its sequence number taken from the scope's counter (the window pools the
tenants' lists by it); the offset moves by compare-and-set (WATCH), so two routers that
decide to move it at the same moment move it once."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from iccache_sidecar.core.quality_budget import EARLIER, MAX_SOURCES, Outcome, Steering
from iccache_sidecar.storage.layout import RedisLayout, as_text
from iccache_sidecar.storage.redis_io import redis_call

SOURCE_TTL_SECONDS = 30 * 86400  # a tenant's list outlives this much silence only by use


def encode_outcome(seq: int, margin: float, lost: bool) -> str:
    return f"{seq} {margin:.6f} {int(lost)}"


def decode_outcome(raw: str, legacy_seq: int = 0) -> Outcome | None:
    """None for an entry that is not an outcome (ignored rather than fatal). An entry of
    an earlier version (no sequence number) gets ``legacy_seq``."""
    try:
        parts = raw.split()
        if len(parts) == 2:
            return legacy_seq, float(parts[0]), parts[1] == "1"
        seq, margin, lost = parts
        return int(seq), float(margin), lost == "1"
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

    async def add(self, scope: str, source: str, margin: float, lost: bool, size: int) -> None:
        own, sources = self._layout.quality_source_key(scope, source), self._key("sources", scope)

        async def write() -> None:
            seq = int(await self._r.incr(self._key("total", scope)))
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.lpush(own, encode_outcome(seq, margin, lost))
                pipe.ltrim(own, 0, size - 1)
                pipe.expire(own, SOURCE_TTL_SECONDS)
                pipe.zadd(sources, {source: seq})
                pipe.zremrangebyrank(sources, 0, -MAX_SOURCES - 1)
                await pipe.execute()

        await redis_call(write)

    async def window(self, scope: str, size: int) -> tuple[dict[str, list[Outcome]], int]:
        sources_key = self._key("sources", scope)

        async def read() -> tuple[list[str], list[Any], Any, list[Any]]:
            names = [as_text(n) for n in await self._r.zrange(sources_key, 0, -1)]
            async with self._r.pipeline(transaction=True) as pipe:
                for name in names:
                    pipe.lrange(self._layout.quality_source_key(scope, name), 0, size - 1)
                pipe.lrange(self._key("outcomes", scope), 0, size - 1)  # an earlier version's
                pipe.get(self._key("total", scope))
                *lists, legacy, total = await pipe.execute()
            return names, lists, total, legacy

        names, lists, total, legacy = await redis_call(read)
        sources: dict[str, list[Outcome]] = {}
        for name, entries in zip(names, lists, strict=True):
            decoded = [decode_outcome(as_text(e)) for e in entries]
            sources[name] = [d for d in decoded if d is not None]
        if legacy:  # older than any new outcome
            decoded = [decode_outcome(as_text(e), -n) for n, e in enumerate(legacy)]
            sources[EARLIER] = [d for d in decoded if d is not None]
        return sources, int(as_text(total)) if total else 0

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
