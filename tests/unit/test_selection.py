"""Example selection: utility over similarity, diversity, budget, and choosing none."""

from __future__ import annotations

import numpy as np

from iccache_sidecar.core.domain import Candidate
from iccache_sidecar.core.selection import SelectionRules, select_examples

RULES = SelectionRules(
    max_examples=3, token_budget=10_000, min_similarity=0.5, diversity=0.0, value_weight=0.5
)


def _unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def cand(
    id: str, sim: float, *, vec: tuple[float, ...] = (1, 0, 0), rated: float = 0, helped: float = 0
) -> Candidate:
    return Candidate(
        id=id,
        prompt="q " * 8,
        response="a " * 8,
        similarity=sim,
        vector=_unit(*vec),
        rated=rated,
        helped=helped,
    )


def test_learned_value_outranks_slightly_higher_similarity() -> None:
    helpful = cand("helpful", 0.80, rated=20, helped=19)
    unknown = cand("unknown", 0.85)
    chosen = select_examples([unknown, helpful], RULES)
    assert [c.id for c in chosen] == ["helpful", "unknown"]


def test_examples_learned_to_hurt_are_never_used() -> None:
    harmful = cand("harmful", 0.99, rated=30, helped=1)
    assert select_examples([harmful], RULES) == []


def test_nothing_similar_enough_means_no_examples() -> None:
    assert select_examples([cand("a", 0.3), cand("b", 0.49)], RULES) == []


def test_diversity_prefers_a_different_example_over_a_near_copy() -> None:
    rules = SelectionRules(2, 10_000, 0.5, diversity=0.5, value_weight=0.0)
    first = cand("first", 0.90, vec=(1, 0, 0))
    copy = cand("copy", 0.89, vec=(1, 0.01, 0))
    different = cand("different", 0.80, vec=(0.6, 0.8, 0))
    chosen = select_examples([first, copy, different], rules)
    assert [c.id for c in chosen] == ["first", "different"]


def test_token_budget_is_respected_and_smaller_examples_still_fit() -> None:
    big = Candidate("big", "x" * 400, "y" * 400, 0.95, _unit(1, 0, 0))
    small = Candidate("small", "x" * 20, "y" * 20, 0.90, _unit(0, 1, 0))
    rules = SelectionRules(3, token_budget=50, min_similarity=0.5, diversity=0, value_weight=0)
    chosen = select_examples([big, small], rules)
    assert [c.id for c in chosen] == ["small"]


def test_at_most_max_examples() -> None:
    many = [cand(str(i), 0.9 - i / 100) for i in range(10)]
    assert len(select_examples(many, RULES)) == 3


def test_feedback_alone_cannot_carry_a_far_example_past_the_nearest() -> None:
    # A tenant's user rates every answer that used a planted example 1.0, a thousand
    # times: it may win against a close rival, never against a clearly nearer one.
    planted = cand("planted", 0.60, rated=1000, helped=1000)
    nearest = cand("nearest", 0.90)
    chosen = select_examples([nearest, planted], RULES)
    assert [c.id for c in chosen] == ["nearest", "planted"]
    close_rival = cand("close", 0.62)
    assert select_examples([close_rival, planted], RULES)[0].id == "planted"
