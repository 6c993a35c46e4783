"""A pass-through HTTP proxy in front of a real model server that counts what it sees:
an independent witness of how many requests and tokens a client really spent."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

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

    try:
        async with _serving(forward) as proxy.base_url:
            yield proxy
    finally:
        await session.close()


@dataclass
class RecordingProxy:
    """Every request body a model server received through it; ``reject`` makes it answer
    the next requests itself with that status (a model that refuses a parameter: the
    llama.cpp servers here answer validation errors with 500, not a 4xx)."""

    target: str
    base_url: str = ""
    bodies: list[dict[str, object]] = field(default_factory=list)
    reject: tuple[int, str] | None = None
    events: list[int] = field(default_factory=list)  # server-sent events per response
    cut: int = 0  # responses the client closed before their end


@contextlib.asynccontextmanager
async def recording_proxy(target: str) -> AsyncIterator[RecordingProxy]:
    proxy = RecordingProxy(target.rstrip("/"))
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        proxy.bodies.append(json.loads(raw))
        if proxy.reject is not None:
            status, message = proxy.reject
            error = {"error": {"message": message, "type": "invalid_request_error"}}
            return web.json_response(error, status=status)
        tail = request.match_info["tail"]
        async with session.post(
            f"{proxy.target}/{tail}", data=raw, headers={"content-type": "application/json"}
        ) as r:
            response = web.StreamResponse(
                status=r.status, headers={"content-type": r.headers["content-type"]}
            )
            await response.prepare(request)
            proxy.events.append(0)
            try:
                async for piece in r.content.iter_any():
                    proxy.events[-1] += piece.count(b"data:")
                    await response.write(piece)
            except ConnectionError:
                proxy.cut += 1  # leaving the block closes the model's stream too
                return response
            await response.write_eof()
            return response

    try:
        async with _serving(forward) as proxy.base_url:
            yield proxy
    finally:
        await session.close()


@contextlib.asynccontextmanager
async def _serving(
    forward: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """Serve ``forward`` for every POST under /v1 on a free loopback port; yields the base URL."""
    app = web.Application()
    app.router.add_post("/v1/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()
