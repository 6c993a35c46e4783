"""The verifier: the draft's score, the pass rule, the threshold learned from outcomes,
the two wire forms it reads, and verify mode on the request path (stand-in models; the
integration tier checks real llama.cpp answers)."""

from __future__ import annotations

import random

import pytest
from requestpath_fakes import FakeVerifier, counter, request, stack

from iccache_sidecar.backends.verifier import answer_views, parse_echo, parse_prompt_logprobs
from iccache_sidecar.core.domain import ChatMessage, Decision, Delta, Route
from iccache_sidecar.core.verification import (
    Outcome,
    TokenView,
    learn_threshold,
    passes,
    render_prompt,
    roc_auc,
    score_draft,
)


def views(*logprobs: float) -> list[TokenView]:
    return [TokenView(lp, max(lp, -0.1), lp > -0.5) for lp in logprobs]


def test_a_short_wrong_answer_does_not_pass_for_being_short() -> None:
    short_wrong = score_draft(views(-6.0))  # one unlikely token ("Berlin")
    long_right = score_draft(views(*[-0.4] * 20))  # twenty likely ones
    assert short_wrong is not None
    assert long_right is not None
    # A sum of log-probabilities would prefer the short answer (-6 > -8)...
    assert short_wrong.mean_logprob * 1 > long_right.mean_logprob * 20
    # ...the score does not: per token, the long answer is far more likely.
    assert passes(long_right, "mean_logprob", -1.0)
    assert not passes(short_wrong, "mean_logprob", -1.0)
    assert not passes(short_wrong, "min_logprob", -1.0)
    assert short_wrong.agreement == 0.0
    assert long_right.agreement == 1.0


def test_where_the_large_model_is_unsure_a_draft_may_pass() -> None:
    unsure = [TokenView(-4.0, -2.5, False), TokenView(-3.0, -0.1, False)]  # top first: 8%
    sure = [TokenView(-4.0, -0.05, False), TokenView(-3.0, -0.1, False)]  # top first: 95%
    a, b = score_draft(unsure), score_draft(sure)
    assert not passes(a, "mean_logprob", -1.0)
    assert passes(a, "mean_logprob", -1.0, unsure_below=-1.0)
    assert not passes(b, "mean_logprob", -1.0, unsure_below=-1.0)


def test_an_empty_draft_fails_and_minus_infinity_is_floored() -> None:
    assert score_draft([]) is None
    assert not passes(None, "mean_logprob", -100.0)
    floored = score_draft([TokenView(float("-inf"), -0.1, False)])
    assert floored is not None
    assert floored.min_logprob == -100.0


def test_the_threshold_is_the_lowest_one_shown_to_keep_the_loss_rate() -> None:
    rng = random.Random(1)
    outcomes = []
    for _ in range(3000):
        value = rng.uniform(-5, 0)
        # Drafts below -2.5 lose half the time; above, one in a hundred.
        outcomes.append(Outcome(value, rng.random() < (0.5 if value < -2.5 else 0.01)))
    learned = learn_threshold(outcomes, max_loss=0.05, confidence=0.95, min_samples=100)
    assert learned is not None
    assert -2.9 < learned < -2.0  # around the step, on the safe side of most of it
    kept = [o for o in outcomes if o.value >= learned]
    assert sum(o.lost for o in kept) / len(kept) < 0.05
    # Too few outcomes: no threshold is shown yet.
    assert learn_threshold(outcomes[:50], 0.05, 0.95, min_samples=100) is None
    # A rule that cannot hold anywhere shows none.
    bad = [Outcome(rng.uniform(-5, 0), rng.random() < 0.3) for _ in range(500)]
    assert learn_threshold(bad, 0.05, 0.95, min_samples=100) is None


def test_roc_auc_counts_ties_half() -> None:
    assert roc_auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert roc_auc([4, 3, 2, 1], [False, False, True, True]) == 0.0
    assert roc_auc([1, 1, 1, 1], [False, True, False, True]) == 0.5
    assert roc_auc([1, 2, 2, 3], [False, True, False, True]) == pytest.approx(0.875)


def test_the_prompt_ends_where_the_answer_begins() -> None:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Capital of France?")]
    assert render_prompt(messages, "chatml") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of France?"
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_prompt(messages, "gemma").endswith("<start_of_turn>model\n")


def prompt_logprobs_payload(tokens: list[tuple[str, float, int, float]]) -> dict[str, object]:
    """vLLM's form: each position lists its own token first, then the top one."""
    entries: list[object] = [None]
    for i, (text, lp, rank, top_lp) in enumerate(tokens[1:], start=1):
        entry = {str(i): {"logprob": lp, "rank": rank, "decoded_token": text}}
        if rank != 1:
            entry["999"] = {"logprob": top_lp, "rank": 1, "decoded_token": "?"}
        entries.append(entry)
    return {"choices": [{"prompt_logprobs": entries}]}


def test_prompt_logprobs_are_read_for_the_answer_tokens_only() -> None:
    payload = prompt_logprobs_payload(
        [
            ("<|im_start|>", 0, 1, 0),
            ("assistant", -0.1, 1, -0.1),
            ("\n", -0.1, 1, -0.1),
            ("The", -0.2, 1, -0.2),
            (" capital", -0.3, 1, -0.3),
            (" is", -0.1, 1, -0.1),
            (" Berlin", -9.0, 4, -0.02),
        ]
    )
    got = parse_prompt_logprobs(payload, "The capital is Berlin")
    assert [v.logprob for v in got] == [-0.2, -0.3, -0.1, -9.0]
    assert [v.is_top for v in got] == [True, True, True, False]
    assert got[-1].top_logprob == -0.02


