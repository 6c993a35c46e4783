"""The composition root of a router process: builds every collaborator once.

``running(settings)`` starts the embedder, connects Redis, builds the policy, the
backends and the service, and serves HTTP and gRPC until the context exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI

from iccache_sidecar.backends import Backend
from iccache_sidecar.domain import FEATURE_NAMES, Route
from iccache_sidecar.embedding import BatchingEmbedder, Encoder, load_sentence_transformer
from iccache_sidecar.errors import DependencyDown
from iccache_sidecar.grpc_api import create_grpc_server, mark_serving
from iccache_sidecar.http_api import create_http_app
from iccache_sidecar.judge import PairwiseJudge
from iccache_sidecar.loadboard import REPORT_SECONDS, LoadBoard
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.routing.registry import make_policy
from iccache_sidecar.service import RouterService
from iccache_sidecar.settings import RouterSettings
from iccache_sidecar.store import ExampleStore, RedisBanditStore

log = logging.getLogger(__name__)

MAINTENANCE_SECONDS = 10.0


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Runtime:
    settings: RouterSettings
    service: RouterService
    http_app: FastAPI
    http_port: int
    grpc_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1"


def redis_client(settings: RouterSettings) -> aioredis.Redis:
    r = settings.redis
    password = os.environ.get(r.password_env) if r.password_env else None
    return aioredis.from_url(
        r.url,
        password=password or None,
        socket_timeout=r.timeout_seconds,
        socket_connect_timeout=r.timeout_seconds,
    )


def example_store(settings: RouterSettings, client: aioredis.Redis | None = None) -> ExampleStore:
    """The example store the settings describe (on a new client unless one is given)."""
    return ExampleStore(
        client or redis_client(settings),
        index_name=settings.redis.index_name,
        key_prefix=settings.redis.key_prefix,
        ttl_seconds=settings.cache.ttl_seconds,
    )


@contextlib.asynccontextmanager
async def running(
    settings: RouterSettings, *, encoder: Encoder | None = None
) -> AsyncIterator[Runtime]:
    """Serve until the block exits. ``encoder`` lets a caller share a loaded model."""
    metrics = Metrics()
    if encoder is None:
        encoder = await asyncio.to_thread(
            load_sentence_transformer, settings.embedding.model_path, settings.embedding.threads
        )
    embedder = BatchingEmbedder(
        encoder, settings.embedding.batch_size, settings.embedding.max_wait_ms
    )
    await embedder.start()
    client = redis_client(settings)
    store = example_store(settings, client)
    status = {"started": False, "index": False}
    policy = make_policy(
        settings.routing,
        RedisBanditStore(client, f"{settings.redis.key_prefix}:bandit", len(FEATURE_NAMES)),
    )
    backends = {route: Backend(route, getattr(settings, route.value)) for route in Route}
    judge = (
        PairwiseJudge(settings.judge, backends[Route.LARGE])
        if settings.judge.base_url and settings.judge.sample_rate > 0
        else None
    )
    service = RouterService(
        settings,
        embedder=embedder,
        store=store,
        policy=policy,
        backends=backends,
        metrics=metrics,
        judge=judge,
    )

    board = LoadBoard(client, settings.redis.key_prefix)
    replica = f"{socket.gethostname()}:{os.getpid()}"

    async def report_load() -> None:
        """Tell the replay job how busy this replica is (it waits for quiet)."""
        while True:
            await asyncio.sleep(REPORT_SECONDS)
            with contextlib.suppress(DependencyDown):
                await board.publish(replica, service.take_peak_load())

    async def maintain() -> None:
        """Create the index once Redis answers; share what replicas learned; gauges."""
        while True:
            try:
                if not status["index"]:
                    await store.ensure_index(embedder.dimensions)
                    status["index"] = True
                    log.info("example index %r is ready", settings.redis.index_name)
                await policy.refresh()
                metrics.cache_examples.set(await store.count())
            except DependencyDown as exc:
                log.warning("redis unavailable, serving without the cache: %s", exc)
            for route, backend in backends.items():
                metrics.backend_in_flight.labels(route.value).set(backend.load.in_flight)
            await asyncio.sleep(MAINTENANCE_SECONDS)

    http_app = create_http_app(service, status)
    grpc_server, grpc_port = create_grpc_server(
        service, f"{settings.server.host}:{settings.server.grpc_port}"
    )
    uv = _QuietServer(
        uvicorn.Config(
            http_app,
            host=settings.server.host,
            port=settings.server.http_port,
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
    )
    maintenance = asyncio.create_task(maintain(), name="maintenance")
    reporting = asyncio.create_task(report_load(), name="load-report")
    await grpc_server.start()
    http_task = asyncio.create_task(uv.serve(), name="http")
    try:
        while not uv.started:
            if http_task.done():
                http_task.result()
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        http_port = uv.servers[0].sockets[0].getsockname()[1]
        await mark_serving(grpc_server, True)
        status["started"] = True
        log.info(
            "serving HTTP on %s:%d and gRPC on port %d", settings.server.host, http_port, grpc_port
        )
        yield Runtime(settings, service, http_app, http_port, grpc_port)
    finally:
        status["started"] = False
        await mark_serving(grpc_server, False)
        uv.should_exit = True
        await grpc_server.stop(grace=2)
        with contextlib.suppress(Exception):
            await http_task
        for task in (maintenance, reporting):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(DependencyDown):
            await board.withdraw(replica)
        await service.drain()
        await embedder.stop()
        for backend in backends.values():
            await backend.close()
        if judge is not None:
            await judge.close()
        await client.aclose()


async def serve(settings: RouterSettings) -> None:
    """Run until SIGINT or SIGTERM (``iccache serve``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(settings):
        await stop.wait()
        log.info("stopping")
