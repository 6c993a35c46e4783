"""How the example cache scales: load N examples into a real Redis with the Query Engine
(the router's own layout and index: 384-d float32, HNSW, cosine, a tenant TAG), then
report the load rate, memory per example and KNN latency with the tenant filter.

The vectors are synthetic but shaped like sentence embeddings of a real workload: unit
length, in clusters (similar requests), spread over tenants. The texts are short
stand-ins, so the memory figure is the index's and the vector's plus a few hundred bytes
of text; add the real prompt and answer sizes when sizing.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from tqdm import tqdm

from iccache_dev.local.redis import start_redis
from iccache_sidecar.storage.examples import ExampleStore, example_fields
from iccache_sidecar.storage.layout import RedisLayout

DIMENSIONS = 384
TENANTS = 10
TINY_EVERY = 1000  # one example in a thousand belongs to a tiny tenant
TINY = "tiny"
TINY_QUERIES = 200
CLUSTERS = 2000
BATCH = 500


def tenant_of(number: int) -> str:
    """Ten tenants share the examples, but for a tiny one holding 0.1% of them."""
    return TINY if number % TINY_EVERY == TINY_EVERY - 1 else f"tenant{number % TENANTS}"


@dataclass
class ScaleResult:
    examples: int
    load_seconds: float
    load_rate: float  # examples a second, until the index had them all
    memory_bytes_per_example: float
    index_mb: float
    knn_p50_ms: float  # hybrid policy auto (the Query Engine's choice)
    knn_p99_ms: float
    batches_p50_ms: float  # hybrid policy batches (retrieval.hybrid_policy: batches)
    batches_p99_ms: float
    tiny_knn_p50_ms: float  # the tiny tenant (0.1% of the examples), policy auto
    tiny_knn_p99_ms: float
    tiny_batches_p50_ms: float  # the tiny tenant, policy batches
    tiny_batches_p99_ms: float
    foreign: int  # results of another tenant (must be 0)
    queries: int


def vectors(rng: np.random.Generator, n: int, centers: np.ndarray) -> np.ndarray:
    picks = centers[rng.integers(0, len(centers), n)]
    v = picks + rng.normal(0, 0.35 / np.sqrt(DIMENSIONS), (n, DIMENSIONS))
    out: np.ndarray = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return out


async def _used_memory(client: aioredis.Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def _wait_indexed(client: aioredis.Redis, index: str) -> dict[Any, Any]:
    while True:
        info = await client.ft(index).info()
        if float(info.get("percent_indexed", 1)) >= 1 and int(info.get("indexing", 0)) == 0:
            return dict(info)
        await asyncio.sleep(0.2)


async def measure(client: aioredis.Redis, n: int, queries: int, seed: int = 1) -> ScaleResult:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (CLUSTERS, DIMENSIONS))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    prefix = f"scale{n}-{uuid.uuid4().hex[:6]}"
    layout = RedisLayout(index_name=prefix, prefix=prefix)
    store = ExampleStore(client, layout)
    await store.ensure_index(DIMENSIONS)
    before = await _used_memory(client)
    started = time.perf_counter()
    with tqdm(total=n, desc=f"loading {n:,} examples", unit="ex") as bar:
        for first in range(0, n, BATCH):
            count = min(BATCH, n - first)
            batch = vectors(rng, count, centers)
            async with client.pipeline(transaction=False) as pipe:
                for i, vector in enumerate(batch):
                    number = first + i
                    fields = example_fields(
                        tenant_of(number),
                        f"question {number}",
                        f"answer {number}",
                        vector,
                        "large",
                        time.time(),
                    )
                    pipe.hset(layout.example_key(f"{number:09d}"), mapping=fields)  # type: ignore[arg-type]
                await pipe.execute()
            bar.update(count)
    info = await _wait_indexed(client, prefix)
    load = time.perf_counter() - started
    after = await _used_memory(client)

    probes = vectors(rng, queries, centers)
    figures: dict[str, tuple[float, float]] = {}
    foreign = 0
    for policy in ("auto", "batches"):
        searcher = ExampleStore(client, layout, hybrid_policy=policy)
        for label, asked in (
            (policy, [(f"tenant{i % TENANTS}", p) for i, p in enumerate(probes)]),
            (f"tiny-{policy}", [(TINY, p) for p in probes[:TINY_QUERIES]]),
        ):
            latencies = []
            for tenant, probe in asked:
                t = time.perf_counter()
                found = await searcher.search(tenant, probe, 16)
                latencies.append((time.perf_counter() - t) * 1000)
                foreign += sum(1 for c in found if tenant_of(int(c.id)) != tenant)
            latencies.sort()
            p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
            figures[label] = (round(statistics.median(latencies), 3), round(p99, 3))
    index_mb = float(info.get("vector_index_sz_mb", 0) or 0) + float(info.get("inverted_sz_mb", 0))
    await client.ft(prefix).dropindex(delete_documents=True)
    return ScaleResult(
        examples=n,
        load_seconds=round(load, 2),
        load_rate=round(n / load, 1),
        memory_bytes_per_example=round((after - before) / n, 1),
        index_mb=round(index_mb, 1),
        knn_p50_ms=figures["auto"][0],
        knn_p99_ms=figures["auto"][1],
        batches_p50_ms=figures["batches"][0],
        batches_p99_ms=figures["batches"][1],
        tiny_knn_p50_ms=figures["tiny-auto"][0],
        tiny_knn_p99_ms=figures["tiny-auto"][1],
        tiny_batches_p50_ms=figures["tiny-batches"][0],
        tiny_batches_p99_ms=figures["tiny-batches"][1],
        foreign=foreign,
        queries=queries,
    )


async def bench(sizes: list[int], queries: int, out: Path | None) -> int:
    work = Path(tempfile.mkdtemp(prefix="iccache-cache-"))
    server = start_redis(work / "redis")
    results = []
    try:
        client = aioredis.from_url(server.url)
        try:
            for n in sizes:
                result = await measure(client, n, queries)
                results.append(result)
                print(
                    f"  {n:>9,} examples: loaded at {result.load_rate:,.0f}/s, "
                    f"{result.memory_bytes_per_example:,.0f} B each, "
                    f"KNN p50/p99 auto {result.knn_p50_ms:.2f}/{result.knn_p99_ms:.2f} ms, "
                    f"batches {result.batches_p50_ms:.2f}/{result.batches_p99_ms:.2f} ms; "
                    f"tiny tenant auto {result.tiny_knn_p50_ms:.2f}/{result.tiny_knn_p99_ms:.2f}"
                    f" ms, batches {result.tiny_batches_p50_ms:.2f}/"
                    f"{result.tiny_batches_p99_ms:.2f} ms",
                    flush=True,
                )
        finally:
            await client.aclose()
    finally:
        server.stop()
    print(
        f"\nExample cache scale ({DIMENSIONS}-d HNSW, cosine, {TENANTS} tenants and a tiny "
        f"one with 1/{TINY_EVERY} of the examples, k=16); KNN p50/p99 ms"
    )
    print(
        "examples   load/s   bytes/example   index MB        auto     batches   tiny auto"
        "  tiny batches"
    )
    for r in results:
        print(
            f"{r.examples:>8,} {r.load_rate:>8,.0f} {r.memory_bytes_per_example:>15,.0f} "
            f"{r.index_mb:>10.1f} {r.knn_p50_ms:>6.2f}/{r.knn_p99_ms:<5.2f} "
            f"{r.batches_p50_ms:>5.2f}/{r.batches_p99_ms:<5.2f} "
            f"{r.tiny_knn_p50_ms:>5.2f}/{r.tiny_knn_p99_ms:<5.2f} "
            f"{r.tiny_batches_p50_ms:>5.2f}/{r.tiny_batches_p99_ms:<5.2f}"
        )
    if out is not None:
        out.write_text(json.dumps([asdict(r) for r in results], indent=2))  # noqa: ASYNC240
        print(f"wrote {out}")
    return 0
