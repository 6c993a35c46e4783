"""Closed-loop HTTP load against a router: ``concurrency`` clients, each sending its next
request when the last one ended, until told to stop. Every outcome is kept (when it
started, how long it took, the status, the route and what was degraded), so that a test
or the soak can say what happened around a fault, second by second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

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


@dataclass(frozen=True)
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
    pause: float = 0.0,
    unique: bool = False,
) -> list[Outcome]:
    """Run until ``stop`` is set; ``pause`` seconds between one client's requests."""
    outcomes: list[Outcome] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.AsyncClient(base_url=base_url, timeout=request_timeout, limits=limits)
    async with client:

        async def client_loop(worker: int) -> None:
            n = worker
            while not stop.is_set():
                started = time.monotonic()
                try:
                    r = await client.post("/v1/chat/completions", json=body(n, unique=unique))
                    outcomes.append(
                        Outcome(
                            started,
                            time.monotonic() - started,
                            r.status_code,
                            r.headers.get("x-iccache-route", ""),
                            r.headers.get("x-iccache-degraded", ""),
                            "" if r.status_code == 200 else r.text[:200],
                        )
                    )
                except httpx.HTTPError as exc:
                    outcomes.append(
                        Outcome(started, time.monotonic() - started, 0, error=repr(exc)[:200])
                    )
                n += concurrency
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
    return outcomes


def between(outcomes: Sequence[Outcome], start: float, end: float) -> list[Outcome]:
    return [o for o in outcomes if start <= o.started < end]
