"""all-MiniLM-L6-v2 exported to ONNX once (with torch, on a developer's machine or in
setup), so that the router embeds with ONNX Runtime and no torch.

The folder holds ``model.onnx``, the model's ``tokenizer.json`` and ``export.json``
(where it came from, and the agreement measured against sentence-transformers). An
export is only kept if every check sentence embeds to a cosine of at least
``MIN_COSINE`` with sentence-transformers' own vector.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from iccache_dev.local import assets

MIN_COSINE = 0.999
CHECK_SENTENCES = [
    "What is the capital of France?",
    "who sang i wanna dance with somebody",
    "How long should sourdough bread rise before baking, and at what temperature?",
    "a",
    "The quick brown fox jumps over the lazy dog. " * 40,  # longer than the model reads
]


def minilm_onnx_dir() -> Path:
    return assets.cache_dir() / "models" / "all-MiniLM-L6-v2-onnx"


def ensure_minilm_onnx() -> Path:
    """The exported folder, made on first use (about 10 s)."""
    target = minilm_onnx_dir()
    if (target / "export.json").is_file():
        return target
    source = assets.minilm_model_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".onnx-"))
    try:
        report = _export(source, work)
        (work / "export.json").write_text(json.dumps(report, indent=2))
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _export(source: Path, out: Path) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    from iccache_sidecar.embedding.onnx import OnnxEncoder

    st = SentenceTransformer(str(source), device="cpu")
    bert: Any = st[0].auto_model
    bert.eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = st.tokenizer(["hello", "a longer sentence"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    with torch.no_grad():
        torch.onnx.export(
            Hidden(),
            tuple(sample[n] for n in names),
            str(out / "model.onnx"),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    shutil.copy(source / "tokenizer.json", out / "tokenizer.json")
    expected = st.encode(CHECK_SENTENCES, normalize_embeddings=True)
    got = OnnxEncoder(out).encode(CHECK_SENTENCES)
    cosines = np.sum(np.asarray(expected) * got, axis=1)
    worst = float(cosines.min())
    if worst < MIN_COSINE:
        raise RuntimeError(f"the ONNX export disagrees with sentence-transformers: {worst:.6f}")
    return {"source": str(source), "min_cosine": worst, "sentences": len(CHECK_SENTENCES)}
