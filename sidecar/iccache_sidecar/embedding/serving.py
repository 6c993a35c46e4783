"""``POST /v1/embeddings`` answered by the router's own embedding model, through the
same batching worker the request path uses (so concurrent texts share a batch)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from iccache_sidecar.core.domain import Embeddings, estimate_tokens
from iccache_sidecar.embedding.batching import BatchingEmbedder


class OwnEmbeddings:
    def __init__(self, embedder: BatchingEmbedder, model: str) -> None:
        self._embedder = embedder
        self._model = model

    @property
    def model(self) -> str:
        return self._model

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        vectors = await asyncio.gather(*(self._embedder.embed(t) for t in texts))
        tokens = sum(estimate_tokens(t) for t in texts)
        return Embeddings([v.tolist() for v in vectors], tokens)

    async def close(self) -> None:
        """The embedder belongs to the router; nothing of its own to close."""
