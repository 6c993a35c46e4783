"""``server.workers: 2``: one ``iccache serve`` supervising two router processes on the
same ports (real Redis and embedder, stand-in models). Feedback given to either worker
is learned by both (the bandit's statistics live in Redis), ``/metrics`` merges both
workers, a killed worker is started again, and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from iccache_contract import names
from iccache_contract.quality import QualityReport, ScopeQuality, pooled
from iccache_dev.bench.standin import StandInRouter, standin_router
from iccache_dev.local.process import wait_until
from iccache_dev.local.redis import LocalRedis

ASK = {"model": "iccache", "messages": [{"role": "user", "content": "Capital of Chile?"}]}
# (Distinct questions per worker: a repeat would be an exact hit, which teaches nothing.)
REPLICA = "x-iccache-replica"
LEARNED = re.compile(r'^iccache_learned_outcomes\{arm="(\w+)",pid="(\d+)"\} (\S+)$', re.M)


# Every small answer shadowed; everything goes to the small model (see the budget tests).
QUALITY = {
    "max_loss": 0.05,
    "shadow_rate": 1.0,
    "shadow_max_large_load": 1.0,
    "unproven_share": 1.0,
}
ROUTING = {"quality_target": 0.0, "load_relief": 0.0, "exploration_rate": 0.0, "quality": QUALITY}


@pytest.fixture
def router(
    redis_server: LocalRedis, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StandInRouter]:
    """Two workers; routing settings from the test's indirect parameter, if any."""
    routing = getattr(request, "param", {})
    with standin_router(
        tmp_path,
        redis_server.url,
        server={"workers": 2},
        prefix=f"workers{time.time_ns()}",
        routing=routing,
    ) as r:
        yield r


def learned(router: StandInRouter) -> dict[str, float]:
    """Outcomes learned, summed over arms, by worker pid (from the merged metrics);
    nothing when the connection was reset (it reached a worker as it was killed)."""
    try:
        text = httpx.get(router.url + "/metrics", timeout=10).text
    except httpx.TransportError:
        return {}
    totals: dict[str, float] = {}
    for _, pid, value in LEARNED.findall(text):
        totals[pid] = totals.get(pid, 0.0) + float(value)
    return totals


@pytest.fixture
async def one_client_per_worker(
    router: StandInRouter,
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A kept-alive connection to each worker (new connections until both answered)."""
    wait_until(lambda: len(learned(router)) == 2, timeout=60, what="both workers serving")
    clients: dict[str, httpx.AsyncClient] = {}
    try:
        for _ in range(200):
            client = httpx.AsyncClient(
                base_url=router.url, timeout=30, limits=httpx.Limits(max_connections=1)
            )
            replica = (await client.get("/healthz")).headers[REPLICA]
            if replica in clients:
                await client.aclose()
                continue
            clients[replica] = client
            if len(clients) == 2:
                break
        assert len(clients) == 2, f"200 new connections all reached {list(clients)}"
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


async def feedback(client: httpx.AsyncClient, request_id: str) -> httpx.Response:
    # The decision is stored after the answer is sent: retry a "not yet" briefly.
    for _ in range(50):
        done = await client.post("/v1/feedback", json={"request_id": request_id, "score": 1})
        if done.status_code != 404:
            return done
        await asyncio.sleep(0.1)
    return done


async def test_feedback_given_to_one_worker_is_learned_by_both(
    router: StandInRouter, one_client_per_worker: dict[str, httpx.AsyncClient]
) -> None:
    before = learned(router)
    assert sorted(before.values()) == [0.0, 0.0]
    for n, (replica, client) in enumerate(one_client_per_worker.items()):
        ask = {**ASK, "messages": [{"role": "user", "content": f"Capital of country {n}?"}]}
        answered = await client.post("/v1/chat/completions", json=ask)
        assert answered.status_code == 200, answered.text
        assert answered.headers[REPLICA] == replica
        taken = await feedback(client, answered.json()["iccache"]["request_id"])
        assert taken.status_code == 200, taken.text
        assert taken.headers[REPLICA] == replica
    # Each worker took one outcome itself and reads the other's from Redis.
    wait_until(
        lambda: sorted(learned(router).values()) == [2.0, 2.0],
        timeout=30,
        what="both workers learning both outcomes",
    )


@pytest.mark.parametrize("router", [ROUTING], indirect=True)
async def test_both_workers_report_one_quality_window_of_both_outcomes(
    router: StandInRouter, one_client_per_worker: dict[str, httpx.AsyncClient]
) -> None:
    asked = 0
    for replica, client in one_client_per_worker.items():
        for n in range(5):
            content = f"Capital of country {replica} {n}?"
            ask = {**ASK, "messages": [{"role": "user", "content": content}]}
            answered = await client.post("/v1/chat/completions", json=ask)
            assert answered.status_code == 200, answered.text
            assert answered.json()["iccache"]["route"] == "small"
            asked += 1

    async def overall(client: httpx.AsyncClient) -> ScopeQuality:
        report = QualityReport.model_validate((await client.get(names.QUALITY_PATH)).json())
        (scope,) = [s for s in report.scopes if s.scope == "*"]
        return scope

    # Each worker shadowed its own 5 answers; each reports all 10, from one window, and
    # the answers both gave (sent to Redis within a refresh, every 5 s).
    async def seen() -> list[tuple[int, int, str | None]]:
        scopes = [await overall(c) for c in one_client_per_worker.values()]
        return [(s.samples, s.small_answers, s.window) for s in scopes]

    deadline = time.monotonic() + 30
    while (got := await seen()) != [(asked, asked, got[0][2])] * 2 or got[0][2] is None:
        assert time.monotonic() < deadline, f"the workers report {got}"
        await asyncio.sleep(0.5)
    pooled_scopes = pooled(
        [
            QualityReport.model_validate((await c.get(names.QUALITY_PATH)).json())
            for c in one_client_per_worker.values()
        ]
    )
    (pooled_overall,) = [s for s in pooled_scopes if s.scope == "*"]
    assert pooled_overall.samples == asked  # the operator counts the shared window once


def test_a_killed_worker_is_replaced_and_sigterm_stops_all(router: StandInRouter) -> None:
    wait_until(lambda: len(learned(router)) == 2, timeout=60, what="both workers serving")
    first = set(learned(router))
    victim = int(sorted(first)[0])
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(set(learned(router))) == 2 and str(victim) not in learned(router),
        timeout=60,
        what="the killed worker replaced",
    )
    served = httpx.post(router.url + "/v1/chat/completions", json=ASK, timeout=30)
    assert served.status_code == 200, served.text
    pids = [int(p) for p in learned(router)]

    supervisor = router.process.proc
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=60) == 0
    for pid in pids:
        wait_until(lambda pid=pid: not _alive(pid), timeout=30, what=f"worker {pid} gone")


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status  # a zombie has ended
