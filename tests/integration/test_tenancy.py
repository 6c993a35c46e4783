"""Tenants that cannot be forged, per-tenant limits and forgetting, on real Redis and
real llama.cpp servers. Recording proxies in front of both models see every prompt."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from proxy import RecordingProxy, recording_proxy
from tenants import KEYS, api_keys, write_keys

from iccache_contract.settings import RouterSettings
from iccache_dev.local.llamacpp import LocalLLM
from iccache_sidecar.app import Runtime, running
from iccache_sidecar.gen.iccache.v1 import router_pb2 as pb
from iccache_sidecar.gen.iccache.v1 import router_pb2_grpc as pb_grpc
from iccache_sidecar.storage.examples import ExampleStore

QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Hamlet?",
    "How many legs does a spider have?",
    "Who painted the Mona Lisa?",
]
ADMIN_KEY = "icc-admin-key-for-tests-000000000"


@dataclass
class Keyed:
    rt: Runtime
    small: RecordingProxy
    large: RecordingProxy
    keys_file: Path
    settings: RouterSettings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rt.http_port}"

    def bodies(self) -> int:
        return len(self.small.bodies) + len(self.large.bodies)

    def prompts_since(self, mark: int) -> str:
        """Every message text the models received since ``mark`` bodies."""
        bodies = (self.small.bodies + self.large.bodies)[mark:]  # order within is irrelevant
        return " ".join(str(m.get("content")) for b in bodies for m in b["messages"])  # type: ignore[attr-defined]


@pytest.fixture
async def keyed(
    router_settings: Callable[..., RouterSettings],
    llm_servers: dict[str, LocalLLM],
    embedder: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Keyed]:
    """A router in api-keys mode (keys for acme, globex, initech; acme limited to 4
    requests a minute), with the admin API on, its models behind recording proxies."""
    monkeypatch.setenv("TEST_ADMIN_KEY", ADMIN_KEY)
    keys = write_keys(tmp_path / "keys.yaml", acme={"requests_per_minute": 4})
    async with (
        recording_proxy(llm_servers["smollm2"].base_url) as small,
        recording_proxy(llm_servers["gemma3"].base_url) as large,
    ):
        settings = router_settings(
            small={"base_url": small.base_url},
            large={"base_url": large.base_url},
            tenancy={**api_keys(keys), "admin_key_env": "TEST_ADMIN_KEY"},
        )
        async with running(settings, encoder=embedder) as rt:
            yield Keyed(rt, small, large, keys, settings)


async def seed(rt: Runtime, embedder: Any, tenants: list[str]) -> dict[str, str]:
    """Each tenant gets every question, answered with a marker only it may ever see."""
    store = rt.service.store
    assert store is not None
    vectors = embedder.encode(QUESTIONS, normalize_embeddings=True)
    owner = {}
    for tenant in tenants:
        for i, (q, v) in enumerate(zip(QUESTIONS, vectors, strict=True)):
            owner[await store.add(tenant, q, f"SECRET-{tenant}-{i}", v, "gemma3")] = tenant
    return owner


def bearer(tenant: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[tenant]}"}


async def test_no_forgery_reaches_another_tenants_data(keyed: Keyed, embedder: Any) -> None:
    """Many random requests: valid keys, forged tenant headers and user fields, wrong keys,
    no key. No response, and no prompt a model receives, ever holds another tenant's
    example or exact answer."""
    tenants = ["acme", "globex", "initech"]
    owner = await seed(keyed.rt, embedder, [*tenants, "default", "mallory"])
    rng = random.Random(7)
    used = exact = refused = 0
    async with httpx.AsyncClient(base_url=keyed.url, timeout=120) as http:
        for _ in range(48):
            tenant = rng.choice(["globex", "initech"])  # acme has a rate limit of its own
            other = rng.choice([t for t in [*tenants, "default", "mallory"] if t != tenant])
            kind = rng.choice(["key", "key+header", "key+user", "wrong-key", "no-key", "header"])
            headers: dict[str, str] = {}
            body: dict[str, Any] = {
                "model": rng.choice(["iccache", "smollm2"]),  # smollm2: examples, no exact hit
                "messages": [{"role": "user", "content": rng.choice(QUESTIONS)}],
                "max_tokens": 1,
                "iccache": {"no_store": True},
            }
            if kind.startswith("key"):
                headers |= bearer(tenant)
            if kind in ("key+header", "header"):
                headers["x-iccache-tenant"] = other
            if kind == "key+user":
                body["user"] = other
            if kind == "wrong-key":
                headers["authorization"] = f"Bearer {KEYS[tenant]}x"
            mark = keyed.bodies()
            r = await http.post("/v1/chat/completions", json=body, headers=headers)
            seen = keyed.prompts_since(mark) + " " + r.text
            if not kind.startswith("key") or kind == "wrong-key":
                assert r.status_code == 401, r.text
                assert keyed.bodies() == mark  # nothing reached a model
                refused += 1
                continue
            assert r.status_code == 200, r.text
            d = r.json()["iccache"]
            assert all(owner[i] == tenant for i in d["examples"]), (kind, tenant, d)
            for foreign in {*owner.values()} - {tenant}:
                assert f"SECRET-{foreign}-" not in seen, (kind, tenant, foreign)
            used += len(d["examples"])
            exact += d["exact_hit"]
            if d["exact_hit"]:
                assert r.json()["choices"][0]["message"]["content"].startswith(f"SECRET-{tenant}-")
    assert used > 0  # the property was exercised through examples...
    assert exact > 0  # ...and exact hits
    assert refused > 0


async def test_messages_say_what_is_wrong_with_a_key(keyed: Keyed) -> None:
    async with httpx.AsyncClient(base_url=keyed.url, timeout=60) as http:
        body = {"model": "iccache", "messages": [{"role": "user", "content": "hi"}]}
        cases = [
            ({}, 401, "missing API key"),
            ({"authorization": "Basic abc"}, 401, "must be 'Bearer <key>'"),
            ({"authorization": "Bearer nope"}, 401, "unknown API key"),
        ]
        for headers, status, needle in cases:
            r = await http.post("/v1/chat/completions", json=body, headers=headers)
            assert r.status_code == status
            assert needle in r.json()["error"]["message"]
            assert r.headers["www-authenticate"] == "Bearer"
        # The key is checked before the body is read: a broken body without a key gets
        # 401, not the 400 of a body that was parsed.
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/feedback"):
            r = await http.post(path, content=b"{not json")
            assert r.status_code == 401, (path, r.text)
        # Health, readiness and metrics need no key.
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(path)).status_code == 200
        metrics = (await http.get("/metrics")).text
        assert KEYS["acme"] not in metrics


async def test_revoking_and_adding_keys_takes_effect_without_a_restart(keyed: Keyed) -> None:
    body = {"model": "iccache", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    async with httpx.AsyncClient(base_url=keyed.url, timeout=60) as http:
        assert (
            await http.post("/v1/chat/completions", json=body, headers=bearer("globex"))
        ).status_code == 200
        write_keys(keyed.keys_file, revoked={"globex"})
        started = time.monotonic()
        while True:
            r = await http.post("/v1/chat/completions", json=body, headers=bearer("globex"))
            if r.status_code == 403:
                break
            assert time.monotonic() - started < 10, "revocation did not take effect in 10 s"
            await asyncio.sleep(0.2)
        took = time.monotonic() - started
        assert "revoked" in r.json()["error"]["message"]
        print(f"revocation took effect after {took:.2f} s")
        # A file that does not parse keeps the keys that were loaded.
        keyed.keys_file.write_text("keys: [{tenant: 'bad tenant'}]")
        await asyncio.sleep(1.2)
        r = await http.post("/v1/chat/completions", json=body, headers=bearer("initech"))
        assert r.status_code == 200


async def test_a_key_limited_to_some_models(keyed: Keyed) -> None:
    write_keys(keyed.keys_file, initech={"models": ["iccache"]})
    await asyncio.sleep(1.2)
    async with httpx.AsyncClient(base_url=keyed.url, timeout=60) as http:
        body = {"model": "gemma3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        r = await http.post("/v1/chat/completions", json=body, headers=bearer("initech"))
        assert r.status_code == 403
        assert "may not use model 'gemma3'" in r.json()["error"]["message"]
        # Nor by forcing it through the routed name.
        body = {**body, "model": "iccache", "iccache": {"force_model": "large"}}
        r = await http.post("/v1/chat/completions", json=body, headers=bearer("initech"))
        assert r.status_code == 403
        assert "may not use model 'gemma3'" in r.json()["error"]["message"]


async def test_grpc_names_the_tenant_by_key(keyed: Keyed, embedder: Any) -> None:
    await seed(keyed.rt, embedder, ["globex", "initech"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{keyed.rt.grpc_port}") as channel:
        stub = pb_grpc.RouterStub(channel)
        ask = pb.GenerateRequest(prompt=QUESTIONS[1], max_tokens=1, tenant="initech")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.Generate(ask)
        assert missing.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "missing API key" in (missing.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as stats:  # the load is not public either
            await stub.Stats(pb.StatsRequest())
        assert stats.value.code() is grpc.StatusCode.UNAUTHENTICATED
        meta = (("authorization", f"Bearer {KEYS['globex']}"),)
        with pytest.raises(grpc.aio.AioRpcError) as claimed:  # the field is not believed
            await stub.Generate(ask, metadata=meta)
        assert claimed.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "'initech' in the request is not the caller's" in (claimed.value.details() or "")
        ask = pb.GenerateRequest(prompt=QUESTIONS[1], max_tokens=1, tenant="globex")
        reply = await stub.Generate(ask, metadata=meta)  # its own tenant may be named
        assert reply.decision.exact_hit
        assert reply.text == "SECRET-globex-1"
        write_keys(keyed.keys_file, revoked={"globex"})
        await asyncio.sleep(1.2)
        with pytest.raises(grpc.aio.AioRpcError) as revoked:
            await stub.Generate(ask, metadata=meta)
        assert revoked.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_a_tenant_over_its_rate_gets_429_and_the_others_keep_their_latency(
    keyed: Keyed,
) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

    async def timed(http: httpx.AsyncClient, tenant: str) -> tuple[int, float, httpx.Response]:
        started = time.perf_counter()
        r = await http.post("/v1/chat/completions", json=body, headers=bearer(tenant))
        return r.status_code, time.perf_counter() - started, r

    async with httpx.AsyncClient(base_url=keyed.url, timeout=120) as http:
        alone = [(await timed(http, "globex"))[1] for _ in range(5)]
        into_minute = time.time() % 60
        if into_minute > 50:  # keep the flood inside one one-minute window
            await asyncio.sleep(60.5 - into_minute)

        async def globex_during_flood() -> list[float]:
            out = []
            for _ in range(5):
                out.append((await timed(http, "globex"))[1])
            return out

        flood, during = await asyncio.gather(
            asyncio.gather(*(timed(http, "acme") for _ in range(30))), globex_during_flood()
        )
    statuses = [s for s, _, _ in flood]
    assert statuses.count(200) == 4  # acme's limit: 4 a minute
    assert statuses.count(429) == 26
    rejected = [r for s, _, r in flood if s == 429]
    assert int(rejected[0].headers["retry-after"]) >= 1
    assert "4 requests a minute" in rejected[0].json()["error"]["message"]
    refusal = max(t for s, t, _ in flood if s == 429)
    print(
        f"globex p50 alone {statistics.median(alone) * 1000:.0f} ms, during acme's flood "
        f"{statistics.median(during) * 1000:.0f} ms; slowest 429 to acme {refusal * 1000:.0f} ms"
    )
    # Acme's 4 admitted requests share the one small model with globex; its 26 refusals
    # cost nothing. So globex waits at most behind those 4, not behind 30.
    assert statistics.median(during) < statistics.median(alone) + 4 * max(alone) + 1.0


async def test_tokens_per_minute(
    router_settings: Callable[..., RouterSettings], embedder: Any, tmp_path: Path
) -> None:
    keys = write_keys(tmp_path / "keys.yaml", globex={"tokens_per_minute": 5})
    settings = router_settings(tenancy=api_keys(keys))
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    async with (
        running(settings, encoder=embedder) as rt,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.http_port}", timeout=60) as http,
    ):
        first = await http.post("/v1/chat/completions", json=body, headers=bearer("globex"))
        assert first.status_code == 200
        await rt.service.drain()  # the tokens are charged after the response
        second = await http.post("/v1/chat/completions", json=body, headers=bearer("globex"))
        assert second.status_code == 429
        assert "tokens of this minute" in second.json()["error"]["message"]
        other = await http.post("/v1/chat/completions", json=body, headers=bearer("acme"))
        assert other.status_code == 200


async def test_single_mode_ignores_what_a_caller_claims(icc: Runtime, embedder: Any) -> None:
    await seed(icc, embedder, ["mallory"])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{icc.http_port}", timeout=60) as http:
        r = await http.post(
            "/v1/chat/completions",
            headers={"x-iccache-tenant": "mallory"},
            json={
                "model": "iccache",
                "messages": [{"role": "user", "content": QUESTIONS[0]}],
                "user": "mallory",
                "max_tokens": 2,
            },
        )
    assert r.status_code == 200
    assert "SECRET-mallory" not in r.text
    assert r.json()["iccache"]["examples"] == []


async def test_gateway_mode_believes_the_header_only_from_the_gateway(
    router_settings: Callable[..., RouterSettings],
    embedder: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_GATEWAY_SECRET", "gateway-shared-secret")
    tenancy = {"mode": "gateway", "gateway_secret_env": "TEST_GATEWAY_SECRET"}
    async with running(router_settings(tenancy=tenancy), encoder=embedder) as rt:
        await seed(rt, embedder, ["acme"])
        body = {"model": "iccache", "messages": [{"role": "user", "content": QUESTIONS[2]}]}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.http_port}") as http:
            forged = await http.post(
                "/v1/chat/completions", json=body, headers={"x-iccache-tenant": "acme"}
            )
            assert forged.status_code == 401
            assert "only from its gateway" in forged.json()["error"]["message"]
            wrong = await http.post(
                "/v1/chat/completions",
                json=body,
                headers={"x-iccache-tenant": "acme", "x-iccache-gateway-secret": "guess"},
            )
            assert wrong.status_code == 401
            gateway = await http.post(
                "/v1/chat/completions",
                json=body,
                headers={
                    "x-iccache-tenant": "acme",
                    "x-iccache-gateway-secret": "gateway-shared-secret",
                },
            )
            assert gateway.status_code == 200
            assert gateway.json()["choices"][0]["message"]["content"] == "SECRET-acme-2"
            # A client's own tenant header next to the gateway's: refused, not read
            # first-wins (HTTP) or last-wins (gRPC).
            twice = await http.post(
                "/v1/chat/completions",
                json=body,
                headers=[
                    ("x-iccache-tenant", "globex"),
                    ("x-iccache-tenant", "acme"),
                    ("x-iccache-gateway-secret", "gateway-shared-secret"),
                ],
            )
            assert twice.status_code == 400
            assert "x-iccache-tenant header came 2 times" in twice.json()["error"]["message"]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}") as channel:
            stub = pb_grpc.RouterStub(channel)
            vouched = (
                ("x-iccache-tenant", "acme"),
                ("x-iccache-gateway-secret", "gateway-shared-secret"),
            )
            reply = await stub.Generate(
                pb.GenerateRequest(prompt=QUESTIONS[2], max_tokens=1), metadata=vouched
            )
            assert reply.text == "SECRET-acme-2"
            # The body's tenant field does not override the tenant the gateway vouched for.
            forged = pb.GenerateRequest(prompt=QUESTIONS[2], max_tokens=1, tenant="globex")
            with pytest.raises(grpc.aio.AioRpcError) as claimed:
                await stub.Generate(forged, metadata=vouched)
            assert claimed.value.code() is grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as fed_back:
                await stub.Feedback(
                    pb.FeedbackRequest(
                        request_id=reply.decision.request_id, score=0.0, tenant="globex"
                    ),
                    metadata=vouched,
                )
            assert fed_back.value.code() is grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as twice_grpc:
                await stub.Generate(
                    pb.GenerateRequest(prompt=QUESTIONS[2], max_tokens=1),
                    metadata=(("x-iccache-tenant", "globex"), *vouched),
                )
            assert twice_grpc.value.code() is grpc.StatusCode.INVALID_ARGUMENT


GATEWAY_SECRET = "gateway-shared-secret"
ECHOES = [{"echo": True}, {"prompt_logprobs": 1}, {"return_token_ids": True}]
KINDS = [
    *["vouched", "echo", "no-secret", "wrong-secret", "twice"],  # HTTP
    *["grpc", "grpc-body", "grpc-twice", "grpc-no-secret"],
]


async def test_no_forgery_or_echo_reaches_another_tenants_data_through_a_gateway(
    router_settings: Callable[..., RouterSettings],
    llm_servers: dict[str, LocalLLM],
    embedder: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The property test in gateway mode, over HTTP and gRPC at random: vouched
    requests, forged or repeated tenant headers, wrong or missing gateway secrets, a
    gRPC body naming another tenant, and fields that make a model return its prompt.
    No response and no prompt a model receives ever holds another tenant's example or
    exact answer; a request with a prompt-returning field gets no example at all (its
    own tenant's are other users' text too); a forgery is refused before any model."""
    monkeypatch.setenv("TEST_GATEWAY_SECRET", GATEWAY_SECRET)
    tenancy = {"mode": "gateway", "gateway_secret_env": "TEST_GATEWAY_SECRET"}
    async with (
        recording_proxy(llm_servers["smollm2"].base_url) as small,
        recording_proxy(llm_servers["gemma3"].base_url) as large,
    ):
        settings = router_settings(
            small={"base_url": small.base_url}, large={"base_url": large.base_url}, tenancy=tenancy
        )
        async with running(settings, encoder=embedder) as rt:
            seen = Keyed(rt, small, large, Path("unused"), settings)
            tenants = ["acme", "globex", "initech"]
            owner = await seed(rt, embedder, [*tenants, "mallory"])
            counts = await _gateway_trials(seen, owner, tenants, random.Random(11))
    assert counts["examples"] > 0  # the property was exercised through examples...
    assert counts["exact"] > 0  # ...and exact hits
    assert counts["echo"] > 0
    assert counts["refused"] > 0
    assert counts["grpc"] > 0


