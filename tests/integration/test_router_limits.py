"""The server's size limits, on the real router: a body, a message count or a prompt over
its limit gets 413 (gRPC: a status that names the limit) before any work is done, the
rejection is counted, and the next request is served as usual."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import httpx
import pytest

from iccache_contract.settings import RouterSettings
from iccache_sidecar.app import Runtime, running
from iccache_sidecar.gen.iccache.v1 import router_pb2 as pb
from iccache_sidecar.gen.iccache.v1 import router_pb2_grpc as pb_grpc

LIMITS = {"max_body_bytes": 64 * 1024, "max_messages": 8, "max_prompt_bytes": 16 * 1024}


@pytest.fixture
async def small_limits(
    router_settings: Callable[..., RouterSettings], embedder: Any
) -> AsyncIterator[Runtime]:
    async with running(router_settings(server=LIMITS), encoder=embedder) as runtime:
        yield runtime


def chat(*texts: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": t} for t in texts]
    return {"model": "iccache", "messages": messages, "max_tokens": 4}


async def too_large_count(http: httpx.AsyncClient, rt: Runtime) -> float:
    text = (await http.get(rt.base_url.removesuffix("/v1") + "/metrics")).text
    for line in text.splitlines():
        if line.startswith('iccache_request_errors_total{kind="too_large"}'):
            return float(line.split()[-1])
    return 0.0


async def test_a_body_over_the_limit_gets_413_and_the_next_request_is_served(
    small_limits: Runtime,
) -> None:
    rt = small_limits
    url = rt.base_url + "/chat/completions"
    body = json.dumps(chat("x" * (LIMITS["max_body_bytes"] + 1))).encode()
    async with httpx.AsyncClient(timeout=120) as http:
        declared = await http.post(url, content=body, headers={"content-type": "application/json"})
        assert declared.status_code == 413
        error = declared.json()["error"]
        assert error["code"] == "request_too_large"
        assert str(LIMITS["max_body_bytes"]) in error["message"]

        async def pieces() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
            for start in range(0, len(body), 4096):
                yield body[start : start + 4096]

        chunked = await http.post(
            url, content=pieces(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413
        assert await too_large_count(http, rt) == 2

        served = await http.post(url, json=chat("Say hello."))
        assert served.status_code == 200, served.text
        assert served.json()["choices"][0]["message"]["content"]


async def test_too_many_messages_or_prompt_bytes_get_413_naming_the_limit(
    small_limits: Runtime,
) -> None:
    url = small_limits.base_url + "/chat/completions"
    async with httpx.AsyncClient(timeout=60) as http:
        many = await http.post(url, json=chat(*["hi"] * 9))
        assert many.status_code == 413
        assert "9 messages; this server takes at most 8" in many.json()["error"]["message"]
        assert many.json()["error"]["param"] == "messages"
        # Under the body limit, over the prompt limit (multi-byte text counts in bytes).
        wide = await http.post(url, json=chat("é" * 9000))
        assert wide.status_code == 413
        assert "18000 bytes of text" in wide.json()["error"]["message"]


async def test_grpc_limits_name_the_limit(small_limits: Runtime) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{small_limits.grpc_port}") as channel:
        stub = pb_grpc.RouterStub(channel)
        huge = pb.GenerateRequest(
            messages=[pb.Message(role="user", content="x" * (LIMITS["max_body_bytes"] + 1))]
        )
        with pytest.raises(grpc.aio.AioRpcError) as oversized:
            await stub.Generate(huge)
        assert oversized.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert str(LIMITS["max_body_bytes"]) in (oversized.value.details() or "")

        many = pb.GenerateRequest(
            messages=[pb.Message(role="user", content="hi") for _ in range(9)], max_tokens=4
        )
        with pytest.raises(grpc.aio.AioRpcError) as counted:
            await stub.Generate(many)
        assert counted.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 8" in (counted.value.details() or "")

        reply = await stub.Generate(
            pb.GenerateRequest(messages=[pb.Message(role="user", content="Hi.")], max_tokens=4)
        )
        assert reply.text.strip()
