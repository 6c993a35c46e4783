"""Embedding requests: the model (ONNX Runtime or sentence-transformers) and the
batcher that shares it among concurrent requests."""

from iccache_sidecar.embedding.batching import BatchingEmbedder
from iccache_sidecar.embedding.models import (
    MAX_CHARS,
    MODEL_ENV,
    Encoder,
    load_encoder,
    model_folder,
)

__all__ = ["MAX_CHARS", "MODEL_ENV", "BatchingEmbedder", "Encoder", "load_encoder", "model_folder"]