async def _gateway_trials(
    seen: Keyed, owner: dict[str, str], tenants: list[str], rng: random.Random
) -> dict[str, int]:
    counts = dict.fromkeys(["examples", "exact", "echo", "refused", "grpc"], 0)
    vouch = {"x-iccache-gateway-secret": GATEWAY_SECRET}
    async with (
        httpx.AsyncClient(base_url=seen.url, timeout=120) as http,
        grpc.aio.insecure_channel(f"127.0.0.1:{seen.rt.grpc_port}") as channel,
    ):
        stub = pb_grpc.RouterStub(channel)
        for _ in range(60):
            tenant = rng.choice(tenants)
            other = rng.choice([t for t in [*tenants, "mallory"] if t != tenant])
            question = rng.choice(QUESTIONS)
            mark = seen.bodies()
            kind = rng.choice(KINDS)
            if kind.startswith("grpc"):
                counts["grpc"] += 1
                reply = await _grpc_trial(stub, kind, tenant, other, question, rng)
                if isinstance(reply, grpc.StatusCode):
                    assert kind != "grpc", reply
                    assert seen.bodies() == mark  # refused before any model
                    counts["refused"] += 1
                    continue
                assert kind == "grpc", kind
                ids, exact, text = (
                    list(reply.decision.example_ids),
                    reply.decision.exact_hit,
                    reply.text,
                )
            else:
                headers = {"x-iccache-tenant": tenant}
                if kind not in ("no-secret", "wrong-secret"):
                    headers |= vouch
                if kind == "wrong-secret":
                    headers["x-iccache-gateway-secret"] = GATEWAY_SECRET + "x"
                body: dict[str, Any] = {
                    "model": rng.choice(["iccache", "smollm2"]),
                    "messages": [{"role": "user", "content": question}],
                    "max_tokens": 1,
                    "iccache": {"no_store": True},
                }
                if kind == "echo":
                    body |= rng.choice(ECHOES)
                listed = list(headers.items())
                if kind == "twice":
                    listed.insert(0, ("x-iccache-tenant", other))
                r = await http.post("/v1/chat/completions", json=body, headers=listed)
                if kind in ("no-secret", "wrong-secret", "twice"):
                    assert r.status_code in (400, 401), (kind, r.text)
                    assert seen.bodies() == mark
                    counts["refused"] += 1
                    continue
                if kind == "echo":  # whatever the model made of the field: no example in
                    counts["echo"] += 1
                    prompts = seen.prompts_since(mark)
                    assert "SECRET-" not in prompts + r.text, (body, r.text)
                    continue
                assert r.status_code == 200, r.text
                d = r.json()["iccache"]
                ids, exact, text = d["examples"], d["exact_hit"], r.text
            assert all(owner[i] == tenant for i in ids), (kind, tenant, ids)
            for foreign in {*owner.values()} - {tenant}:
                assert f"SECRET-{foreign}-" not in seen.prompts_since(mark) + " " + text
            counts["examples"] += len(ids)
            counts["exact"] += exact
            if exact:
                assert f"SECRET-{tenant}-" in text
    return counts


