"""The router's ONNX Runtime embedder against sentence-transformers, on real questions:
the vectors must be interchangeable (one index serves both), and a long prompt costs no
more to embed than the model reads."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from iccache_dev.bench.workloads import WORKLOADS
from iccache_dev.local.onnx_export import MIN_COSINE, ensure_minilm_onnx
from iccache_sidecar.embedding import MAX_CHARS, BatchingEmbedder, load_encoder


def test_onnx_vectors_match_sentence_transformers_on_1000_questions(embedder: Any) -> None:
    onnx = load_encoder(str(ensure_minilm_onnx()))
    questions = [item.question for item in WORKLOADS["nq"]().load().requests[:1000]]
    expected = np.asarray(embedder.encode(questions, normalize_embeddings=True, batch_size=64))
    got = np.concatenate([onnx.encode(questions[i : i + 64]) for i in range(0, 1000, 64)])
    cosines = np.sum(expected * got, axis=1)
    print(f"cosine over {len(questions)} NQ questions: min {cosines.min():.6f}")
    assert cosines.min() >= MIN_COSINE


async def test_a_long_prompt_is_embedded_as_far_as_the_model_reads() -> None:
    batcher = BatchingEmbedder(load_encoder(str(ensure_minilm_onnx())))
    await batcher.start()
    try:
        base = "Tell me about the history of the Roman empire and its roads. "
        timings = {}
        for size in (1_000, 10_000, 100_000, 1_000_000):
            text = (base * (size // len(base) + 1))[:size]
            started = time.perf_counter()
            vector = await batcher.embed(text)
            timings[size] = (time.perf_counter() - started) * 1000
            if size > MAX_CHARS:  # what is embedded is the part the model reads
                head = await batcher.embed(text[:MAX_CHARS])
                assert float(vector @ head) > 0.9999
        print(
            "embedding time by prompt size: "
            + ", ".join(f"{s} B {ms:.1f} ms" for s, ms in timings.items())
        )
    finally:
        await batcher.stop()