def test_echo_is_read_in_either_alignment() -> None:
    tokens = ["assistant", "\n", "Paris", "."]
    own = {
        "choices": [
            {
                "logprobs": {
                    "tokens": tokens,
                    "token_logprobs": [None, -0.1, -0.5, -0.2],
                    "top_logprobs": [None, {"\n": -0.1}, {"The": -0.3, "Paris": -0.5}, {".": -0.2}],
                }
            }
        ]
    }
    got = parse_echo(own, "Paris.", shift=0)
    assert [v.logprob for v in got] == [-0.5, -0.2]
    assert [v.is_top for v in got] == [False, True]
    # Next-token alignment: position i holds the distribution of token i + 1.
    shifted = {
        "choices": [
            {
                "logprobs": {
                    "tokens": tokens,
                    "token_logprobs": [None, -9.0, -9.0, -9.0],
                    "top_logprobs": [
                        None,
                        {"The": -0.3, "Paris": -0.5},
                        {".": -0.2, "!": -3.0},
                        {"": -0.01},
                    ],
                }
            }
        ]
    }
    got = parse_echo(shifted, "Paris.", shift=1)
    assert [v.logprob for v in got] == [-0.5, -0.2]
    assert [v.is_top for v in got] == [False, True]


def test_answer_views_cover_the_answer_from_the_end() -> None:
    vs = views(-1.0, -2.0, -3.0)
    assert len(answer_views(["<s>", "Hel", "lo"], vs, "Hello")) == 2


# -- verify mode on the request path ----------------------------------------------------


async def test_verify_mode_replaces_a_failed_small_answer_with_the_large_one() -> None:
    verifier = FakeVerifier({"small answer": -4.0})
    s = stack(checker=verifier, verifier={"enabled": True, "gate": True, "threshold": -1.0})
    s.index.put("acme", "What is the capital of France?", "Paris.")
    done = await s.service.complete(request("Which city is the capital of France?"))
    await s.service.drain()
    assert done.text == "large answer"
    assert done.decision.route is Route.LARGE
    assert done.decision.verified is False
    assert "failed verification (-4.00 < -1.00)" in done.decision.reason
    assert done.decision.examples == []
    # The large model read the request without the small model's examples...
    assert [m.content for m in s.large.seen[0]] == ["Which city is the capital of France?"]
    # ...and so did the verifier.
    assert [m.content for m in verifier.seen[0][0]] == ["Which city is the capital of France?"]
    assert counter(s.metrics, "iccache_verifications_total", result="fail") == 1
    # The draft's tokens count as spent by the small model.
    assert counter(s.metrics, "iccache_tokens_total", backend="small", kind="completion") == 2
    assert counter(s.metrics, "iccache_feedback_total", source="verifier") == 1


async def test_verify_mode_returns_a_passed_small_answer() -> None:
    verifier = FakeVerifier({"small answer": -0.2})
    s = stack(checker=verifier, verifier={"enabled": True, "gate": True, "threshold": -1.0})
    done = await s.service.complete(request("What is the capital of France?"))
    await s.service.drain()
    assert done.text == "small answer"
    assert done.decision.verified is True
    assert s.large.seen == []
    assert counter(s.metrics, "iccache_verifications_total", result="pass") == 1
    assert counter(s.metrics, "iccache_feedback_total", source="verifier") == 1


async def test_without_a_score_the_small_answer_is_returned_unchecked() -> None:
    verifier = FakeVerifier({})
    verifier.down = True
    s = stack(checker=verifier, verifier={"enabled": True, "gate": True})
    done = await s.service.complete(request("What is the capital of France?"))
    assert done.text == "small answer"
    assert done.decision.verified is None
    assert counter(s.metrics, "iccache_verifications_total", result="skipped") == 1


async def test_reward_checks_served_small_answers_after_the_response() -> None:
    verifier = FakeVerifier({"small answer": -3.0})
    s = stack(checker=verifier, verifier={"enabled": True, "gate": False, "threshold": -1.0})
    done = await s.service.complete(request("What is the capital of France?"))
    assert done.text == "small answer"  # served as routed
    await s.service.drain()
    assert done.decision.verified is False
    assert counter(s.metrics, "iccache_feedback_total", source="verifier") == 1


async def test_user_feedback_on_checked_answers_teaches_the_threshold() -> None:
    verifier = FakeVerifier({}, default=-0.5)
    s = stack(
        checker=verifier,
        verifier={"enabled": True, "gate": False, "threshold": -3.0, "min_samples": 10},
        routing={"quality": {"max_loss": 0.25, "unproven_share": 1.0}},
    )
    assert s.service.check is not None
    for i in range(40):
        verifier.default = -0.5 - i / 10  # -0.5 .. -4.4; worse drafts lose
        done = await s.service.complete(request(f"question {i}?"))
        await s.service.drain()
        await s.service.feedback(done.decision.request_id, 0.0 if i >= 15 else 1.0)
    # 15 wins then losses: with 15 outcomes and none lost, the 95% bound is 20% (< 25%).
    assert s.service.check.threshold == pytest.approx(-1.9)
    assert counter(s.metrics, "iccache_verifier_threshold") == s.service.check.threshold


async def test_a_gated_stream_waits_for_the_check_and_sends_the_large_answer() -> None:
    verifier = FakeVerifier({"small answer": -4.0})
    s = stack(checker=verifier, verifier={"enabled": True, "gate": True, "threshold": -1.0})
    events = [e async for e in s.service.stream(request("What is the capital of France?"))]
    decision, *deltas = events
    assert isinstance(decision, Decision)
    assert decision.route is Route.LARGE
    assert decision.verified is False
    assert "".join(d.text for d in deltas if isinstance(d, Delta)) == "large answer"
