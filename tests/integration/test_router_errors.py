"""Bad input gets a clear 4xx; overload gets 429; the router keeps serving others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from iccache_contract.settings import RouterSettings
from iccache_sidecar.app import Runtime, running

USER = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ("{not json", 400, "malformed JSON"),
        ({"model": "iccache"}, 400, "messages"),
        ({"model": "iccache", "messages": []}, 400, "messages"),
        ({"model": "no-such-model", "messages": USER}, 404, "no-such-model"),
        ({"model": "iccache", "messages": USER, "temperature": 9}, 400, "temperature"),
        ({"model": "iccache", "messages": USER, "max_tokens": 0}, 400, "max_tokens"),
        (
            {"model": "iccache", "messages": [{"role": "user", "content": [{"text": "x"}]}]},
            400,
            "type",
        ),
        ({"model": "iccache", "messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
        (
            {"model": "iccache", "messages": [{"role": "user", "content": "   "}]},
            400,
            "non-empty user message",
        ),
        (
            {"model": "iccache", "messages": [{"role": "user", "content": "word " * 4000}]},
            400,
            "context",
        ),
        (
            {"model": "iccache", "messages": USER, "iccache": {"force_model": "medium"}},
            400,
            "force_model",
        ),
    ],
)
async def test_bad_chat_requests(icc: Runtime, body: Any, status: int, needle: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{icc.http_port}") as http:
        if isinstance(body, str):
            r = await http.post(
                "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
            )
        else:
            r = await http.post("/v1/chat/completions", json=body)
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert needle in error["message"]
        # ...and the router still serves a good request afterwards.
        ok = await http.post(
            "/v1/chat/completions", json={"model": "iccache", "messages": USER, "max_tokens": 2}
        )
        assert ok.status_code == 200


async def test_bad_feedback(icc: Runtime) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{icc.http_port}") as http:
        r = await http.post("/v1/feedback", json={"request_id": "unknown", "score": 1})
        assert r.status_code == 404
        r = await http.post("/v1/feedback", json={"request_id": "x", "score": 3})
        assert r.status_code == 400
        assert "score" in r.json()["error"]["message"]


async def test_overload_gets_429_with_retry_after(
    router_settings: Callable[..., RouterSettings], embedder: Any
) -> None:
    settings = router_settings(server={"max_concurrency": 1})
    async with (
        running(settings, encoder=embedder) as rt,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.http_port}", timeout=120) as http,
    ):
        slow = asyncio.create_task(
            http.post(
                "/v1/chat/completions",
                json={"model": "gemma3", "messages": USER, "max_tokens": 64},
            )
        )
        async with asyncio.timeout(30):  # until the first request holds the only slot
            while rt.service.active == 0:  # noqa: ASYNC110 - state owned by the server
                await asyncio.sleep(0.005)
        r = await http.post("/v1/chat/completions", json={"model": "iccache", "messages": USER})
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert (await slow).status_code == 200
