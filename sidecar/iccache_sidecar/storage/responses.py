"""Stored Responses API responses, per tenant, with a TTL: what ``previous_response_id``
continues and ``GET``/``DELETE /v1/responses/{id}`` read and remove.

A record is JSON: the response as it was returned, and the conversation it ended (the
chat turns sent to the model, without the instructions, plus the answer). Keys name the
tenant, so a tenant can read, continue or delete only its own; another tenant's id is
simply not found.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import redis.asyncio as aioredis

from iccache_sidecar.storage.layout import RedisLayout
from iccache_sidecar.storage.redis_io import redis_call

audit = logging.getLogger("iccache.audit")

# What the router hands out (resp_ and a request id); anything else is not found.
RESPONSE_ID = re.compile(r"^resp_[A-Za-z0-9_-]{1,100}$")


class ResponseStore:
    def __init__(self, client: aioredis.Redis, layout: RedisLayout, ttl_seconds: int) -> None:
        self._r = client
        self.layout = layout
        self.ttl = ttl_seconds

    async def put(self, tenant: str, response_id: str, record: dict[str, Any]) -> None:
        key = self.layout.response_key(tenant, response_id)
        await redis_call(lambda: self._r.set(key, json.dumps(record), ex=self.ttl))

    async def get(self, tenant: str, response_id: str) -> dict[str, Any] | None:
        if not RESPONSE_ID.match(response_id):
            return None
        key = self.layout.response_key(tenant, response_id)
        raw = await redis_call(lambda: self._r.get(key))
        if raw is None:
            return None
        record: dict[str, Any] = json.loads(raw)
        return record

    async def delete(self, tenant: str, response_id: str) -> bool:
        if not RESPONSE_ID.match(response_id):
            return False
        key = self.layout.response_key(tenant, response_id)
        return bool(await redis_call(lambda: self._r.delete(key)))

    async def _delete(self, keys: list[Any]) -> None:
        await redis_call(lambda: self._r.delete(*keys))

    async def forget_tenant(self, tenant: str, *, who: str, dry_run: bool = False) -> int:
        """Delete (or count) every stored response of a tenant."""
        pattern = self.layout.responses_pattern(tenant)

        async def scan() -> list[Any]:
            return [k async for k in self._r.scan_iter(match=pattern, count=500)]

        keys = await redis_call(scan)
        if not dry_run:
            for start in range(0, len(keys), 500):
                await self._delete(keys[start : start + 500])
        audit.info(
            "who=%s action=forget tenant=%s responses=%d dry_run=%s",
            who,
            tenant,
            len(keys),
            str(dry_run).lower(),
        )
        return len(keys)
