"""A routed answer as OpenAI's server-sent events: chat or text chunks, the model's own
chunks passed on where it sent them, usage last when asked, errors in-band."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel

from iccache_sidecar.api.openai_models import (
    ChatChunk,
    ChatChunkChoice,
    ChunkDelta,
    DecisionOut,
    ErrorBody,
    ErrorDetail,
    TextChoice,
    TextChunk,
    UsageOut,
)
from iccache_sidecar.core.domain import Decision, Delta, Usage
from iccache_sidecar.core.errors import IccacheError
from iccache_sidecar.core.passthrough import scrubbed

Kind = Literal["chat", "text"]


def completion_id(kind: Kind, request_id: str) -> str:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{request_id}"


def _event(body: BaseModel, **dump: Any) -> bytes:
    return b"data: " + body.model_dump_json(**dump).encode() + b"\n\n"


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
    exclude: Any = None
    if kind == "chat":
        delta = ChunkDelta(role="assistant" if decision is not None else None, content=text)
        choice = ChatChunkChoice(delta=delta, finish_reason=finish)
        body = ChatChunk(id=cid, created=created, model=model, choices=[choice], iccache=decision)
        if decision is None:
            exclude = {"choices": {0: {"delta": {"role"}}}}
    else:
        text_choice = TextChoice(text=text, finish_reason=finish)
        body = TextChunk(
            id=cid, created=created, model=model, choices=[text_choice], iccache=decision
        )
    if decision is None:
        exclude = {**(exclude or {}), "iccache": True}
    return _event(body, exclude=exclude)


def _passed_on(raw: Mapping[str, Any], cid: str, model: str, created: int) -> bytes:
    """A model's stream chunk as it sent it, under iccache's id and routed model name."""
    chunk = ChatChunk.model_validate(
        {**raw, "id": cid, "object": "chat.completion.chunk", "model": model, "created": created}
    )
    return _event(chunk, exclude_unset=True)


def _usage_chunk(cid: str, model: str, created: int, usage: Usage) -> bytes:
    chunk = ChatChunk(id=cid, created=created, model=model, choices=[], usage=UsageOut.of(usage))
    return _event(chunk, exclude={"iccache"})


async def sse(
    decision: Decision,
    events: AsyncIterator[Decision | Delta],
    kind: Kind,
    model: str,
    created: int,
    details: str,
    include_usage: bool = False,
) -> AsyncIterator[bytes]:
    cid = completion_id(kind, decision.request_id)
    yield _chunk(kind, cid, created, model, "", None, DecisionOut.of(decision, details))
    usage: Usage | None = None
    usage_sent = False
    try:
        async for event in events:
            if not isinstance(event, Delta):
                continue
            usage = event.usage or usage
            if kind == "chat" and event.raw is not None:
                # never prompt text from a prompt that held examples
                raw = scrubbed(event.raw) if decision.examples else event.raw
                if raw.get("choices"):
                    yield _passed_on(raw, cid, model, created)
                elif include_usage:  # the model's usage chunk
                    yield _passed_on(raw, cid, model, created)
                    usage_sent = True
            elif event.text or event.finish_reason:
                yield _chunk(kind, cid, created, model, event.text, event.finish_reason)
    except IccacheError as exc:  # headers are gone: report in-band, as OpenAI does
        error = ErrorBody(error=ErrorDetail(message=exc.message, type=exc.kind.value))
        yield _event(error, exclude_none=True)
    else:
        if kind == "chat" and include_usage and not usage_sent and usage is not None:
            yield _usage_chunk(cid, model, created, usage)  # counted by the router
    yield b"data: [DONE]\n\n"