async def _grpc_trial(
    stub: pb_grpc.RouterStub, kind: str, tenant: str, other: str, question: str, rng: random.Random
) -> pb.GenerateResponse | grpc.StatusCode:
    """One gRPC request of ``kind``: its reply, or the status it was refused with."""
    meta = [("x-iccache-tenant", tenant)]
    if kind != "grpc-no-secret":
        meta.append(("x-iccache-gateway-secret", GATEWAY_SECRET))
    if kind == "grpc-twice":
        meta.insert(0, ("x-iccache-tenant", other))
    ask = pb.GenerateRequest(
        prompt=question,
        max_tokens=1,
        no_store=True,
        tenant=other if kind == "grpc-body" else "",
        force_model=rng.choice([pb.MODEL_CHOICE_UNSPECIFIED, pb.MODEL_CHOICE_SMALL]),
    )
    try:
        reply: pb.GenerateResponse = await stub.Generate(ask, metadata=tuple(meta))
    except grpc.aio.AioRpcError as refused:
        return refused.code()
    return reply


async def test_forget_removes_exactly_what_was_asked(keyed: Keyed, embedder: Any) -> None:
    owner = await seed(keyed.rt, embedder, ["acme", "globex"])
    store = keyed.rt.service.store
    assert store is not None
    async with httpx.AsyncClient(base_url=keyed.url, timeout=120) as http:
        # A request whose answer is stored (forced to the large model, a new question).
        q = {"role": "user", "content": "What is the tallest mountain in Africa?"}
        body = {"model": "gemma3", "messages": [q], "max_tokens": 4}
        stored = await http.post("/v1/chat/completions", json=body, headers=bearer("globex"))
        await keyed.rt.service.drain()
        request_id = stored.json()["iccache"]["request_id"]
        assert await store.count_of("globex") == len(QUESTIONS) + 1

        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        forget = "/admin/v1/forget"
        assert (await http.post(forget, json={"tenant": "acme"})).status_code == 401
        wrong = {"authorization": "Bearer guess"}
        assert (await http.post(forget, json={"tenant": "acme"}, headers=wrong)).status_code == 403
        both = {"tenant": "acme", "request_id": request_id}
        assert (await http.post(forget, json=both, headers=admin)).status_code == 400

        # The request's answer was judged once (its verdict is claimed in Redis).
        assert await store.claim_verdict(request_id, "budget", 60)
        assert not await store.claim_verdict(request_id, "budget", 60)
        r = await http.post(forget, json={"request_id": request_id}, headers=admin)
        assert r.json() == {"examples": 1, "responses": 0, "dry_run": False}
        assert await store.claim_verdict(request_id, "budget", 60)  # forgotten with the request
        assert await store.claim_verdict(request_id, "learn-user", 60)  # a purpose of its own
        assert isinstance(store, ExampleStore)
        assert await store.client.ttl(store.layout.verdicts_key(request_id)) > 0
        assert await store.count_of("globex") == len(QUESTIONS)
        again = {**body, "model": "iccache", "iccache": {"no_store": True}}
        r = await http.post("/v1/chat/completions", json=again, headers=bearer("globex"))
        assert not r.json()["iccache"]["exact_hit"]  # its exact-match key went with it

        # A stored Responses API response of acme's goes with the tenant too.
        turn = {
            "model": "iccache",
            "input": "Say hi.",
            "max_output_tokens": 1,
            "iccache": {"no_store": True},
        }
        kept = await http.post("/v1/responses", json=turn, headers=bearer("acme"))
        kept_id = kept.json()["id"]
        dry = await http.post(forget, json={"tenant": "acme", "dry_run": True}, headers=admin)
        assert dry.json() == {"examples": len(QUESTIONS), "responses": 1, "dry_run": True}
        assert await store.count_of("acme") == len(QUESTIONS)
        done = await http.post(forget, json={"tenant": "acme"}, headers=admin)
        assert done.json() == {"examples": len(QUESTIONS), "responses": 1, "dry_run": False}
        gone = await http.get(f"/v1/responses/{kept_id}", headers=bearer("acme"))
        assert gone.status_code == 404
        assert await store.count_of("acme") == 0
        assert await store.count_of("globex") == len(QUESTIONS)  # nothing else
        # The router stops retrieving them at once.
        ask = {"model": "iccache", "messages": [{"role": "user", "content": QUESTIONS[0]}]}
        r = await http.post(
            "/v1/chat/completions", json={**ask, "max_tokens": 2}, headers=bearer("acme")
        )
        assert "SECRET-acme" not in r.text
        assert r.json()["iccache"]["examples"] == []
        assert [i for i, t in owner.items() if t == "acme" and await store.get(i)] == []


