"""Which answer to keep when distilling: by a judge model when one is configured, by
agreement between the large model's samples otherwise. Index 0 is the stored answer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from iccache_sidecar.backends.judge import PROMPT, read_verdict
from iccache_sidecar.core.domain import ChatMessage, Verdict
from iccache_sidecar.embedding import BatchingEmbedder
from iccache_sidecar.replay.rules import agreement_scores, keep_or_replace

# (messages, max_tokens) -> reply text; the job supplies it with its budget and load checks.
Ask = Callable[[list[ChatMessage], int], Awaitable[str]]


@dataclass(frozen=True)
class Pick:
    index: int
    quality: float  # 0..1, recorded on the example


class AnswerPicker(Protocol):
    name: str

    async def pick(self, question: str, answers: Sequence[str], ask: Ask) -> Pick: ...


class AgreementPicker:
    """Self-consistency: the answer closest in meaning to all the others is kept; its
    mean similarity to them is the recorded quality."""

    name = "agreement"

    def __init__(self, embedder: BatchingEmbedder, margin: float) -> None:
        self._embedder = embedder
        self._margin = margin

    async def pick(self, question: str, answers: Sequence[str], ask: Ask) -> Pick:
        vectors = np.stack(await asyncio.gather(*(self._embedder.embed(a) for a in answers)))
        scores = agreement_scores(vectors)
        best = keep_or_replace(scores, self._margin)
        return Pick(best, max(0.0, min(1.0, scores[best])))


class JudgePicker:
    """King of the hill: the stored answer holds until the judge prefers a challenger
    (ties keep the holder); order is shuffled against position bias. The recorded
    quality is the share of its bouts the kept answer won."""

    name = "judge"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    async def pick(self, question: str, answers: Sequence[str], ask: Ask) -> Pick:
        holder, won, bouts = 0, 0, 0
        for challenger in range(1, len(answers)):
            holder_is_a = self._rng.random() < 0.5
            a, b = answers[holder], answers[challenger]
            if not holder_is_a:
                a, b = b, a
            prompt = PROMPT.format(question=question, a=a, b=b)
            verdict = read_verdict(await ask([ChatMessage("user", prompt)], 4), holder_is_a)
            if verdict is Verdict.UNPARSED:
                continue
            if verdict is Verdict.LARGE_BETTER:  # the challenger (in the "large" seat) won
                holder, won, bouts = challenger, 1, 1
            else:
                won, bouts = won + 1, bouts + 1
        return Pick(holder, won / bouts if bouts else 0.5)
