"""Examples never cross tenants; outcomes teach the router which examples help."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from iccache_contract.settings import RouterSettings
from iccache_sidecar.app import Runtime, running

QUESTIONS = [
    "What is the capital of France?",
    "What is the capital city of France?",
    "Who wrote Hamlet?",
    "Who is the author of Hamlet?",
    "How many legs does a spider have?",
    "What is the boiling point of water?",
    "Who painted the Mona Lisa?",
    "What is the largest ocean on Earth?",
]
TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]


async def test_retrieval_never_returns_another_tenants_example(icc: Runtime, embedder: Any) -> None:
    store = icc.service.store
    assert store is not None
    rng = random.Random(2025)
    owner: dict[str, str] = {}
    vectors = embedder.encode(QUESTIONS, normalize_embeddings=True)
    # The same questions exist in several tenants, so only the filter keeps them apart.
    for tenant in TENANTS:
        for q, v in zip(QUESTIONS, vectors, strict=True):
            if rng.random() < 0.6:
                owner[await store.add(tenant, q, f"[{tenant}] answer to {q}", v, "gemma3")] = tenant

    # Many random queries at the store level...
    for _ in range(400):
        tenant = rng.choice([*TENANTS, "nobody"])
        noisy = vectors[rng.randrange(len(QUESTIONS))] + rng.gauss(0, 0.05)
        for c in await store.search(tenant, noisy, k=rng.randint(1, 20)):
            assert owner[c.id] == tenant
            assert c.response.startswith(f"[{tenant}]")

    # The whole router, with authenticated tenants: test_tenancy.py.


async def test_feedback_teaches_which_examples_hurt_and_survives_restart(
    router_settings: Callable[..., RouterSettings], embedder: Any
) -> None:
    settings = router_settings()
    ask = {"role": "user", "content": "Which city is the capital of Italy?"}
    async with (
        running(settings, encoder=embedder) as rt,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.http_port}", timeout=120) as http,
    ):
        seed = await http.post(
            "/v1/chat/completions",
            json={
                "model": "gemma3",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "What is the capital of Italy?"}],
            },
        )
        assert seed.status_code == 200
        await rt.service.drain()
        # The large model's answer was right: its arm of the bandit learns that.
        good = await http.post(
            "/v1/feedback", json={"request_id": seed.json()["iccache"]["request_id"], "score": 1}
        )
        assert good.status_code == 200

        # Each time the example is used (small model forced), the answer is judged bad.
        for _ in range(4):
            r = await http.post(
                "/v1/chat/completions",
                json={
                    "model": "smollm2",
                    "messages": [ask],
                    "max_tokens": 2,
                    "iccache": {"no_store": True},
                },
            )
            info = r.json()["iccache"]
            assert info["route"] == "small"
            assert len(info["examples"]) == 1
            fb = await http.post(
                "/v1/feedback", json={"request_id": info["request_id"], "score": 0.0}
            )
            assert fb.status_code == 200
        await rt.service.drain()

        # Now the example is known to hurt: it is no longer used; and the bandit has
        # learned that the small model fails on such requests, so it picks the large one.
        forced = await http.post(
            "/v1/chat/completions",
            json={
                "model": "smollm2",
                "messages": [ask],
                "max_tokens": 2,
                "iccache": {"no_store": True},
            },
        )
        assert forced.json()["iccache"]["route"] == "small"
        assert forced.json()["iccache"]["examples"] == []  # excluded although similar
        routed = await http.post(
            "/v1/chat/completions",
            json={
                "model": "iccache",
                "messages": [ask],
                "max_tokens": 2,
                "iccache": {"no_store": True},
            },
        )
        assert routed.json()["iccache"]["route"] == "large"
        learned = rt.service.policy.observations  # type: ignore[attr-defined]
        assert learned == 4

    # A new process with the same settings (a restart, or another replica) shares what
    # was learned, because the bandit's statistics live in Redis.
    async with running(settings, encoder=embedder) as rt2:
        await rt2.service.policy.refresh()
        assert rt2.service.policy.observations == 4  # type: ignore[attr-defined]
        assert rt2.service.policy.large_observations == 1  # type: ignore[attr-defined]


async def test_a_judge_model_rates_sampled_small_answers(
    router_settings: Callable[..., RouterSettings], embedder: Any, llm_servers: dict[str, Any]
) -> None:
    judge = llm_servers["smollm2"]  # any OpenAI-compatible endpoint can judge
    settings = router_settings(
        routing={"policy": "always-small"},
        judge={"base_url": judge.base_url, "model": judge.alias, "sample_rate": 1.0},
    )
    async with running(settings, encoder=embedder) as rt:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{rt.http_port}", timeout=120
        ) as http:
            for q in QUESTIONS[:3]:
                r = await http.post(
                    "/v1/chat/completions",
                    json={
                        "model": "iccache",
                        "max_tokens": 8,
                        "messages": [{"role": "user", "content": q}],
                    },
                )
                assert r.json()["iccache"]["route"] == "small"
            await rt.service.drain()
            text = (await http.get("/metrics")).text
        verdicts = {
            s.labels["verdict"]: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "iccache_judge_verdicts_total"
        }
        assert sum(verdicts.values()) == 3  # every sampled answer was judged
        readable = 3 - verdicts.get("unparsed", 0)
        assert rt.service.policy.name == "always-small"
        judged = [
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "iccache_feedback_total" and s.labels == {"source": "judge"}
        ]
        assert (judged[0] if judged else 0) == readable  # readable verdicts became rewards
