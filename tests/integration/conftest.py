"""Session-scoped real services on free loopback ports, stopped even when tests fail."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from iccache_sidecar.local import assets
from iccache_sidecar.local.llamacpp import LocalLLM, start_llm
from iccache_sidecar.local.redis import LocalRedis, start_redis


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs and data of the local services (printed paths help when one fails)."""
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def redis_server(services_dir: Path) -> Iterator[LocalRedis]:
    """Redis 8.2 with RediSearch loaded."""
    server = start_redis(services_dir / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llm_servers(services_dir: Path) -> Iterator[dict[str, LocalLLM]]:
    """llama.cpp OpenAI-compatible servers: ``smollm2`` (instruct) and ``gemma3`` (base).

    One thread each, so that both fit on a 2-core machine at once.
    """
    with ExitStack() as stack:
        servers: dict[str, LocalLLM] = {}
        for alias, model in (("smollm2", assets.SMOLLM2_135M), ("gemma3", assets.GEMMA3_270M)):
            server = start_llm(model.path(), alias, services_dir / "llm", n_threads=1)
            stack.callback(server.stop)
            servers[alias] = server
        yield servers


@pytest.fixture(scope="session")
def embedder() -> Any:
    """all-MiniLM-L6-v2 loaded offline from its PyPI package, on the CPU."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(assets.minilm_model_dir()), device="cpu")
