"""Choosing in-context examples: utility, not similarity alone.

Similarity predicts helpfulness poorly (the IC-Cache paper measured Pearson 0.04-0.22),
so each candidate's utility mixes its similarity with the value learned from outcomes,
and maximal marginal relevance keeps the chosen set diverse. Choosing none is allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from iccache_sidecar.core.domain import Candidate, estimate_tokens


@dataclass(frozen=True)
class SelectionRules:
    max_examples: int
    token_budget: int
    min_similarity: float
    diversity: float  # 0: ignore redundancy; 1: redundancy costs as much as utility
    value_weight: float  # 0: similarity only; 1: learned value only
    min_value: float = 0.2  # examples learned to hurt are never used
    max_value_lift: float = 0.05  # the most good outcomes can raise a candidate's utility


NEUTRAL_VALUE = 0.5  # the value of an example nobody has rated


def utility(candidate: Candidate, value_weight: float, max_value_lift: float = 1.0) -> float:
    """Similarity and learned value, mixed. Good outcomes lift a candidate by at most
    ``max_value_lift`` above what its similarity alone gives it, so feedback (which
    a tenant's users control) reorders close candidates but cannot carry a far one, a
    planted answer, past the nearest; bad outcomes lower it without bound."""
    base = (1.0 - value_weight) * candidate.similarity + value_weight * NEUTRAL_VALUE
    lift = value_weight * (candidate.value - NEUTRAL_VALUE)
    return base + min(lift, max_value_lift)


def example_tokens(candidate: Candidate) -> int:
    return candidate.tokens or estimate_tokens(candidate.prompt) + estimate_tokens(
        candidate.response
    )


def select_examples(candidates: Sequence[Candidate], rules: SelectionRules) -> list[Candidate]:
    """Pick up to ``max_examples`` candidates by MMR over utility, within the token budget.

    Returned best first; the caller places them so the best sits nearest the question.
    """
    pool = [
        c for c in candidates if c.similarity >= rules.min_similarity and c.value >= rules.min_value
    ]
    chosen: list[Candidate] = []
    budget = rules.token_budget
    while pool and len(chosen) < rules.max_examples:

        def mmr(c: Candidate) -> float:
            redundancy = max((float(c.vector @ s.vector) for s in chosen), default=0.0)
            return (
                utility(c, rules.value_weight, rules.max_value_lift) - rules.diversity * redundancy
            )

        best = max(pool, key=mmr)
        pool.remove(best)
        cost = example_tokens(best)
        if cost <= budget:
            chosen.append(best)
            budget -= cost
    return chosen
