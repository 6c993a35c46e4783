"""What each request field iccache does not interpret means for the cache (a table, and
pure lookups). Every such field is sent to the model unchanged; what differs is whether
the cache may serve the request, and whether its answer may be kept.

- ``harmless``: bookkeeping or gentle sampling; the answer still stands for the question.
- ``shaping``: the answer is made to a form or steered away from the plain answer
  (structured output, banned or favoured tokens, a forced length, several choices...):
  the cache cannot serve the request faithfully and its answer is not kept.
- ``reveals_prompt``: the model returns prompt text or prompt tokens (``echo``,
  ``prompt_logprobs``, ``return_token_ids``): with examples in the prompt, another
  user's examples would come back. Such a request never gets examples, whatever
  ``cache.ineligible`` allows, and is not kept.
- a field in no list is treated as ``shaping``: the router cannot know what an unknown
  field makes a model return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

FieldClass = Literal["harmless", "shaping", "reveals_prompt"]

HARMLESS = frozenset(
    {
        # OpenAI bookkeeping
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "parallel_tool_calls",  # meaningful with tools only, which are shaping
        # sampling that leaves the answer an answer to the question (temperature and
        # top_p are read by the router; harmless should they come through here)
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "repetition_penalty",
        "top_k",
        "min_p",
        "typical_p",
        "reasoning_effort",
        "verbosity",
    }
)

REVEALS_PROMPT = frozenset({"echo", "prompt_logprobs", "return_token_ids"})

SHAPING = frozenset(
    {
        "tools",
        "functions",
        "tool_choice",
        "function_call",
        "response_format",
        "n",
        "logprobs",
        "top_logprobs",
        "seed",
        "logit_bias",
        "prediction",
        "modalities",
        "audio",
        "web_search_options",
        # llama.cpp and vLLM extensions
        "grammar",
        "json_schema",
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
        "structured_outputs",
        "min_tokens",
        "ignore_eos",
        "bad_words",
        "allowed_token_ids",
        "continue_final_message",
        "add_generation_prompt",
        "chat_template",
        "chat_template_kwargs",
        "documents",
        "return_tokens_as_token_ids",
    }
)

# Response fields that carry prompt text or tokens: never sent on from an answer whose
# prompt held examples.
PROMPT_IN_RESPONSE = frozenset({"prompt_logprobs", "prompt_token_ids"})


def field_class(name: str) -> FieldClass:
    if name in HARMLESS:
        return "harmless"
    if name in REVEALS_PROMPT:
        return "reveals_prompt"
    return "shaping"  # listed as such, or unknown


def reveals_prompt(passthrough: Mapping[str, Any]) -> bool:
    """Whether the request asks the model to return its prompt in any form."""
    return any(passthrough.get(name) not in (None, False) for name in REVEALS_PROMPT)


def shaping_fields(passthrough: Mapping[str, Any]) -> list[str]:
    """The fields that keep the answer from standing for the question alone (unknown
    ones included), in the order sent; a field sent as null or false counts as unset."""
    return [
        name
        for name, value in passthrough.items()
        if value not in (None, False) and field_class(name) != "harmless"
    ]


def scrubbed(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A model's response (or stream chunk) without prompt text or tokens, at the top
    level and in each choice."""
    out = {k: v for k, v in raw.items() if k not in PROMPT_IN_RESPONSE}
    if isinstance(choices := raw.get("choices"), list):
        out["choices"] = [_without(c, PROMPT_IN_RESPONSE) for c in choices]
    return out


def _without(value: Any, names: Iterable[str]) -> Any:
    if not isinstance(value, Mapping):
        return value
    drop = set(names)
    return {k: v for k, v in value.items() if k not in drop}
