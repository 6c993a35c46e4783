"""Concurrent requests' texts embedded together.

One worker task drains a queue: it waits at most ``max_wait_ms`` for more texts, encodes
up to ``batch_size`` in one call on a worker thread, and resolves each caller's future.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from iccache_sidecar.core.domain import Vector
from iccache_sidecar.core.errors import DependencyDown
from iccache_sidecar.embedding.models import MAX_CHARS, Encoder

log = logging.getLogger(__name__)


class BatchingEmbedder:
    def __init__(self, encoder: Encoder, batch_size: int = 64, max_wait_ms: float = 0.0) -> None:
        self._encoder = encoder
        self._batch_size = batch_size
        self._max_wait = max_wait_ms / 1000
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[Vector]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.dimensions = 0

    async def start(self) -> None:
        # One encode up front: loads lazily-initialised weights and tells the dimension.
        self.dimensions = int((await asyncio.to_thread(self._encode, ["warm up"])).shape[1])
        self._worker = asyncio.create_task(self._run(), name="embedder")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def embed(self, text: str) -> Vector:
        if self._worker is None or self._worker.done():
            raise DependencyDown("the embedder is not running")
        future: asyncio.Future[Vector] = asyncio.get_running_loop().create_future()
        # The model reads its first few hundred tokens only: a long prompt is cut before
        # it is tokenised, so its cost stops growing once the model's input is full.
        await self._queue.put((text[:MAX_CHARS], future))
        return await future

    def _encode(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        vectors = self._encoder.encode(
            list(texts), normalize_embeddings=True, batch_size=len(texts)
        )
        return np.asarray(vectors, dtype=np.float32)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            # Take what is already waiting; wait for more only if configured to. Under load
            # batches form by themselves: requests queue up while the model is busy.
            deadline = time.monotonic() + self._max_wait
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            live = [(t, f) for t, f in batch if not f.done()]
            if not live:
                continue
            try:
                vectors = await asyncio.to_thread(self._encode, [t for t, _ in live])
            except Exception as exc:  # the model failed: callers degrade
                log.exception("embedding failed for a batch of %d", len(live))
                for _, f in live:
                    if not f.done():
                        f.set_exception(DependencyDown(f"embedding failed: {exc}"))
                continue
            self.batches += 1
            for (_, f), v in zip(live, vectors, strict=True):
                if not f.done():
                    f.set_result(v)
