"""A ceiling on HTTP request bodies, enforced before the body is parsed.

A declared ``Content-Length`` over the limit is answered with 413 at once, without
reading the body; a body sent in chunks is read up to the limit and refused as soon as
it passes it. The message names the limit. The connection is closed after a 413 (the
rest of the body is never read), and the server goes on serving others.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large_body(limit: int) -> bytes:
    message = f"the request body is larger than this server's limit of {limit} bytes"
    error = {"message": message, "type": "request_too_large", "param": None}
    return json.dumps({"error": {**error, "code": "request_too_large"}}).encode()


class BodyLimit:
    """ASGI middleware: the body is read here (FastAPI would read it whole anyway) and
    handed on in one piece; later ``receive`` calls (a client's disconnect during a
    stream) go to the server as before."""

    def __init__(
        self, app: ASGIApp, limit: int, on_reject: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.on_reject = on_reject  # called once per refused request (a metric)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message | None = {"type": "http.request", "body": b"".join(chunks)}

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                first, body = body, None
                return first
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        if self.on_reject is not None:
            self.on_reject()
        payload = too_large_body(self.limit)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
