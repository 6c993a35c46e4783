"""The replay job's view of the example store: rank, update and delete atomically.

Every write here is one atomic Redis operation (a Lua script), so killing the job at
any point leaves each example either as it was or fully replaced, never half-written.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import numpy as np
from redis.commands.search.query import Query

from iccache_sidecar.core.domain import Vector
from iccache_sidecar.replay.rules import ExampleMeta
from iccache_sidecar.storage.examples import ExampleStore
from iccache_sidecar.storage.layout import ExampleField as F
from iccache_sidecar.storage.layout import as_text
from iccache_sidecar.storage.redis_io import redis_call

# Update fields only if the example still exists (a deleted one is not recreated).
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

_META_FIELDS = (F.TENANT, F.CREATED_AT, F.GAIN_AT, F.USES, F.RATED, F.HELPED)


@dataclass(frozen=True)
class Ranked:
    """An example in gain order, with what replaying it needs."""

    id: str
    tenant: str
    prompt: str
    response: str
    gain: float
    vector: Vector


class ReplayCache:
    def __init__(self, store: ExampleStore) -> None:
        self.store = store
        self.layout = store.layout
        self._r = store.client
        self._update = self._r.register_script(_UPDATE_IF_EXISTS)

    async def tenants(self) -> list[str]:
        values = await redis_call(lambda: self._r.ft(self.layout.index_name).tagvals(F.TENANT))
        return sorted(as_text(v) for v in values)

    async def ranked_by_gain(self, tenant: str, limit: int) -> list[Ranked]:
        """The tenant's unscoped examples with a positive gain, highest first (a scoped
        one cannot be answered again without the system prompt or turns that shaped it)."""
        if limit <= 0:
            return []
        query = (
            # Only tenant-wide examples: a scoped one was shaped by turns it does not keep.
            Query(f"{self.layout.scoped_filter(tenant, None)} @{F.GAIN}:[(0 +inf]")
            .sort_by(F.GAIN, asc=False)
            .return_fields(F.TENANT, F.PROMPT, F.RESPONSE, F.GAIN)
            .return_field(F.EMBEDDING, decode_field=False)
            .paging(0, limit)
            .dialect(2)
        )
        result = await redis_call(lambda: self._r.ft(self.layout.index_name).search(query))
        return [
            Ranked(
                id=self.layout.example_id(d.id),
                tenant=as_text(d.tenant),
                prompt=as_text(d.prompt),
                response=as_text(d.response),
                gain=float(as_text(d.gain)),
                vector=np.frombuffer(getattr(d, F.EMBEDDING), dtype=np.float32),
            )
            for d in result.docs
            if as_text(d.tenant) == tenant
        ]

    async def nearest_other(self, item: Ranked) -> float | None:
        """Similarity of the closest other example of the same tenant (None: alone)."""
        found = await self.store.search(item.tenant, item.vector, 2)
        return max((c.similarity for c in found if c.id != item.id), default=None)

    async def update(self, example_id: str, fields: Mapping[str, str | float]) -> bool:
        """Set fields of an existing example in one step; False if it is gone."""
        args: list[str | float] = [x for pair in fields.items() for x in pair]
        key = self.layout.example_key(example_id)
        return bool(await redis_call(lambda: self._update(keys=[key], args=args)))

    async def metas(self, batch: int = 1000) -> AsyncIterator[list[ExampleMeta]]:
        """Every example's eviction facts, a batch at a time (SCAN: no blocking)."""
        pattern = self.layout.example_pattern
        cursor: int = 0
        while True:
            cursor, keys = await redis_call(
                lambda c=cursor: self._r.scan(c, match=pattern, count=batch)  # type: ignore[misc]
            )
            if keys:
                async with self._r.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.hmget(key, list(_META_FIELDS))
                    rows = await redis_call(pipe.execute)
                pairs = zip(keys, rows, strict=True)
                yield [_meta(self.layout.example_id(k), r) for k, r in pairs if r[0] is not None]
            if cursor == 0:
                return

    async def delete(self, example_id: str) -> bool:
        return await self.store.delete(example_id)

    async def write_summary(self, summary: Mapping[str, object]) -> None:
        key = self.layout.replay_summary_key
        await redis_call(lambda: self._r.set(key, json.dumps(summary)))


def _meta(example_id: str, row: list[bytes | None]) -> ExampleMeta:
    def num(i: int, default: float = 0.0) -> float:
        value = row[i]
        return float(as_text(value)) if value not in (None, b"") else default

    created = num(1)
    return ExampleMeta(
        id=example_id,
        tenant=as_text(row[0]),
        created_at=created,
        last_used=num(2, created),
        uses=int(num(3)),
        rated=num(4),
        helped=num(5),
    )
