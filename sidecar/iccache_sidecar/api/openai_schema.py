"""The OpenAI request schema as the router reads it, plus its own options.

The fields declared here are the ones iccache interprets (and checks); every other field
is kept (``model_extra``) and sent to the chosen model unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class IccacheOptions(BaseModel):
    """Per-request controls, sent as ``extra_body={"iccache": {...}}``."""

    model_config = ConfigDict(extra="forbid")

    skip_cache: bool = False
    no_store: bool = False
    force_model: Literal["small", "large"] | None = None


class ContentPart(BaseModel):
    """A part of a message's content: text, or anything else the model may accept
    (images, audio, files), which is forwarded as sent."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1)
    text: str | None = None


class MessageIn(BaseModel):
    """A turn; fields beyond these (``tool_calls``, ``tool_call_id``, ``name``...) are kept."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")

    def wire(self) -> dict[str, Any]:
        """The message as the model receives it (``developer`` is sent as ``system``)."""
        raw = self.model_dump(exclude_unset=True)
        if self.role == "developer":
            raw["role"] = "system"
        return raw


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class CompletionRequestBase(BaseModel):
    """What chat and text completion requests share."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    iccache: IccacheOptions = IccacheOptions()

    def passthrough(self) -> dict[str, Any]:
        """Fields sent to the model as the client sent them."""
        extra = dict(self.model_extra or {})
        if self.user is not None:
            extra["user"] = self.user
        return extra

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(CompletionRequestBase):
    messages: list[MessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(CompletionRequestBase):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("exactly one prompt is supported")
        return v

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1)
    score: float = Field(ge=0, le=1, description="0 (bad) .. 1 (good)")
