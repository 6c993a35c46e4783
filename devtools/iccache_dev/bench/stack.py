"""The whole data plane as local processes, without Kubernetes: Redis with search and
two llama.cpp servers (the router runs in-process, per system, on top of them)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from iccache_dev.local import assets
from iccache_dev.local.llamacpp import LocalLLM, start_llm
from iccache_dev.local.redis import LocalRedis, start_redis


@dataclass(frozen=True)
class ModelChoice:
    model: assets.ModelFile
    chat_format: str | None = None


# Names accepted by --small / --large.
MODEL_CHOICES = {
    "smollm2-135m": ModelChoice(assets.SMOLLM2_135M),
    "gemma3-270m": ModelChoice(assets.GEMMA3_270M, "gemma"),
    "qwen2.5-coder-1.5b": ModelChoice(assets.QWEN25_CODER_15B),
}


@dataclass
class LocalStack:
    redis: LocalRedis
    small: LocalLLM
    large: LocalLLM


@contextlib.contextmanager
def model_server(workdir: Path, alias: str, threads: int) -> Iterator[LocalLLM]:
    """One llama.cpp server for a model named in ``MODEL_CHOICES``; stopped on exit."""
    choice = MODEL_CHOICES[alias]
    server = start_llm(
        choice.model.path(),
        alias,
        workdir,
        n_threads=threads,
        chat_format=choice.chat_format,
        n_ctx=4096,
    )
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def local_stack(workdir: Path, small: str, large: str, threads: int = 1) -> Iterator[LocalStack]:
    """Start Redis and both model servers; stop all of them on exit (also on Ctrl-C).

    One thread per model by default: on a 2-core machine each model gets a core, as each
    gets its own node pool in a cluster. Two llama.cpp servers with 2 threads each on 2
    cores slowed the small one to 0.4 tokens/s whenever both were generating."""
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        redis = start_redis(workdir / "redis")
        stack.callback(redis.stop)
        yield LocalStack(
            redis,
            stack.enter_context(model_server(workdir, small, threads)),
            stack.enter_context(model_server(workdir, large, threads)),
        )
