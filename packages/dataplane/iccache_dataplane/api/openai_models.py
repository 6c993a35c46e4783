"""The shapes of the router's HTTP responses (OpenAI's, plus iccache's decision), and
the one error shape every failure uses."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from iccache_dataplane.core.domain import Decision, Usage


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """``{"error": {...}}``, as OpenAI's API answers errors."""

    error: ErrorDetail


class DecisionOut(BaseModel):
    """What iccache did for a request (the ``iccache`` field of a response)."""

    request_id: str
    route: Literal["small", "large", "exact"]
    backend_model: str
    examples: list[str]
    max_similarity: float
    policy: str
    reason: str
    exact_hit: bool
    fell_back: bool
    degraded: list[str]

    @classmethod
    def of(cls, d: Decision) -> DecisionOut:
        return cls(
            request_id=d.request_id,
            route="exact" if d.exact_hit else d.route.value,
            backend_model=d.backend_model,
            examples=d.example_ids,
            max_similarity=round(d.max_similarity, 4),
            policy=d.policy,
            reason=d.reason,
            exact_hit=d.exact_hit,
            fell_back=d.fell_back,
            degraded=d.degraded,
        )


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, u: Usage) -> UsageOut:
        return cls(
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            total_tokens=u.prompt_tokens + u.completion_tokens,
        )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str


class TextChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut
    iccache: DecisionOut


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: UsageOut
    iccache: DecisionOut


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: str | None


class ChatChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    iccache: DecisionOut | None = None


class TextChunk(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    iccache: DecisionOut | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "iccache"
    created: int = 0


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class FeedbackAccepted(BaseModel):
    accepted: bool = True
    request_id: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool] = Field(description="started, index, and each model's health")
