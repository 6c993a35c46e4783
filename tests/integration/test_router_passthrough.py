"""The router as a transparent OpenAI proxy, through the official client and real
llama.cpp servers: fields it does not interpret reach the model and the model's answer
comes back whole; requests the cache cannot serve faithfully are never served from it;
conversations are cached as conversations."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import openai
import pytest
from proxy import RecordingProxy, recording_proxy

from iccache_contract.settings import RouterSettings
from iccache_dev.local.llamacpp import LocalLLM
from iccache_sidecar.app import Runtime, running

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CALL_WEATHER = {"type": "function", "function": {"name": "get_weather"}}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


def decision(extra: Any) -> dict[str, Any]:
    return dict(extra["iccache"])


@pytest.fixture
async def proxied(
    router_settings: Callable[..., RouterSettings], tool_server: LocalLLM, embedder: Any
) -> AsyncIterator[tuple[Runtime, RecordingProxy]]:
    """A router whose large model is the tool-calling server, seen through a recording
    proxy (the small model is SmolLM2 without tools)."""
    async with recording_proxy(tool_server.base_url) as proxy:
        settings = router_settings(large={"base_url": proxy.base_url, "model": tool_server.alias})
        async with running(settings, encoder=embedder) as runtime:
            yield runtime, proxy


def client(rt: Runtime) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=rt.base_url, api_key="unused", max_retries=0)


async def test_tool_calling_end_to_end_never_touches_the_cache(
    proxied: tuple[Runtime, RecordingProxy],
) -> None:
    rt, proxy = proxied
    async with client(rt) as c:
        first = await c.chat.completions.create(
            model="iccache",
            messages=[QUESTION],  # type: ignore[list-item]
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice=CALL_WEATHER,  # type: ignore[arg-type]
            max_tokens=48,
        )
        (call,) = first.choices[0].message.tool_calls or []
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments)["city"]
        assert first.choices[0].finish_reason == "tool_calls"
        d = decision(first.model_extra)
        assert d["route"] == "large"
        assert d["examples"] == []
        assert d["ineligible"] == "tools"
        assert d["policy"] == "ineligible"
        assert proxy.bodies[-1]["tools"] == [WEATHER]
        assert proxy.bodies[-1]["tool_choice"] == CALL_WEATHER

        # The tool's result goes back; the model answers in words.
        conversation = [
            QUESTION,
            {"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
        ]
        final = await c.chat.completions.create(
            model="iccache",
            messages=conversation,
            tools=[WEATHER],
            max_tokens=24,  # type: ignore[arg-type]
        )
        assert final.choices[0].message.content
        assert decision(final.model_extra)["route"] == "large"
        sent = proxy.bodies[-1]["messages"]
        assert sent == conversation  # no examples between or before the turns

        # Streamed: the tool call arrives in deltas.
        stream = await c.chat.completions.create(
            model="iccache",
            messages=[QUESTION],  # type: ignore[list-item]
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice=CALL_WEATHER,  # type: ignore[arg-type]
            max_tokens=48,
            stream=True,
        )
        arguments, names = "", set()
        async for chunk in stream:
            for choice in chunk.choices:
                for piece in choice.delta.tool_calls or []:
                    if piece.function is not None:
                        names.add(piece.function.name)
                        arguments += piece.function.arguments or ""
        names.discard(None)
        assert names == {"get_weather"}
        assert json.loads(arguments)["city"]
    await rt.service.drain()
    assert await rt.service.store.count() == 0  # nothing of it was cached


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


async def test_a_response_format_schema_is_honoured(
    proxied: tuple[Runtime, RecordingProxy],
) -> None:
    """llama.cpp's Python server takes a schema as ``json_object`` + ``schema``; the
    router forwards whichever form the client sends."""
    rt, proxy = proxied
    async with client(rt) as c:
        done = await c.chat.completions.create(
            model="iccache",
            messages=[{"role": "user", "content": "Describe a person as JSON."}],
            response_format={"type": "json_object", "schema": SCHEMA},  # type: ignore[typeddict-unknown-key]
            max_tokens=48,
        )
    value = json.loads(done.choices[0].message.content or "")
    assert isinstance(value["name"], str)
    assert isinstance(value["age"], int)
    assert decision(done.model_extra)["route"] == "large"
    assert proxy.bodies[-1]["response_format"] == {"type": "json_object", "schema": SCHEMA}


async def test_sampling_fields_reach_the_model_and_logprobs_come_back(
    proxied: tuple[Runtime, RecordingProxy],
) -> None:
    rt, proxy = proxied
    fields = {"seed": 7, "frequency_penalty": 0.4, "presence_penalty": 0.2, "logit_bias": {}}
    async with client(rt) as c:
        done = await c.chat.completions.create(
            model="iccache",
            messages=[{"role": "user", "content": "Say hi."}],
            logprobs=True,
            top_logprobs=2,
            max_tokens=4,
            **fields,  # type: ignore[arg-type]
        )
        sent = proxy.bodies[-1]
        assert {k: sent[k] for k in fields} == fields
        assert sent["logprobs"] is True
        assert sent["top_logprobs"] == 2
        assert done.choices[0].logprobs is not None
        assert done.choices[0].logprobs.content
        assert done.usage is not None
        assert done.usage.completion_tokens > 0

        stream = await c.chat.completions.create(
            model="iccache",
            messages=[{"role": "user", "content": "Say hi."}],
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert usage[0].completion_tokens > 0
    assert chunks[-1].usage is not None  # the usage chunk comes last, as OpenAI sends it


async def test_a_models_refusal_keeps_its_status_and_message(
    proxied: tuple[Runtime, RecordingProxy],
) -> None:
    """The model's 4xx is injected by the proxy: the llama.cpp servers here answer an
    unsupported parameter with 500, so a real 4xx cannot be had from them."""
    rt, proxy = proxied
    proxy.reject = (422, "unsupported parameter: foo")
    async with httpx.AsyncClient(base_url=rt.base_url) as http:
        r = await http.post(
            "/chat/completions",
            json={"model": "iccache", "messages": [QUESTION], "tools": [WEATHER], "foo": 1},
        )
    assert r.status_code == 422
    assert "unsupported parameter: foo" in r.json()["error"]["message"]
    assert proxy.bodies[-1]["foo"] == 1
    proxy.reject = None


async def test_conversations_that_differ_before_the_last_turn_share_no_exact_hit(
    icc: Runtime,
) -> None:
    spanish = [
        {"role": "user", "content": "How do you say hello in Spanish?"},
        {"role": "assistant", "content": "Hola."},
        {"role": "user", "content": "And in French?"},
    ]
    german = [
        {"role": "user", "content": "How do you say thank you in German?"},
        {"role": "assistant", "content": "Danke."},
        {"role": "user", "content": "And in French?"},
    ]
    async with client(icc) as c:
        first = await c.chat.completions.create(
            model="iccache",
            messages=spanish,  # type: ignore[arg-type]
            max_tokens=8,
            extra_body={"iccache": {"force_model": "large"}},
        )
        await icc.service.drain()
        other = await c.chat.completions.create(
            model="iccache",
            messages=german,  # type: ignore[arg-type]
            max_tokens=8,
        )
        again = await c.chat.completions.create(
            model="iccache",
            messages=spanish,  # type: ignore[arg-type]
            max_tokens=8,
        )
    assert decision(first.model_extra)["route"] == "large"
    assert not decision(other.model_extra)["exact_hit"]
    assert decision(again.model_extra)["exact_hit"]  # the same conversation is a hit
    assert again.choices[0].message.content == first.choices[0].message.content
