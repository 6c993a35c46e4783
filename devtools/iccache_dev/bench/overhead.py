"""``iccache bench overhead``: the router's own cost per request.

Starts Redis with search, an instant OpenAI-compatible responder in place of both
models, and the router as a separate ``iccache serve`` process; seeds the cache with
real embeddings; then sends requests at fixed concurrency and prints latency
percentiles and throughput, plus the router's per-stage means from its metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from iccache_dev.local.assets import minilm_model_dir
from iccache_dev.local.onnx_export import ensure_minilm_onnx
from iccache_dev.local.process import ManagedProcess, free_port
from iccache_dev.local.redis import start_redis
from iccache_sidecar.embedding import load_encoder
from iccache_sidecar.storage.examples import ExampleStore
from iccache_sidecar.storage.layout import RedisLayout

ATTRIBUTES = [
    "capital",
    "population",
    "largest city",
    "official language",
    "currency",
    "national animal",
    "highest mountain",
    "longest river",
    "founding year",
    "flag colours",
]
PLACES = [
    "France",
    "Japan",
    "Brazil",
    "Kenya",
    "Canada",
    "India",
    "Norway",
    "Peru",
    "Egypt",
    "Vietnam",
    "Chile",
    "Ghana",
    "Poland",
    "Turkey",
    "Nepal",
    "Cuba",
    "Spain",
    "Iran",
    "Italy",
    "Mexico",
    "Sweden",
    "Greece",
    "Chad",
    "Laos",
    "Fiji",
]
FORMS = [
    "What is the {a} of {p}?",
    "Tell me the {a} of {p}.",
    "{p}: what is its {a}?",
    "Do you know the {a} of {p}?",
]


def questions() -> list[str]:
    return [f.format(a=a, p=p) for f, a, p in itertools.product(FORMS, ATTRIBUTES, PLACES)]


@dataclass
class Result:
    concurrency: int
    requests: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput_rps: float
    routes: dict[str, int]
    embedding: str = ""
    workers: int = 1
    max_wait_ms: float = 0.0
    embed_threads: int = 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run_load(base: str, prompts: list[str], concurrency: int) -> Result:
    """Closed loop: ``concurrency`` clients, each sending its next request on a reply."""
    latencies: list[float] = []
    routes: dict[str, int] = {}
    errors = 0
    queue = list(prompts)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as http:

        async def worker() -> None:
            nonlocal errors
            while queue:
                prompt = queue.pop()
                body = {
                    "model": "iccache",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": prompt}],
                    "iccache": {"no_store": True},
                }
                start = time.perf_counter()
                async with http.post("/v1/chat/completions", json=body) as r:
                    await r.read()
                    status, route = r.status, r.headers.get("x-iccache-route", "?")
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    errors += 1
                    continue
                routes[route] = routes.get(route, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return Result(
        concurrency=concurrency,
        requests=len(ms),
        errors=errors,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        mean_ms=statistics.fmean(ms),
        throughput_rps=len(ms) / wall,
        routes=routes,
    )


def stage_means(metrics_text: str) -> dict[str, float]:
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == "iccache_stage_seconds_sum":
                sums[s.labels["stage"]] = s.value
            elif s.name == "iccache_stage_seconds_count":
                counts[s.labels["stage"]] = s.value
    return {k: 1000 * sums[k] / counts[k] for k in sums if counts.get(k)}


async def seed(redis_url: str, prefix: str, texts: list[str]) -> None:
    import redis.asyncio as aioredis

    encoder = load_encoder(None)
    vectors = encoder.encode(texts, normalize_embeddings=True, batch_size=64)
    client = aioredis.from_url(redis_url)
    store = ExampleStore(client, RedisLayout(index_name=prefix, prefix=prefix))
    await store.ensure_index(int(vectors.shape[1]))
    for text, vector in zip(texts, vectors, strict=True):
        await store.add("default", text, "A cached answer from the large model.", vector, "large")
    await client.aclose()


EMBEDDINGS = ("onnx", "torch")


def embedding_folder(runtime: str) -> str:
    """The model folder of an embedding runtime (the same MiniLM weights for both)."""
    if runtime == "onnx":
        return str(ensure_minilm_onnx())
    return str(minilm_model_dir())


async def bench(
    requests: int,
    concurrencies: list[int],
    seed_examples: int,
    out: Path | None,
    embeddings: tuple[str, ...] = EMBEDDINGS,
    workers: tuple[int, ...] = (1,),
    max_waits: tuple[float, ...] = (0.0,),
    embed_threads: tuple[int, ...] = (1,),
) -> int:
    rng = random.Random(1)
    pool = questions()
    rng.shuffle(pool)
    seeded, asked = pool[:seed_examples], pool[seed_examples:] or pool
    work = Path(tempfile.mkdtemp(prefix="iccache-bench-"))
    redis = start_redis(work / "redis")
    responder: ManagedProcess | None = None
    results: list[Result] = []
    stages: dict[str, dict[str, float]] = {}
    try:
        rport = free_port()
        responder = ManagedProcess(
            "responder",
            [sys.executable, "-m", "iccache_dev.bench.responder", "--port", str(rport)],
            work / "responder.log",
        )
        print(f"seeding {len(seeded)} examples with real embeddings ...", flush=True)
        await seed(redis.url, "bench", seeded)
        for runtime, count, wait, threads in itertools.product(
            embeddings, workers, max_waits, embed_threads
        ):
            setup = Setup(runtime, count, wait, threads)
            print(f"router with {setup}:", flush=True)
            found, stage_ms = await _measure(
                work, setup, redis.url, rport, asked, requests, concurrencies, rng
            )
            results += found
            stages[str(setup)] = stage_ms
    finally:
        if responder is not None:
            responder.stop()
        redis.stop()

    print("\nRouter overhead (backends answer instantly; Redis, embedder and router are real)")
    header = ["embedder", "workers", "wait ms", "threads", "in flight", "requests"]
    header += ["p50 ms", "p90 ms", "p99 ms", "req/s"]
    print(" ".join(f"{h:>9}" for h in header) + "  routes")
    for r in results:
        row = (r.p50_ms, r.p90_ms, r.p99_ms, r.throughput_rps)
        cells = " ".join(f"{v:>9.1f}" for v in row)
        first = f"{r.embedding:>9} {r.workers:>9} {r.max_wait_ms:>9g} {r.embed_threads:>9}"
        print(f"{first} {r.concurrency:>9} {r.requests:>9} {cells}  {r.routes}")
    for runtime, stage_ms in stages.items():
        means = ", ".join(f"{k} {v:.2f}" for k, v in sorted(stage_ms.items()))
        print(f"mean time per stage, {runtime} (ms): {means}")
    print(
        f"cache: {len(seeded)} examples; targets: p50 <= 8 ms and p99 <= 20 ms at 1 in flight, "
        ">= 400 req/s with p99 <= 150 ms at 32 in flight"
    )
    if out is not None:
        payload: dict[str, Any] = {
            "results": [asdict(r) for r in results],
            "stage_ms": stages,
            "examples": len(seeded),
        }
        out.write_text(json.dumps(payload, indent=2))  # noqa: ASYNC240 - once, at the end
        print(f"wrote {out}")
    return 0 if all(r.errors == 0 for r in results) else 1


@dataclass(frozen=True)
class Setup:
    """One router configuration the benchmark measures."""

    embedding: str
    workers: int = 1
    max_wait_ms: float = 0.0  # embedding.max_wait_ms
    embed_threads: int = 1  # embedding.threads (0: the runtime default, all cores)

    def __str__(self) -> str:
        plural = "s" if self.workers > 1 else ""
        return (
            f"{self.embedding}, {self.workers} worker{plural}, wait {self.max_wait_ms:g} ms, "
            f"threads {self.embed_threads or 'default'}"
        )


async def _measure(
    work: Path,
    setup: Setup,
    redis_url: str,
    rport: int,
    asked: list[str],
    requests: int,
    concurrencies: list[int],
    rng: random.Random,
) -> tuple[list[Result], dict[str, float]]:
    """Start a router of this setup, load it, stop it."""
    runtime, workers = setup.embedding, setup.workers
    hport, gport = free_port(), free_port()
    config = {
        "small": {
            "base_url": f"http://127.0.0.1:{rport}/v1",
            "model": "small",
            "cost_per_token": 0.2,
        },
        "large": {"base_url": f"http://127.0.0.1:{rport}/v1", "model": "large"},
        "redis": {"url": redis_url, "index_name": "bench", "key_prefix": "bench"},
        "server": {
            "host": "127.0.0.1",
            "http_port": hport,
            "grpc_port": gport,
            "max_concurrency": 256,
            "workers": workers,
            "decision_details": "full",
        },
        "routing": {"exploration_rate": 0.0},
        "embedding": {
            "model_path": embedding_folder(runtime),
            "max_wait_ms": setup.max_wait_ms,
            "threads": setup.embed_threads,
        },
    }
    name = f"router-{runtime}-{workers}-{setup.max_wait_ms:g}-{setup.embed_threads}"
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "iccache_sidecar.cli", "serve", "--config", str(path)]
    router = ManagedProcess(name, [*argv, "--log-level", "WARNING"], work / f"{name}.log")
    base = f"http://127.0.0.1:{hport}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        def all_workers() -> bool:  # new connections reach every worker once it listens
            seen = {httpx.get(f"{base}/healthz").headers["x-iccache-replica"] for _ in range(8)}
            return len(seen) == workers

        router.wait_ready(ready, timeout=120)
        router.wait_ready(all_workers, timeout=120)
        await run_load(base, asked[:20], 4)  # warm up
        results = []
        for c in concurrencies:
            prompts = [rng.choice(asked) + f" (#{i})" for i in range(requests)]
            result = await run_load(base, prompts, c)
            result.embedding, result.workers = runtime, workers
            result.max_wait_ms, result.embed_threads = setup.max_wait_ms, setup.embed_threads
            results.append(result)
            print(
                f"  {c:>3} in flight: p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  "
                f"{result.throughput_rps:6.1f} req/s  errors {result.errors}",
                flush=True,
            )
        async with httpx.AsyncClient() as http:
            stage_ms = stage_means((await http.get(f"{base}/metrics")).text)
    finally:
        router.stop()
    return results, stage_ms
