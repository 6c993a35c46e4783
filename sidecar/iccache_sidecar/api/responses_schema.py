"""The OpenAI Responses API request as the router reads it (``POST /v1/responses``).

The router answers it through chat completions: the input items become chat turns (so
in-context examples are inserted, routed and cached exactly as for chat), and the answer
becomes the Responses output. Fields with no chat meaning the router could honour
(hosted tools, reasoning items, background runs) are refused with a 400 that names them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from iccache_sidecar.api.openai_schema import IccacheOptions


class InputPart(BaseModel):
    """A part of an input message's content: ``input_text``, ``output_text`` (earlier
    assistant turns), ``input_image``, ``input_file``, ``refusal``."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1)
    text: str | None = None


class InputItem(BaseModel):
    """An item of ``input``: a message (``type`` "message" or absent, with ``role``), a
    ``function_call`` the model made earlier, or a ``function_call_output``."""

    model_config = ConfigDict(extra="allow")

    type: str = "message"
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[InputPart] | None = None
    # function_call / function_call_output
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[InputPart] | None = None


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: TextFormat = TextFormat()


class ResponseCreateRequest(BaseModel):
    """The fields the router reads; others are refused by name unless listed as
    bookkeeping in :data:`IGNORED_FIELDS` (see the README's Responses table)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str = Field(min_length=1)
    input: str | list[InputItem] = Field(min_length=1)
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=200)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    user: str | None = None
    truncation: Literal["disabled"] | None = None
    iccache: IccacheOptions = IccacheOptions()


# Sent by clients as bookkeeping; accepted and not sent to the model.
IGNORED_FIELDS = frozenset(
    {"service_tier", "safety_identifier", "prompt_cache_key", "include", "stream_options"}
)
