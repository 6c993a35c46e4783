"""``POST /v1/chat/completions``, ``POST /v1/completions`` and ``GET /v1/models``: the
OpenAI-compatible face of the router. iccache's decision travels in ``x-iccache-*``
headers and an extra ``iccache`` field, never in place of a schema field."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from iccache_sidecar.api.decision_view import visible
from iccache_sidecar.api.http_errors import ERROR_RESPONSES, json_response
from iccache_sidecar.api.http_state import HttpState, State
from iccache_sidecar.api.intake import build_request, chat_messages
from iccache_sidecar.api.openai_models import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    DecisionOut,
    ModelCard,
    ModelList,
    TextChoice,
    TextCompletion,
    UsageOut,
)
from iccache_sidecar.api.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    CompletionRequestBase,
)
from iccache_sidecar.api.sse import Kind, completion_id, sse
from iccache_sidecar.api.streaming import ClosingStreamingResponse
from iccache_sidecar.core.domain import ChatMessage, Completion, Decision, RouterRequest
from iccache_sidecar.core.errors import IccacheError
from iccache_sidecar.core.passthrough import scrubbed

router = APIRouter()


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERROR_RESPONSES)
async def chat_completions(body: ChatCompletionRequest, http: Request, state: State) -> Response:
    max_tokens = body.max_completion_tokens or body.max_tokens
    return await _answer(state, http, body, chat_messages(body.messages), max_tokens, "chat")


@router.post("/v1/completions", response_model=TextCompletion, responses=ERROR_RESPONSES)
async def completions(body: CompletionRequest, http: Request, state: State) -> Response:
    messages = [ChatMessage("user", body.prompt_text())]
    return await _answer(state, http, body, messages, body.max_tokens, "text")


@router.get("/v1/models")
async def models(state: State) -> ModelList:
    names = [state.public_model] + [b.model for b in state.service.backends.values()]
    return ModelList(data=[ModelCard(id=n) for n in names])


def decision_headers(decision: Decision, details: str) -> dict[str, str]:
    d = visible(decision, details)
    headers = {
        "x-iccache-request-id": d.request_id,
        "x-iccache-route": d.route.value,
        "x-iccache-degraded": ",".join(d.degraded) or "none",
    }
    if details == "full":
        headers |= {
            "x-iccache-route": "exact" if d.exact_hit else d.route.value,
            "x-iccache-examples": str(len(d.examples)),
            "x-iccache-similarity": f"{d.max_similarity:.4f}",
        }
    return headers


def completion_body(
    kind: Kind, done: Completion, model: str, created: int, details: str
) -> BaseModel:
    """The one response body of a whole answer, chat or text."""
    d = done.decision
    common = {
        "id": completion_id(kind, d.request_id),
        "created": created,
        "model": model,
        "usage": UsageOut.of(done.usage),
        "iccache": DecisionOut.of(d, details),
    }
    if kind == "text":
        choice = TextChoice(text=done.text, finish_reason=done.finish_reason)
        return TextCompletion.model_validate({**common, "choices": [choice]})
    if done.raw is None:
        message = AssistantMessage(content=done.text)
        choice_ = ChatChoice(message=message, finish_reason=done.finish_reason)
        return ChatCompletion.model_validate({**common, "choices": [choice_]})
    # The model's response as it sent it (tool calls, logprobs, usage details), under
    # iccache's id and routed model name, with the decision added; never prompt text
    # from a prompt that held examples.
    raw = scrubbed(done.raw) if d.examples else done.raw
    return ChatCompletion.model_validate(
        {
            **raw,
            **common,
            "object": "chat.completion",
            "created": raw.get("created", created),
            "usage": raw.get("usage") or common["usage"],
        }
    )


async def _answer(
    state: HttpState,
    http: Request,
    body: CompletionRequestBase,
    messages: list[ChatMessage],
    max_tokens: int | None,
    kind: Kind,
) -> Response:
    caller = state.auth.caller(http.headers)
    req: RouterRequest = build_request(
        state.service.settings,
        state.backend_models,
        body,
        messages,
        max_tokens,
        http.headers,
        caller,
    )
    created = int(time.time())
    model = state.public_model
    details = state.service.settings.server.decision_details
    if body.stream:
        events = state.service.stream(req)
        first = await anext(events)  # planning errors become HTTP errors, before any byte
        if not isinstance(first, Decision):  # pragma: no cover - stream() yields it first
            raise IccacheError("stream did not start with a decision")
        return ClosingStreamingResponse(
            sse(first, events, kind, model, created, details, req.params.stream_usage),
            media_type="text/event-stream",
            headers=decision_headers(first, details),
        )
    done = await state.service.complete(req)
    body_out = completion_body(kind, done, model, created, details)
    return json_response(body_out, headers=decision_headers(done.decision, details))
