"""The shapes of the router's HTTP responses (OpenAI's, plus iccache's decision), and
the one error shape every failure uses."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from iccache_sidecar.api.decision_view import visible
from iccache_sidecar.core.domain import Decision, Usage


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
    ineligible: str | None = Field(
        default=None, description="Why the cache could not serve the request, if it could not"
    )
    verified: bool | None = Field(
        default=None,
        description="verify mode: the small draft passed the large model's check (True) or "
        "failed it and the large model answered (False); None when not checked",
    )
    opening: float | None = Field(
        default=None,
        description="opening routing: the least top-token log-probability of the large "
        "model's first tokens (below opening.unsure_below the small model answered)",
    )

    @classmethod
    def of(cls, decision: Decision, details: str) -> DecisionOut:
        """The decision as the caller may see it (``server.decision_details``)."""
        d = visible(decision, details)
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
            ineligible=d.ineligible,
            verified=d.verified,
            opening=None if d.opening is None else round(d.opening, 4),
        )


class _Open(BaseModel):
    """A shape whose other fields (a model's ``tool_calls``, ``logprobs``,
    ``system_fingerprint``, usage details...) are kept and sent on."""

    model_config = ConfigDict(extra="allow")


class UsageOut(_Open):
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


class AssistantMessage(_Open):
    role: Literal["assistant"] = "assistant"
    content: str | None


class ChatChoice(_Open):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None


class TextChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(_Open):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut | None = None
    iccache: DecisionOut


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: UsageOut
    iccache: DecisionOut


class ChunkDelta(_Open):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(_Open):
    index: int = 0
    delta: ChunkDelta
    finish_reason: str | None = None


class ChatChunk(_Open):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: UsageOut | None = None
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
