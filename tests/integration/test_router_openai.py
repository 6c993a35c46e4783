"""The router through the official OpenAI client, against real models, Redis and embedder."""

from __future__ import annotations

from typing import Any

import httpx
from openai import AsyncOpenAI

from iccache_sidecar.app import Runtime


def client(rt: Runtime) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=rt.base_url, api_key="unused", max_retries=0, timeout=120)


def meta(reply: Any) -> dict[str, Any]:
    """iccache's decision, carried in the response's extra field."""
    extra = reply.model_extra or {}
    assert "iccache" in extra, reply
    return dict(extra["iccache"])


async def test_chat_completion_stream_and_completion(icc: Runtime) -> None:
    oa = client(icc)
    reply = await oa.chat.completions.create(
        model="iccache", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )
    assert reply.choices[0].message.content
    assert reply.object == "chat.completion"
    assert meta(reply)["route"] in {"small", "large"}

    stream = await oa.chat.completions.create(
        model="iccache",
        messages=[{"role": "user", "content": "Count to three."}],
        max_tokens=8,
        stream=True,
    )
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces).strip()

    done = await oa.completions.create(model="iccache", prompt="The sky is", max_tokens=6)
    assert done.choices[0].text.strip()
    assert next(m.id for m in (await oa.models.list()).data) == "iccache"


async def test_paraphrase_uses_the_seeded_example_and_goes_small(icc: Runtime) -> None:
    oa = client(icc)
    # Seed: the large model answers (forced by naming its model), and the answer is cached.
    seed = await oa.chat.completions.create(
        model="gemma3",
        messages=[{"role": "user", "content": "What is the capital city of Australia?"}],
        max_tokens=12,
    )
    assert meta(seed)["route"] == "large"
    await icc.service.drain()  # admission runs after the response
    assert await icc.service.store.count() == 1  # type: ignore[union-attr]

    paraphrase = await oa.chat.completions.with_raw_response.create(
        model="iccache",
        messages=[{"role": "user", "content": "Which city is the capital of Australia?"}],
        max_tokens=12,
    )
    reply = paraphrase.parse()
    info = meta(reply)
    assert info["route"] == "small", info
    assert len(info["examples"]) == 1
    assert info["max_similarity"] > 0.8
    assert paraphrase.headers["x-iccache-route"] == "small"
    assert paraphrase.headers["x-iccache-examples"] == "1"
    # The example really went into the small model's prompt: it counts in prompt tokens.
    plain = await oa.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Which city is the capital of Australia?"}],
        max_tokens=1,
        extra_body={"iccache": {"skip_cache": True}},
    )
    assert reply.usage
    assert plain.usage
    assert reply.usage.prompt_tokens > plain.usage.prompt_tokens + 10

    unrelated = await oa.chat.completions.create(
        model="iccache",
        messages=[{"role": "user", "content": "How long should sourdough bread rise?"}],
        max_tokens=8,
    )
    assert meta(unrelated)["route"] == "large"
    assert meta(unrelated)["examples"] == []


async def test_no_store_and_skip_cache_controls(icc: Runtime) -> None:
    oa = client(icc)
    q = [{"role": "user", "content": "What colour is a ripe banana?"}]
    await oa.chat.completions.create(
        model="gemma3", messages=q, max_tokens=6, extra_body={"iccache": {"no_store": True}}
    )
    await icc.service.drain()
    assert await icc.service.store.count() == 0  # type: ignore[union-attr]
    await oa.chat.completions.create(model="gemma3", messages=q, max_tokens=6)
    await icc.service.drain()
    assert await icc.service.store.count() == 1  # type: ignore[union-attr]
    skipped = await oa.chat.completions.create(
        model="iccache", messages=q, max_tokens=6, extra_body={"iccache": {"skip_cache": True}}
    )
    assert meta(skipped)["exact_hit"] is False
    assert meta(skipped)["examples"] == []


async def test_metrics_and_health_endpoints(icc: Runtime) -> None:
    await client(icc).chat.completions.create(
        model="iccache", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{icc.http_port}") as http:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        text = (await http.get("/metrics")).text
    assert "iccache_requests_total" in text
    assert "iccache_stage_seconds_bucket" in text
    assert "iccache_offload_ratio" in text