async def test_forget_from_the_command_line(keyed: Keyed, embedder: Any, tmp_path: Path) -> None:
    await seed(keyed.rt, embedder, ["initech"])
    config = tmp_path / "router.yaml"
    config.write_text(yaml.safe_dump(keyed.settings.model_dump(mode="json")))
    cli = [
        sys.executable,
        "-m",
        "iccache_sidecar.cli",
        "cache",
        "forget",
        "--config",
        str(config),
    ]
    env = {**os.environ, "TEST_ADMIN_KEY": ADMIN_KEY}
    dry = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--tenant", "initech", "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr
    assert f"would delete {len(QUESTIONS)} example(s)" in dry.stdout
    assert "action=forget tenant=initech" in dry.stderr  # the audit line
    done = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--tenant", "initech"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert f"deleted {len(QUESTIONS)} example(s)" in done.stdout
    store = keyed.rt.service.store
    assert store is not None
    assert await store.count_of("initech") == 0


async def test_wrong_admin_keys_lock_the_address_out(keyed: Keyed) -> None:
    """Five wrong admin keys from one address: the sixth request is refused with 429
    and Retry-After even with the right key (the key cannot be guessed at request
    speed)."""
    body = {"tenant": "acme", "dry_run": True}
    async with httpx.AsyncClient(base_url=keyed.url, timeout=30) as http:
        ok = await http.post(
            "/admin/v1/forget", json=body, headers={"authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert ok.status_code == 200, ok.text
        for i in range(5):
            wrong = await http.post(
                "/admin/v1/forget", json=body, headers={"authorization": f"Bearer guess-{i:012d}"}
            )
            assert wrong.status_code == 403, wrong.text
        locked = await http.post(
            "/admin/v1/forget", json=body, headers={"authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert locked.status_code == 429, locked.text
        assert int(locked.headers["retry-after"]) > 200
        assert "too many wrong admin keys" in locked.json()["error"]["message"]
