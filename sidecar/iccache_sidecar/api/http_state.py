"""What the HTTP routers need from the router process, kept in ``app.state`` by
:func:`~iccache_sidecar.api.http_app.create_http_app` and handed to each route through
FastAPI's dependency injection (:data:`State`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from iccache_sidecar.api.auth import Authenticator
from iccache_sidecar.core.domain import Route
from iccache_sidecar.core.lockout import FailureThrottle
from iccache_sidecar.requestpath.ports import EmbeddingsSource
from iccache_sidecar.requestpath.service import RouterService
from iccache_sidecar.storage.examples import ExampleStore
from iccache_sidecar.storage.responses import ResponseStore


@dataclass
class HttpState:
    service: RouterService
    auth: Authenticator
    status: dict[str, bool] = field(default_factory=dict)  # started, index (readiness)
    store: ExampleStore | None = None  # for the admin API; None: no cache
    admin_key: str = ""  # empty: the admin API answers 404
    responses: ResponseStore | None = None  # stored Responses API responses; None: none
    embeddings: EmbeddingsSource | None = None  # POST /v1/embeddings; None: answers 404
    admin_failures: FailureThrottle = field(default_factory=FailureThrottle)

    @property
    def public_model(self) -> str:
        return self.service.settings.server.public_model

    @property
    def backend_models(self) -> dict[str, Route]:
        """A backend's own model name forces that backend."""
        return {b.model: route for route, b in self.service.backends.items()}


def get_state(request: Request) -> HttpState:
    state: HttpState = request.app.state.iccache
    return state


State = Annotated[HttpState, Depends(get_state)]
