"""Comparisons of a small answer with the large model's, off the response path.

A *shadow*: a sampled share of small-routed answers is also answered by the large
model, after the client has its answer; only while the large model has spare capacity,
and within a token budget of its own. A *probe*: a request the policy gave the small
model but the unproven budget held to the large one (``unproven_share``) is also
answered by the small model, with the examples it would have had, while the small
model is idle; the large answer served is the reference. Probes are how a budget
gathers its evidence when the large model is busy (shadows then never run), at the
small model's price. The comparator is the verifier when it compares (a prefill of the
probe's answer on the large model), else the pairwise judge when one is configured (asked
in both orders), otherwise agreement: the cosine of the two answers' embeddings against
``agreement_threshold``. Agreement sees whether the small model said the same thing as
the large one, not which is right: a different but equally good answer counts as a
loss (the estimate errs on the safe side), and a shared mistake goes unseen.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import numpy as np

from iccache_contract.settings import QualitySettings
from iccache_sidecar.backends.client import Backend
from iccache_sidecar.backends.judge import PairwiseJudge
from iccache_sidecar.core.domain import ChatMessage, GenerationParams, RouterRequest, Verdict
from iccache_sidecar.core.errors import DependencyDown, IccacheError
from iccache_sidecar.requestpath.ports import Embedder
from iccache_sidecar.requestpath.verification import DraftCheck

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Compared:
    lost: bool  # the small answer was worse than the large model's
    source: str  # "judge" or "agreement"
    similarity: float | None = None  # agreement: the two answers' cosine


class TokenBudget:
    """At most ``per_minute`` tokens in any minute (a fixed one-minute window)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._start = time.monotonic()
        self._spent = 0

    def _roll(self) -> None:
        now = time.monotonic()
        if now - self._start >= 60:
            self._start, self._spent = now, 0

    def allows(self, tokens: int) -> bool:
        self._roll()
        return self._spent + tokens <= self.per_minute

    def charge(self, tokens: int) -> None:
        self._roll()
        self._spent += tokens


class ShadowComparer:
    def __init__(
        self,
        settings: QualitySettings,
        large: Backend,
        embedder: Embedder | None,
        judge: PairwiseJudge | None,
        rng: random.Random | None = None,
        small: Backend | None = None,
        check: DraftCheck | None = None,
    ) -> None:
        self.settings = settings
        self.check = check
        self.large = large
        self.small = small
        self.embedder = embedder
        self.judge = judge
        self.tokens = TokenBudget(settings.shadow_tokens_per_minute)
        self._rng = rng or random.Random()

    def sampled(self, expected_tokens: int) -> bool:
        """Whether to compare this answer: sampled, large model not busy, budget left."""
        s = self.settings
        if s.shadow_rate <= 0 or self._rng.random() >= s.shadow_rate:
            return False
        load = self.large.load.snapshot()
        if not load.healthy or load.utilisation >= s.shadow_max_large_load:
            return False
        return self.tokens.allows(expected_tokens)

    def probe_sampled(self) -> bool:
        """Whether to probe this held request: sampled, and the small model idle."""
        rate = self.settings.probe_rate
        if self.small is None or rate <= 0 or self._rng.random() >= rate:
            return False
        load = self.small.load.snapshot()
        return load.healthy and load.in_flight == 0

    async def compare(self, req: RouterRequest, small_answer: str) -> Compared | None:
        """The large model's answer to the same request (without examples), compared
        with the small one; None when either could not be had."""
        params = GenerationParams(max_tokens=req.params.max_tokens, temperature=0.0)
        try:
            reply = await self.large.complete(req.messages, params)
        except IccacheError as exc:
            log.info("shadow comparison skipped, the large model failed: %s", exc)
            return None
        self.tokens.charge(reply.usage.prompt_tokens + reply.usage.completion_tokens)
        return await self._compared(req.query, small_answer, reply.text)

    async def probe(
        self, req: RouterRequest, messages: list[ChatMessage], large_answer: str
    ) -> Compared | None:
        """The small model's answer to ``messages`` (the request with the examples it
        would have had), compared with the large answer served; None when it could not
        be had."""
        assert self.small is not None
        params = GenerationParams(max_tokens=req.params.max_tokens, temperature=0.0)
        try:
            reply = await self.small.complete(messages, params)
        except IccacheError as exc:
            log.info("probe skipped, the small model failed: %s", exc)
            return None
        if self.check is not None and self.check.compares:
            checked = await self.check.check(req.messages, reply.text)
            return None if checked is None else Compared(not checked.passed, "verifier")
        return await self._compared(req.query, reply.text, large_answer)

    async def _compared(self, query: str, small_answer: str, large_answer: str) -> Compared | None:
        if self.judge is not None:
            verdict = await self.judge.both_orders(query, small_answer, large_answer)
            if verdict is Verdict.UNPARSED:
                return None
            return Compared(verdict is Verdict.LARGE_BETTER, "judge")
        if self.embedder is None:
            return None
        try:
            a = await self.embedder.embed(small_answer)
            b = await self.embedder.embed(large_answer)
        except DependencyDown as exc:
            log.info("comparison skipped, the embedder failed: %s", exc)
            return None
        cosine = float(np.dot(a, b))  # the embedder's vectors are unit length
        return Compared(cosine < self.settings.agreement_threshold, "agreement", cosine)
