"""Between the Responses API and chat completions, both ways (pure functions).

Input items become chat turns, function tools and ``text.format`` become their chat
fields, and a chat answer becomes Responses output items. What has no chat equivalent
is refused with an :class:`InvalidRequest` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from iccache_sidecar.api.responses_schema import (
    IGNORED_FIELDS,
    InputItem,
    InputPart,
    ResponseCreateRequest,
)
from iccache_sidecar.core.domain import ChatMessage, Usage
from iccache_sidecar.core.errors import InvalidRequest

Wire = dict[str, Any]


def request_turns(body: ResponseCreateRequest) -> list[Wire]:
    """The new turns of a request (``input``) as chat messages on the wire."""
    if isinstance(body.input, str):
        return [{"role": "user", "content": body.input}]
    turns: list[Wire] = []
    for i, item in enumerate(body.input):
        turn = _item_turn(item, f"input[{i}]")
        calls = turn.get("tool_calls")
        last = turns[-1] if turns else None
        if calls and last is not None and last.get("tool_calls") and not last.get("content"):
            last["tool_calls"] = [*last["tool_calls"], *calls]  # parallel calls: one turn
        else:
            turns.append(turn)
    return turns


def _item_turn(item: InputItem, where: str) -> Wire:
    if item.type == "message":
        if item.role is None:
            raise InvalidRequest(f"{where}: a message needs a role", param=f"{where}.role")
        role = "system" if item.role == "developer" else item.role
        return {"role": role, "content": _content(item.content, role, where)}
    if item.type == "function_call":
        if not (item.call_id and item.name):
            raise InvalidRequest(f"{where}: a function_call needs call_id and name", param=where)
        call = {"name": item.name, "arguments": item.arguments or ""}
        tool_call = {"id": item.call_id, "type": "function", "function": call}
        return {"role": "assistant", "content": None, "tool_calls": [tool_call]}
    if item.type == "function_call_output":
        if not item.call_id:
            raise InvalidRequest(f"{where}: a function_call_output needs call_id", param=where)
        output = item.output
        text = output if isinstance(output, str) else _text_of(output or [])
        return {"role": "tool", "tool_call_id": item.call_id, "content": text}
    raise InvalidRequest(
        f"{where}: input items of type {item.type!r} are not supported by this router "
        "(it takes messages, function_call and function_call_output)",
        param=f"{where}.type",
    )


def _content(content: str | list[InputPart] | None, role: str, where: str) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    if role != "user":  # system and assistant turns are text in chat completions
        return _text_of(content)
    parts: list[Wire] = []
    for j, part in enumerate(content):
        if part.type in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.text or ""})
        elif part.type == "input_image":
            url = (part.model_extra or {}).get("image_url")
            if not url:
                raise InvalidRequest(
                    f"{where}.content[{j}]: input_image needs an image_url (file ids are "
                    "not supported by this router)",
                    param=f"{where}.content",
                )
            image = {"url": url, "detail": (part.model_extra or {}).get("detail", "auto")}
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise InvalidRequest(
                f"{where}.content[{j}]: content of type {part.type!r} is not supported by "
                "this router (it takes input_text and input_image)",
                param=f"{where}.content",
            )
    return parts


def _text_of(parts: Sequence[InputPart]) -> str:
    return "".join(p.text or "" for p in parts if p.text is not None)


def chat_messages(instructions: str | None, turns: Sequence[Wire]) -> list[ChatMessage]:
    """The chat messages sent to the model: the instructions as a system turn, then the
    conversation (earlier turns of a stored response first)."""
    wire = ([{"role": "system", "content": instructions}] if instructions else []) + list(turns)
    return [ChatMessage(m["role"], _plain(m.get("content")), raw=m) for m in wire]


def _plain(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return content or ""


def chat_fields(body: ResponseCreateRequest) -> Wire:
    """The chat request fields the Responses request asks for beyond the messages (all
    sent to the model; tools and formats make the request uncacheable)."""
    unknown = sorted(set(body.model_extra or {}) - IGNORED_FIELDS - {"reasoning"})
    if unknown:
        raise InvalidRequest(
            f"{', '.join(unknown)}: not supported by this router's Responses API "
            "(see the README's Responses table)",
            param=unknown[0],
        )
    extra = body.model_extra or {}
    fields: Wire = {}
    if include := extra.get("include"):
        raise InvalidRequest(f"include {include!r}: not supported by this router", param="include")
    if isinstance(reasoning := extra.get("reasoning"), Mapping) and reasoning.get("effort"):
        fields["reasoning_effort"] = reasoning["effort"]
    if body.tools:
        fields["tools"] = [_tool(t, i) for i, t in enumerate(body.tools)]
    if body.tool_choice is not None:
        fields["tool_choice"] = _tool_choice(body.tool_choice)
    if body.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = body.parallel_tool_calls
    fmt = body.text.format if body.text is not None else None
    if fmt is not None and fmt.type == "json_object":
        fields["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        if fmt.schema_ is None or not fmt.name:
            raise InvalidRequest(
                "text.format json_schema needs name and schema", param="text.format"
            )
        schema: Wire = {"name": fmt.name, "schema": fmt.schema_}
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        if fmt.description:
            schema["description"] = fmt.description
        fields["response_format"] = {"type": "json_schema", "json_schema": schema}
    if body.metadata:
        fields["metadata"] = body.metadata
    if body.user is not None:
        fields["user"] = body.user
    return fields


def _tool(tool: Mapping[str, Any], i: int) -> Wire:
    if tool.get("type") != "function" or not tool.get("name"):
        raise InvalidRequest(
            f"tools[{i}]: tools of type {tool.get('type')!r} are not supported by this router "
            "(function tools with a name are; hosted tools need OpenAI's own service)",
            param=f"tools[{i}]",
        )
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": function}


def _tool_choice(choice: str | Mapping[str, Any]) -> Any:
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise InvalidRequest(f"tool_choice {choice!r} is not one of auto, none, required")
        return choice
    if choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest(
        f"tool_choice {dict(choice)!r}: only auto, none, required or a function by name",
        param="tool_choice",
    )


# -- the answer ----------------------------------------------------------------------


def answer_turn(text: str, raw: Mapping[str, Any] | None) -> Wire:
    """The model's answer as a chat turn (what a later turn of the conversation sees)."""
    message = _message_of(raw)
    turn: Wire = {"role": "assistant", "content": text or None}
    if message.get("tool_calls"):
        turn["tool_calls"] = message["tool_calls"]
    return turn


