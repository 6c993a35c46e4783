"""Sentence embeddings with ONNX Runtime: word pieces from the model's ``tokenizer.json``
(the ``tokenizers`` library), the transformer from ``model.onnx``, then mean pooling
over the real tokens and unit length, as sentence-transformers computes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from iccache_sidecar.embedding.models import MAX_TOKENS, ONNX_FILE


class OnnxEncoder:
    def __init__(self, folder: Path, threads: int = 0) -> None:
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        # No usage telemetry from ONNX Runtime.
        ort.disable_telemetry_events()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

    def encode(self, sentences: list[str], **_: Any) -> npt.NDArray[np.float32]:
        """Unit-length vectors, one row per sentence (keyword arguments of
        sentence-transformers' ``encode`` are accepted and need no action)."""
        pieces = self._tokenizer.encode_batch(sentences)
        ids = np.array([p.ids for p in pieces], dtype=np.int64)
        mask = np.array([p.attention_mask for p in pieces], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run(None, feed)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return vectors
