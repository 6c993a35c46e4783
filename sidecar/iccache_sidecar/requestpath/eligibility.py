"""Whether the cache can serve a request faithfully (a pure decision, made in one place).

A request that asks for something a cached answer or a few prepended examples cannot
honour (tools, a response format, several choices, log-probabilities, a fixed seed,
images or audio, any field that shapes the answer: ``core.passthrough``) is
*ineligible*: it gets no exact hit and no examples, goes where the ``cache.ineligible``
settings say, and is not stored unless they allow it. One that makes the model return
its prompt (``prompt_echo``) never gets examples or an exact hit and is never stored,
whatever those settings say: the examples are other users' text.
"""

from __future__ import annotations

from typing import Any

from iccache_sidecar.core.domain import RouterRequest
from iccache_sidecar.core.passthrough import reveals_prompt, shaping_fields

REASONS = (
    "tools",
    "tool_messages",
    "non_text_content",
    "response_format",
    "n",
    "logprobs",
    "seed",
    "prompt_echo",
    "shaping_field",
    "no_user",  # cache.share is "user" and the credentials name no end user
)
# Fields the checks above read themselves (tool_choice and parallel_tool_calls mean
# nothing without tools).
READ_ABOVE = frozenset(
    {
        "tools",
        "functions",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "n",
        "logprobs",
        "top_logprobs",
        "seed",
    }
)


def ineligibility(req: RouterRequest) -> str | None:
    """The first reason (one of ``REASONS``) the cache cannot serve ``req``, or None."""
    p = req.params.passthrough
    if reveals_prompt(p):
        return "prompt_echo"
    if p.get("tools") or p.get("functions"):
        return "tools"
    for message in req.messages:
        raw: dict[str, Any] = dict(message.raw or {})
        if (
            message.role in ("tool", "function")
            or raw.get("tool_calls")
            or raw.get("function_call")
        ):
            return "tool_messages"
        content = raw.get("content")
        if isinstance(content, list) and any(
            not isinstance(part, dict) or part.get("type") != "text" for part in content
        ):
            return "non_text_content"
    response_format = p.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type", "text") != "text":
        return "response_format"
    if isinstance(p.get("n"), int) and p["n"] > 1:
        return "n"
    if p.get("logprobs") or p.get("top_logprobs"):
        return "logprobs"
    if p.get("seed") is not None:
        return "seed"
    if any(name not in READ_ABOVE for name in shaping_fields(p)):
        return "shaping_field"
    return None
