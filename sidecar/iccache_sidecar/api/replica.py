"""Every HTTP response names the router process that answered (``x-iccache-replica``:
host name and process id, as in the load reports), so that an operator can tell
replicas and a pod's workers apart."""

from __future__ import annotations

import os
import socket

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-iccache-replica"


def replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ReplicaHeader:
    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.value = replica.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, self.value)]
            await send(message)

        await self.app(scope, receive, named)
