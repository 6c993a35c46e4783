"""OpenAI-compatible HTTP API (FastAPI). iccache's decision travels in ``x-iccache-*``
headers and an extra ``iccache`` field, never in place of a schema field. Errors map to
HTTP statuses here, and only here, in the error shape of :class:`ErrorBody`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from iccache_contract import names
from iccache_dataplane.api.auth import Authenticator
from iccache_dataplane.api.body_limit import BodyLimit
from iccache_dataplane.api.intake import build_request, chat_messages, validation_message
from iccache_dataplane.api.openai_models import (
    AssistantMessage,
    ChatChoice,
    ChatChunk,
    ChatChunkChoice,
    ChatCompletion,
    ChunkDelta,
    DecisionOut,
    ErrorBody,
    ErrorDetail,
    FeedbackAccepted,
    Health,
    ModelCard,
    ModelList,
    Readiness,
    TextChoice,
    TextChunk,
    TextCompletion,
    UsageOut,
)
from iccache_dataplane.api.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    FeedbackIn,
    _Common,
)
from iccache_dataplane.api.replica import ReplicaHeader, replica_name
from iccache_dataplane.core.domain import ChatMessage, Decision, Delta, RouterRequest, Usage
from iccache_dataplane.core.errors import ErrorKind, IccacheError
from iccache_dataplane.metrics import merged_registry
from iccache_dataplane.requestpath.service import RouterService

HTTP_STATUS = {
    ErrorKind.INVALID_ARGUMENT: 400,
    ErrorKind.TOO_LONG: 400,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.SLOW_CLIENT: 408,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.PERMISSION_DENIED: 403,
    ErrorKind.OVERLOADED: 429,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TIMEOUT: 504,
}
ERROR_CODE = {
    ErrorKind.TOO_LONG: "context_length_exceeded",
    ErrorKind.TOO_LARGE: "request_too_large",
    ErrorKind.SLOW_CLIENT: "request_timeout",
    ErrorKind.NOT_FOUND: "not_found",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in sorted(set(HTTP_STATUS.values()))
}
Kind = Literal["chat", "text"]


def json_response(
    body: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        body.model_dump_json(), status_code=status, headers=headers, media_type="application/json"
    )


def error_response(
    status: int,
    message: str,
    kind: str,
    param: str | None = None,
    retry_after: float | None = None,
) -> Response:
    body = ErrorBody(error=ErrorDetail(message=message, type=kind, param=param, code=kind))
    headers = {"retry-after": f"{max(1, round(retry_after))}"} if retry_after is not None else {}
    if status == 401:
        headers["www-authenticate"] = "Bearer"
    return json_response(body, status, headers or None)


def decision_headers(d: Decision) -> dict[str, str]:
    return {
        "x-iccache-request-id": d.request_id,
        "x-iccache-route": "exact" if d.exact_hit else d.route.value,
        "x-iccache-examples": str(len(d.examples)),
        "x-iccache-similarity": f"{d.max_similarity:.4f}",
        "x-iccache-degraded": ",".join(d.degraded) or "none",
    }


def completion_id(kind: Kind, request_id: str) -> str:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{request_id}"


def create_http_app(
    service: RouterService, auth: Authenticator, ready: dict[str, bool] | None = None
) -> FastAPI:
    """The HTTP face of one RouterService (built by the composition root)."""
    settings = service.settings
    public = settings.server.public_model
    app = FastAPI(title="iccache router", version="v1")
    too_large = service.metrics.errors.labels(ErrorKind.TOO_LARGE.value)
    too_slow = service.metrics.errors.labels(ErrorKind.SLOW_CLIENT.value)
    app.add_middleware(
        BodyLimit,
        limit=settings.server.max_body_bytes,
        timeout=settings.server.body_timeout_seconds,
        on_reject=too_large.inc,
        on_timeout=too_slow.inc,
    )
    app.add_middleware(ReplicaHeader, replica=replica_name())
    status = ready if ready is not None else {}

    @app.exception_handler(IccacheError)
    async def _iccache_error(_: Request, exc: IccacheError) -> Response:
        service.metrics.errors.labels(exc.kind.value).inc()
        code = ERROR_CODE.get(exc.kind, exc.kind.value)
        status = exc.http_status or HTTP_STATUS[exc.kind]
        return error_response(status, exc.message, code, exc.param, exc.retry_after)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> Response:
        """FastAPI's own rejections (a body that is not JSON, an unknown path or method)
        in OpenAI's error shape, like every other error."""
        service.metrics.errors.labels(ErrorKind.INVALID_ARGUMENT.value).inc()
        message = str(exc.detail)
        if exc.status_code == 400 and "parsing the body" in message:
            message = "the request body is not valid JSON"
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        response = error_response(exc.status_code, message, kind)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        service.metrics.errors.labels(ErrorKind.INVALID_ARGUMENT.value).inc()
        message, param = validation_message(exc)
        return error_response(400, message, "invalid_request_error", param)

    backend_models = {b.model: route for route, b in service.backends.items()}

    def to_request(
        http: Request, body: _Common, messages: list[ChatMessage], max_tokens: int | None
    ) -> RouterRequest:
        caller = auth.caller(http.headers)
        return build_request(
            settings, backend_models, body, messages, max_tokens, http.headers, caller
        )

    async def respond(req: RouterRequest, stream: bool, kind: Kind) -> Response:
        created = int(time.time())
        if stream:
            events = service.stream(req)
            first = await anext(events)  # planning errors become HTTP errors, before any byte
            if not isinstance(first, Decision):  # pragma: no cover - stream() yields it first
                raise IccacheError("stream did not start with a decision")
            return StreamingResponse(
                _sse(first, events, kind, public, created, req.params.stream_usage),
                media_type="text/event-stream",
                headers=decision_headers(first),
            )
        done = await service.complete(req)
        d = done.decision
        cid, usage, decision = (
            completion_id(kind, d.request_id),
            UsageOut.of(done.usage),
            DecisionOut.of(d),
        )
        body: BaseModel
        if kind == "chat" and done.raw is not None:
            # The model's response as it sent it (tool calls, logprobs, usage details),
            # under iccache's id and routed model name, with the decision added.
            body = ChatCompletion.model_validate(
                {
                    **done.raw,
                    "id": cid,
                    "object": "chat.completion",
                    "created": done.raw.get("created", created),
                    "model": public,
                    "usage": done.raw.get("usage") or usage,
                    "iccache": decision,
                }
            )
        elif kind == "chat":
            message = AssistantMessage(content=done.text)
            choice = ChatChoice(message=message, finish_reason=done.finish_reason)
            body = ChatCompletion(
                id=cid,
                created=created,
                model=public,
                choices=[choice],
                usage=usage,
                iccache=decision,
            )
        else:
            text_choice = TextChoice(text=done.text, finish_reason=done.finish_reason)
            body = TextCompletion(
                id=cid,
                created=created,
                model=public,
                choices=[text_choice],
                usage=usage,
                iccache=decision,
            )
        return json_response(body, headers=decision_headers(d))

    @app.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERROR_RESPONSES)
    async def chat_completions(body: ChatCompletionRequest, http: Request) -> Response:
        max_tokens = body.max_completion_tokens or body.max_tokens
        req = to_request(http, body, chat_messages(body.messages), max_tokens)
        return await respond(req, body.stream, "chat")

    @app.post("/v1/completions", response_model=TextCompletion, responses=ERROR_RESPONSES)
    async def completions(body: CompletionRequest, http: Request) -> Response:
        req = to_request(http, body, [ChatMessage("user", body.prompt_text())], body.max_tokens)
        return await respond(req, body.stream, "text")

    @app.get("/v1/models")
    async def models() -> ModelList:
        model_names = [public] + [b.model for b in service.backends.values()]
        return ModelList(data=[ModelCard(id=n) for n in model_names])

    @app.post("/v1/feedback", responses=ERROR_RESPONSES)
    async def feedback(body: FeedbackIn, http: Request) -> FeedbackAccepted:
        caller = auth.caller(http.headers)
        await service.feedback(body.request_id, body.score, tenant=caller.tenant)
        return FeedbackAccepted(request_id=body.request_id)

    @app.get(names.HEALTH_PATH)
    async def healthz() -> Health:
        return Health()

    @app.get(names.READY_PATH, response_model=Readiness, responses={503: {"model": Readiness}})
    async def readyz() -> Response:
        load = service.load_snapshot()
        checks = {**status, "small": load.small.healthy, "large": load.large.healthy}
        ok = status.get("started", True) and (load.small.healthy or load.large.healthy)
        return json_response(Readiness(ready=ok, checks=checks), 200 if ok else 503)

    @app.get(names.METRICS_PATH, response_class=PlainTextResponse)  # documented as text/plain
    async def metrics() -> Response:
        registry = merged_registry() or service.metrics.registry  # merged: workers' too
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _chunk(
    kind: Kind,
    cid: str,
    created: int,
    model: str,
    text: str,
    finish: str | None,
    decision: DecisionOut | None = None,
) -> bytes:
    body: BaseModel
    if kind == "chat":
        delta = ChunkDelta(role="assistant" if decision is not None else None, content=text)
        choice = ChatChunkChoice(delta=delta, finish_reason=finish)
        body = ChatChunk(id=cid, created=created, model=model, choices=[choice], iccache=decision)
        exclude: Any = {"choices": {0: {"delta": {"role"}}}} if decision is None else None
    else:
        text_choice = TextChoice(text=text, finish_reason=finish)
        body = TextChunk(
            id=cid, created=created, model=model, choices=[text_choice], iccache=decision
        )
        exclude = None
    if decision is None:
        exclude = {**(exclude or {}), "iccache": True}
    return b"data: " + body.model_dump_json(exclude=exclude).encode() + b"\n\n"


