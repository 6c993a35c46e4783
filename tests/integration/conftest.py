"""Session-scoped real services on free loopback ports, stopped even when tests fail."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from router_settings import make_settings

from iccache_contract.settings import RouterSettings
from iccache_dev.local import assets
from iccache_dev.local.cluster import LocalCluster, start_cluster
from iccache_dev.local.llamacpp import LocalLLM, start_llm
from iccache_dev.local.redis import LocalRedis, start_redis
from iccache_sidecar.app import Runtime, running


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

    One thread each, so that both fit on a 2-core machine at once. The router tests use
    SmolLM2 as the small model and Gemma as the large one: fast stand-ins for checking
    the mechanics; answer quality is measured by the benchmark, with a larger model.
    """
    models = (
        ("smollm2", assets.SMOLLM2_135M, None),
        ("gemma3", assets.GEMMA3_270M, "gemma"),  # no usable template in the file
    )
    with ExitStack() as stack:
        servers: dict[str, LocalLLM] = {}
        for alias, model, chat_format in models:
            server = start_llm(
                model.path(), alias, services_dir / "llm", n_threads=1, chat_format=chat_format
            )
            stack.callback(server.stop)
            servers[alias] = server
        yield servers


@pytest.fixture(scope="session")
def tool_server(services_dir: Path) -> Iterator[LocalLLM]:
    """SmolLM2 behind llama.cpp's ``chatml-function-calling`` chat format: answers with
    ``tool_calls`` (grammar-constrained when the client names the function to call)."""
    server = start_llm(
        assets.SMOLLM2_135M.path(),
        "smollm2-tools",
        services_dir / "llm",
        n_threads=1,
        chat_format="chatml-function-calling",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def qwen_server(services_dir: Path) -> Iterator[LocalLLM]:
    """Qwen2.5-Coder-1.5B-Instruct: an instruct model that answers and paraphrases well
    enough for the replay job's tests (the stand-ins above are too weak for that)."""
    server = start_llm(
        assets.QWEN25_CODER_15B.path(), "qwen1.5b", services_dir / "llm", n_threads=2
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def embedder() -> Any:
    """all-MiniLM-L6-v2 loaded offline from its PyPI package, on the CPU."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(assets.minilm_model_dir()), device="cpu")


@pytest.fixture
def router_settings(
    redis_server: LocalRedis, llm_servers: dict[str, LocalLLM]
) -> Callable[..., RouterSettings]:
    """Build RouterSettings for the session's services; keyword sections override."""

    def build(**sections: dict[str, Any]) -> RouterSettings:
        return make_settings(
            redis_server, llm_servers["smollm2"], llm_servers["gemma3"], **sections
        )

    return build


@pytest.fixture
async def icc(
    router_settings: Callable[..., RouterSettings], embedder: Any
) -> AsyncIterator[Runtime]:
    """A running router (HTTP + gRPC) with the default settings and a fresh cache."""
    async with running(router_settings(), encoder=embedder) as runtime:
        yield runtime


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real control plane (etcd, kube-apiserver, controller-manager, scheduler) with
    kwok's fake nodes: pools ``cpu``, ``gpu-a`` and ``gpu-b`` (GPU nodes tainted)."""
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def namespace(k8s_cluster: LocalCluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    k8s_cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def crd_installed(k8s_cluster: LocalCluster) -> LocalCluster:
    """The InContextCache CRD applied to the local control plane."""
    from iccache_operator.crd import CRD_FILE

    k8s_cluster.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
    k8s_cluster.wait_established("incontextcaches.iccache.dev")
    return k8s_cluster
