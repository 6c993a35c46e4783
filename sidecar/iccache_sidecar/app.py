"""The composition root of a router process: builds every collaborator once.

``build`` makes the collaborators (embedder, Redis store, policy, model clients, judge,
the service), ``serving`` runs the HTTP and gRPC faces over them, and ``running`` puts
the two together with the background loops (index creation, learned state, load
reports) until the context exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI

from iccache_contract.settings import RouterSettings
from iccache_sidecar.api.admin import admin_key
from iccache_sidecar.api.auth import Authenticator
from iccache_sidecar.api.grpc_service import create_grpc_server, mark_serving
from iccache_sidecar.api.http_app import create_http_app
from iccache_sidecar.api.http_state import HttpState
from iccache_sidecar.api.replica import replica_name
from iccache_sidecar.api.slow_clients import head_deadline_protocol
from iccache_sidecar.backends.client import Backend
from iccache_sidecar.backends.embeddings import EmbeddingsServer
from iccache_sidecar.backends.judge import PairwiseJudge
from iccache_sidecar.backends.verifier import LogprobVerifier
from iccache_sidecar.core.domain import FEATURE_NAMES, Route
from iccache_sidecar.core.errors import DependencyDown, ErrorKind
from iccache_sidecar.embedding import BatchingEmbedder, Encoder, load_encoder
from iccache_sidecar.embedding.serving import OwnEmbeddings
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.degrade import DEPENDENCIES
from iccache_sidecar.requestpath.planning import STAGES
from iccache_sidecar.requestpath.ports import EmbeddingsSource
from iccache_sidecar.requestpath.service import RouterService
from iccache_sidecar.requestpath.shadow import ShadowComparer
from iccache_sidecar.requestpath.verification import DraftCheck
from iccache_sidecar.routing.base import RoutingPolicy
from iccache_sidecar.routing.registry import make_policy
from iccache_sidecar.storage.connect import example_store, layout_of, redis_client
from iccache_sidecar.storage.examples import ExampleStore, RedisBanditStore
from iccache_sidecar.storage.loadboard import REPORT_SECONDS, LoadBoard
from iccache_sidecar.storage.quality_store import RedisOutcomeStore
from iccache_sidecar.storage.ratelimit import RateLimiter
from iccache_sidecar.storage.responses import ResponseStore

log = logging.getLogger(__name__)

MAINTENANCE_SECONDS = 5.0


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
    status: dict[str, bool]
    grpc_server: grpc.aio.Server

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1"


@dataclass
class Parts:
    """Every collaborator of one router process, built once."""

    settings: RouterSettings
    metrics: Metrics
    embedder: BatchingEmbedder
    client: aioredis.Redis
    store: ExampleStore
    policy: RoutingPolicy
    backends: dict[Route, Backend]
    judge: PairwiseJudge | None
    verifier: LogprobVerifier | None
    service: RouterService
    board: LoadBoard
    status: dict[str, bool]
    auth: Authenticator
    responses: ResponseStore | None = None
    embeddings: EmbeddingsSource | None = None

    async def close(self) -> None:
        await self.service.drain()
        if self.embeddings is not None:
            await self.embeddings.close()
        await self.embedder.stop()
        for backend in self.backends.values():
            await backend.close()
        if self.judge is not None:
            await self.judge.close()
        if self.verifier is not None:
            await self.verifier.close()
        await self.client.aclose()


async def build(settings: RouterSettings, encoder: Encoder | None = None) -> Parts:
    auth = Authenticator.from_settings(settings.tenancy)  # a bad keys file fails here, first
    metrics = Metrics()
    metrics.start_at_zero(
        error_kinds=[kind.value for kind in ErrorKind],
        backends=[route.value for route in Route],
        dependencies=DEPENDENCIES,
        stages=STAGES,
        tenants=[settings.tenancy.default_tenant] if settings.tenancy.mode == "single" else [],
    )
    if encoder is None:
        encoder = await asyncio.to_thread(
            load_encoder, settings.embedding.model_path, settings.embedding.threads
        )
    embedder = BatchingEmbedder(
        encoder, settings.embedding.batch_size, settings.embedding.max_wait_ms
    )
    await embedder.start()
    client = redis_client(settings)
    store = example_store(settings, client)
    layout = layout_of(settings)
    policy = make_policy(settings.routing, RedisBanditStore(client, layout, len(FEATURE_NAMES)))
    backends = {route: Backend(route, getattr(settings, route.value)) for route in Route}
    quality = settings.routing.quality
    budgeted = quality.max_loss is not None or bool(quality.tenants)
    compares = quality.shadow_rate > 0 or (budgeted and quality.probe_rate > 0)
    judge = (
        PairwiseJudge(settings.judge, backends[Route.LARGE])
        if settings.judge.base_url and (settings.judge.sample_rate > 0 or compares)
        else None
    )
    verifier, check = None, None
    if settings.verifier.enabled:
        verifier = LogprobVerifier(settings.verifier, settings.large)
        await verifier.detect()  # says what it found; "none" keeps the checks off
        check = DraftCheck(settings, verifier, metrics)
    shadow = (
        ShadowComparer(
            quality,
            backends[Route.LARGE],
            embedder,
            judge,
            small=backends[Route.SMALL],
            check=check,
        )
        if compares
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
        limiter=RateLimiter(client, layout),
        shadow=shadow,
        outcomes=RedisOutcomeStore(client, layout),
        check=check,
    )
    board = LoadBoard(client, layout)
    status = {"started": False, "index": False}
    return Parts(
        settings,
        metrics,
        embedder,
        client,
        store,
        policy,
        backends,
        judge,
        verifier,
        service,
        board,
        status,
        auth,
        responses=ResponseStore(client, layout, settings.responses.store_ttl_seconds),
        embeddings=embeddings_source(settings, embedder),
    )


def embeddings_source(
    settings: RouterSettings, embedder: BatchingEmbedder
) -> EmbeddingsSource | None:
    """What answers ``POST /v1/embeddings`` (None: it answers 404)."""
    api = settings.embeddings_api
    if api.source == "router":
        return OwnEmbeddings(embedder, api.model)
    if api.source == "backend":
        return EmbeddingsServer(api)
    return None


async def report_load(parts: Parts, replica: str) -> None:
    """Tell the replay job how busy this replica is (it waits for quiet)."""
    while True:
        await asyncio.sleep(REPORT_SECONDS)
        with contextlib.suppress(DependencyDown):
            await parts.board.publish(replica, parts.service.take_peak_load())


async def maintain(parts: Parts) -> None:
    """Make sure the index exists (every round: a Redis restarted without its data has
    none, and the cache would stay unused); share what replicas learned; gauges."""
    while True:
        try:
            examples = await parts.store.ensure_index(parts.embedder.dimensions)
            if not parts.status["index"]:
                parts.status["index"] = True
                log.info("example index %r is ready", parts.settings.redis.index_name)
            await parts.policy.refresh()
            await parts.service.budget.refresh()
            for arm, outcomes in parts.policy.learned().items():
                parts.metrics.learned.labels(arm.value).set(outcomes)
            parts.metrics.cache_examples.set(examples)
        except DependencyDown as exc:
            parts.status["index"] = False
            log.warning("redis unavailable, serving without the cache: %s", exc)
        for route, backend in parts.backends.items():
            parts.metrics.backend_in_flight.labels(route.value).set(backend.load.in_flight)
        verifier = parts.verifier
        if verifier is not None and verifier.protocol == "none" and not verifier.answered:
            await verifier.detect(quiet=True)  # the large model was not up at start
        await asyncio.sleep(MAINTENANCE_SECONDS)


@contextlib.asynccontextmanager
async def serving(parts: Parts) -> AsyncIterator[Runtime]:
    """HTTP and gRPC on the configured ports until the block exits."""
    server = parts.settings.server
    http_app = create_http_app(
        HttpState(
            parts.service,
            parts.auth,
            status=parts.status,
            store=parts.store,
            admin_key=admin_key(parts.settings.tenancy),
            responses=parts.responses,
            embeddings=parts.embeddings,
        )
    )
    shared = server.workers > 1  # other workers of this pod listen on the same ports
    grpc_server, grpc_port = create_grpc_server(
        parts.service, f"{server.host}:{server.grpc_port}", parts.auth, reuse_port=shared
    )
    too_slow = parts.metrics.errors.labels(ErrorKind.SLOW_CLIENT.value)
    uv = _QuietServer(
        uvicorn.Config(
            http_app,
            host=server.host,
            port=server.http_port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=server.idle_timeout_seconds,
            http=head_deadline_protocol(server.header_timeout_seconds, too_slow.inc),
            timeout_graceful_shutdown=math.ceil(server.shutdown_grace_seconds),
        )
    )
    await grpc_server.start()
    listener = listen_socket(server.host, server.http_port, reuse_port=shared)
    http_task = asyncio.create_task(uv.serve(sockets=[listener]), name="http")
    try:
        while not uv.started:
            if http_task.done():
                http_task.result()
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        http_port = uv.servers[0].sockets[0].getsockname()[1]
        await mark_serving(grpc_server, True)
        parts.status["started"] = True
        log.info("serving HTTP on %s:%d and gRPC on port %d", server.host, http_port, grpc_port)
        yield Runtime(
            parts.settings,
            parts.service,
            http_app,
            http_port,
            grpc_port,
            parts.status,
            grpc_server,
        )
    finally:
        parts.status["started"] = False
        await mark_serving(grpc_server, False)
        uv.should_exit = True
        await asyncio.gather(
            grpc_server.stop(grace=server.shutdown_grace_seconds),
            _finish(http_task),
        )


def listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """The HTTP listener; with ``reuse_port`` several processes may bind the same port
    and the kernel spreads connections over them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _finish(http_task: asyncio.Task[None]) -> None:
    with contextlib.suppress(Exception):
        await http_task


