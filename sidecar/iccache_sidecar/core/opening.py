"""The opening rule, as pure functions: how sure the large model is of the first tokens
of its own answer, read from the log-probabilities it streams with them.

Where the large model is unsure how its answer goes, that answer is often wrong as
well, so the small model (with examples) loses little by answering instead; where it is
sure, its answer is kept. Measured on labelled questions (``docs/bench/calibration``):
the least top-token log-probability over the first 16 tokens separates the small
model's losses from the rest with a ROC-AUC of 0.73-0.74, where every signal of the
small answer alone is near chance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from iccache_sidecar.core.passthrough import shaping_fields

# What the large model is asked for while its opening is read.
ASK_LOGPROBS = {"logprobs": True, "top_logprobs": 1}

OpeningResult = Literal["sure", "unsure", "finished", "unscored"]


def reads_opening(passthrough: Mapping[str, Any]) -> bool:
    """Whether a request may be decided on the large model's opening: not when a field
    shapes the answer or what comes back, prompt-revealing ones included (its answer
    must be the routed model's)."""
    return not shaping_fields(passthrough)


def top_logprobs(chunk: Mapping[str, Any]) -> list[float]:
    """For each generated token of a chat-completion chunk, the log-probability of the
    most likely token at its position (the token itself under greedy decoding; the top
    entry when the answer is sampled)."""
    choices = chunk.get("choices") or []
    if not choices or not isinstance(choices[0], Mapping):
        return []
    logprobs = choices[0].get("logprobs") or {}
    out: list[float] = []
    for entry in logprobs.get("content") or []:
        if not isinstance(entry, Mapping):
            continue
        seen = [t.get("logprob") for t in entry.get("top_logprobs") or [] if isinstance(t, Mapping)]
        seen.append(entry.get("logprob"))
        numbers = [float(v) for v in seen if isinstance(v, int | float)]
        if numbers:
            out.append(max(numbers))
    return out


def without_logprobs(chunk: Mapping[str, Any]) -> dict[str, Any]:
    """A chunk as the client would have had it without the router's ``logprobs``."""
    choices = [
        {k: v for k, v in c.items() if k != "logprobs"} if isinstance(c, Mapping) else c
        for c in chunk.get("choices") or []
    ]
    return {**chunk, "choices": choices} if "choices" in chunk else dict(chunk)


@dataclass(frozen=True)
class Opening:
    """What the first tokens of the large model's answer showed."""

    tokens: int  # scored tokens read
    least: float | None  # least top-token log-probability among them (None: none scored)
    finished: bool  # the whole answer came within the opening


def judge(opening: Opening, unsure_below: float) -> OpeningResult:
    """``unsure``: hand the request to the small model. An answer that finished within
    its opening is kept whatever its confidence: it already cost what it costs."""
    if opening.finished:
        return "finished"
    if opening.least is None:
        return "unscored"
    return "unsure" if opening.least < unsure_below else "sure"
