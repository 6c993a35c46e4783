"""``iccache bench``: every system on the same requests, same machine, one run.

Steps: load the workload; pick requests (a share with an earlier similar question) and
the history that seeds the cache; have the large model answer that history once (kept in
a file); start Redis and both models; seed one frozen cache; then drive each system at
saturation (a closed loop) and at a fixed Poisson rate, and write the figures.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from iccache_contract import names
from iccache_contract.settings import BackendSettings, RouterSettings
from iccache_dev.bench import report
from iccache_dev.bench.prepare import (
    STYLES,
    AnswerFile,
    AnswerStyle,
    embed_all,
    progress,
    select,
)
from iccache_dev.bench.scoring import contains_answer
from iccache_dev.bench.stack import MODEL_CHOICES, LocalStack, local_stack, model_server
from iccache_dev.bench.systems import (
    SYSTEMS,
    TENANT,
    Outcome,
    SemanticCache,
    SystemSpec,
    send_to_router,
)
from iccache_dev.bench.workloads import WORKLOADS, Item
from iccache_dev.local.assets import cache_dir
from iccache_sidecar.app import running
from iccache_sidecar.backends.client import Backend
from iccache_sidecar.core.domain import ChatMessage, GenerationParams, Route
from iccache_sidecar.embedding import BatchingEmbedder
from iccache_sidecar.storage.connect import example_store, layout_of

COSTS = {"small": 0.1, "large": 1.0}  # relative cost per token (about the parameter ratio)


@dataclass
class BenchConfig:
    workload: str = "nq"
    requests: int = 320
    rate_requests: int = 40
    rate: float = 0.5
    concurrency: int = 2
    modes: tuple[str, ...] = ("saturation", "rate")
    near_share: float = 0.67
    near_threshold: float = 0.8
    neighbours: int = 3
    style: str = "short"
    systems: tuple[str, ...] = tuple(SYSTEMS)
    small: str = "smollm2-135m"
    large: str = "qwen2.5-coder-1.5b"
    seed: int = 2025
    feedback_rate: float = 0.1  # share of requests given reference-based feedback
    out: Path | None = Path("bench-results")
    command: str = "iccache bench"
    workdir: Path = field(default_factory=lambda: cache_dir() / "bench" / "run")


def gets_feedback(cfg: BenchConfig, item: Item) -> bool:
    """Whether this request gets reference-based feedback: the same requests for every
    system (drawn from the seed and the question), ``feedback_rate`` of them."""
    return random.Random(f"{cfg.seed}:{item.question}").random() < cfg.feedback_rate


def _messages(style: AnswerStyle, question: str) -> list[ChatMessage]:
    return [ChatMessage("system", style.system), ChatMessage("user", question)]


async def answer_history(cfg: BenchConfig, style: AnswerStyle, seeds: Sequence[Item]) -> AnswerFile:
    """The large model's answers to the seeding history, computed once per model/style.

    Nothing else runs yet, so the large model gets a server of its own with every core
    (the run itself gives each model one core)."""
    answers = AnswerFile(MODEL_CHOICES[cfg.large].model.sha256, style)
    missing = answers.missing(seeds)
    if not missing:
        return answers
    with model_server(cfg.workdir, cfg.large, os.cpu_count() or 1) as server:
        large = Backend(Route.LARGE, BackendSettings(**_backend(server.base_url, cfg.large, 1.0)))
        bar = progress(len(missing), "large model answers the history (once)")
        try:
            for item in missing:
                reply = await large.complete(
                    _messages(style, item.question),
                    GenerationParams(max_tokens=style.max_tokens, temperature=0.0),
                )
                answers.add(item.question, reply.text.strip())
                bar.update(1)
        finally:
            bar.close()
            await large.close()
    return answers


def _backend(url: str, model: str, cost: float) -> dict[str, Any]:
    # llama-cpp-python's server works on one request at a time (others queue), so one
    # request in flight is its saturation point: the router's load signal needs the truth.
    return {
        "base_url": url,
        "model": model,
        "cost_per_token": cost,
        "timeout_seconds": 600,
        "max_context_tokens": 4096,
        "max_in_flight": 1,
    }


def base_settings(stack: LocalStack, cfg: BenchConfig, index: str) -> RouterSettings:
    return RouterSettings.model_validate(
        {
            "small": _backend(stack.small.base_url, cfg.small, COSTS["small"]),
            "large": _backend(stack.large.base_url, cfg.large, COSTS["large"]),
            "redis": {"url": stack.redis.url, "index_name": index, "key_prefix": index},
            # A frozen cache: every system sees the same examples.
            "cache": {"exact_match": False, "store_large": False, "store_small": False},
            "server": {
                "host": "127.0.0.1",
                "http_port": 0,
                "grpc_port": 0,
                "max_concurrency": 256,
                "decision_details": "full",  # the benchmark counts routes and exact hits
            },
            "retrieval": {"token_budget": 1024},
            # One tenant, the one the cache was seeded for (single-tenant mode).
            "tenancy": {"default_tenant": TENANT},
        }
    )


async def drive(
    send: Callable[[Item], Awaitable[Outcome]],
    items: Sequence[Item],
    mode: str,
    cfg: BenchConfig,
    label: str,
) -> tuple[list[Outcome], float]:
    """Saturation: ``concurrency`` requests always in flight. Rate: Poisson arrivals."""
    bar = progress(len(items), label)
    outcomes: list[Outcome | None] = [None] * len(items)
    rng = random.Random(cfg.seed)

    async def one(i: int) -> None:
        try:
            outcomes[i] = await send(items[i])
        except Exception as exc:  # a failed request is a result, not a crash
            outcomes[i] = Outcome(items[i].question, error=repr(exc))
        bar.update(1)

    start = time.perf_counter()
    if mode == "saturation":
        queue = iter(range(len(items)))

        async def worker() -> None:
            for i in queue:
                await one(i)

        await asyncio.gather(*(worker() for _ in range(cfg.concurrency)))
    else:
        tasks = []
        for i in range(len(items)):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(rng.expovariate(cfg.rate))
        await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    bar.close()
    return [o for o in outcomes if o is not None], wall


async def forget_learning(settings: RouterSettings) -> None:
    """Every router-based system starts from the same state: the seeded examples and
    nothing learned (the bandit's statistics and the quality budget live in Redis and
    would otherwise carry over from the system before)."""
    store = example_store(settings)
    try:
        for pattern in layout_of(settings).learning_patterns:
            keys = [key async for key in store.client.scan_iter(match=pattern, count=1000)]
            if keys:
                await store.client.delete(*keys)
    finally:
        await store.client.aclose()


async def run_system(
    spec: SystemSpec,
    mode: str,
    items: Sequence[Item],
    settings: RouterSettings,
    style: AnswerStyle,
    encoder: Any,
    cfg: BenchConfig,
) -> tuple[list[Outcome], float, dict[str, int], dict[str, Any] | None]:
    """A system's outcomes, wall time, tokens by model and, for a router with shadow
    comparisons, its quality budget at the end (``budget_report``)."""
    label = f"{spec.name} ({mode})"
    if spec.kind == "semantic":
        store = example_store(settings)
        embedder = BatchingEmbedder(encoder, 64, 0.0)
        await embedder.start()
        large = Backend(Route.LARGE, settings.large)
        cache = SemanticCache(store, embedder, large)
        try:
            outcomes, wall = await drive(
                lambda item: cache.send(_messages(style, item.question), style.max_tokens),
                items,
                mode,
                cfg,
                label,
            )
        finally:
            await embedder.stop()
            await large.close()
            await store.client.aclose()
        return outcomes, wall, {"small": 0, "large": cache.tokens}, None

    await forget_learning(settings)
    merged = settings.model_dump()
    for section, values in spec.router.items():
        merged[section] = {**merged[section], **values}
    system_settings = RouterSettings.model_validate(merged)
    async with running(system_settings, encoder=encoder) as runtime:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as http:

            async def send(item: Item) -> Outcome:
                messages = [
                    {"role": m.role, "content": m.content} for m in _messages(style, item.question)
                ]
                out = await send_to_router(http, runtime.base_url, messages, style.max_tokens)
                if spec.feedback and out.request_id and not out.error and gets_feedback(cfg, item):
                    score = 1.0 if contains_answer(out.response, item.answers) else 0.0
                    await http.post(
                        f"{runtime.base_url}/feedback",
                        json={"request_id": out.request_id, "score": score},
                    )
                return out

            outcomes, wall = await drive(send, items, mode, cfg, label)
            await runtime.service.drain()
            quality = None
            if system_settings.routing.quality.shadow_rate > 0 or system_settings.verifier.enabled:
                url = f"http://127.0.0.1:{runtime.http_port}{names.QUALITY_PATH}"
                async with http.get(url) as r:
                    quality = budget_report(await r.json(), runtime.service.metrics.registry)
        registry = runtime.service.metrics.registry
        tokens = {
            route: int(
                sum(
                    registry.get_sample_value(
                        "iccache_tokens_total", {"backend": route, "kind": kind}
                    )
                    or 0
                    for kind in ("prompt", "completion")
                )
            )
            for route in ("small", "large")
        }
    return outcomes, wall, tokens, quality


def budget_report(quality: dict[str, Any], registry: Any) -> dict[str, Any]:
    """The router's overall scope as ``/quality`` reported it after the run, and how many
    shadow comparisons and verifications ended in each way (the budget's evidence)."""
    overall = next(s for s in quality["scopes"] if s["scope"] == "*")
    shadows = {
        result: int(
            registry.get_sample_value("iccache_shadow_comparisons_total", {"result": result}) or 0
        )
        for result in ("loss", "no_loss", "skipped")
    }
    verified = {
        result: int(
            registry.get_sample_value("iccache_verifications_total", {"result": result}) or 0
        )
        for result in ("pass", "fail", "skipped")
    }
    return {**overall, "shadow": shadows, "verified": verified}


async def run_bench(cfg: BenchConfig, encoder: Any) -> list[dict[str, Any]]:
    style = STYLES[cfg.style]
    workload = WORKLOADS[cfg.workload]().load()
    history_vectors = embed_all(
        encoder, f"{workload.name}-history", [i.question for i in workload.history]
    )
    request_vectors = embed_all(
        encoder, f"{workload.name}-requests", [i.question for i in workload.requests]
    )
    rng = random.Random(cfg.seed)
    n_total = max(cfg.requests, cfg.rate_requests if "rate" in cfg.modes else 0)
    selection = select(
        workload,
        history_vectors,
        request_vectors,
        n_requests=n_total,
        near_share=cfg.near_share,
        near_threshold=cfg.near_threshold,
        neighbours=cfg.neighbours,
        rng=rng,
    )
    meta = {
        "command": cfg.command,
        "workload": cfg.workload,
        "style": cfg.style,
        "small": cfg.small,
        "large": cfg.large,
        "requests": cfg.requests,
        "rate_requests": cfg.rate_requests,
        "rate": cfg.rate,
        "concurrency": cfg.concurrency,
        "near_share": selection.near_share,
        "seeds": len(selection.seeds),
        "seed": cfg.seed,
        "feedback_rate": cfg.feedback_rate,
        "feedback": report.feedback_label(cfg.feedback_rate),
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}",
        "planned_runs": len(cfg.modes) * len(cfg.systems),
    }
    vector_of = {item.question: history_vectors[i] for i, item in enumerate(workload.history)}
    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    answers = await answer_history(cfg, style, selection.seeds)
    with local_stack(cfg.workdir, cfg.small, cfg.large) as stack:
        index = f"bench-{uuid.uuid4().hex[:8]}"
        settings = base_settings(stack, cfg, index)
        store = example_store(settings)
        await store.ensure_index(int(history_vectors.shape[1]))
        for item in selection.seeds:
            await store.add(
                TENANT,
                item.question,
                answers.answers[item.question],
                vector_of[item.question],
                cfg.large,
            )
        await store.client.aclose()
        for mode in cfg.modes:
            items = selection.requests[
                : cfg.requests if mode == "saturation" else cfg.rate_requests
            ]
            reference: list[str] | None = None
            for name in cfg.systems:
                outcomes, wall, tokens, quality = await run_system(
                    SYSTEMS[name], mode, items, settings, style, encoder, cfg
                )
                if name == "large-only":
                    reference = [o.response for o in outcomes]
                agreement = (
                    report.agreement_with(encoder, [o.response for o in outcomes], reference)
                    if reference is not None and len(reference) == len(outcomes)
                    else None
                )
                row = report.summarise(name, mode, items, outcomes, wall, tokens, COSTS, agreement)
                if quality is not None:
                    row["quality"] = quality
                rows.append(row)
                records += [
                    {
                        "mode": mode,
                        "system": name,
                        **asdict(o),
                        "references": list(i.answers),
                        "correct": contains_answer(o.response, i.answers),
                    }
                    for i, o in zip(items, outcomes, strict=True)
                ]
                if cfg.out is not None:  # after every system: a cut-off run keeps its figures
                    report.write(rows, meta, cfg.out, records)
                print(
                    f"  {name} ({mode}): accuracy {100 * row['accuracy']:.1f}%, "
                    f"{row['throughput']:.2f} req/s, p50 {row['p50_latency']:.2f} s, "
                    f"offload {100 * row['offload']:.0f}%",
                    flush=True,
                )
    return rows
