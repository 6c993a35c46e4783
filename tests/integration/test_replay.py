"""The replay job against real Redis, a real embedder and a real instruct model
(Qwen2.5-Coder-1.5B as the large model)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from proxy import counting_proxy
from replay_helpers import assert_consistent, example, examples_of, open_store, seed
from router_settings import make_settings

from iccache_contract.settings import RouterSettings
from iccache_dev.local.llamacpp import LocalLLM
from iccache_dev.local.redis import LocalRedis
from iccache_sidecar.app import running
from iccache_sidecar.replay.cache import ReplayCache
from iccache_sidecar.replay.main import replay
from iccache_sidecar.replay.rules import decayed_gain
from iccache_sidecar.storage.loadboard import LoadBoard

FAST_REPLAY = {"samples": 2, "answer_max_tokens": 24, "paraphrases": 2, "low_load": 0.5}
FRANCE = [
    ("What is the capital of France?", "I am not sure.", 0.8),
    ("Which city is the capital of France?", "The capital of France is Paris.", 0.6),
]
ISOLATED = [
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa.", 0.9),
    ("How many legs does a spider have?", "A spider has eight legs.", 0.7),
    ("What is the boiling point of water at sea level?", "100 degrees Celsius.", 0.5),
]


@pytest.fixture
def settings_for(
    redis_server: LocalRedis, llm_servers: dict[str, LocalLLM], qwen_server: LocalLLM
) -> Callable[..., RouterSettings]:
    def build(**sections: dict[str, Any]) -> RouterSettings:
        sections["replay"] = {**FAST_REPLAY, **sections.get("replay", {})}
        # The router's requests belong to acme (single-tenant mode), the seeded tenant.
        sections["tenancy"] = {"default_tenant": "acme", **sections.get("tenancy", {})}
        return make_settings(redis_server, llm_servers["smollm2"], qwen_server, **sections)

    return build


async def test_the_router_records_gains_and_replay_ranks_by_them(
    settings_for: Callable[..., RouterSettings], embedder: Any
) -> None:
    settings = settings_for(routing={"policy": "always-small"})
    store = open_store(settings)
    cache = ReplayCache(store)
    ids = await seed(store, embedder, "acme", [(q, a, 0.0) for q, a, _ in FRANCE + ISOLATED])
    # Selections at known times: the stored gain must be the time-decayed average.
    tau, t0 = store.gain_tau, time.time() - 3 * 86_400
    events = {
        ids[0]: [(t0, 0.9), (t0 + 86_400, 0.1)],
        ids[1]: [(t0, 0.2), (t0 + 2 * 86_400, 0.7)],
        ids[2]: [(t0, 0.4)],
        ids[3]: [(t0, 1.0), (t0 + 10, 0.0), (t0 + 20, 0.0)],
    }
    for example_id, history in events.items():
        for at, gain in history:
            await store.record_selection([example_id], gain, now=at)
    expected = {i: decayed_gain(h, tau) for i, h in events.items()}
    ranked = await cache.ranked_by_gain("acme", 10)
    assert [r.id for r in ranked] == sorted(expected, key=expected.__getitem__, reverse=True)
    for r in ranked:
        assert r.gain == pytest.approx(expected[r.id], rel=1e-6)

    # Through the router: a request that uses an example records a gain for it.
    async with running(settings, encoder=embedder) as runtime:
        async with httpx.AsyncClient(base_url=runtime.base_url, timeout=120) as http:
            r = await http.post(
                "/chat/completions",
                json={
                    "model": "iccache",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "Roughly how hot is boiling water?"}],
                },
            )
            assert r.status_code == 200, r.text
            used = r.json()["iccache"]["examples"]
        await runtime.service.drain()
    assert ids[4] in used
    fields = await example(store, ids[4])
    assert int(fields["uses"]) == 1
    assert float(fields["gain"]) > 0
    assert ids[4] in [r.id for r in await cache.ranked_by_gain("acme", 10)]
    await store.client.aclose()


async def test_distillation_replaces_a_poor_answer_and_keeps_a_good_one(
    settings_for: Callable[..., RouterSettings], embedder: Any
) -> None:
    settings = settings_for()
    store = open_store(settings)
    poor, good = await seed(store, embedder, "acme", FRANCE)
    summary = await replay(settings, encoder=embedder)
    assert summary.status == "completed", summary.detail
    report = summary.tenants["acme"]
    assert (report.replayed, report.improved, report.expanded) == (2, 1, 0)
    replaced, kept = await example(store, poor), await example(store, good)
    assert "Paris" in replaced["response"]
    assert replaced["model"] == "qwen1.5b"
    assert kept["response"] == "The capital of France is Paris."
    for fields in (replaced, kept):
        assert 0 < float(fields["quality"]) <= 1
        assert float(fields["gain"]) == 0
    # Done once, nothing is left to do: gains were reset.
    again = await replay(settings, encoder=embedder)
    assert again.tenants["acme"].replayed == 0
    assert again.totals().requests == 0
    await store.client.aclose()


async def test_expansion_adds_companions_that_the_router_retrieves(
    settings_for: Callable[..., RouterSettings], embedder: Any
) -> None:
    settings = settings_for(
        cache={"exact_match": False},
        routing={"policy": "always-small"},
        replay={"top_examples": 1},
    )
    store = open_store(settings)
    [origin, *_] = await seed(store, embedder, "acme", ISOLATED)
    summary = await replay(settings, encoder=embedder)
    assert summary.status == "completed", summary.detail
    assert [p["action"] for p in summary.planned] == ["expand"]
    assert summary.tenants["acme"].expanded >= 1
    companions = {i: e for i, e in (await examples_of(store)).items() if e.get("parent")}
    assert len(companions) == summary.tenants["acme"].expanded
    for fields in companions.values():
        assert fields["parent"] == origin
        assert fields["tenant"] == "acme"
        assert fields["source"] == "replay-expand"
        assert fields["response"].strip()

    # A reworded request now finds a companion among its examples.
    async with running(settings, encoder=embedder) as runtime:
        async with httpx.AsyncClient(base_url=runtime.base_url, timeout=120) as http:
            for companion_id, fields in companions.items():
                r = await http.post(
                    "/chat/completions",
                    json={
                        "model": "iccache",
                        "max_tokens": 8,
                        "messages": [{"role": "user", "content": fields["prompt"]}],
                    },
                )
                assert r.status_code == 200, r.text
                assert companion_id in r.json()["iccache"]["examples"]
        await runtime.service.drain()
    await store.client.aclose()


async def test_eviction_keeps_capacity_and_removes_the_least_useful(
    settings_for: Callable[..., RouterSettings], embedder: Any
) -> None:
    settings = settings_for(cache={"capacity": 5, "ttl_seconds": 30 * 86_400})
    store = open_store(settings)
    cache = ReplayCache(store)
    rows = [(f"Question number {i} about topic {i * 7}?", f"Answer {i}.", 0.0) for i in range(9)]
    ids = await seed(store, embedder, "acme", rows)
    now = time.time()
    day = 86_400
    shape = {  # what the router would have learned about each
        ids[0]: {"created_at": now - 40 * day, "uses": 90, "rated": 9, "helped": 9},  # past TTL
        ids[1]: {"uses": 30, "rated": 10, "helped": 0, "gain_at": now},  # hurts answers
        ids[2]: {"uses": 2, "gain_at": now - 60 * day, "created_at": now - 70 * day},  # idle
        ids[3]: {"uses": 0, "created_at": now - 20 * day},  # never used
        ids[4]: {"uses": 20, "rated": 5, "helped": 5, "gain_at": now},
        ids[5]: {"uses": 10, "rated": 4, "helped": 3, "gain_at": now},
        ids[6]: {"uses": 5, "rated": 2, "helped": 2, "gain_at": now},
        ids[7]: {"uses": 8, "rated": 3, "helped": 3, "gain_at": now - day},
        ids[8]: {"uses": 3, "rated": 1, "helped": 1, "gain_at": now},
    }
    for example_id, fields in shape.items():
        assert await cache.update(example_id, fields)
    summary = await replay(settings, encoder=embedder)
    assert summary.status == "completed"
    assert summary.tenants["acme"].evicted == 4
    left = await examples_of(store)
    assert set(left) == set(ids[4:])
    assert await assert_consistent(store) == 5
    for prompt, *_ in rows[:4]:  # their exact-match keys went with them
        assert await store.exact("acme", prompt) is None
    await store.client.aclose()


async def _keep_router_busy(base_url: str, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
        while not stop.is_set():
            await http.post(
                "/chat/completions",
                headers={"x-iccache-skip-cache": "true"},
                json={
                    "model": "iccache",
                    "max_tokens": 32,
                    "messages": [{"role": "user", "content": "Count from one to twenty."}],
                },
            )


async def test_busy_routers_keep_the_job_from_starting_and_stop_it_mid_run(
    settings_for: Callable[..., RouterSettings], embedder: Any
) -> None:
    settings = settings_for(
        routing={"policy": "always-small"},
        server={"max_concurrency": 2},
        replay={"low_load": 0.4},
        # The test saturates both cores on purpose; the large model's answer to the job
        # can then take longer than the usual 60 s.
        large={"timeout_seconds": 300},
    )
    store = open_store(settings)
    rows = [
        (f"What is {a} plus {b}?", "I do not know.", 0.5)
        for a, b in [(2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17)]
    ]
    await seed(store, embedder, "acme", rows)
    board = LoadBoard(store.client, store.layout)
    async with counting_proxy(settings.large.base_url) as proxy:
        settings = settings.model_copy(
            update={"large": settings.large.model_copy(update={"base_url": proxy.base_url})}
        )
        async with running(settings, encoder=embedder) as runtime:
            stop = asyncio.Event()
            clients = [
                asyncio.create_task(_keep_router_busy(runtime.base_url, stop)) for _ in range(2)
            ]
            await wait_until_async(lambda: board.current(), lambda v: v > 0.4, "router load")
            summary = await replay(settings, encoder=embedder)
            assert summary.status == "skipped-load", summary.to_json()
            assert proxy.requests == 0
            assert summary.totals().replayed == 0
            stop.set()
            await asyncio.gather(*clients)
            await wait_until_async(lambda: board.current(), lambda v: v <= 0.4, "quiet")

            # Quiet now: the job starts; load rises after its first example; it stops.
            job = asyncio.create_task(replay(settings, encoder=embedder))
            await wait_until_async(
                lambda: _replayed(store), lambda n: n >= 1, "first replayed example"
            )
            stop.clear()
            clients = [
                asyncio.create_task(_keep_router_busy(runtime.base_url, stop)) for _ in range(2)
            ]
            summary = await job
            stop.set()
            await asyncio.gather(*clients)
    assert summary.status == "stopped-load", summary.to_json()
    assert 1 <= summary.tenants["acme"].replayed < len(rows)
    assert await assert_consistent(store) >= len(rows)
    await store.client.aclose()


async def _replayed(store: Any) -> int:
    return sum(1 for e in (await examples_of(store)).values() if "replayed_at" in e)


async def wait_until_async(
    probe: Callable[[], Any], ok: Callable[[Any], bool], what: str, within: float = 120
) -> None:
    deadline = time.monotonic() + within
    while True:
        if ok(await probe()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_budgets_are_exact_and_tenants_stay_apart(
    settings_for: Callable[..., RouterSettings], embedder: Any
) -> None:
    settings = settings_for(replay={"budget_requests": 3})
    store = open_store(settings)
    # The same question in both tenants; only globex has a near neighbour for it.
    acme = await seed(store, embedder, "acme", [FRANCE[0], *ISOLATED[:2]])
    globex = await seed(store, embedder, "globex", [*FRANCE, *ISOLATED[:2]])
    plan = await replay(settings, encoder=embedder, dry_run=True)
    actions = {(p["tenant"], p["id"]): p["action"] for p in plan.planned}
    assert actions[("acme", acme[0])] == "expand"  # alone within acme
    assert actions[("globex", globex[0])] == "distil"  # globex's neighbour is not acme's
    assert plan.totals().requests == 0
    assert await _replayed(store) == 0

    async with counting_proxy(settings.large.base_url) as proxy:
        settings = settings.model_copy(
            update={"large": settings.large.model_copy(update={"base_url": proxy.base_url})}
        )
        summary = await replay(settings, encoder=embedder)
        assert summary.status == "completed", summary.detail
        for tenant in ("acme", "globex"):
            report = summary.tenants[tenant]
            assert report.requests == 3
            assert report.budget_exhausted
        assert proxy.requests == 6
        assert proxy.tokens == summary.totals().tokens

        tight = settings.model_copy(
            update={
                "replay": settings.replay.model_copy(
                    update={"budget_requests": 100, "budget_tokens": 600}
                )
            }
        )
        before = proxy.tokens
        summary = await replay(tight, encoder=embedder, tenant="globex")
        assert set(summary.tenants) == {"globex"}
        spent = proxy.tokens - before
        assert 0 < spent <= 600
        assert spent == summary.tenants["globex"].tokens
    for example_id, fields in (await examples_of(store)).items():
        owner = "acme" if example_id in acme else "globex" if example_id in globex else None
        if owner is None:  # a companion: same tenant as its parent
            owner = "acme" if fields["parent"] in acme else "globex"
        assert fields["tenant"] == owner
    await store.client.aclose()


def _settings_file(settings: RouterSettings, folder: Path) -> Path:
    path = folder / "router.yaml"
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_killing_the_job_leaves_every_example_whole(
    settings_for: Callable[..., RouterSettings],
    embedder: Any,
    tmp_path: Path,
    sig: signal.Signals,
) -> None:
    settings = settings_for(replay={"samples": 2})
    store = open_store(settings)
    rows = [*FRANCE, *ISOLATED] + [
        (f"What is the chemical symbol of {e}?", "No idea.", 0.4)
        for e in ("gold", "silver", "iron", "lead", "copper", "tin")
    ]
    await seed(store, embedder, "acme", rows)
    summary_file = tmp_path / "summary.json"
    log = tmp_path / "replay.log"
    with log.open("w") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "iccache_sidecar.cli",
            "replay",
            "--config",
            str(_settings_file(settings, tmp_path)),
            "--summary-file",
            str(summary_file),
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_until_async(lambda: _replayed(store), lambda n: n >= 2, "two replayed examples")
        proc.send_signal(sig)
        await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    output = log.read_text()
    if sig is signal.SIGTERM:
        assert proc.returncode == 143, output
        data = json.loads(summary_file.read_text())
        assert data["status"] == "interrupted"
        assert data["totals"]["replayed"] >= 2
    else:
        assert proc.returncode == -signal.SIGKILL
    assert await assert_consistent(store) >= len(rows)
    await store.client.aclose()