@contextlib.asynccontextmanager
async def running(
    settings: RouterSettings, *, encoder: Encoder | None = None
) -> AsyncIterator[Runtime]:
    """Serve until the block exits. ``encoder`` lets a caller share a loaded model."""
    parts = await build(settings, encoder)
    replica = replica_name()
    loops = [
        asyncio.create_task(maintain(parts), name="maintenance"),
        asyncio.create_task(report_load(parts, replica), name="load-report"),
    ]
    try:
        async with serving(parts) as runtime:
            yield runtime
    finally:
        for task in loops:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(DependencyDown):
            await parts.board.withdraw(replica)
        await parts.close()


async def serve(settings: RouterSettings) -> None:
    """Run until SIGINT or SIGTERM (``iccache serve``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(settings) as runtime:
        await stop.wait()
        await drain(runtime, settings.server.drain_seconds)


async def drain(runtime: Runtime, seconds: float) -> None:
    """Readiness fails first (the Service stops sending new requests) while requests
    are still served; then ``running`` closes the listeners and lets those in flight
    finish within the grace period."""
    runtime.status["started"] = False
    await mark_serving(runtime.grpc_server, False)
    log.info("stopping: not ready; serving for %.0f s more before closing the listeners", seconds)
    await asyncio.sleep(seconds)
    log.info("stopping: closing the listeners; requests in flight may finish")
