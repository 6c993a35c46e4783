"""Every step degrades instead of failing (real faults: processes are really stopped)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from iccache_contract.settings import RouterSettings
from iccache_dev.local import assets
from iccache_dev.local.llamacpp import LocalLLM, start_llm
from iccache_dev.local.redis import start_redis
from iccache_sidecar.app import running
from iccache_sidecar.core.domain import Route

Q = {"role": "user", "content": "What is the capital city of Japan?"}
Q2 = {"role": "user", "content": "Which river flows through Paris?"}
Q3 = {"role": "user", "content": "How many days are in a leap year?"}


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value from a Prometheus exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def test_redis_stopped_mid_test_requests_still_succeed(
    router_settings: Callable[..., RouterSettings], embedder: Any, tmp_path: Path
) -> None:
    own_redis = start_redis(tmp_path / "redis")
    try:
        settings = router_settings(redis={"url": own_redis.url})
        async with (
            running(settings, encoder=embedder) as rt,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.http_port}", timeout=120) as http,
        ):
            seed = await http.post(
                "/v1/chat/completions",
                json={"model": "gemma3", "messages": [Q], "max_tokens": 8},
            )
            assert seed.status_code == 200
            await rt.service.drain()
            assert await rt.service.store.count() == 1  # type: ignore[union-attr]

            own_redis.stop()  # the cache goes away for real

            r = await http.post(
                "/v1/chat/completions",
                json={"model": "iccache", "messages": [Q], "max_tokens": 8},
            )
            assert r.status_code == 200
            assert r.json()["iccache"]["degraded"] == ["redis"]
            assert r.headers["x-iccache-degraded"] == "redis"
            assert r.json()["choices"][0]["message"]["content"]
            text = (await http.get("/metrics")).text
            assert metric(text, "iccache_degraded_total", dependency="redis") >= 1
            # Still serving with Redis down (no retry storm: it is skipped for a while).
            again = await http.post(
                "/v1/chat/completions",
                json={"model": "iccache", "messages": [Q], "max_tokens": 4},
            )
            assert again.status_code == 200
    finally:
        own_redis.stop()


async def test_embedder_down_routes_without_examples(
    router_settings: Callable[..., RouterSettings], embedder: Any
) -> None:
    async with running(router_settings(), encoder=embedder) as rt:
        await rt.service.planner.embedder.stop()  # type: ignore[union-attr]
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{rt.http_port}", timeout=120
        ) as http:
            r = await http.post(
                "/v1/chat/completions", json={"model": "iccache", "messages": [Q], "max_tokens": 4}
            )
        assert r.status_code == 200
        assert "embedder" in r.json()["iccache"]["degraded"]
        assert r.json()["iccache"]["examples"] == []


async def test_small_model_stopped_falls_over_to_large(
    router_settings: Callable[..., RouterSettings],
    embedder: Any,
    llm_servers: dict[str, LocalLLM],
    tmp_path: Path,
) -> None:
    small = start_llm(assets.SMOLLM2_135M.path(), "smollm2", tmp_path, n_threads=1)
    try:
        settings = router_settings(
            small={"base_url": small.base_url}, routing={"policy": "always-small"}
        )
        async with (
            running(settings, encoder=embedder) as rt,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.http_port}", timeout=120) as http,
        ):
            ok = await http.post(
                "/v1/chat/completions",
                json={"model": "iccache", "messages": [Q], "max_tokens": 4},
            )
            assert ok.json()["iccache"]["route"] == "small"

            small.stop()  # the small model's server goes away for real

            r = await http.post(
                "/v1/chat/completions",
                json={"model": "iccache", "messages": [Q], "max_tokens": 4},
            )
            assert r.status_code == 200, r.text
            info = r.json()["iccache"]
            assert info["route"] == "large"
            assert info["fell_back"] is True
            assert r.json()["choices"][0]["message"]["content"]
            text = (await http.get("/metrics")).text
            assert metric(text, "iccache_fallbacks_total", from_backend="small") == 1
            # While it is marked down, requests go to the large model directly.
            r2 = await http.post(
                "/v1/chat/completions",
                json={"model": "iccache", "messages": [Q2], "max_tokens": 4},
            )
            assert r2.json()["iccache"]["route"] == "large"
            assert "marked down" in r2.json()["iccache"]["reason"]
            # When the down-window ends the router tries the small model again; a stream
            # falls over too, because nothing had been sent yet.
            rt.service.backends[Route.SMALL].load.mark_up()
            async with http.stream(
                "POST",
                "/v1/chat/completions",
                json={"model": "iccache", "messages": [Q3], "max_tokens": 4, "stream": True},
            ) as streamed:
                assert streamed.status_code == 200
                assert streamed.headers["x-iccache-route"] == "large"
                body = "".join([line async for line in streamed.aiter_lines()])
            assert body.rstrip().endswith("data: [DONE]")
            assert (
                metric(
                    (await http.get("/metrics")).text,
                    "iccache_fallbacks_total",
                    from_backend="small",
                )
                == 2
            )
    finally:
        small.stop()


async def test_both_models_down_is_503(
    router_settings: Callable[..., RouterSettings], embedder: Any
) -> None:
    dead = "http://127.0.0.1:9/v1"  # discard port: nothing listens
    settings = router_settings(
        small={"base_url": dead, "max_retries": 0},
        large={"base_url": dead, "model": "other", "max_retries": 0},
    )
    async with (
        running(settings, encoder=embedder) as rt,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.http_port}", timeout=60) as http,
    ):
        r = await http.post(
            "/v1/chat/completions", json={"model": "iccache", "messages": [Q], "max_tokens": 4}
        )
        assert r.status_code == 503
        assert "unavailable" in r.json()["error"]["message"]
        ready = await http.get("/readyz")
        assert ready.status_code == 503
