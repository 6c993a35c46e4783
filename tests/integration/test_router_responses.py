"""OpenAI's Responses API and embeddings through the router, with the official client,
against real llama.cpp servers, Redis and the embedder: answers unary and streamed, a
conversation continued by ``previous_response_id``, exact hits with their usage, tools
passed on and never cached, stored responses that only their tenant can read."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from proxy import RecordingProxy, recording_proxy
from tenants import KEYS, api_keys, write_keys

from iccache_contract.settings import RouterSettings
from iccache_dev.local.llamacpp import LocalLLM
from iccache_sidecar.app import Runtime, running

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client(rt: Runtime, tenant: str | None = None) -> openai.AsyncOpenAI:
    key = KEYS[tenant] if tenant else "unused"
    return openai.AsyncOpenAI(base_url=rt.base_url, api_key=key, max_retries=0, timeout=120)


def decision(response: Any) -> dict[str, Any]:
    return dict((response.model_extra or {})["iccache"])


def sent_with(text: str, *proxies: RecordingProxy) -> dict[str, Any]:
    """The one body a model received whose last message holds ``text``."""
    (body,) = [
        b
        for p in proxies
        for b in p.bodies
        if text in str(b["messages"][-1]["content"])  # type: ignore[index]
    ]
    return body


@pytest.fixture
async def proxied(
    router_settings: Callable[..., RouterSettings],
    llm_servers: dict[str, LocalLLM],
    embedder: Any,
) -> AsyncIterator[tuple[Runtime, RecordingProxy, RecordingProxy]]:
    """A router whose models are seen through recording proxies."""
    async with (
        recording_proxy(llm_servers["smollm2"].base_url) as small,
        recording_proxy(llm_servers["gemma3"].base_url) as large,
    ):
        settings = router_settings(
            small={"base_url": small.base_url}, large={"base_url": large.base_url}
        )
        async with running(settings, encoder=embedder) as rt:
            yield rt, small, large


async def test_unary_and_streamed_responses(
    proxied: tuple[Runtime, RecordingProxy, RecordingProxy],
) -> None:
    rt, small, large = proxied
    async with client(rt) as oa:
        reply = await oa.responses.create(
            model="iccache",
            instructions="Answer in one short sentence.",
            input="What colour is the sky on a clear day?",
            max_output_tokens=12,
        )
        assert reply.id.startswith("resp_")
        assert reply.object == "response"
        assert reply.output_text.strip()
        assert reply.usage is not None
        assert reply.usage.output_tokens > 0
        assert decision(reply)["route"] in {"small", "large"}
        sent = sent_with("What colour is the sky", small, large)
        assert sent["messages"][0] == {"role": "system", "content": "Answer in one short sentence."}
        assert sent["max_tokens"] == 12

        kinds: list[str] = []
        deltas: list[str] = []
        final: Any = None
        stream = await oa.responses.create(
            model="iccache", input="Count to three.", max_output_tokens=10, stream=True
        )
        async for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.completed":
                final = event.response
        assert kinds[:2] == ["response.created", "response.in_progress"]
        assert kinds[-1] == "response.completed"
        assert "response.output_text.done" in kinds
        assert final is not None
        assert final.output_text == "".join(deltas)
        assert "".join(deltas).strip()
        assert final.usage.output_tokens > 0


async def test_a_second_turn_sees_the_first_and_stored_responses_can_be_read_and_deleted(
    proxied: tuple[Runtime, RecordingProxy, RecordingProxy],
) -> None:
    rt, small, large = proxied
    async with client(rt) as oa:
        first = await oa.responses.create(
            model="iccache", input="My name is Zorblax. Say hello to me.", max_output_tokens=8
        )
        second = await oa.responses.create(
            model="iccache",
            previous_response_id=first.id,
            input="What is my name?",
            max_output_tokens=8,
        )
        sent = sent_with("What is my name?", small, large)["messages"]
        assert [m["role"] for m in sent[-3:]] == ["user", "assistant", "user"]  # type: ignore[index]
        assert "Zorblax" in sent[-3]["content"]  # type: ignore[index]
        assert sent[-2]["content"] == first.output_text  # type: ignore[index]
        assert second.previous_response_id == first.id

        again = await oa.responses.retrieve(first.id)
        assert again.output_text == first.output_text
        await oa.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError, match="no stored response"):
            await oa.responses.retrieve(first.id)
        with pytest.raises(openai.NotFoundError):
            await oa.responses.create(
                model="iccache", previous_response_id=first.id, input="And now?"
            )
        unstored = await oa.responses.create(
            model="iccache", input="Say yes.", max_output_tokens=2, store=False
        )
        with pytest.raises(openai.NotFoundError):
            await oa.responses.retrieve(unstored.id)


async def test_a_repeated_request_is_an_exact_hit_with_its_usage(
    proxied: tuple[Runtime, RecordingProxy, RecordingProxy],
) -> None:
    rt, small, large = proxied
    question = "What is the capital city of Australia?"
    async with client(rt) as oa:
        seed = await oa.responses.create(model="gemma3", input=question, max_output_tokens=12)
        assert decision(seed)["route"] == "large"
        await rt.service.drain()  # admission runs after the response
        sent = len(small.bodies) + len(large.bodies)

        hit = await oa.responses.create(model="iccache", input=question, max_output_tokens=12)
        assert decision(hit)["exact_hit"] is True
        assert hit.output_text == seed.output_text
        assert len(small.bodies) + len(large.bodies) == sent  # no model ran
        assert hit.usage is not None
        assert hit.usage.input_tokens > 0
        assert hit.usage.output_tokens > 0

        # The same for a streamed chat completion that asks for usage.
        stream = await oa.chat.completions.create(
            model="iccache",
            messages=[{"role": "user", "content": question}],
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
        usage = [chunk.usage async for chunk in stream if chunk.usage is not None]
        assert len(usage) == 1
        assert usage[0].completion_tokens > 0


async def test_tools_are_passed_on_and_the_call_comes_back_uncached(
    router_settings: Callable[..., RouterSettings], tool_server: LocalLLM, embedder: Any
) -> None:
    async with recording_proxy(tool_server.base_url) as proxy:
        settings = router_settings(large={"base_url": proxy.base_url, "model": tool_server.alias})
        async with running(settings, encoder=embedder) as rt, client(rt) as oa:
            reply = await oa.responses.create(
                model="iccache",
                input="What is the weather in Paris?",
                tools=[WEATHER],  # type: ignore[list-item]
                tool_choice={"type": "function", "name": "get_weather"},
                max_output_tokens=48,
            )
            calls = [item for item in reply.output if item.type == "function_call"]
            assert len(calls) == 1
            assert calls[0].name == "get_weather"
            assert json.loads(calls[0].arguments)["city"]
            d = decision(reply)
            assert (d["route"], d["ineligible"], d["examples"]) == ("large", "tools", [])
            assert proxy.bodies[-1]["tools"] == [
                {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}
            ]
            await rt.service.drain()
            assert await rt.service.store.count() == 0  # type: ignore[union-attr]


async def test_embeddings_have_the_models_dimension(icc: Runtime, embedder: Any) -> None:
    async with client(icc) as oa:
        out = await oa.embeddings.create(
            model="all-MiniLM-L6-v2", input=["a cat sat on the mat", "the stock market fell"]
        )
        assert [len(d.embedding) for d in out.data] == [384, 384]
        expected = embedder.encode(["a cat sat on the mat"], normalize_embeddings=True)[0]
        assert sum(a * b for a, b in zip(out.data[0].embedding, expected, strict=True)) > 0.999
        assert out.usage.prompt_tokens > 0
        packed = await oa.embeddings.create(model="all-MiniLM-L6-v2", input="hello")
        assert len(packed.data[0].embedding) == 384  # the SDK asks for base64 and unpacks it
        with pytest.raises(openai.NotFoundError, match="all-MiniLM-L6-v2"):
            await oa.embeddings.create(model="text-embedding-3-small", input="hello")
        with pytest.raises(openai.BadRequestError, match="dimensions"):
            await oa.embeddings.create(model="all-MiniLM-L6-v2", input="hi", dimensions=64)


async def test_no_tenant_reads_continues_or_deletes_anothers_stored_response(
    router_settings: Callable[..., RouterSettings], embedder: Any, tmp_path: Path
) -> None:
    """Random attempts by one tenant on another's stored responses (with forged tenant
    headers and user fields too): every one is not found; the owner still has them."""
    keys = write_keys(tmp_path / "keys.yaml")
    tenants = sorted(KEYS)
    async with running(router_settings(tenancy=api_keys(keys)), encoder=embedder) as rt:
        owned: dict[str, str] = {}
        for tenant in tenants:
            async with client(rt, tenant) as oa:
                made = await oa.responses.create(
                    model="iccache", input=f"Remember SECRET-{tenant}.", max_output_tokens=2
                )
                owned[made.id] = tenant
        rng = random.Random(11)
        async with httpx.AsyncClient(base_url=rt.base_url, timeout=120) as http:
            for _ in range(30):
                caller = rng.choice(tenants)
                target = rng.choice([r for r, t in owned.items() if t != caller])
                headers = {"authorization": f"Bearer {KEYS[caller]}"}
                if rng.random() < 0.5:
                    headers["x-iccache-tenant"] = owned[target]  # forged: ignored
                action = rng.choice(["get", "delete", "continue"])
                if action == "get":
                    r = await http.get(f"/responses/{target}", headers=headers)
                elif action == "delete":
                    r = await http.delete(f"/responses/{target}", headers=headers)
                else:
                    body = {
                        "model": "iccache",
                        "previous_response_id": target,
                        "input": "Which secret?",
                        "max_output_tokens": 2,
                        "user": owned[target],
                    }
                    r = await http.post("/responses", json=body, headers=headers)
                assert r.status_code == 404, (caller, action, r.text)
                assert "SECRET-" not in r.text
            assert (await http.get(f"/responses/{target}")).status_code == 401  # no key
            for response_id, tenant in owned.items():
                headers = {"authorization": f"Bearer {KEYS[tenant]}"}
                r = await http.get(f"/responses/{response_id}", headers=headers)
                assert r.status_code == 200
                assert r.json()["id"] == response_id


async def test_embeddings_passed_to_an_embeddings_server(
    router_settings: Callable[..., RouterSettings], embedder: Any
) -> None:
    """A router whose embeddings come from a server: here another router that answers
    them from its own model (a real OpenAI-compatible embeddings endpoint)."""
    async with running(router_settings(), encoder=embedder) as server:
        passing = router_settings(
            embeddings_api={
                "source": "backend",
                "base_url": server.base_url,
                "model": "minilm",
                "backend_model": "all-MiniLM-L6-v2",
            }
        )
        async with running(passing, encoder=embedder) as rt, client(rt) as oa:
            out = await oa.embeddings.create(model="minilm", input=["one", "two", "three"])
            assert out.model == "minilm"
            assert [d.index for d in out.data] == [0, 1, 2]
            assert [len(d.embedding) for d in out.data] == [384] * 3
            direct = embedder.encode(["two"], normalize_embeddings=True)[0]
            assert sum(a * b for a, b in zip(out.data[1].embedding, direct, strict=True)) > 0.999
            with pytest.raises(openai.BadRequestError, match="input"):
                await oa.embeddings.create(model="minilm", input=[""])
