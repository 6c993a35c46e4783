"""Routing by the large model's opening: the rule, and the request path with stand-in
models (the integration tier runs it on real llama.cpp servers)."""

from __future__ import annotations

from typing import Any

from requestpath_fakes import Stack, counter, request, stack

from iccache_sidecar.core.domain import Decision, Delta, GenerationParams, Route, RouterRequest
from iccache_sidecar.core.opening import (
    Opening,
    judge,
    reads_opening,
    top_logprobs,
    without_logprobs,
)

LONG = " ".join(f"w{i}" for i in range(20))  # a large answer longer than its opening
OPENING = {"enabled": True, "tokens": 4, "unsure_below": -2.0}


def chunk(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"choices": [{"delta": {"content": "x"}, "logprobs": {"content": list(entries)}}]}


def test_the_top_entry_counts_where_the_answer_was_sampled() -> None:
    sampled = {"token": "b", "logprob": -3.0, "top_logprobs": [{"token": "a", "logprob": -0.2}]}
    greedy = {"token": "c", "logprob": -0.5, "top_logprobs": [{"token": "c", "logprob": -0.5}]}
    assert top_logprobs(chunk(sampled, greedy)) == [-0.2, -0.5]
    assert top_logprobs({"choices": [{"delta": {"content": "x"}}]}) == []
    assert top_logprobs({"choices": []}) == []
    plain = without_logprobs(chunk(greedy))
    assert "logprobs" not in plain["choices"][0]
    assert plain["choices"][0]["delta"] == {"content": "x"}


def test_the_rule_keeps_finished_answers_and_hands_over_unsure_ones() -> None:
    assert judge(Opening(16, -2.5, finished=False), -2.0) == "unsure"
    assert judge(Opening(16, -1.5, finished=False), -2.0) == "sure"
    # An answer that ended within its opening already cost what it costs: kept.
    assert judge(Opening(3, -9.0, finished=True), -2.0) == "finished"
    assert judge(Opening(0, None, finished=False), -2.0) == "unscored"


def test_requests_that_shape_the_answer_are_not_decided_on_the_opening() -> None:
    assert reads_opening({"top_k": 3, "user": "u", "logprobs": False})
    for field in ("tools", "logprobs", "response_format", "n", "logit_bias", "seed", "echo"):
        assert not reads_opening({field: 1})


def opening_stack(logprobs: list[float], answer: str = LONG, **sections: Any) -> Stack:
    s = stack(Route.LARGE, opening=OPENING, **sections)
    s.large.answer = answer
    s.large.logprobs = logprobs
    return s


async def test_an_unsure_opening_is_stopped_and_the_small_model_answers() -> None:
    s = opening_stack([-0.1, -3.0, -0.1, -0.1])
    s.index.put("acme", "What is the capital of France?", "Paris.")
    done = await s.service.complete(request("Which city is the capital of France?"))
    await s.service.drain()
    d = done.decision
    assert done.text == "small answer"
    assert d.route is Route.SMALL
    assert "unsure of its opening (-3.00 < -2.00)" in d.reason
    assert d.opening == -3.0
    assert len(d.examples) == 1  # the small model got the examples
    # The large model was stopped after its opening, not read to the end.
    assert s.large.stopped_at == 4
    # It was asked for log-probabilities; the small model was not.
    assert s.large.params[0].passthrough["logprobs"] is True
    assert "logprobs" not in s.small.params[0].passthrough
    assert counter(s.metrics, "iccache_openings_total", result="unsure") == 1
    # The opening's tokens count as spent by the large model.
    assert counter(s.metrics, "iccache_tokens_total", backend="large", kind="completion") == 4


async def test_a_sure_opening_keeps_the_whole_large_answer() -> None:
    s = opening_stack([-0.1] * 20)
    done = await s.service.complete(request("Which city is the capital of France?"))
    assert done.text == LONG
    assert done.decision.route is Route.LARGE
    assert done.decision.opening == -0.1
    assert s.small.seen == []
    assert s.large.stopped_at is None  # read to the end
    assert counter(s.metrics, "iccache_openings_total", result="sure") == 1


async def test_an_answer_that_ends_within_its_opening_is_kept() -> None:
    s = opening_stack([-5.0, -5.0], answer="Paris probably")
    done = await s.service.complete(request("Which city is the capital of France?"))
    assert done.text == "Paris probably"
    assert done.decision.route is Route.LARGE
    assert counter(s.metrics, "iccache_openings_total", result="finished") == 1


async def streamed(s: Stack, req: RouterRequest) -> tuple[Decision, list[Delta]]:
    events = [e async for e in s.service.stream(req)]
    first = events[0]
    assert isinstance(first, Decision)
    return first, [e for e in events[1:] if isinstance(e, Delta)]


async def test_a_stream_names_the_model_that_answers_and_carries_no_logprobs() -> None:
    s = opening_stack([-3.0] * 20)
    decision, deltas = await streamed(s, request("Which city is the capital of France?"))
    assert decision.route is Route.SMALL
    assert "".join(d.text for d in deltas) == "small answer"
    s = opening_stack([-0.1] * 20)
    decision, deltas = await streamed(s, request("Which city is the capital of France?"))
    assert decision.route is Route.LARGE
    assert "".join(d.text for d in deltas) == LONG
    for d in deltas:  # the router's own logprobs never reach the client
        assert d.raw is None or "logprobs" not in d.raw["choices"][0]


async def test_streams_go_as_routed_when_told_so() -> None:
    s = stack(Route.LARGE, opening={**OPENING, "streams": False})
    s.large.answer, s.large.logprobs = LONG, [-3.0] * 20
    decision, deltas = await streamed(s, request("Which city is the capital of France?"))
    assert decision.route is Route.LARGE
    assert "".join(d.text for d in deltas) == LONG
    assert s.large.params[0].passthrough == {}


async def test_forced_and_shaped_requests_go_as_routed() -> None:
    s = opening_stack([-3.0] * 20)
    done = await s.service.complete(request("Capital of France?", force=Route.LARGE))
    assert done.decision.route is Route.LARGE
    s = opening_stack([-3.0] * 20)
    tools = RouterRequest(
        tenant="acme",
        messages=request("Capital of France?").messages,
        params=GenerationParams(max_tokens=16, passthrough={"tools": [{"type": "function"}]}),
    )
    done = await s.service.complete(tools)
    assert done.decision.route is Route.LARGE
    assert done.decision.opening is None
    assert counter(s.metrics, "iccache_openings_total", result="unsure") == 0


async def test_a_small_answer_chosen_by_the_policy_is_not_delayed() -> None:
    s = stack(Route.SMALL, opening=OPENING)
    done = await s.service.complete(request("Capital of France?"))
    assert done.decision.route is Route.SMALL
    assert s.large.seen == []
