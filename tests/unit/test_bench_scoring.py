"""The benchmark's data parsing and scoring rules."""

from __future__ import annotations

import pytest

from iccache_sidecar.bench.scoring import contains_answer, normalise_answer, percentile, wilson
from iccache_sidecar.bench.workloads import parse_topic_line


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
