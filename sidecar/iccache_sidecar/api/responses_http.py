"""``POST /v1/responses`` (unary and streamed), ``GET`` and ``DELETE
/v1/responses/{id}``: OpenAI's Responses API, answered through the same routing, examples
and cache as chat completions (:mod:`~iccache_sidecar.api.responses_convert` translates).
Stored responses (``store``, on by default as in OpenAI's API) keep the conversation so a
later request can continue it by ``previous_response_id``; they belong to the tenant that
made them."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from iccache_sidecar.api.completions_http import decision_headers
from iccache_sidecar.api.http_errors import ERROR_RESPONSES
from iccache_sidecar.api.http_state import HttpState, State
from iccache_sidecar.api.intake import build_request
from iccache_sidecar.api.openai_models import DecisionOut
from iccache_sidecar.api.openai_schema import CompletionRequestBase
from iccache_sidecar.api.responses_convert import (
    Wire,
    answer_turn,
    chat_fields,
    chat_messages,
    output_items,
    request_turns,
    response_object,
)
from iccache_sidecar.api.responses_schema import ResponseCreateRequest
from iccache_sidecar.api.responses_sse import response_events
from iccache_sidecar.api.streaming import ClosingStreamingResponse
from iccache_sidecar.core.domain import Decision, Usage
from iccache_sidecar.core.errors import DependencyDown, IccacheError, UnknownRequest
from iccache_sidecar.storage.responses import ResponseStore

log = logging.getLogger(__name__)
router = APIRouter()


@router.post("/v1/responses", responses=ERROR_RESPONSES)
async def create_response(body: ResponseCreateRequest, http: Request, state: State) -> Response:
    caller = state.auth.caller(http.headers)
    earlier: list[Wire] = []
    if body.previous_response_id:
        record = await _stored(state, caller.tenant, body.previous_response_id)
        earlier = list(record["conversation"])
    turns = [*earlier, *request_turns(body)]
    messages = chat_messages(body.instructions, turns)
    chat = CompletionRequestBase.model_validate(
        {
            "model": body.model,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "stream": body.stream,
            "iccache": body.iccache,
            **chat_fields(body),
        }
    )
    req = build_request(
        state.service.settings,
        state.backend_models,
        chat,
        messages,
        body.max_output_tokens,
        http.headers,
        caller,
    )
    created = int(time.time())
    model = state.public_model
    details = state.service.settings.server.decision_details

    def response_of(
        d: Decision, status: str, output: list[Wire], usage: Usage | None, finish: str | None
    ) -> Wire:
        return response_object(
            body,
            response_id=f"resp_{d.request_id}",
            model=model,
            created=created,
            status=status,
            output=output,
            usage=usage,
            finish_reason=finish,
            decision=DecisionOut.of(d, details).model_dump(),
        )

    async def keep(text: str, raw: Mapping[str, Any] | None, out: Wire) -> None:
        if body.store and state.responses is not None:
            conversation = [*turns, answer_turn(text, raw)]
            await _put(state.responses, caller.tenant, out, conversation)

    if body.stream:
        events = state.service.stream(req)
        first = await anext(events)  # planning errors become HTTP errors, before any byte
        if not isinstance(first, Decision):  # pragma: no cover - stream() yields it first
            raise IccacheError("stream did not start with a decision")

        return ClosingStreamingResponse(
            response_events(first, events, partial(response_of, first), keep),
            media_type="text/event-stream",
            headers=decision_headers(first, details),
        )
    done = await state.service.complete(req)
    d = done.decision
    output = output_items(f"msg_{d.request_id}", done.text, done.raw)
    out = response_of(d, "completed", output, done.usage, done.finish_reason)
    await keep(done.text, done.raw, out)
    return JSONResponse(out, headers=decision_headers(d, details))


@router.get("/v1/responses/{response_id}", responses=ERROR_RESPONSES)
async def get_response(response_id: str, http: Request, state: State) -> JSONResponse:
    caller = state.auth.caller(http.headers)
    record = await _stored(state, caller.tenant, response_id)
    return JSONResponse(record["response"])


@router.delete("/v1/responses/{response_id}", responses=ERROR_RESPONSES)
async def delete_response(response_id: str, http: Request, state: State) -> JSONResponse:
    caller = state.auth.caller(http.headers)
    store = _responses(state)
    if not await store.delete(caller.tenant, response_id):
        raise _not_found(response_id)
    return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})


def _responses(state: HttpState) -> ResponseStore:
    if state.responses is None:
        raise UnknownRequest("this router keeps no responses (it has no cache)")
    return state.responses


def _not_found(response_id: str) -> UnknownRequest:
    return UnknownRequest(f"no stored response {response_id!r}", param="response_id")


async def _stored(state: HttpState, tenant: str, response_id: str) -> dict[str, Any]:
    record = await _responses(state).get(tenant, response_id)
    if record is None:
        raise _not_found(response_id)
    return record


async def _put(store: ResponseStore, tenant: str, out: Wire, conversation: list[Wire]) -> None:
    """Keep a response; a Redis that is down costs the conversation, not the answer."""
    try:
        await store.put(tenant, out["id"], {"response": out, "conversation": conversation})
    except DependencyDown as exc:
        log.warning("response %s not stored: %s", out["id"], exc)
