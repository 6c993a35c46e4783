"""The packaged all-MiniLM-L6-v2 gives unit vectors that rank paraphrases first."""

from __future__ import annotations

from typing import Any

import numpy as np


def test_embeddings_are_384_dimension_unit_vectors(embedder: Any) -> None:
    vectors = embedder.encode(
        ["hello", "a longer sentence about caches"], normalize_embeddings=True
    )
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_paraphrase_ranks_above_unrelated_sentence(embedder: Any) -> None:
    query, paraphrase, unrelated = embedder.encode(
        [
            "Who wrote the novel Pride and Prejudice?",
            "Which author is Pride and Prejudice by?",
            "How many legs does a spider have?",
        ],
        normalize_embeddings=True,
    )
    assert float(query @ paraphrase) > float(query @ unrelated) + 0.3
