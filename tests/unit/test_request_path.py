"""The request path (plan, generate, after-response work) driven through in-memory
stand-ins of its ports: fast, no services. The integration tier runs the same paths on
real Redis, a real embedder and real models."""

from __future__ import annotations

import pytest
from requestpath_fakes import counter, request, stack

from iccache_contract.settings import TenantLimits
from iccache_sidecar.core.domain import (
    ChatMessage,
    Decision,
    Delta,
    GenerationParams,
    Route,
    RouterRequest,
    estimate_tokens,
)
from iccache_sidecar.core.errors import (
    BackendUnavailable,
    ContextTooLong,
    Overloaded,
    UnknownRequest,
)
from iccache_sidecar.metrics import MAX_TENANT_LABELS


async def test_exact_hit_answers_from_the_cache_without_a_model() -> None:
    s = stack()
    s.index.put("acme", "What is the capital of France?", "Paris.")
    done = await s.service.complete(request("  what is the CAPITAL of france?"))
    assert done.text == "Paris."
    assert done.decision.exact_hit
    assert done.decision.policy == "exact-match"
    assert s.small.seen == []
    assert s.large.seen == []
    assert counter(s.metrics, "iccache_exact_hits_total") == 1


async def test_exact_hit_never_crosses_tenants() -> None:
    s = stack()
    s.index.put("acme", "What is the capital of France?", "Paris.")
    done = await s.service.complete(request("What is the capital of France?", tenant="other"))
    assert not done.decision.exact_hit
    assert done.decision.examples == []  # acme's example is not offered to another tenant
    assert done.text == "small answer"


async def test_examples_are_prepended_for_the_small_model() -> None:
    s = stack()
    example = s.index.put("acme", "What is the capital of France?", "Paris.")
    done = await s.service.complete(request("Which city is the capital of France?"))
    assert done.decision.route is Route.SMALL
    assert done.decision.example_ids == [example]
    sent = s.small.seen[0]
    assert [m.content for m in sent[:2]] == ["What is the capital of France?", "Paris."]
    assert sent[-1].content == "Which city is the capital of France?"


async def test_a_failed_embedder_degrades_to_a_plain_request() -> None:
    s = stack()
    s.index.put("acme", "What is the capital of France?", "Paris.")
    s.embedder.fail = True
    done = await s.service.complete(request("Which city is the capital of France?"))
    await s.service.drain()
    assert done.text == "small answer"
    assert done.decision.degraded == ["embedder"]
    assert done.decision.examples == []
    assert counter(s.metrics, "iccache_degraded_total", dependency="embedder") == 1
    assert len(s.index.rows) == 1  # nothing embedded, so nothing admitted


async def test_a_failed_redis_degrades_and_is_skipped_for_a_while() -> None:
    s = stack(Route.LARGE)
    s.index.down = True
    first = await s.service.complete(request("Which city is the capital of France?"))
    await s.service.drain()
    assert s.index.calls[:1] == ["exact"]  # tried, failed
    before = len(s.index.calls)
    second = await s.service.complete(request("And of Spain?"))
    await s.service.drain()
    assert first.text == second.text == "large answer"
    assert first.decision.degraded == ["redis"]
    assert second.decision.degraded == ["redis"]
    # The second request did not wait for Redis on its hot path; only after-response
    # work, which tolerates failure, tried it.
    assert "exact" not in s.index.calls[before:]
    assert "search" not in s.index.calls[before:]
    assert counter(s.metrics, "iccache_degraded_total", dependency="redis") == 2


async def test_unary_falls_over_to_the_large_model_without_examples() -> None:
    s = stack(Route.SMALL)
    s.index.put("acme", "What is the capital of France?", "Paris.")
    s.small.fail_before = True
    done = await s.service.complete(request("Which city is the capital of France?"))
    d = done.decision
    assert done.text == "large answer"
    assert d.route is Route.LARGE
    assert d.fell_back
    assert d.examples == []
    assert d.backend_model == "large-m"
    assert "fell over from the small model" in d.reason
    assert [m.content for m in s.large.seen[0]] == ["Which city is the capital of France?"]
    assert counter(s.metrics, "iccache_fallbacks_total", from_backend="small") == 1


async def test_unary_falls_over_to_the_small_model_with_examples() -> None:
    s = stack(Route.LARGE)
    example = s.index.put("acme", "What is the capital of France?", "Paris.")
    s.large.fail_before = True
    done = await s.service.complete(request("Which city is the capital of France?"))
    await s.service.drain()
    assert done.text == "small answer"
    assert done.decision.route is Route.SMALL
    assert done.decision.example_ids == [example]  # the small model gets its examples
    assert len(s.index.rows) == 1  # a small answer after a fall-over is never cached


async def test_unary_fails_when_both_models_fail() -> None:
    s = stack(Route.SMALL)
    s.small.fail_before = s.large.fail_before = True
    with pytest.raises(BackendUnavailable):
        await s.service.complete(request("Hello?"))
    assert s.service.active == 0  # the request's slot was given back


