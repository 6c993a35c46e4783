"""The comparators' calibration arithmetic (``iccache bench calibrate``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iccache_dev.bench.calibrate import Pair, judge_row, recommended, table
from iccache_dev.bench.comparators import cascade
from iccache_sidecar.core.domain import Verdict


def test_agreement_flags_below_the_threshold_and_counts_true_losses() -> None:
    pairs = [Pair(0.3, True), Pair(0.6, True), Pair(0.7, False), Pair(0.95, False)]
    rows = {r.threshold: r for r in table(pairs, (0.5, 0.75, 0.9))}
    assert (rows[0.5].flagged, rows[0.5].recall, rows[0.5].precision) == (0.25, 0.5, 1.0)
    assert (rows[0.75].flagged, rows[0.75].recall) == (0.75, 1.0)
    assert rows[0.75].precision == pytest.approx(2 / 3)
    best = recommended(table(pairs, (0.5, 0.75, 0.9)))
    assert best is not None
    assert best.threshold == 0.75  # the lowest with recall >= 80%


def test_the_judge_is_rated_on_a_stratified_sample_at_the_runs_base_rate() -> None:
    pairs = [Pair(0.0, True)] * 4 + [Pair(0.0, False)] * 10
    L, T, U = Verdict.LARGE_BETTER, Verdict.TIE, Verdict.UNPARSED
    verdicts = {0: L, 1: L, 2: L, 3: T, 4: L, 5: T, 6: T, 7: U, 8: T, 9: T}
    row = judge_row(pairs, verdicts, base_rate=0.05)
    assert (row.losses, row.others) == (4, 6)
    assert row.recall == 0.75
    assert row.false_alarms == pytest.approx(1 / 6)
    flagged = 0.75 * 0.05 + (1 / 6) * 0.95
    assert row.flagged == pytest.approx(flagged)
    assert row.precision == pytest.approx(0.75 * 0.05 / flagged)
    assert (row.ties, row.unparsed) == (5, 1)


def test_the_cascade_replay_counts_kept_drafts_against_large_only(tmp_path: Path) -> None:
    """Four requests, large-only right on q1 and q2. Drafts: q1 wrong but likely (kept
    from -0.5 on: a loss), q3 right and less likely (kept from -1.5 on: a win), q2 and
    q4 wrong and unlikely (replaced by large-only's answers at every threshold here)."""
    outcomes = tmp_path / "outcomes.jsonl"
    large = {"q1": True, "q2": True, "q3": False, "q4": False}
    outcomes.write_text(
        "".join(
            json.dumps({"system": "large-only", "question": q, "correct": c}) + "\n"
            for q, c in large.items()
        )
    )
    scores = tmp_path / "scores.jsonl"
    drafts = [("q1", True, -0.2), ("q2", True, -4.0), ("q3", False, -1.2), ("q4", True, -5.0)]
    scores.write_text(
        "".join(
            json.dumps({"question": q, "wrong": w, "mean_logprob": m, "first_top_logprob": -0.1})
            + "\n"
            for q, w, m in drafts
        )
    )
    text = cascade(outcomes, scores)
    # At -1.0 only q1 is kept: one loss in four requests.
    assert "| mean logprob >= -1.0 | 25.0% | -25.00 " in text
    # At -1.5 q3 is kept too: its win makes up for q1's loss.
    assert "| mean logprob >= -1.5 | 50.0% | +0.00 " in text
