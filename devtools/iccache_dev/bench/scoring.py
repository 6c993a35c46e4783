"""Answer quality: the NQ-open rule (a normalised reference contained in the normalised
response), agreement with the large model's answer, Wilson confidence intervals, and
paired differences between two systems answering the same requests."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence

from iccache_contract.quality import wilson_interval

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalise_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD/NQ-open style)."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def contains_answer(response: str, answers: Sequence[str]) -> bool:
    said = f" {normalise_answer(response)} "
    return any(f" {n} " in said for n in (normalise_answer(a) for a in answers) if n)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (the router's own, for its budget)."""
    return wilson_interval(successes, n, z)


def paired_difference(
    a: Sequence[bool], b: Sequence[bool], z: float = 1.96
) -> tuple[float, float, float]:
    """How much more often ``a`` is right than ``b`` on the same requests: the difference
    of proportions and its 95% interval (Agresti and Min's adjusted Wald interval for
    matched pairs: half a pair added to each cell). Only the requests on which the two
    disagree move it, so it is much tighter than two separate intervals."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes differ in number: {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return (0.0, -1.0, 1.0)
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    pa, pb, m = only_a + 0.5, only_b + 0.5, n + 2
    centre = (pa - pb) / m
    half = z * math.sqrt(((pa + pb) / m - centre * centre) / m)
    return ((only_a - only_b) / n, max(-1.0, centre - half), min(1.0, centre + half))


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
