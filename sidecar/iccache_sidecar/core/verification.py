"""Verifying a small model's answer with the large model's own token probabilities.

One prefill of the prompt followed by the draft answer on the large model gives, for
every token of the draft, its log-probability under the large model and the large
model's own top choice at that position: the deferral signal of *speculative cascades*
(Narasimhan et al., 2024, arXiv 2405.19261), where the large model checks a draft in one
parallel pass instead of writing its own answer. This module holds the arithmetic, free
of I/O: the prompt the large model reads, the draft's score, the pass rule and the
threshold learned from outcomes.

The score is length-neutral on purpose: a sum of log-probabilities would favour short
answers (fewer terms, each negative), so the statistics are means, minima and shares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from iccache_contract.quality import wilson_interval, z_score
from iccache_sidecar.core.domain import ChatMessage

PromptFormat = Literal["chatml", "gemma", "llama3"]
Statistic = Literal["mean_logprob", "min_logprob", "agreement"]

_TURNS: dict[str, tuple[str, str, dict[str, str]]] = {
    # format: (turn template, assistant opening, role renames)
    "chatml": ("<|im_start|>{role}\n{content}<|im_end|>\n", "<|im_start|>assistant\n", {}),
    "gemma": (
        "<start_of_turn>{role}\n{content}<end_of_turn>\n",
        "<start_of_turn>model\n",
        {"assistant": "model", "system": "user"},
    ),
    "llama3": (
        "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        {},
    ),
}


def render_prompt(messages: Sequence[ChatMessage], fmt: PromptFormat) -> str:
    """The conversation as the large model's chat template writes it, up to the start of
    the assistant's answer (so that the draft can follow it directly)."""
    turn, opening, renames = _TURNS[fmt]
    head = "<|begin_of_text|>" if fmt == "llama3" else ""
    body = "".join(
        turn.format(role=renames.get(m.role, m.role), content=m.content) for m in messages
    )
    return head + body + opening


@dataclass(frozen=True)
class TokenView:
    """The large model at one position of the draft: the draft token's log-probability,
    the log-probability of the large model's own top token, and whether they are one."""

    logprob: float
    top_logprob: float
    is_top: bool


@dataclass(frozen=True)
class DraftScore:
    tokens: int
    mean_logprob: float  # average log-probability of the draft's tokens
    min_logprob: float  # the least likely token
    agreement: float  # share of positions where the draft token is the large model's top
    # The large model's own confidence where the answer starts: its top token's
    # log-probability at the first position (before any draft token is read).
    first_top_logprob: float = 0.0

    def statistic(self, name: Statistic) -> float:
        """Higher is better for each statistic."""
        return float(getattr(self, name))


def score_draft(views: Sequence[TokenView]) -> DraftScore | None:
    """The draft's score; None for an empty draft (nothing to verify: it fails)."""
    if not views:
        return None
    logprobs = [max(v.logprob, -100.0) for v in views]  # -inf from a server: a floor
    return DraftScore(
        tokens=len(views),
        mean_logprob=sum(logprobs) / len(logprobs),
        min_logprob=min(logprobs),
        agreement=sum(v.is_top for v in views) / len(views),
        first_top_logprob=max(views[0].top_logprob, -100.0),
    )


@dataclass(frozen=True)
class Verified:
    """One check's result: the draft's score (None: an empty draft) and its wall time."""

    score: DraftScore | None
    seconds: float


def passes(
    score: DraftScore | None,
    statistic: Statistic,
    threshold: float,
    unsure_below: float | None = None,
) -> bool:
    """The draft passes at or above ``threshold``; with ``unsure_below``, also wherever
    the large model is itself unsure how to begin (its top first token below that
    log-probability): there its own answer is no safer, so keeping the draft loses
    little and saves the large answer."""
    if score is None:
        return False
    if unsure_below is not None and score.first_top_logprob < unsure_below:
        return True
    return score.statistic(statistic) >= threshold


@dataclass(frozen=True)
class Outcome:
    """A verified draft whose quality became known (feedback, a probe): its statistic
    and whether it lost against the large model."""

    value: float
    lost: bool


def learn_threshold(
    outcomes: Sequence[Outcome], max_loss: float, confidence: float, min_samples: int
) -> float | None:
    """The lowest threshold at which the drafts that pass are shown to lose at most
    ``max_loss`` (the upper bound of the loss rate among them, at ``confidence``),
    among at least ``min_samples`` of them; None when no threshold is shown yet.

    Lower thresholds pass more drafts (more offload), so the rule walks the outcomes
    from the best score down and keeps the longest run whose bound holds."""
    z = z_score(confidence)
    ranked = sorted(outcomes, key=lambda o: o.value, reverse=True)
    best: float | None = None
    losses = 0
    for n, outcome in enumerate(ranked, start=1):
        losses += outcome.lost
        tie_next = n < len(ranked) and ranked[n].value == outcome.value
        if n < min_samples or tie_next:
            continue
        if wilson_interval(losses, n, z)[1] <= max_loss:
            best = outcome.value
    return best


def roc_auc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """The probability that a positive scores above a negative (ties count half): the
    area under the ROC curve of ``scores`` as a detector of ``positives``."""
    pairs = sorted(zip(scores, positives, strict=True), key=lambda p: p[0])
    n_pos = sum(positives)
    n_neg = len(pairs) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mid_rank = (i + 1 + j) / 2  # ranks i+1 .. j share their mean
        rank_sum += mid_rank * sum(1 for k in range(i, j) if pairs[k][1])
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
