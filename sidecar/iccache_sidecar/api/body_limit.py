"""A ceiling on HTTP request bodies, in size and in time, enforced before the body is
parsed.

A declared ``Content-Length`` over the limit is answered with 413 at once, without
reading the body; a body sent in chunks is read up to the limit and refused as soon as
it passes it. A body that has not fully arrived ``timeout`` seconds after its head gets
408 (a client sending it slowly holds no slot for longer). The message names the limit.
The connection is closed after either (the rest of the body is never read), and the
server goes on serving others.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def error_body(code: str, message: str) -> bytes:
    error = {"message": message, "type": code, "param": None, "code": code}
    return json.dumps({"error": error}).encode()


def too_large_body(limit: int) -> bytes:
    message = f"the request body is larger than this server's limit of {limit} bytes"
    return error_body("request_too_large", message)


def slow_body(timeout: float) -> bytes:
    message = f"the request body was not received within this server's {timeout:g} s"
    return error_body("request_timeout", message)


class BodyLimit:
    """ASGI middleware: the body is read here (FastAPI would read it whole anyway) and
    handed on in one piece; later ``receive`` calls (a client's disconnect during a
    stream) go to the server as before."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        timeout: float | None = None,
        on_reject: Callable[[], None] | None = None,
        on_timeout: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout
        self.on_reject = on_reject  # called once per refused request (a metric)
        self.on_timeout = on_timeout  # called once per body that came too slowly

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            if self.on_reject is not None:
                self.on_reject()
            await _answer(send, 413, too_large_body(self.limit))
            return
        try:
            async with asyncio.timeout(self.timeout):
                whole = await self._read(receive, send)
        except TimeoutError:
            if self.on_timeout is not None:
                self.on_timeout()
            await _answer(send, 408, slow_body(self.timeout or 0))
            return
        if whole is None:
            return
        body: Message | None = {"type": "http.request", "body": whole}

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                first, body = body, None
                return first
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None when it was refused or the client went away."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                if self.on_reject is not None:
                    self.on_reject()
                await _answer(send, 413, too_large_body(self.limit))
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _answer(send: Send, status: int, payload: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
