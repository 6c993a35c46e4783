"""Authentication before the body: a request to a route that needs a caller is checked
from its headers alone, and one that fails is answered (401/403/400) without reading or
parsing its body. FastAPI reads and validates a body before a route runs, so without
this an anonymous client could make the router read and parse up to
``server.max_body_bytes`` per request."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from iccache_sidecar.api.http_errors import error_for
from iccache_sidecar.core.errors import ErrorKind, IccacheError


class AuthenticateFirst:
    def __init__(
        self,
        app: ASGIApp,
        authenticate: Callable[[Mapping[str, str]], Any],
        paths: Collection[str],
        on_refused: Callable[[ErrorKind], None],
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.paths = frozenset(paths)
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            try:
                self.authenticate(Headers(scope=scope))
            except IccacheError as exc:
                self.on_refused(exc.kind)
                await error_for(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)
