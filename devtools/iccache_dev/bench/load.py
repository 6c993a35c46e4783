"""Closed-loop HTTP load against a router: ``concurrency`` clients, each sending its next
request when the last one ended, until told to stop. Every outcome is kept (when it
started, how long it took, the status, the route and what was degraded), so that a test
or the soak can say what happened around a fault, second by second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

QUESTIONS = (
    "What is the capital city of Australia?",
    "Which river flows through Paris?",
    "How many days are in a leap year?",
    "Who wrote Pride and Prejudice?",
    "What is the boiling point of water at sea level?",
    "Which planet is known as the red planet?",
    "What is the largest ocean on Earth?",
    "Who painted the Mona Lisa?",
)


@dataclass(frozen=True, slots=True)
class Outcome:
    started: float  # time.monotonic()
    seconds: float
    status: int  # 0: no HTTP answer (connection error, timeout)
    route: str = ""
    degraded: str = ""
    error: str = ""


def body(i: int, *, unique: bool = False) -> dict[str, object]:
    """Request ``i``: one of a few questions, so that the cache has examples to find;
    ``unique`` numbers each one, so that none is an exact repeat (answered from the
    cache without a model)."""
    text = QUESTIONS[i % len(QUESTIONS)]
    return {
        "model": "iccache",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": f"{text} (#{i})" if unique else text}],
    }


async def closed_loop(
    base_url: str,
    *,
    concurrency: int,
    stop: asyncio.Event,
    request_timeout: float = 30.0,
    unique: bool = False,
    honor_retry_after: bool = False,
) -> list[Outcome]:
    """Run until ``stop`` is set. ``honor_retry_after``: after a 429 a client waits what
    the router's Retry-After says, and after a connection error one second, as a
    well-behaved client would (the soak); otherwise it asks again at once."""
    outcomes: list[Outcome] = []
    # aiohttp: a thousand connections cost the client far less CPU than with httpx.
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def client_loop(worker: int) -> None:
            n = worker
            while not stop.is_set():
                started = time.monotonic()
                wait = 0.0
                try:
                    request = body(n, unique=unique)
                    async with session.post("/v1/chat/completions", json=request) as r:
                        text = await r.text()
                        outcomes.append(
                            Outcome(
                                started,
                                time.monotonic() - started,
                                r.status,
                                r.headers.get("x-iccache-route", ""),
                                r.headers.get("x-iccache-degraded", ""),
                                "" if r.status == 200 else text[:200],
                            )
                        )
                        if r.status == 429:
                            wait = float(r.headers.get("retry-after", "1"))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcomes.append(
                        Outcome(started, time.monotonic() - started, 0, error=repr(exc)[:200])
                    )
                    wait = 1.0
                n += concurrency
                if honor_retry_after and wait:
                    await asyncio.sleep(wait)

        await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
    return outcomes


def between(outcomes: Sequence[Outcome], start: float, end: float) -> list[Outcome]:
    return [o for o in outcomes if start <= o.started < end]
