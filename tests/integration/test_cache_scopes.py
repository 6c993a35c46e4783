"""Whom a stored answer serves, on real Redis, a real embedder and real llama.cpp models:
answers shaped by a system prompt serve only that system prompt, answers shared per end
user never reach another user, answers cut at max_tokens are not kept, callers see only
the minimal decision by default, and an index made before scopes keeps serving."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import httpx
import numpy as np
import redis.asyncio as aioredis
from redis.commands.search.index_definition import IndexDefinition, IndexType

from iccache_contract.settings import RouterSettings
from iccache_dev.local.llamacpp import LocalLLM
from iccache_dev.local.redis import LocalRedis
from iccache_sidecar.app import Runtime, running
from iccache_sidecar.gen.iccache.v1 import router_pb2 as pb
from iccache_sidecar.gen.iccache.v1 import router_pb2_grpc as pb_grpc
from iccache_sidecar.storage.examples import ExampleStore
from iccache_sidecar.storage.layout import ExampleField, RedisLayout

SECRET = "gateway-shared-secret"
QUESTION = "What is the capital city of Australia?"
PARAPHRASE = "Which city is the capital of Australia?"


def user_turn(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


async def ask(
    rt: Runtime, messages: list[dict[str, str]], model: str, **extra: Any
) -> dict[str, Any]:
    headers = extra.pop("headers", {})
    body = {"model": model, "messages": messages, "max_tokens": 8, **extra}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.http_port}", timeout=120) as c:
        response = await c.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def stored(rt: Runtime) -> int:
    await rt.service.drain()  # admission runs after the response
    assert rt.service.store is not None
    return await rt.service.store.count()


async def test_an_answer_under_a_system_prompt_serves_only_that_system_prompt(
    router_settings: Callable[..., RouterSettings], embedder: Any
) -> None:
    settings = router_settings()
    large, small = settings.large.model, settings.small.model
    pirate = {"role": "system", "content": "You are a pirate. Answer as a pirate would."}
    async with running(settings, encoder=embedder) as rt:
        await ask(rt, [pirate, user_turn(QUESTION)], large)
        assert await stored(rt) == 1
        plain = await ask(rt, [user_turn(PARAPHRASE)], small)
        brief = await ask(
            rt, [{"role": "system", "content": "Be brief."}, user_turn(QUESTION)], small
        )
        same = await ask(rt, [pirate, user_turn(PARAPHRASE)], small)
    for unrelated in (plain, brief):
        assert unrelated["iccache"]["examples"] == []
        assert not unrelated["iccache"]["exact_hit"]
    assert len(same["iccache"]["examples"]) == 1


async def test_answers_shared_per_user_never_reach_another_user(
    router_settings: Callable[..., RouterSettings], embedder: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("TEST_GATEWAY_SECRET", SECRET)
    settings = router_settings(
        tenancy={"mode": "gateway", "gateway_secret_env": "TEST_GATEWAY_SECRET"},
        cache={"share": "user"},
    )
    large, small = settings.large.model, settings.small.model

    def as_user(user: str | None) -> dict[str, str]:
        vouched = {"x-iccache-gateway-secret": SECRET, "x-iccache-tenant": "acme"}
        return vouched | ({"x-iccache-user": user} if user else {})

    async with running(settings, encoder=embedder) as rt:
        first = await ask(rt, [user_turn(QUESTION)], large, headers=as_user("ann"))
        assert await stored(rt) == 1
        bob = await ask(rt, [user_turn(PARAPHRASE)], small, headers=as_user("bob"))
        # A forced model never takes an exact hit: the routed name does.
        bob_exact = await ask(rt, [user_turn(QUESTION)], "iccache", headers=as_user("bob"))
        ann = await ask(rt, [user_turn(PARAPHRASE)], small, headers=as_user("ann"))
        ann_exact = await ask(rt, [user_turn(QUESTION)], "iccache", headers=as_user("ann"))
        before = await stored(rt)
        nobody = await ask(rt, [user_turn(PARAPHRASE)], large, headers=as_user(None))
        assert await stored(rt) == before  # an answer to nobody in particular is not kept
    assert bob["iccache"]["examples"] == []
    assert not bob_exact["iccache"]["exact_hit"]
    assert len(ann["iccache"]["examples"]) == 1
    assert ann_exact["iccache"]["exact_hit"]
    assert (
        ann_exact["choices"][0]["message"]["content"] == (first["choices"][0]["message"]["content"])
    )
    assert nobody["iccache"]["ineligible"] == "no_user"


async def test_an_answer_cut_at_max_tokens_is_not_kept(
    router_settings: Callable[..., RouterSettings],
    llm_servers: dict[str, LocalLLM],
    embedder: Any,
) -> None:
    # SmolLM2 (instruct) as the large model here: it ends a short answer by itself.
    settings = router_settings(
        cache={"store_cut": False}, large={"base_url": llm_servers["smollm2"].base_url}
    )
    large = settings.large.model
    async with running(settings, encoder=embedder) as rt:
        cut = await ask(rt, [user_turn(QUESTION)], large, max_tokens=3)
        assert cut["choices"][0]["finish_reason"] == "length"
        assert await stored(rt) == 0
        whole = await ask(
            rt, [user_turn("Reply with the single word: yes")], large, max_tokens=48, temperature=0
        )
        assert whole["choices"][0]["finish_reason"] == "stop", whole
        assert await stored(rt) == 1
        metrics = rt.service.metrics.registry
        assert metrics.get_sample_value("iccache_admissions_total", {"result": "cut"}) == 1


async def test_callers_see_the_minimal_decision_by_default(
    router_settings: Callable[..., RouterSettings], embedder: Any
) -> None:
    settings = router_settings(server={"decision_details": "minimal"})
    large = settings.large.model
    async with running(settings, encoder=embedder) as rt:
        await ask(rt, [user_turn(QUESTION)], large)
        assert await stored(rt) == 1
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.http_port}") as c:
            body = {"model": "iccache", "messages": [user_turn(QUESTION)], "max_tokens": 8}
            response = await c.post("/v1/chat/completions", json=body)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}") as channel:
            reply = await pb_grpc.RouterStub(channel).Generate(
                pb.GenerateRequest(prompt=QUESTION, max_tokens=8)
            )
        exact_hits = rt.service.metrics.registry.get_sample_value("iccache_exact_hits_total")
    assert exact_hits == 2  # both were exact hits; neither caller is told so
    shown = response.json()["iccache"]
    assert shown["request_id"]
    assert (shown["route"], shown["exact_hit"], shown["examples"]) == ("large", False, [])
    assert (shown["max_similarity"], shown["reason"], shown["policy"]) == (0.0, "", "")
    assert "x-iccache-similarity" not in response.headers
    assert response.headers["x-iccache-route"] == "large"
    assert not reply.decision.exact_hit
    assert reply.decision.max_similarity == 0.0
    assert reply.decision.request_id


async def test_an_index_made_before_scopes_gains_the_field_and_keeps_its_examples(
    redis_server: LocalRedis,
) -> None:
    layout = RedisLayout(prefix="oldscope", index_name="oldscope")
    old_schema = [f for f in layout.index_schema(3) if f.name != ExampleField.SCOPE]
    vector = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    async with aioredis.from_url(redis_server.url) as r:
        await r.ft(layout.index_name).create_index(
            old_schema,
            definition=IndexDefinition(prefix=[layout.example_prefix], index_type=IndexType.HASH),
        )
        await r.hset(
            layout.example_key("old"),
            mapping={
                "tenant": "acme",
                "prompt": "q",
                "response": "a",
                "embedding": vector.tobytes(),
            },
        )
        store = ExampleStore(r, layout)
        assert await store.ensure_index(3) == 1
        assert await store.ensure_index(3) == 1  # a second router finds the field there
        scoped = await store.add("acme", "q2", "a2", vector, "m", scope="s1")
        tenant_wide = await store.search("acme", vector, 5)
        in_scope = await store.search("acme", vector, 5, scope="s1")
        other_scope = await store.search("acme", vector, 5, scope="s2")
    assert [c.id for c in tenant_wide] == ["old"]
    assert [c.id for c in in_scope] == [scoped]
    assert other_scope == []
