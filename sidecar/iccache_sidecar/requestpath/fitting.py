"""Whether a prompt fits a model's context, and how many examples still fit (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from iccache_contract.settings import BackendSettings
from iccache_sidecar.core.domain import Candidate, RouterRequest
from iccache_sidecar.core.errors import ContextTooLong, InvalidRequest
from iccache_sidecar.core.prompting import prompt_tokens, with_examples


def check_context(limits: Sequence[BackendSettings], tokens: int, max_tokens: int) -> None:
    """Refuse a request that no model's context can hold."""
    limit = max(b.max_context_tokens for b in limits)
    if tokens + max_tokens > limit:
        raise ContextTooLong(
            f"the prompt (about {tokens} tokens) plus max_tokens ({max_tokens}) exceeds "
            f"the largest model context ({limit} tokens)",
            param="messages",
        )


def refused_content(backend: BackendSettings, req: RouterRequest) -> list[str]:
    """The types of the request's content parts the model is known not to accept."""
    if backend.content_types is None:
        return []
    found = {
        str(part.get("type"))
        for m in req.messages
        if isinstance(content := (m.raw or {}).get("content"), list)
        for part in content
        if isinstance(part, dict)
    }
    return sorted(found - set(backend.content_types))


def check_content(backend: BackendSettings, req: RouterRequest) -> None:
    """Refuse content parts the chosen model is known not to accept (``content_types``)."""
    refused = refused_content(backend, req)
    if refused:
        raise InvalidRequest(
            f"model {backend.model!r} accepts content parts of types "
            f"{sorted(backend.content_types or [])}, not {refused}",
            param="messages",
        )


def fits(backend: BackendSettings, req: RouterRequest) -> bool:
    """The request, without examples, fits this model's context."""
    return prompt_tokens(req.messages) + req.params.max_tokens <= backend.max_context_tokens


def fit_examples(
    examples: Sequence[Candidate], req: RouterRequest, small: BackendSettings
) -> list[Candidate]:
    """Drop the weakest examples until the small model's context holds the prompt."""
    limit = small.max_context_tokens - req.params.max_tokens
    kept = list(examples)
    while kept and prompt_tokens(with_examples(kept, req.messages)) > limit:
        kept.pop()
    return kept
