"""The router's HTTP face: one FastAPI app with the OpenAI routes, feedback, the admin
API and the probes, the body limit and replica header, and every error in OpenAI's
shape. The composition root builds the :class:`HttpState` it serves."""

from __future__ import annotations

from fastapi import FastAPI

from iccache_sidecar.api import (
    admin,
    completions_http,
    embeddings_http,
    feedback_http,
    health_http,
    responses_http,
)
from iccache_sidecar.api.auth_first import AuthenticateFirst
from iccache_sidecar.api.body_limit import BodyLimit
from iccache_sidecar.api.http_errors import install_error_handlers
from iccache_sidecar.api.http_state import HttpState
from iccache_sidecar.api.replica import ReplicaHeader, replica_name
from iccache_sidecar.api.send_deadline import SendDeadline
from iccache_sidecar.core.errors import ErrorKind

# The routes whose caller the authenticator names (the admin API checks its own key).
AUTHENTICATED_PATHS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/feedback",
    "/v1/responses",
    "/v1/embeddings",
)


def create_http_app(state: HttpState) -> FastAPI:
    server = state.service.settings.server
    errors = state.service.metrics.errors
    app = FastAPI(title="iccache router", version="v1")
    app.state.iccache = state
    app.add_middleware(
        BodyLimit,
        limit=server.max_body_bytes,
        timeout=server.body_timeout_seconds,
        on_reject=errors.labels(ErrorKind.TOO_LARGE.value).inc,
        on_timeout=errors.labels(ErrorKind.SLOW_CLIENT.value).inc,
    )
    # Added after the body limit, so it runs before it: nobody unauthenticated gets a
    # body read.
    app.add_middleware(
        AuthenticateFirst,
        authenticate=state.auth.caller,
        paths=AUTHENTICATED_PATHS,
        on_refused=lambda kind: errors.labels(kind.value).inc(),
    )
    app.add_middleware(ReplicaHeader, replica=replica_name())
    app.add_middleware(
        SendDeadline,
        seconds=server.send_timeout_seconds,
        on_stall=errors.labels(ErrorKind.SLOW_CLIENT.value).inc,
    )
    install_error_handlers(app)
    for module in (
        completions_http,
        responses_http,
        embeddings_http,
        feedback_http,
        admin,
        health_http,
    ):
        app.include_router(module.router)
    return app
