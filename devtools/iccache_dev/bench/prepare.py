"""Preparing a benchmark run: which requests, which history seeds the cache, and the
large model's answers to that history (computed once, kept in a file)."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from iccache_dev.bench.workloads import Item, Workload
from iccache_dev.local.assets import cache_dir


@dataclass(frozen=True)
class AnswerStyle:
    """How questions are asked: short answers (accuracy) or explained ones (speed)."""

    name: str
    system: str
    max_tokens: int


STYLES = {
    "short": AnswerStyle("short", "Answer with a short phrase only, no explanation.", 16),
    "long": AnswerStyle(
        "long", "Answer the question, then explain the answer in about 80 words.", 128
    ),
}


@dataclass(frozen=True)
class Selection:
    requests: list[Item]
    seeds: list[Item]  # history items whose large-model answers go into the cache
    near_share: float  # requests that have a history neighbour at >= the threshold


def embed_all(encoder: Any, name: str, texts: Sequence[str]) -> np.ndarray:
    """Unit vectors for ``texts``, kept in the cache folder (keyed by the texts)."""
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache_dir() / "bench" / f"embeddings-{name}-{digest}.npy"
    if path.is_file():
        loaded: np.ndarray = np.load(path)
        return loaded
    vectors: np.ndarray = encoder.encode(
        list(texts), batch_size=128, normalize_embeddings=True, show_progress_bar=True
    ).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def select(
    workload: Workload,
    history_vectors: np.ndarray,
    request_vectors: np.ndarray,
    *,
    n_requests: int,
    near_share: float,
    near_threshold: float,
    neighbours: int,
    rng: random.Random,
) -> Selection:
    """``near_share`` of the requests have a history question at ``near_threshold`` or
    closer (the traffic IC-Cache targets: requests resembling earlier ones), the rest are
    drawn at random; each request's ``neighbours`` nearest history items are seeded."""
    sims = request_vectors @ history_vectors.T
    best = sims.max(axis=1)
    near = [i for i in range(len(workload.requests)) if best[i] >= near_threshold]
    far = [i for i in range(len(workload.requests)) if best[i] < near_threshold]
    n_near = min(len(near), round(n_requests * near_share))
    chosen = rng.sample(near, n_near) + rng.sample(far, n_requests - n_near)
    rng.shuffle(chosen)
    seed_ids: dict[int, None] = {}
    for i in chosen:
        for j in np.argsort(-sims[i])[:neighbours]:
            seed_ids[int(j)] = None
    return Selection(
        requests=[workload.requests[i] for i in chosen],
        seeds=[workload.history[j] for j in seed_ids],
        near_share=n_near / max(1, n_requests),
    )


RECORDED = Path(__file__).parent / "recorded"  # answers shipped with the repository


class AnswerFile:
    """Large-model answers keyed by (model file, style, question), one JSON per line.

    Read from the repository's recorded answers (``RECORDED``, when it has a file for
    this model and style: a fresh machine skips the 81 minutes the large model took for
    the long-answer history on 2 cores, and 9 for the short one) and from the cache
    folder, where new ones go."""

    def __init__(self, model_sha256: str, style: AnswerStyle, recorded: Path = RECORDED) -> None:
        name = f"answers-{model_sha256[:12]}-{style.name}.jsonl"
        self.path = cache_dir() / "bench" / name
        self.answers: dict[str, str] = {}
        for path in (recorded / name, self.path):
            if path.is_file():
                for line in path.read_text().splitlines():
                    row = json.loads(line)
                    self.answers[row["question"]] = row["answer"]

    def missing(self, items: Sequence[Item]) -> list[Item]:
        return [i for i in items if i.question not in self.answers]

    def add(self, question: str, answer: str) -> None:
        self.answers[question] = answer
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out:
            out.write(json.dumps({"question": question, "answer": answer}) + "\n")


def progress(total: int, what: str) -> tqdm[Any]:
    return tqdm(total=total, desc=what, unit="q", dynamic_ncols=True)