async def test_stream_falls_over_before_anything_was_sent() -> None:
    s = stack(Route.SMALL)
    s.small.fail_before = True
    events = [e async for e in s.service.stream(request("Which city is the capital?"))]
    decision = events[0]
    assert isinstance(decision, Decision)
    assert decision.route is Route.LARGE
    assert decision.fell_back
    text = "".join(e.text for e in events[1:] if isinstance(e, Delta))
    assert text == "large answer"


async def test_stream_does_not_fall_over_once_text_was_sent() -> None:
    s = stack(Route.SMALL)
    s.small.fail_after = 1
    seen: list[Decision | Delta] = []

    async def consume() -> None:
        async for event in s.service.stream(request("Which city is the capital?")):
            seen.append(event)

    with pytest.raises(BackendUnavailable):
        await consume()
    assert isinstance(seen[0], Decision)
    assert seen[0].route is Route.SMALL
    assert [e.text for e in seen[1:] if isinstance(e, Delta)] == ["small "]
    assert s.large.seen == []  # a second model would have mixed two answers


async def test_a_large_answer_is_admitted_with_the_requests_vector() -> None:
    s = stack(Route.LARGE)
    done = await s.service.complete(request("How tall is Mount Everest?"))
    await s.service.drain()
    [row] = s.index.rows
    assert (row.tenant, row.prompt, row.response) == (
        "acme",
        "How tall is Mount Everest?",
        done.text,
    )
    assert row.model == "large-m"
    assert counter(s.metrics, "iccache_admissions_total", result="stored") == 1
    assert done.decision.request_id in s.index.decisions  # shared for feedback


async def test_a_near_duplicate_is_not_admitted() -> None:
    s = stack(Route.LARGE, cache={"dedupe_similarity": 0.9})
    s.index.put("acme", "How tall is Mount Everest?", "8,849 m.")
    await s.service.complete(request("How tall is mount Everest"))
    await s.service.drain()
    assert len(s.index.rows) == 1
    assert counter(s.metrics, "iccache_admissions_total", result="duplicate") == 1


async def test_feedback_from_another_tenant_is_refused() -> None:
    s = stack(Route.SMALL)
    s.index.put("acme", "What is the capital of France?", "Paris.")
    done = await s.service.complete(request("Which city is the capital of France?"))
    with pytest.raises(UnknownRequest):
        await s.service.feedback(done.decision.request_id, 1.0, tenant="other")
    await s.service.feedback(done.decision.request_id, 0.0, tenant="acme")
    assert s.index.outcomes == [(tuple(done.decision.example_ids), 0.0)]


async def test_tenant_overrides_set_the_ttl_and_cap_the_examples() -> None:
    overrides = {"acme": {"ttl_seconds": 60, "capacity": 2}}
    s = stack(Route.LARGE, tenancy={"overrides": overrides, "default_tenant": "acme"})
    first = await s.service.complete(request("How tall is Mount Everest?"))
    await s.service.drain()
    added = {"request_id": first.decision.request_id, "ttl_seconds": 60, "scope": None}
    assert s.index.added == [added]
    s.index.put("acme", "Where is Lake Titicaca?", "Peru and Bolivia.")
    await s.service.complete(request("What is the longest river in Africa?"))
    await s.service.drain()
    assert len(s.index.rows) == 2  # the capacity: no third example
    assert counter(s.metrics, "iccache_admissions_total", result="full") == 1


async def test_reuse_answers_a_near_duplicate_from_the_cache_without_a_model() -> None:
    s = stack(Route.SMALL, routing={"reuse_similarity": 0.9}, cache={"exact_match": False})
    s.index.put("acme", "What is the capital of France?", "Paris.")
    done = await s.service.complete(request("what is the capital of France"))
    d = done.decision
    assert done.text == "Paris."
    assert (d.exact_hit, d.policy) == (True, "reuse")
    assert "similarity 1.000 >= 0.9" in d.reason
    assert s.small.seen == []
    assert s.large.seen == []
    # Not close enough, forced, or told to skip the cache: a model answers.
    for req in (
        request("What is the capital of Spain?"),
        request("what is the capital of France", force=Route.LARGE),
        request("what is the capital of France", skip_cache=True),
    ):
        assert not (await s.service.complete(req)).decision.exact_hit
    # Off by default.
    s = stack(Route.SMALL, cache={"exact_match": False})
    s.index.put("acme", "What is the capital of France?", "Paris.")
    assert not (
        await s.service.complete(request("what is the capital of France"))
    ).decision.exact_hit


async def test_tenant_labels_in_metrics_are_bounded() -> None:
    """A gateway may name any number of tenants; Prometheus keeps a series per label."""
    s = stack(Route.LARGE)
    for i in range(MAX_TENANT_LABELS + 20):
        await s.service.complete(request("What is the capital of France?", tenant=f"t{i}"))
    samples = [
        x
        for m in s.metrics.registry.collect()
        if m.name == "iccache_requests"
        for x in m.samples
        if x.name == "iccache_requests_total"
    ]
    assert len({x.labels["tenant"] for x in samples}) == MAX_TENANT_LABELS + 1
    assert counter(s.metrics, "iccache_requests_total", route="large", tenant="other") == 20


