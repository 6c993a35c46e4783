"""OpenAI-compatible HTTP API (FastAPI). iccache's decision travels in ``x-iccache-*``
headers and an extra ``iccache`` field, never in place of a schema field."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from iccache_sidecar.backends import Delta
from iccache_sidecar.domain import ChatMessage, Decision, RouterRequest
from iccache_sidecar.errors import ErrorKind, IccacheError
from iccache_sidecar.intake import build_request, chat_messages, validation_message
from iccache_sidecar.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    FeedbackIn,
    _Common,
)
from iccache_sidecar.service import RouterService
from iccache_sidecar.tenancy import check_tenant

HTTP_STATUS = {
    ErrorKind.INVALID_ARGUMENT: 400,
    ErrorKind.TOO_LONG: 400,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.OVERLOADED: 429,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TIMEOUT: 504,
}
ERROR_CODE = {ErrorKind.TOO_LONG: "context_length_exceeded", ErrorKind.NOT_FOUND: "not_found"}


def _error(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": kind}}
    headers = {"retry-after": "1"} if status == 429 else None
    return JSONResponse(body, status_code=status, headers=headers)


def decision_json(d: Decision) -> dict[str, Any]:
    return {
        "request_id": d.request_id,
        "route": "exact" if d.exact_hit else d.route.value,
        "backend_model": d.backend_model,
        "examples": d.example_ids,
        "max_similarity": round(d.max_similarity, 4),
        "policy": d.policy,
        "reason": d.reason,
        "exact_hit": d.exact_hit,
        "fell_back": d.fell_back,
        "degraded": d.degraded,
    }


def decision_headers(d: Decision) -> dict[str, str]:
    return {
        "x-iccache-request-id": d.request_id,
        "x-iccache-route": "exact" if d.exact_hit else d.route.value,
        "x-iccache-examples": str(len(d.examples)),
        "x-iccache-similarity": f"{d.max_similarity:.4f}",
        "x-iccache-degraded": ",".join(d.degraded) or "none",
    }


def create_http_app(service: RouterService, ready: dict[str, bool] | None = None) -> FastAPI:
    """The HTTP face of one RouterService (built by the composition root)."""
    settings = service.settings
    public = settings.server.public_model
    app = FastAPI(title="iccache router", version="v1")
    status = ready if ready is not None else {}

    @app.exception_handler(IccacheError)
    async def _iccache_error(_: Request, exc: IccacheError) -> JSONResponse:
        service.metrics.errors.labels(exc.kind.value).inc()
        return _error(
            HTTP_STATUS[exc.kind], exc.message, ERROR_CODE.get(exc.kind, exc.kind.value), exc.param
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        service.metrics.errors.labels(ErrorKind.INVALID_ARGUMENT.value).inc()
        message, param = validation_message(exc)
        return _error(400, message, "invalid_request_error", param)

    backend_models = {b.model: route for route, b in service.backends.items()}

    def to_request(
        http: Request, body: _Common, messages: list[ChatMessage], max_tokens: int | None
    ) -> RouterRequest:
        return build_request(settings, backend_models, body, messages, max_tokens, http.headers)

    async def respond(req: RouterRequest, stream: bool, kind: Literal["chat", "text"]) -> Response:
        created = int(time.time())
        if not stream:
            done = await service.complete(req)
            d = done.decision
            usage = {
                "prompt_tokens": done.usage.prompt_tokens,
                "completion_tokens": done.usage.completion_tokens,
                "total_tokens": done.usage.prompt_tokens + done.usage.completion_tokens,
            }
            if kind == "chat":
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.text},
                    "finish_reason": done.finish_reason,
                }
                obj = "chat.completion"
            else:
                choice = {
                    "index": 0, "text": done.text, "finish_reason": done.finish_reason,
                    "logprobs": None,
                }  # fmt: skip
                obj = "text_completion"
            body = {
                "id": f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{d.request_id}",
                "object": obj,
                "created": created,
                "model": public,
                "choices": [choice],
                "usage": usage,
                "iccache": decision_json(d),
            }
            return JSONResponse(body, headers=decision_headers(d))

        events = service.stream(req)
        first = await anext(events)  # planning errors become HTTP errors, before any byte
        if not isinstance(first, Decision):  # pragma: no cover - stream() yields it first
            raise IccacheError("stream did not start with a decision")
        return StreamingResponse(
            _sse(first, events, kind, public, created),
            media_type="text/event-stream",
            headers=decision_headers(first),
        )

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, http: Request) -> Response:
        req = to_request(
            http, body, chat_messages(body.messages), body.max_completion_tokens or body.max_tokens
        )
        return await respond(req, body.stream, "chat")

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, http: Request) -> Response:
        prompt = body.prompt_text()
        req = to_request(http, body, [ChatMessage("user", prompt)], body.max_tokens)
        return await respond(req, body.stream, "text")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        names = [public] + [b.model for b in service.backends.values()]
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "owned_by": "iccache", "created": 0} for n in names
            ],
        }

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackIn, http: Request) -> dict[str, Any]:
        header = http.headers.get(settings.tenancy.header)
        tenant = check_tenant(header) if header is not None else None
        await service.feedback(body.request_id, body.score, tenant=tenant)
        return {"accepted": True, "request_id": body.request_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        load = service.load_snapshot()
        checks = {
            **status,
            "small": load.small.healthy,
            "large": load.large.healthy,
        }
        ok = status.get("started", True) and (load.small.healthy or load.large.healthy)
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _sse(
    decision: Decision,
    events: AsyncIterator[Decision | Delta],
    kind: Literal["chat", "text"],
    model: str,
    created: int,
) -> AsyncIterator[bytes]:
    cid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{decision.request_id}"
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def chunk(text: str, finish: str | None, first: bool = False, **extra: Any) -> bytes:
        if kind == "chat":
            delta: dict[str, Any] = {"content": text}
            if first:
                delta["role"] = "assistant"
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        body = {"id": cid, "object": obj, "created": created, "model": model, "choices": [choice]}
        body.update(extra)
        return f"data: {json.dumps(body)}\n\n".encode()

    yield chunk("", None, first=True, iccache=decision_json(decision))
    try:
        async for event in events:
            if isinstance(event, Delta) and (event.text or event.finish_reason):
                yield chunk(event.text, event.finish_reason)
    except IccacheError as exc:  # headers are gone: report in-band, as OpenAI does
        error = {"error": {"message": exc.message, "type": exc.kind.value}}
        yield f"data: {json.dumps(error)}\n\n".encode()
    yield b"data: [DONE]\n\n"
