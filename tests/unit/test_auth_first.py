"""Authentication before the body: a refused caller's body is never read."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from iccache_sidecar.api.auth_first import AuthenticateFirst
from iccache_sidecar.core.errors import ErrorKind, Unauthenticated


def authenticate(headers: Mapping[str, str]) -> str:
    if headers.get("authorization") != "Bearer good":
        raise Unauthenticated("missing API key")
    return "acme"


async def test_an_unknown_caller_is_refused_before_its_body_is_read() -> None:
    read: list[int] = []
    refused: list[ErrorKind] = []

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"bytes": len(await request.body())})

    inner = Starlette(routes=[Route("/v1/chat/completions", echo, methods=["POST"])])
    app = AuthenticateFirst(inner, authenticate, ["/v1/chat/completions"], refused.append)

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            read.append(len(message.get("body", b"")))
            return message

        await app(scope, counted, send)

    transport = httpx.ASGITransport(app=counting)
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as http:
        body = b"{not json" + b" " * 100_000
        r = await http.post("/v1/chat/completions", content=body)
        assert r.status_code == 401
        assert r.json()["error"]["message"] == "missing API key"
        assert r.headers["www-authenticate"] == "Bearer"
        assert read == []  # not one byte of the body
        assert refused == [ErrorKind.UNAUTHENTICATED]
        ok = await http.post(
            "/v1/chat/completions", content=b"{}", headers={"authorization": "Bearer good"}
        )
        assert ok.json() == {"bytes": 2}
