"""A routed answer as the Responses API's server-sent events: ``response.created``,
``response.in_progress``, the message item and its text deltas, a ``function_call`` item
per tool call, then ``response.completed`` (with usage); an error after the headers is
sent in-band as an ``error`` event followed by ``response.failed``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from iccache_sidecar.api.responses_convert import (
    Wire,
    message_item,
    output_items,
    text_part,
)
from iccache_sidecar.core.domain import Decision, Delta, Usage
from iccache_sidecar.core.errors import IccacheError

# Builds the response object for a status, output and usage (the rest is fixed).
ResponseOf = Callable[[str, list[Wire], Usage | None, str | None], Wire]
# Called with the answer's text, its tool calls and the completed response object once
# the stream has ended (before ``response.completed`` is sent).
OnDone = Callable[[str, Mapping[str, Any] | None, Wire], Awaitable[None]]


@dataclass
class _ToolCalls:
    """Tool calls assembled from chat stream chunks (each arrives in pieces by index)."""

    calls: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, raw: Mapping[str, Any] | None) -> None:
        for choice in (raw or {}).get("choices") or []:
            for piece in (choice.get("delta") or {}).get("tool_calls") or []:
                call = self.calls.setdefault(
                    int(piece.get("index", 0)),
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = piece.get("id") or call["id"]
                function = piece.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""

    def as_raw(self) -> dict[str, Any] | None:
        """A chat response body holding the calls, as :func:`output_items` reads one."""
        if not self.calls:
            return None
        calls = [self.calls[i] for i in sorted(self.calls)]
        return {"choices": [{"message": {"tool_calls": calls}}]}


async def response_events(
    decision: Decision,
    events: AsyncIterator[Decision | Delta],
    response_of: ResponseOf,
    on_done: OnDone,
) -> AsyncIterator[bytes]:
    seq = count()

    def event(kind: str, **payload: Any) -> bytes:
        data = json.dumps({"type": kind, "sequence_number": next(seq), **payload})
        return f"event: {kind}\ndata: {data}\n\n".encode()

    item_id = f"msg_{decision.request_id}"
    yield event("response.created", response=response_of("in_progress", [], None, None))
    yield event("response.in_progress", response=response_of("in_progress", [], None, None))
    parts: list[str] = []
    usage: Usage | None = None
    finish: str | None = None
    calls = _ToolCalls()
    started = False
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    try:
        async for delta in events:
            if not isinstance(delta, Delta):
                continue
            usage = delta.usage or usage
            finish = delta.finish_reason or finish
            calls.add(delta.raw)
            if not delta.text:
                continue
            if not started:
                started = True
                item = message_item(item_id, None, "in_progress")
                yield event("response.output_item.added", output_index=0, item=item)
                yield event("response.content_part.added", **where, part=text_part(""))
            parts.append(delta.text)
            yield event("response.output_text.delta", **where, delta=delta.text, logprobs=[])
    except IccacheError as exc:  # headers are gone: report in-band
        yield event("error", code=exc.kind.value, message=exc.message, param=exc.param)
        failed = response_of("failed", [], usage, None)
        failed["error"] = {"code": exc.kind.value, "message": exc.message}
        yield event("response.failed", response=failed)
        return
    text = "".join(parts)
    called = calls.as_raw()
    output = output_items(item_id, text, called)
    if started:
        yield event("response.output_text.done", **where, text=text, logprobs=[])
        yield event("response.content_part.done", **where, part=text_part(text))
    for index, item in enumerate(output):
        if not (started and index == 0):
            yield event("response.output_item.added", output_index=index, item=item)
        if item["type"] == "function_call":
            yield event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            )
        yield event("response.output_item.done", output_index=index, item=item)
    done = response_of("completed", output, usage or Usage(), finish)
    await on_done(text, called, done)
    yield event("response.completed", response=done)
