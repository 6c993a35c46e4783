"""Seeding a cache for the replay job and checking that every stored example is whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from iccache_contract.settings import RouterSettings
from iccache_sidecar.core.prompting import normalise_prompt
from iccache_sidecar.storage.connect import example_store
from iccache_sidecar.storage.examples import ExampleStore, example_fields
from iccache_sidecar.storage.layout import ExampleField, as_text

# Every field a new example is written with (the layout's own list, not a copy).
REQUIRED = tuple(example_fields("t", "p", "r", np.zeros(2, dtype=np.float32), "m", 0.0))


def open_store(settings: RouterSettings) -> ExampleStore:
    return example_store(settings)


async def seed(
    store: ExampleStore, embedder: Any, tenant: str, rows: Sequence[tuple[str, str, float]]
) -> list[str]:
    """Store (prompt, answer, gain) rows; a positive gain is recorded as one selection."""
    await store.ensure_index(384)
    vectors = embedder.encode([r[0] for r in rows], normalize_embeddings=True)
    ids = []
    for (prompt, answer, gain), vector in zip(rows, vectors, strict=True):
        example_id = await store.add(tenant, prompt, answer, vector, "seed")
        if gain > 0:
            await store.record_selection([example_id], gain)
        ids.append(example_id)
    return ids


async def example(store: ExampleStore, example_id: str) -> dict[str, str]:
    raw = await store.client.hgetall(store.layout.example_key(example_id))
    return {as_text(k): as_text(v) for k, v in raw.items() if as_text(k) != ExampleField.EMBEDDING}


async def examples_of(store: ExampleStore) -> dict[str, dict[str, str]]:
    out = {}
    async for key in store.client.scan_iter(match=store.layout.example_pattern):
        example_id = store.layout.example_id(key)
        out[example_id] = await example(store, example_id)
    return out


async def assert_consistent(store: ExampleStore, dimensions: int = 384) -> int:
    """Every example has all its fields and a whole embedding; every exact-match key
    points at an existing example with that prompt. Returns the number of examples."""
    r: aioredis.Redis = store.client
    count = 0
    layout = store.layout
    async for key in r.scan_iter(match=layout.example_pattern):
        fields = await r.hgetall(key)
        names = {as_text(k) for k in fields}
        missing = [f for f in REQUIRED if f not in names]
        assert not missing, f"{as_text(key)} lacks {missing}"
        vector = np.frombuffer(fields[ExampleField.EMBEDDING.encode()], dtype=np.float32)
        assert vector.shape == (dimensions,)
        assert abs(float(np.linalg.norm(vector)) - 1) < 1e-3
        count += 1
    async for key in r.scan_iter(match=layout.exact_pattern):
        target = await r.get(key)
        assert target is not None
        tenant, prompt, exact_key = await r.hmget(
            layout.example_key(as_text(target)),
            [ExampleField.TENANT, ExampleField.PROMPT, ExampleField.EXACT_KEY],
        )
        assert tenant is not None, f"{as_text(key)} points at a missing example"
        assert as_text(exact_key) == as_text(key)
        assert normalise_prompt(as_text(prompt))
    return count
