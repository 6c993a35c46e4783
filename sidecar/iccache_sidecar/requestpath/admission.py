"""Whether an answer becomes a cached example (a pure decision; the write is elsewhere)."""

from __future__ import annotations

from enum import StrEnum

from iccache_contract.settings import CacheSettings
from iccache_sidecar.core.domain import ChatMessage, Decision, Route, RouterRequest
from iccache_sidecar.core.pii import redact
from iccache_sidecar.core.prompting import prompt_tokens


class Admission(StrEnum):
    """The outcome, also the label of ``iccache_admissions_total``."""

    STORED = "stored"
    SKIPPED = "skipped"  # the client, the settings or the situation rule it out
    TOO_LONG = "too_long"
    DUPLICATE = "duplicate"
    FULL = "full"  # the tenant holds as many examples as its capacity override allows
    SHAPED = "shaped"  # stop sequences made it: it does not stand for the question alone


def admit(
    req: RouterRequest,
    decision: Decision,
    prompt: str,
    answer: str,
    *,
    embedded: bool,
    nearest_similarity: float | None,
    cache: CacheSettings,
) -> Admission:
    """Store an answer only if the client allows it, the cache could serve the request
    (or ``cache.ineligible.store`` says to keep it anyway), it was embedded, it is not
    empty, its model's answers are kept (small ones only when configured, never after a
    fall-over to the small model), it fits an example's size and it is not a near
    duplicate of what is cached. An answer shaped by stop sequences is not kept: it would
    be served to everyone in the tenant as an exact hit or an example, keyed on the
    conversation alone."""
    if req.no_store or req.skip_cache or not embedded or not answer.strip():
        return Admission.SKIPPED
    if req.params.stop:
        return Admission.SHAPED
    if decision.ineligible is not None and not cache.ineligible.store:
        return Admission.SKIPPED
    allowed = cache.store_large if decision.route is Route.LARGE else cache.store_small
    if not allowed or (decision.fell_back and decision.route is Route.SMALL):
        return Admission.SKIPPED
    exchange = [ChatMessage("user", prompt), ChatMessage("assistant", answer)]
    if prompt_tokens(exchange) > cache.max_example_tokens:
        return Admission.TOO_LONG
    if nearest_similarity is not None and nearest_similarity >= cache.dedupe_similarity:
        return Admission.DUPLICATE
    return Admission.STORED


def example_text(prompt: str, answer: str, cache: CacheSettings) -> tuple[str, str]:
    """The prompt and answer as they are stored (redacted when configured)."""
    if cache.redact_pii:
        return redact(prompt), redact(answer)
    return prompt, answer