def _message_of(raw: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not raw or not raw.get("choices"):
        return {}
    message = raw["choices"][0].get("message") or {}
    return message if isinstance(message, Mapping) else {}


def output_items(item_id: str, text: str, raw: Mapping[str, Any] | None) -> list[Wire]:
    """The Responses output of a chat answer: a message with its text, and a
    ``function_call`` item for each tool call."""
    calls = _message_of(raw).get("tool_calls") or []
    items: list[Wire] = []
    if text or not calls:
        items.append(message_item(item_id, text, "completed"))
    for call in calls:
        function = call.get("function") or {}
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{call.get('id', item_id)}",
                "call_id": call.get("id", ""),
                "name": function.get("name", ""),
                "arguments": function.get("arguments", ""),
                "status": "completed",
            }
        )
    return items


def message_item(item_id: str, text: str | None, status: str) -> Wire:
    content = [] if text is None else [text_part(text)]
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def text_part(text: str) -> Wire:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def usage_of(usage: Usage) -> Wire:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def response_object(
    body: ResponseCreateRequest,
    *,
    response_id: str,
    model: str,
    created: int,
    status: str,
    output: list[Wire],
    usage: Usage | None,
    finish_reason: str | None = None,
    decision: Mapping[str, Any] | None = None,
) -> Wire:
    """The ``response`` object, as returned, streamed (in progress and completed) and
    stored."""
    incomplete = status == "completed" and finish_reason == "length"
    fmt = body.text.format.model_dump(by_alias=True, exclude_none=True) if body.text else None
    out: Wire = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "incomplete" if incomplete else status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "store": body.store,
        "temperature": body.temperature,
        "text": {"format": fmt or {"type": "text"}},
        "tool_choice": body.tool_choice or "auto",
        "tools": body.tools or [],
        "top_p": body.top_p,
        "truncation": "disabled",
        "usage": None if usage is None else usage_of(usage),
        "user": body.user,
        "metadata": body.metadata or {},
    }
    if decision is not None:
        out["iccache"] = dict(decision)
    return out
