"""Which requests the cache can serve faithfully, and what identifies a conversation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from requestpath_fakes import counter, request, stack

from iccache_sidecar.api.completions_http import completion_body
from iccache_sidecar.core.domain import (
    Candidate,
    ChatMessage,
    Completion,
    Decision,
    GenerationParams,
    Route,
    RouterRequest,
    Usage,
)
from iccache_sidecar.core.errors import InvalidRequest
from iccache_sidecar.core.prompting import conversation_text, retrieval_text
from iccache_sidecar.requestpath.eligibility import REASONS, ineligibility


def with_fields(**passthrough: Any) -> RouterRequest:
    return RouterRequest(
        "acme",
        (ChatMessage("user", "hi"),),
        GenerationParams(max_tokens=8, passthrough=passthrough),
    )


def with_messages(*raw: dict[str, Any]) -> RouterRequest:
    messages = tuple(ChatMessage(m["role"], str(m.get("content") or ""), raw=m) for m in raw)
    return RouterRequest("acme", messages, GenerationParams(max_tokens=8))


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (with_fields(tools=[{"type": "function"}]), "tools"),
        (with_fields(response_format={"type": "json_object"}), "response_format"),
        (with_fields(n=2), "n"),
        (with_fields(logprobs=True), "logprobs"),
        (with_fields(seed=1), "seed"),
        (with_fields(echo=True), "prompt_echo"),
        (with_fields(prompt_logprobs=1), "prompt_echo"),
        (with_fields(return_token_ids=True), "prompt_echo"),
        (with_fields(logit_bias={"1": 100}), "shaping_field"),
        (with_fields(some_new_field="?"), "shaping_field"),  # unknown: not trusted
        (
            with_messages({"role": "user", "content": "x"}, {"role": "tool", "content": "r"}),
            "tool_messages",
        ),
        (
            with_messages(
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ),
            "non_text_content",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_what_the_cache_cannot_serve(req: RouterRequest, reason: str) -> None:
    assert ineligibility(req) == reason
    assert reason in REASONS


def test_plain_requests_are_eligible() -> None:
    assert (
        ineligibility(with_fields(temperature=0.2, user="u", response_format={"type": "text"}))
        is None
    )
    assert ineligibility(with_fields(n=1)) is None


async def test_an_ineligible_request_goes_to_the_large_model_without_the_cache() -> None:
    s = stack(Route.SMALL)
    s.index.put("acme", "hi", "cached answer")
    req = RouterRequest(
        "acme",
        (ChatMessage("user", "hi"),),
        GenerationParams(max_tokens=8, passthrough={"seed": 3}),
    )
    done = await s.service.complete(req)
    await s.service.drain()
    assert done.text == "large answer"  # no exact hit, despite the same prompt
    assert done.decision.ineligible == "seed"
    assert done.decision.examples == []
    assert len(s.index.rows) == 1  # and not stored
    assert counter(s.metrics, "iccache_cache_ineligible_total", reason="seed") == 1


def test_a_conversation_is_identified_by_every_turn() -> None:
    a = [
        ChatMessage("user", "Hello in Spanish?"),
        ChatMessage("assistant", "Hola"),
        ChatMessage("user", "And French?"),
    ]
    b = [
        ChatMessage("user", "Thanks in German?"),
        ChatMessage("assistant", "Danke"),
        ChatMessage("user", "And French?"),
    ]
    assert conversation_text(a) != conversation_text(b)
    assert conversation_text([ChatMessage("user", "Just this")]) == "Just this"
    with_system = [ChatMessage("system", "Be terse."), ChatMessage("user", "Just this")]
    assert conversation_text(with_system) != "Just this"


def test_a_follow_up_is_embedded_with_the_turn_before() -> None:
    a = [
        ChatMessage("user", "Hello in Spanish?"),
        ChatMessage("assistant", "Hola"),
        ChatMessage("user", "And French?"),
    ]
    assert retrieval_text(a, 1) == "Hello in Spanish?\nAnd French?"
    assert retrieval_text(a, 0) == "And French?"
    assert request("Only one").query == retrieval_text(request("Only one").messages, 1)


async def test_content_a_model_is_known_not_to_accept_is_refused_clearly() -> None:
    s = stack(Route.SMALL, large={"content_types": ["text"]})
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
    req = RouterRequest(
        "acme", (ChatMessage("user", "", raw=image),), GenerationParams(max_tokens=8)
    )
    with pytest.raises(
        InvalidRequest, match=r"accepts content parts of types \['text'\], not \['image_url'\]"
    ):
        await s.service.complete(req)
    assert s.large.seen == []


async def test_a_request_that_returns_its_prompt_never_gets_examples() -> None:
    """Even where the settings let ineligible requests have examples: they would come
    back to the caller in the echoed prompt or its log-probabilities."""
    s = stack(Route.SMALL, cache={"ineligible": {"examples": True, "route": "policy"}})
    s.index.put("acme", "hi there", "another user's cached answer")
    for field, value in (("prompt_logprobs", 1), ("echo", True), ("return_token_ids", True)):
        done = await s.service.complete(
            RouterRequest(
                "acme",
                (ChatMessage("user", "hi there"),),
                GenerationParams(max_tokens=8, passthrough={field: value}),
            )
        )
        assert done.decision.ineligible == "prompt_echo"
        assert done.decision.examples == []
        assert not done.decision.exact_hit
        assert [m.content for m in s.small.seen[-1]] == ["hi there"]
    # The same settings do give examples to other ineligible requests.
    done = await s.service.complete(
        RouterRequest(
            "acme",
            (ChatMessage("user", "hi there"),),
            GenerationParams(max_tokens=8, passthrough={"seed": 1}),
        )
    )
    assert done.decision.ineligible == "seed"
    assert len(done.decision.examples) == 1


def test_prompt_text_never_leaves_in_a_response_whose_prompt_held_examples() -> None:
    """Defence in depth: a server that returns prompt tokens unasked."""
    raw = {
        "id": "x",
        "created": 1,
        "model": "m",
        "prompt_token_ids": [1, 2, 3],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris."},
                "finish_reason": "stop",
                "prompt_logprobs": [None, {"2": {"logprob": -1.0, "decoded_token": "secret"}}],
            }
        ],
    }
    d = Decision("r1", "acme", Route.SMALL, "p", "why")
    plain = completion_body("chat", Completion("Paris.", "stop", Usage(), d, raw), "m", 1, "full")
    assert "prompt_token_ids" in plain.model_dump()  # no examples: sent on as the model sent it
    d.examples = [Candidate("e1", "q", "another user's answer", 0.9, [0.0])]
    shown = completion_body("chat", Completion("Paris.", "stop", Usage(), d, raw), "m", 1, "full")
    text = json.dumps(shown.model_dump())
    assert "prompt_token_ids" not in text
    assert "secret" not in text
    assert "Paris." in text
