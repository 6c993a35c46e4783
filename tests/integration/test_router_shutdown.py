"""SIGTERM while requests are flowing, as the kubelet sends it: the router first fails
readiness while still serving (the drain), then closes its listeners, lets the requests
in flight finish, and exits within its grace period.

The router is ``iccache serve`` in its own process with real Redis and embedder; both
models are the stand-in with a 3 s delay, so that requests are surely in flight when the
signal comes."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iccache_contract import names
from iccache_dev.bench.standin import StandInRouter, standin_router
from iccache_dev.local.process import wait_until
from iccache_dev.local.redis import LocalRedis

DELAY, DRAIN, GRACE = 3.0, 2.0, 10.0
ASK = {"model": "iccache", "messages": [{"role": "user", "content": "Capital of Australia?"}]}


@pytest.fixture
def router(redis_server: LocalRedis, tmp_path: Path) -> Iterator[StandInRouter]:
    server = {"drain_seconds": DRAIN, "shutdown_grace_seconds": GRACE}
    with standin_router(tmp_path, redis_server.url, delay=DELAY, server=server) as router:
        yield router


async def test_sigterm_drains_then_finishes_requests_in_flight(router: StandInRouter) -> None:
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
