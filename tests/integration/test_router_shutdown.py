"""SIGTERM while requests are flowing, as the kubelet sends it: the router first fails
readiness while still serving (the drain), then closes its listeners, lets the requests
in flight finish, and exits within its grace period.

The router is ``iccache serve`` in its own process with real Redis and embedder; both
models are the stand-in with a 3 s delay, so that requests are surely in flight when the
signal comes."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from iccache_contract import names
from iccache_dev.local.process import ManagedProcess, free_port, wait_until
from iccache_dev.local.redis import LocalRedis

DELAY, DRAIN, GRACE = 3.0, 2.0, 10.0
ASK = {"model": "iccache", "messages": [{"role": "user", "content": "Capital of Australia?"}]}


@dataclass
class Router:
    process: ManagedProcess
    url: str


@pytest.fixture
def router(redis_server: LocalRedis, tmp_path: Path) -> Iterator[Router]:
    backend_port, http_port, grpc_port = free_port(), free_port(), free_port()
    backend = f"http://127.0.0.1:{backend_port}/v1"
    config = {
        "small": {"base_url": backend, "model": "small", "cost_per_token": 0.2},
        "large": {"base_url": backend, "model": "large", "cost_per_token": 1.0},
        "redis": {"url": redis_server.url, "index_name": "shutdown", "key_prefix": "shutdown"},
        "server": {
            "host": "127.0.0.1",
            "http_port": http_port,
            "grpc_port": grpc_port,
            "drain_seconds": DRAIN,
            "shutdown_grace_seconds": GRACE,
        },
    }
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "iccache_dev.bench.responder", "--port", str(backend_port)]
    with ManagedProcess("responder", [*argv, "--delay", str(DELAY)], tmp_path / "responder.log"):
        serve = [sys.executable, "-m", "iccache_dataplane", "serve", "--config"]
        with ManagedProcess(
            "router", [*serve, str(tmp_path / "router.yaml")], tmp_path / "r.log"
        ) as p:
            url = f"http://127.0.0.1:{http_port}"

            def ready() -> bool:
                try:
                    return httpx.get(url + names.READY_PATH, timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            p.wait_ready(ready, timeout=120)
            yield Router(p, url)


async def test_sigterm_drains_then_finishes_requests_in_flight(router: Router) -> None:
    async with httpx.AsyncClient(base_url=router.url, timeout=60) as client:
        unary = asyncio.create_task(client.post("/v1/chat/completions", json=ASK))

        async def streamed() -> str:
            body = {**ASK, "stream": True}
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                return "".join([chunk async for chunk in response.aiter_text()])

        stream = asyncio.create_task(streamed())
        await asyncio.sleep(1.0)  # both are waiting on the backend now
        signalled = time.monotonic()
        router.process.proc.send_signal(signal.SIGTERM)

        # The drain: readiness fails at once, and halfway through it a new connection
        # is still served (a Service may send requests until it sees the readiness).
        async with httpx.AsyncClient(base_url=router.url, timeout=5) as fresh:
            for _ in range(50):
                if (await fresh.get(names.READY_PATH)).status_code == 503:
                    break
                await asyncio.sleep(0.02)
            assert (await fresh.get(names.READY_PATH)).status_code == 503
        await asyncio.sleep(DRAIN / 2 - (time.monotonic() - signalled))
        async with httpx.AsyncClient(base_url=router.url, timeout=5) as late:
            assert (await late.get(names.HEALTH_PATH)).status_code == 200
            assert (await late.get(names.READY_PATH)).status_code == 503

        # After the drain the listener is closed: new connections are refused.
        def refused() -> bool:
            try:
                httpx.get(router.url + names.HEALTH_PATH, timeout=1)
            except httpx.ConnectError:
                return True
            except httpx.HTTPError:
                return False
            return False

        await asyncio.to_thread(
            wait_until, refused, timeout=DRAIN + 3, interval=0.1, what="listener closed"
        )
        assert time.monotonic() - signalled >= DRAIN * 0.9  # not before the drain ended
        # The requests that were in flight finish normally.
        done = await unary
        assert done.status_code == 200, done.text
        assert done.json()["choices"][0]["message"]["content"]
        text = await stream
        assert "[DONE]" in text
    code = await asyncio.to_thread(router.process.proc.wait, DRAIN + GRACE)
    assert code == 0, router.process.log_tail()
    assert time.monotonic() - signalled < DRAIN + GRACE
