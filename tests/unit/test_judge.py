import pytest

from iccache_dataplane.backends.judge import read_verdict
from iccache_dataplane.core.domain import Verdict


@pytest.mark.parametrize(
    ("reply", "small_is_a", "verdict"),
    [
        ("A", True, Verdict.SMALL_BETTER),
        ("A", False, Verdict.LARGE_BETTER),
        ("b.", True, Verdict.LARGE_BETTER),
        ("Answer B is better", False, Verdict.SMALL_BETTER),
        ("T", True, Verdict.TIE),
        ("I cannot decide", True, Verdict.UNPARSED),
        ("", False, Verdict.UNPARSED),
    ],
)
def test_verdicts_map_to_the_small_answer(reply: str, small_is_a: bool, verdict: Verdict) -> None:
    assert read_verdict(reply, small_is_a) is verdict


def test_rewards() -> None:
    assert Verdict.SMALL_BETTER.reward == 1.0
    assert Verdict.TIE.reward == 1.0
    assert Verdict.LARGE_BETTER.reward == 0.0
    assert Verdict.UNPARSED.reward is None
