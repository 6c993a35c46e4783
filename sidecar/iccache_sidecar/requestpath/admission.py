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
    SHAPED = "shaped"  # the client shaped it: it does not stand for the question alone
    CUT = "cut"  # it did not end by itself (max_tokens, a filter): not a whole answer
    FORGOTTEN = "forgotten"  # stored, then deleted: a forget of it raced the admission


HOT_TEMPERATURE = 1.0  # above this, sampling shapes the answer more than the question does


def admit(
    req: RouterRequest,
    decision: Decision,
    prompt: str,
    answer: str,
    *,
    embedded: bool,
    nearest_similarity: float | None,
    cache: CacheSettings,
    finish_reason: str | None = "stop",
) -> Admission:
    """Store an answer only if the client allows it, the cache could serve the request
    (or ``cache.ineligible.store`` says to keep it anyway), it was embedded, it is not
    empty, its model's answers are kept (small ones only when configured, never after a
    fall-over to the small model), it fits an example's size and it is not a near
    duplicate of what is cached. Only an answer that stands for the question alone is
    kept, since it is served to everyone in its scope as an exact hit or an example: not
    one the model did not end itself (``finish_reason`` other than ``stop``: cut at
    ``max_tokens``, unless ``cache.store_cut``), nor one shaped by the client's stop
    sequences or hot sampling. (A forced model's answer is kept as a routed one would be:
    forcing picks the model, not what it says.)"""
    if req.no_store or req.skip_cache or not embedded or not answer.strip():
        return Admission.SKIPPED
    if finish_reason != "stop" and not cache.store_cut:
        return Admission.CUT
    hot = req.params.temperature is not None and req.params.temperature > HOT_TEMPERATURE
    if req.params.stop or hot:
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
