"""The benchmark's data parsing and scoring rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iccache_dev.bench.prepare import STYLES, AnswerFile
from iccache_dev.bench.report import compare
from iccache_dev.bench.scoring import (
    contains_answer,
    normalise_answer,
    paired_difference,
    percentile,
    wilson,
)
from iccache_dev.bench.workloads import Item, parse_topic_line


def test_topic_lines_with_plain_and_csv_quoted_answer_lists() -> None:
    plain = parse_topic_line("who got the first nobel prize in physics\t['Wilhelm Conrad Röntgen']")
    assert plain.question == "who got the first nobel prize in physics"
    assert plain.answers == ("Wilhelm Conrad Röntgen",)
    quoted = parse_topic_line(
        "who sings the theme song for the proud family\t\"['Solange Knowles', \"\"Destiny 's "
        'Child""]"'
    )
    assert quoted.answers == ("Solange Knowles", "Destiny 's Child")
    with pytest.raises(ValueError, match="not a list"):
        parse_topic_line("q\t'just a string'")


def test_answer_containment_follows_the_nq_open_rule() -> None:
    assert normalise_answer("The  Eiffel Tower!") == "eiffel tower"
    assert contains_answer("It was built by Gustave Eiffel.", ["Gustave Eiffel"])
    assert contains_answer("the answer is 1,500", ["1500"])
    assert not contains_answer("Eiffelsberg", ["Eiffel"])  # whole words only
    assert not contains_answer("anything", [""])


def test_wilson_interval_and_percentiles() -> None:
    lo, hi = wilson(40, 400)
    assert lo == pytest.approx(0.0744, abs=1e-3)
    assert hi == pytest.approx(0.1332, abs=1e-3)
    assert hi - lo < 0.06  # about +-3 points at 400 requests, as the benchmark targets
    assert wilson(0, 0) == (0.0, 1.0)
    assert percentile([1, 2, 3, 4], 0.5) == 2.5


def test_paired_difference_counts_only_the_requests_on_which_two_systems_disagree() -> None:
    # 100 requests: both right on 20, only a on 10, only b on 4, both wrong on 66.
    a = [True] * 20 + [True] * 10 + [False] * 4 + [False] * 66
    b = [True] * 20 + [False] * 10 + [True] * 4 + [False] * 66
    diff, lo, hi = paired_difference(a, b)
    assert diff == pytest.approx(0.06)
    assert (lo, hi) == (pytest.approx(-0.0147, abs=1e-3), pytest.approx(0.1324, abs=1e-3))
    # Far tighter than the two separate intervals (30% and 24%, each about +-9 points).
    assert hi - lo < (wilson(30, 100)[1] - wilson(30, 100)[0])
    # Swapping the systems mirrors the result; agreement everywhere is centred on zero.
    back = paired_difference(b, a)
    assert back == (pytest.approx(-0.06), pytest.approx(-hi), pytest.approx(-lo))
    same, slo, shi = paired_difference(a, a)
    assert same == 0
    assert slo == pytest.approx(-shi)
    assert shi < 0.02
    with pytest.raises(ValueError, match="differ in number"):
        paired_difference(a, b[:-1])


def test_systems_are_compared_only_on_the_same_requests() -> None:
    rows = [{"mode": "saturation", "system": s} for s in ("large-only", "iccache-bandit")]
    records = [
        {"mode": "saturation", "system": "large-only", "question": "q1", "correct": True},
        {"mode": "saturation", "system": "large-only", "question": "q2", "correct": False},
        {"mode": "saturation", "system": "iccache-bandit", "question": "q1", "correct": True},
        {"mode": "saturation", "system": "iccache-bandit", "question": "q2", "correct": True},
    ]
    compare(rows, records)
    assert rows[0]["versus"] == {}  # no other baseline ran
    assert rows[1]["versus"]["large-only"]["difference"] == pytest.approx(0.5)
    records[3]["question"] = "q3"
    with pytest.raises(ValueError, match="did not answer the same requests"):
        compare(rows, records)


def test_feedback_goes_to_the_same_share_of_requests_for_every_system() -> None:
    from iccache_dev.bench.report import feedback_label
    from iccache_dev.bench.run import BenchConfig, gets_feedback
    from iccache_dev.bench.workloads import Item

    items = [Item(f"question {i}", ("a",)) for i in range(4000)]
    chosen = [gets_feedback(BenchConfig(feedback_rate=0.1), i) for i in items]
    assert 0.08 < sum(chosen) / len(items) < 0.12
    assert chosen == [gets_feedback(BenchConfig(feedback_rate=0.1), i) for i in items]
    assert not any(gets_feedback(BenchConfig(feedback_rate=0.0), i) for i in items)
    assert all(gets_feedback(BenchConfig(feedback_rate=1.0), i) for i in items)
    assert feedback_label(0.1) == "reference-based feedback on 10% of requests"
    assert feedback_label(1.0).startswith("oracle")
    assert feedback_label(0.0) == "no feedback"


def test_recorded_answers_are_used_and_new_ones_go_to_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ICCACHE_CACHE_DIR", str(tmp_path / "cache"))
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    style = STYLES["long"]
    name = f"answers-{'ab' * 6}-long.jsonl"
    (recorded / name).write_text(json.dumps({"question": "q1", "answer": "a1"}) + "\n")
    answers = AnswerFile("ab" * 32, style, recorded)
    items = [Item("q1", ("x",)), Item("q2", ("y",))]
    assert [i.question for i in answers.missing(items)] == ["q2"]
    answers.add("q2", "a2")
    assert (recorded / name).read_text().count("\n") == 1  # the repository's file stays
    again = AnswerFile("ab" * 32, style, recorded)
    assert again.answers == {"q1": "a1", "q2": "a2"}
    assert again.missing(items) == []
