"""A deadline for each HTTP request head, against clients that send it slowly.

uvicorn closes a keep-alive connection that stays idle, but a connection that sends a
request head one byte at a time (slow loris), or opens and sends nothing, is kept for
ever: enough of them exhaust the server's descriptors. Here a new connection must
complete its first request head (request line and headers) within ``seconds``, and every
later head must be complete within ``seconds`` of its first byte (between requests the
keep-alive timeout applies); otherwise the connection gets 408 (if a head had begun and
no response is being sent) and is closed. Bodies have a deadline of their own
(:class:`~iccache_sidecar.api.body_limit.BodyLimit`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


def head_timeout_response(seconds: float) -> bytes:
    message = f"the request head was not received within this server's {seconds:g} s"
    error = {"message": message, "type": "request_timeout", "param": None}
    payload = json.dumps({"error": {**error, "code": "request_timeout"}}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + payload


def head_deadline_protocol(
    seconds: float, on_timeout: Callable[[], None] | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, with a deadline of ``seconds`` for every request
    head; ``on_timeout`` is called once per connection closed by it (a metric)."""

    class HeadDeadline(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_started = False

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _expire(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if on_timeout is not None:
                on_timeout()
            answering = self.cycle is not None and not self.cycle.response_complete
            if self._head_started and not answering:
                log.info("closing a connection whose request head took over %g s", seconds)
                self.transport.write(head_timeout_response(seconds))
            self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_started = True
            if self._head_timer is None:  # a later request on a kept-alive connection
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            self._head_started = False
            super().on_headers_complete()

    return HeadDeadline
