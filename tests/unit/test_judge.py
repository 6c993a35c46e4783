import pytest

from iccache_sidecar.backends.judge import combined, read_verdict
from iccache_sidecar.core.domain import Verdict


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


S, T, L, U = Verdict.SMALL_BETTER, Verdict.TIE, Verdict.LARGE_BETTER, Verdict.UNPARSED


@pytest.mark.parametrize(
    ("first", "second", "verdict"),
    [
        (L, L, L),
        (T, L, L),  # what a position-biased judge says of a worse small answer
        (L, T, L),
        (S, L, T),  # the judge preferred whichever came first: no preference
        (T, T, T),
        (S, T, S),
        (S, S, S),
        (U, L, L),
        (T, U, T),
        (U, U, U),
    ],
)
def test_the_two_orders_combine_into_the_net_preference(
    first: Verdict, second: Verdict, verdict: Verdict
) -> None:
    assert combined(first, second) is verdict