def _passed_on(raw: Mapping[str, Any], cid: str, model: str, created: int) -> bytes:
    """A model's stream chunk as it sent it, under iccache's id and routed model name."""
    chunk = ChatChunk.model_validate(
        {**raw, "id": cid, "object": "chat.completion.chunk", "model": model, "created": created}
    )
    return b"data: " + chunk.model_dump_json(exclude_unset=True).encode() + b"\n\n"


def _usage_chunk(cid: str, model: str, created: int, usage: Usage) -> bytes:
    chunk = ChatChunk(id=cid, created=created, model=model, choices=[], usage=UsageOut.of(usage))
    return b"data: " + chunk.model_dump_json(exclude={"iccache"}).encode() + b"\n\n"


async def _sse(
    decision: Decision,
    events: AsyncIterator[Decision | Delta],
    kind: Kind,
    model: str,
    created: int,
    include_usage: bool = False,
) -> AsyncIterator[bytes]:
    cid = completion_id(kind, decision.request_id)
    yield _chunk(kind, cid, created, model, "", None, DecisionOut.of(decision))
    usage: Usage | None = None
    usage_sent = False
    try:
        async for event in events:
            if not isinstance(event, Delta):
                continue
            usage = event.usage or usage
            if kind == "chat" and event.raw is not None:
                if event.raw.get("choices"):
                    yield _passed_on(event.raw, cid, model, created)
                elif include_usage:  # the model's usage chunk
                    yield _passed_on(event.raw, cid, model, created)
                    usage_sent = True
            elif event.text or event.finish_reason:
                yield _chunk(kind, cid, created, model, event.text, event.finish_reason)
    except IccacheError as exc:  # headers are gone: report in-band, as OpenAI does
        error = ErrorBody(error=ErrorDetail(message=exc.message, type=exc.kind.value))
        yield b"data: " + error.model_dump_json(exclude_none=True).encode() + b"\n\n"
    else:
        if kind == "chat" and include_usage and not usage_sent and usage is not None:
            yield _usage_chunk(cid, model, created, usage)  # counted by the router
    yield b"data: [DONE]\n\n"
