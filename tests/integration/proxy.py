"""A pass-through HTTP proxy in front of a real model server that counts what it sees:
an independent witness of how many requests and tokens a client really spent."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web


@dataclass
class CountingProxy:
    target: str  # base URL ending in /v1
    base_url: str = ""
    requests: int = 0
    tokens: int = 0


@contextlib.asynccontextmanager
async def counting_proxy(target: str) -> AsyncIterator[CountingProxy]:
    proxy = CountingProxy(target.rstrip("/"))
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        proxy.requests += 1
        tail = request.match_info["tail"]
        async with session.post(
            f"{proxy.target}/{tail}",
            data=await request.read(),
            headers={"content-type": "application/json"},
        ) as r:
            body = await r.read()
            status = r.status
        with contextlib.suppress(ValueError, KeyError, TypeError):
            usage = json.loads(body)["usage"]
            proxy.tokens += int(usage["prompt_tokens"]) + int(usage["completion_tokens"])
        return web.Response(body=body, status=status, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    proxy.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield proxy
    finally:
        await runner.cleanup()
        await session.close()
