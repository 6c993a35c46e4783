"""An optional judge model that rates sampled small-model answers against the large one.

For a sampled request served by the small model, the large model answers the same
question without examples, and the judge (any OpenAI-compatible endpoint) is asked which
answer is better, with the order shuffled against position bias. The small answer earns
1.0 when it is at least as good, 0.0 when it is worse; an unreadable verdict earns nothing.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Sequence

import openai

from iccache_contract.settings import JudgeSettings
from iccache_sidecar.backends.client import Backend
from iccache_sidecar.core.domain import ChatMessage, GenerationParams, Verdict
from iccache_sidecar.core.errors import IccacheError

log = logging.getLogger(__name__)

PROMPT = """Two assistants answered the same question. Decide which answer is better \
(more correct, more helpful). Reply with exactly one letter: A, B, or T for a tie.

Question: {question}

Answer A: {a}

Answer B: {b}

Better answer (A, B or T):"""

_VERDICT = re.compile(r"\b([ABT])\b")


def read_verdict(text: str, small_is_a: bool) -> Verdict:
    """The first standalone A, B or T in the judge's reply, mapped to the small answer."""
    found = _VERDICT.search(text.strip().upper())
    if found is None:
        return Verdict.UNPARSED
    letter = found.group(1)
    if letter == "T":
        return Verdict.TIE
    small_won = (letter == "A") == small_is_a
    return Verdict.SMALL_BETTER if small_won else Verdict.LARGE_BETTER


_LEAN = {Verdict.SMALL_BETTER: 1, Verdict.TIE: 0, Verdict.LARGE_BETTER: -1}


def combined(first: Verdict, second: Verdict) -> Verdict:
    """One verdict from the two orders: the net preference. A small judge leans to a
    position (it may say "tie" whenever the small answer comes first and "A" whenever
    the large one does), so a preference in one order and a tie in the other counts,
    while opposite preferences cancel. One unreadable reading leaves the other."""
    if Verdict.UNPARSED in (first, second):
        return first if second is Verdict.UNPARSED else second
    net = _LEAN[first] + _LEAN[second]
    if net > 0:
        return Verdict.SMALL_BETTER
    return Verdict.LARGE_BETTER if net < 0 else Verdict.TIE


class PairwiseJudge:
    def __init__(
        self, settings: JudgeSettings, large: Backend, rng: random.Random | None = None
    ) -> None:
        if settings.base_url is None:
            raise ValueError("the judge needs a base_url")
        self.settings = settings
        self._large = large
        self._rng = rng or random.Random()
        key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url, api_key=key or "unused", timeout=120, max_retries=1
        )

    def sampled(self) -> bool:
        return self._rng.random() < self.settings.sample_rate

    async def judge(
        self, conversation: Sequence[ChatMessage], question: str, small_answer: str
    ) -> Verdict:
        params = GenerationParams(max_tokens=256, temperature=0.0)
        try:
            large_answer = (await self._large.complete(conversation, params)).text
        except IccacheError as exc:
            log.warning("judging skipped: %s", exc)
            return Verdict.UNPARSED
        return await self.verdict(question, small_answer, large_answer, self._rng.random() < 0.5)

    async def verdict(
        self, question: str, small_answer: str, large_answer: str, small_is_a: bool
    ) -> Verdict:
        """The judge's reading of the two answers in the given order."""
        a, b = (small_answer, large_answer) if small_is_a else (large_answer, small_answer)
        try:
            reply = await self._client.chat.completions.create(
                model=self.settings.model,
                messages=[{"role": "user", "content": PROMPT.format(question=question, a=a, b=b)}],
                max_tokens=4,
                temperature=0.0,
            )
        except openai.OpenAIError as exc:
            log.warning("judging skipped: %s", exc)
            return Verdict.UNPARSED
        return read_verdict(reply.choices[0].message.content or "", small_is_a)

    async def both_orders(self, question: str, small_answer: str, large_answer: str) -> Verdict:
        """Asked twice, each answer first once, and ``combined``."""
        first = await self.verdict(question, small_answer, large_answer, True)
        second = await self.verdict(question, small_answer, large_answer, False)
        return combined(first, second)

    async def close(self) -> None:
        await self._client.close()
