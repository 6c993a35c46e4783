"""Concurrent requests are embedded together, and the result equals one-by-one embedding."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from iccache_sidecar.embedding import BatchingEmbedder


async def test_concurrent_embeddings_are_batched(embedder: Any) -> None:
    batcher = BatchingEmbedder(embedder, batch_size=64, max_wait_ms=5)
    await batcher.start()
    try:
        texts = [f"question number {i} about caching" for i in range(40)]
        vectors = await asyncio.gather(*(batcher.embed(t) for t in texts))
        assert batcher.batches < 10  # 40 requests, far fewer model calls
        direct = embedder.encode(texts, normalize_embeddings=True)
        np.testing.assert_allclose(np.stack(vectors), direct, atol=1e-5)
    finally:
        await batcher.stop()
