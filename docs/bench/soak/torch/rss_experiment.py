"""Resident memory of sentence-transformers (torch) embedding unique texts, without the
router: six threads (as the router's worker threads) encode batches of 1-16 texts of
3-60 words for SECONDS seconds; RSS is printed every 10 rounds.

    .venv/bin/python docs/bench/soak/torch/rss_experiment.py 120
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 .venv/bin/python docs/bench/soak/torch/rss_experiment.py 120
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from iccache_sidecar.embedding import load_encoder

WORDS = [
    "the",
    "of",
    "a",
    "capital",
    "river",
    "mountain",
    "who",
    "sang",
    "when",
    "did",
    "largest",
    "city",
    "population",
    "currency",
    "France",
    "Japan",
    "Brazil",
    "wrote",
    "first",
    "song",
    "film",
]


def rss_mb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return 0


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60))) + str(rng.random())


def main(seconds: float) -> None:
    torch.set_num_threads(1)
    encoder = load_encoder(None)
    pool = cf.ThreadPoolExecutor(6)
    rng = random.Random(1)
    start, rounds = time.time(), 0
    print("start", rss_mb(), flush=True)
    while time.time() - start < seconds:
        batches = [[text(rng) for _ in range(rng.randint(1, 16))] for _ in range(6)]
        futures = [
            pool.submit(encoder.encode, b, normalize_embeddings=True, batch_size=len(b))
            for b in batches
        ]
        for future in futures:
            future.result()
        rounds += 1
        if rounds % 10 == 0:
            print(f"{time.time() - start:.0f}s rss={rss_mb()}", flush=True)
    print("end", rss_mb(), flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]))