def test_the_token_estimate_counts_other_scripts_as_tokenizers_do() -> None:
    """Byte counting made 12 CJK characters 9 tokens; SmolLM2's tokenizer makes 22."""
    assert estimate_tokens("Hello world, how are you?") == 7  # ASCII: about 4 a token
    assert estimate_tokens("日本の首都はどこですか\uff1f") == 18  # ends in a full-width "?"
    assert estimate_tokens("👍🎉") == 6
    assert estimate_tokens("Привет, как дела?") == 11


async def test_a_prompt_the_small_model_finds_too_long_is_answered_by_the_large_one() -> None:
    s = stack(Route.SMALL)
    s.index.put("acme", "What is the capital of France?", "Paris.")
    s.small.too_long = True
    done = await s.service.complete(request("Which city is the capital of France?"))
    assert done.text == "large answer"
    assert done.decision.fell_back
    assert done.decision.examples == []  # the large model gets the plain request
    assert [m.content for m in s.large.seen[0]] == ["Which city is the capital of France?"]
    events = [e async for e in s.service.stream(request("Which city is France's capital?"))]
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "large answer"
    # The large model's own refusal is the client's error: nowhere left to go.
    s = stack(Route.LARGE)
    s.large.too_long = True
    with pytest.raises(ContextTooLong):
        await s.service.complete(request("Which city is the capital of France?"))


async def test_one_tenant_cannot_hold_every_slot() -> None:
    s = stack(Route.LARGE)
    capped = TenantLimits(concurrent_requests=1)
    held = s.service.stream(request("A long question?", limits=capped))
    assert isinstance(await anext(held), Decision)  # in hand until the stream ends
    with pytest.raises(Overloaded, match="tenant 'acme' has 1 requests in hand"):
        await s.service.complete(request("Another question?", limits=capped))
    other = await s.service.complete(request("Another question?", tenant="globex", limits=capped))
    assert other.text == "large answer"
    await held.aclose()
    again = await s.service.complete(request("Another question?", limits=capped))
    assert again.text == "large answer"


def _chat(*turns: tuple[str, str], user: str | None = None) -> RouterRequest:
    messages = tuple(ChatMessage(role, text) for role, text in turns)
    return RouterRequest("acme", messages, GenerationParams(max_tokens=16), user=user)


async def test_an_answer_shaped_by_a_system_prompt_serves_only_that_system_prompt() -> None:
    s = stack(Route.LARGE)
    pirate = ("system", "Answer as a pirate would.")
    question = ("user", "How tall is Mount Everest?")
    await s.service.complete(_chat(pirate, question))
    await s.service.drain()
    [row] = s.index.rows
    assert row.scope is not None  # kept apart from lone questions
    small = stack(Route.SMALL)
    small.index.rows = s.index.rows
    plain = await small.service.complete(_chat(("user", "How tall is mount Everest")))
    other = await small.service.complete(_chat(("system", "Be brief."), question))
    same = await small.service.complete(_chat(pirate, ("user", "how tall is Everest?")))
    for unrelated in (plain, other):
        assert unrelated.decision.example_ids == []
        assert not unrelated.decision.exact_hit
    assert same.decision.example_ids == [row.id]


async def test_answers_shared_per_user_never_reach_another_user() -> None:
    s = stack(Route.LARGE, cache={"share": "user"})
    question = ("user", "What did I name my cat?")
    await s.service.complete(_chat(question, user="ann"))
    await s.service.drain()
    [row] = s.index.rows
    small = stack(Route.SMALL, cache={"share": "user"})
    small.index.rows = s.index.rows
    bob = await small.service.complete(_chat(question, user="bob"))
    ann = await small.service.complete(_chat(("user", "what did I NAME my cat?"), user="ann"))
    ann_again = await small.service.complete(_chat(("user", "Which name has my cat"), user="ann"))
    assert not bob.decision.exact_hit
    assert bob.decision.example_ids == []
    assert ann.decision.exact_hit
    assert ann_again.decision.example_ids == [row.id]
    nobody = await small.service.complete(_chat(question))
    await small.service.drain()
    assert nobody.decision.ineligible == "no_user"
    assert len(small.index.rows) == 1  # an answer to nobody in particular is not kept


async def test_an_admission_that_a_forget_raced_is_deleted_again() -> None:
    s = stack(Route.LARGE)
    done = await s.service.complete(request("How tall is Mount Everest?"))
    # The client forgets the request while its answer is being admitted.
    s.index.forgotten_requests.add(done.decision.request_id)
    await s.service.drain()
    assert s.index.rows == []
    assert counter(s.metrics, "iccache_admissions_total", result="forgotten") == 1
