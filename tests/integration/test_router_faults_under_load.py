"""Faults while requests are flowing, made for real: Redis killed with SIGKILL and
started again, a model server killed and started again, a model killed while a stream
is open. The router is ``iccache serve`` with stand-in models (``standin_router``) and
8 clients in a closed loop; every outcome is recorded and judged per phase."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import httpx

from iccache_dev.bench.load import Outcome, between, body, closed_loop
from iccache_dev.bench.standin import standin_router
from iccache_dev.local.redis import start_redis

CLIENTS = 8


def start_load(url: str) -> tuple[asyncio.Event, asyncio.Task[list[Outcome]]]:
    """The clients, running until the event is set; the task's result is every outcome."""
    stop = asyncio.Event()
    return stop, asyncio.create_task(closed_loop(url, concurrency=CLIENTS, stop=stop, unique=True))


def summary(outcomes: list[Outcome]) -> str:
    return str(Counter((o.status, o.route, o.degraded) for o in outcomes).most_common(6))


async def test_redis_killed_and_restarted_under_load_loses_no_request(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis")
    port = redis.port
    try:
        with standin_router(
            tmp_path / "router",
            redis.url,
            delay=0.02,
            redis={"retry_after_seconds": 1.0},
        ) as router:
            stop, load = start_load(router.url)
            await asyncio.sleep(3)
            killed = time.monotonic()
            redis.process.proc.kill()  # SIGKILL: no goodbye to its clients
            redis.process.stop()
            await asyncio.sleep(3)
            redis = start_redis(tmp_path / "redis", port=port)  # same address, empty
            restarted = time.monotonic()
            await asyncio.sleep(12)
            stop.set()
            outcomes = await load
    finally:
        redis.stop()
    failed = [o for o in outcomes if o.status != 200]
    assert failed == [], failed[:5]  # served degraded while Redis was away
    before = between(outcomes, 0, killed - 0.5)
    down = between(outcomes, killed + 0.5, restarted)
    after = between(outcomes, restarted, float("inf"))
    assert all(o.degraded == "none" for o in before), summary(before)
    assert down, summary(outcomes)
    assert all(o.degraded != "none" for o in down), summary(down)
    healthy = [o for o in after if o.degraded == "none"]
    assert healthy, f"the cache was not used again after the restart: {summary(after)}"
    back_after = healthy[0].started - restarted
    assert back_after < 10, f"the cache came back only after {back_after:.1f} s"
    # Once back, it stays back (the index was made again on the empty Redis).
    later = [o for o in after if o.started > healthy[0].started + 2]
    assert all(o.degraded == "none" for o in later), summary(later)
    print(
        f"redis kill: {len(outcomes)} requests, 0 failed, {len(down)} served degraded, "
        f"cache back {back_after:.1f} s after the restart"
    )


async def test_model_killed_under_load_falls_over_and_recovers(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis")
    try:
        with standin_router(tmp_path / "router", redis.url, delay=0.02) as router:
            stop, load = start_load(router.url)
            await asyncio.sleep(3)
            killed = time.monotonic()
            router.models["large"].kill()
            await asyncio.sleep(4)
            router.models["large"].start()  # the same port: the Service's address
            restarted = time.monotonic()
            # A request that names the large model goes there once the router sees it
            # back (until then it falls over to the small one).
            back = None
            async with httpx.AsyncClient(base_url=router.url, timeout=30) as probe:
                while back is None and time.monotonic() - restarted < 30:
                    r = await probe.post("/v1/chat/completions", json={**body(0), "model": "large"})
                    if r.headers.get("x-iccache-route") == "large":
                        back = time.monotonic() - restarted
                    await asyncio.sleep(0.2)
            stop.set()
            outcomes = await load
    finally:
        redis.stop()
    failed = [o for o in outcomes if o.status != 200]
    assert failed == [], failed[:5]
    before = between(outcomes, 0, killed - 0.5)
    down = between(outcomes, killed + 1, restarted)
    assert {o.route for o in before} >= {"large"}, summary(before)
    assert down, summary(outcomes)
    assert {o.route for o in down} == {"small"}, summary(down)  # all fell over
    assert back is not None, "the large model was never used again after its restart"
    print(
        f"model kill: {len(outcomes)} requests, 0 failed, {len(down)} fell over to small, "
        f"large used again {back:.1f} s after its restart"
    )


async def test_stream_open_when_its_model_dies_ends_cleanly(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis")
    try:
        with standin_router(tmp_path / "router", redis.url, delay=5.0) as router:
            body = {
                "model": "large",  # naming a backend model sends the request there
                "stream": True,
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "Tell me about Canberra."}],
            }
            async with (
                httpx.AsyncClient(base_url=router.url, timeout=30) as client,
                client.stream("POST", "/v1/chat/completions", json=body) as response,
            ):
                assert response.status_code == 200
                lines = response.aiter_lines()
                first = await anext(lines)  # the stream is open: the decision came
                assert first.startswith("data: ")
                started = time.monotonic()
                router.models["large"].kill()
                rest = [line async for line in lines]
            took = time.monotonic() - started
    finally:
        redis.stop()
    events = [line.removeprefix("data: ") for line in rest if line.startswith("data: ")]
    assert events[-1] == "[DONE]", rest  # ended, not cut off and not hanging
    assert took < 10, f"the stream took {took:.1f} s to end"
    payloads = [json.loads(e) for e in events[:-1]]
    errors = [p["error"] for p in payloads if "error" in p]
    text = "".join(
        c["delta"].get("content") or ""
        for p in payloads
        for c in p.get("choices", [])
        if "delta" in c
    )
    # Either the router fell over to the other model before any text, or it says why.
    assert text or errors, payloads
    for error in errors:
        assert error.get("message"), error
