"""A deadline for each part of a response, against clients that stop reading.

A client that opens a stream and stops reading it (or reads a byte a minute) fills the
connection's buffers; then every ``send`` of the response waits, and the request keeps
its concurrency slot and its model generating for as long as the client likes. Here each
part of a response must be taken by the connection within ``seconds``; otherwise the
response ends: the answer's source is closed (a model's stream is cancelled, so the
model stops generating), the slot is freed, and the server closes the connection (a
response that was started and not finished cannot be completed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class ClientStalled(Exception):
    """The client did not take a part of the response in time."""


class SendDeadline:
    """ASGI middleware; ``on_stall`` is called once per response ended by it (a metric)."""

    def __init__(
        self, app: ASGIApp, seconds: float, on_stall: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.seconds = seconds
        self.on_stall = on_stall

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_in_time(message: Message) -> None:
            try:
                await asyncio.wait_for(send(message), self.seconds)
            except TimeoutError:
                raise ClientStalled from None

        try:
            await self.app(scope, receive, send_in_time)
        except ClientStalled:
            if self.on_stall is not None:
                self.on_stall()
            log.warning(
                "%s %s: the client took no part of the response for %g s; response ended",
                scope.get("method", ""),
                scope.get("path", ""),
                self.seconds,
            )
