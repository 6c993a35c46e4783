"""A client that stops reading a stream: uvicorn on loopback, a response that would never
end, and a client that reads nothing. The deadline ends the response: its source is
closed (where the router's model stream would be cancelled), the connection is closed,
and the server goes on serving others."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from iccache_sidecar.api.send_deadline import SendDeadline
from iccache_sidecar.api.streaming import ClosingStreamingResponse

DEADLINE = 0.5


def endless_app(source_closed: asyncio.Event) -> Starlette:
    async def chunks() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"data: " + b"x" * 65_536 + b"\n\n"
        finally:
            source_closed.set()

    async def stream(_: object) -> ClosingStreamingResponse:
        return ClosingStreamingResponse(chunks(), media_type="text/event-stream")

    async def ping(_: object) -> PlainTextResponse:
        return PlainTextResponse("pong")

    return Starlette(routes=[Route("/stream", stream), Route("/ping", ping)])


@contextlib.asynccontextmanager
async def serving(app: object) -> AsyncIterator[int]:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn has no event for it
            await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def test_a_client_that_stops_reading_has_its_stream_ended() -> None:
    source_closed = asyncio.Event()
    stalls: list[int] = []
    stalled = asyncio.Event()

    def on_stall() -> None:
        stalls.append(1)
        stalled.set()

    app = SendDeadline(endless_app(source_closed), DEADLINE, on_stall=on_stall)
    async with serving(app) as port:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /stream HTTP/1.1\r\nhost: t\r\n\r\n")
        await writer.drain()
        # The client reads nothing: the buffers fill, then the server's send waits.
        await asyncio.wait_for(source_closed.wait(), timeout=20)
        await asyncio.wait_for(stalled.wait(), timeout=5)
        assert stalls == [1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/ping")).text == "pong"  # others are still served
        # The stalled connection was closed: reading it now ends (after what was buffered).
        await asyncio.wait_for(reader.read(), timeout=20)
        writer.close()


async def test_a_client_that_reads_gets_the_whole_answer() -> None:
    source_closed = asyncio.Event()
    app = SendDeadline(endless_app(source_closed), DEADLINE)
    async with serving(app) as port, httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{port}/stream"
        async with client.stream("GET", url) as response:
            got = 0
            async for part in response.aiter_bytes():
                got += len(part)
                if got > 4_000_000:  # well past every buffer: the deadline never fired
                    break
        assert got > 4_000_000
