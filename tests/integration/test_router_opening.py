"""Routing by the large model's opening on real servers: Qwen2.5-Coder-1.5B (large, seen
through a recording proxy) begins every answer; where it is sure of its first 16 tokens
its answer is kept, where it is unsure its stream is closed and SmolLM2 answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
from proxy import recording_proxy

from iccache_contract.settings import OpeningSettings, RouterSettings
from iccache_dev.local.llamacpp import LocalLLM
from iccache_sidecar.app import running

# Greedy answers of Qwen2.5-Coder-1.5B (q4_k_m): counting is sure of itself (least
# top-token log-probability over its first 16 tokens about -0.2); inventing a colour is
# not (about -2.6).
SURE = {"role": "user", "content": "Count from one to twenty in words, separated by commas."}
UNSURE = {"role": "user", "content": "Invent a name for a new colour and describe it."}
BAR = OpeningSettings().unsure_below  # the default rule


async def test_sure_openings_are_kept_and_unsure_ones_handed_over(
    router_settings: Callable[..., RouterSettings], qwen_server: LocalLLM, embedder: Any
) -> None:
    async with recording_proxy(qwen_server.base_url) as proxy:
        settings = router_settings(
            large={"base_url": proxy.base_url, "model": qwen_server.alias},
            routing={"policy": "always-large"},
            opening={"enabled": True},
        )
        async with (
            running(settings, encoder=embedder) as rt,
            openai.AsyncOpenAI(base_url=rt.base_url, api_key="-", max_retries=0) as client,
        ):
            sure = await client.chat.completions.create(
                model="iccache",
                messages=[SURE],
                max_tokens=64,
                temperature=0,  # type: ignore[list-item]
            )
            d = dict((sure.model_extra or {})["iccache"])
            assert d["route"] == "large", d
            assert d["opening"] >= BAR
            assert "eleven" in (sure.choices[0].message.content or "")
            assert sure.choices[0].logprobs is None  # asked by the router, not the client
            assert proxy.bodies[-1]["logprobs"] is True
            assert proxy.cut == 0  # read to its end

            unsure = await client.chat.completions.create(
                model="iccache",
                messages=[UNSURE],
                max_tokens=200,
                temperature=0,  # type: ignore[list-item]
            )
            d = dict((unsure.model_extra or {})["iccache"])
            assert d["route"] == "small", d
            assert d["opening"] < BAR
            assert "unsure of its opening" in d["reason"]
            assert unsure.choices[0].message.content
            # The router closed the large model's stream after its opening: the proxy saw
            # the cut, after far fewer events than the 200 tokens asked for.
            assert proxy.cut == 1
            assert proxy.events[-1] < 64, proxy.events

            stream = await client.chat.completions.create(
                model="iccache",
                messages=[SURE],  # type: ignore[list-item]
                max_tokens=64,
                temperature=0,
                stream=True,
                extra_body={"iccache": {"skip_cache": True}},  # not the stored answer
            )
            chunks = [c async for c in stream]
            first = dict((chunks[0].model_extra or {})["iccache"])
            assert first["route"] == "large"
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == sure.choices[0].message.content  # the same greedy answer
            assert all(c.choices[0].logprobs is None for c in chunks if c.choices)
