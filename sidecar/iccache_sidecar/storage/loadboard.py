"""How busy the routers are, shared through Redis so the replay job can wait for quiet.

Each router replica writes its peak load of the last few seconds into one hash
(``<prefix>:load``, a field per replica, value ``"<load> <unix time>"``); readers take the
highest fresh value and ignore replicas that stopped reporting.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from iccache_sidecar.storage.layout import RedisLayout, as_text
from iccache_sidecar.storage.redis_io import redis_call

REPORT_SECONDS = 2.0
STALE_SECONDS = 15.0


def fresh_peak(entries: dict[str, str], now: float, stale_after: float = STALE_SECONDS) -> float:
    """The highest load among entries reported within ``stale_after`` seconds (0 if none)."""
    peak = 0.0
    for value in entries.values():
        try:
            load_text, at_text = value.split()
            load, at = float(load_text), float(at_text)
        except ValueError:
            continue  # not ours; ignore rather than fail the reader
        if now - at <= stale_after:
            peak = max(peak, load)
    return peak


class LoadBoard:
    def __init__(self, client: aioredis.Redis, layout: RedisLayout) -> None:
        self._r = client
        self.key = layout.load_key

    async def publish(self, replica: str, load: float) -> None:
        value = f"{load:.4f} {time.time():.3f}"
        await redis_call(lambda: self._r.hset(self.key, replica, value))

    async def withdraw(self, replica: str) -> None:
        await redis_call(lambda: self._r.hdel(self.key, replica))

    async def current(self) -> float:
        raw = await redis_call(lambda: self._r.hgetall(self.key))
        return fresh_peak({as_text(k): as_text(v) for k, v in raw.items()}, time.time())
