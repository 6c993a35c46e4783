"""Calls to OpenAI-compatible model servers (llama.cpp, vLLM, external endpoints).

A thin aiohttp client rather than the OpenAI SDK: under load the SDK's request building
took about 40% of the router's event-loop CPU, and httpx's connection pool another 14%
(it polls every idle connection on each request; encode/httpcore#924).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from iccache_contract.settings import BackendSettings
from iccache_sidecar.core.domain import ChatMessage, Delta, GenerationParams, Reply, Route, Usage
from iccache_sidecar.core.errors import (
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ContextTooLong,
    IccacheError,
)
from iccache_sidecar.core.load import LoadTracker

log = logging.getLogger(__name__)

RETRY_STATUSES = {429, 500, 502, 503, 504}


def _usage(data: dict[str, Any] | None) -> Usage | None:
    if not data:
        return None
    return Usage(int(data.get("prompt_tokens", 0)), int(data.get("completion_tokens", 0)))


class Backend:
    def __init__(self, route: Route, settings: BackendSettings) -> None:
        self.route = route
        self.settings = settings
        self.load = LoadTracker(settings.max_in_flight)
        api_key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._url = settings.base_url.rstrip("/") + "/chat/completions"
        self._timeout = aiohttp.ClientTimeout(
            total=settings.timeout_seconds, connect=min(5.0, settings.timeout_seconds)
        )
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            )
        return self._session

    @property
    def model(self) -> str:
        return self.settings.model

    def _body(
        self, messages: Sequence[ChatMessage], params: GenerationParams, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            **params.passthrough,
            "model": self.settings.model,
            "messages": [m.wire() for m in messages],
            "max_tokens": params.max_tokens,
        }
        if params.temperature is not None:
            body["temperature"] = params.temperature
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        if stream:
            # Usage is always asked for (the router counts tokens); the client sees the
            # usage chunk only if it asked for it too.
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _rejected(self, status: int, text: str) -> IccacheError:
        """An error for a response the backend refused (one place for all statuses)."""
        detail = text[:300]
        with contextlib.suppress(ValueError, KeyError, TypeError):
            detail = str(json.loads(text)["error"]["message"])[:300]
        who = f"the {self.route.value} model"
        if status == 400 and ("context" in detail.lower() or "too long" in detail.lower()):
            return ContextTooLong(f"{who} rejected the prompt: {detail}", param="messages")
        if 400 <= status < 500 and status not in RETRY_STATUSES:
            return BackendRejected(f"{who} rejected the request ({status}): {detail}", status)
        self.load.mark_down()
        return BackendUnavailable(f"{who} answered {status}: {detail}")

    def _failed(self, exc: Exception) -> IccacheError:
        self.load.mark_down()
        log.warning("%s backend failed: %r", self.route.value, exc)
        if isinstance(exc, TimeoutError):
            return BackendTimeout(f"the {self.route.value} model timed out")
        return BackendUnavailable(f"the {self.route.value} model is unavailable: {exc!r}")

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Reply:
        body = self._body(messages, params, stream=False)
        with self.load.track():
            for attempt in range(self.settings.max_retries + 1):
                try:
                    async with self._client().post(self._url, json=body) as r:
                        status, text = r.status, await r.text()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if attempt < self.settings.max_retries and not isinstance(exc, TimeoutError):
                        await asyncio.sleep(0.1 * 2**attempt)
                        continue
                    raise self._failed(exc) from exc
                if status in RETRY_STATUSES and attempt < self.settings.max_retries:
                    await asyncio.sleep(0.1 * 2**attempt)
                    continue
                break
        if status != 200:
            raise self._rejected(status, text)
        self.load.mark_up()
        data = json.loads(text)
        choice = data["choices"][0]
        content = (choice.get("message") or {}).get("content") or ""
        finish = choice.get("finish_reason") or "stop"
        return Reply(content, finish, _usage(data.get("usage")) or Usage(), raw=data)

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]:
        body = self._body(messages, params, stream=True)
        with self.load.track():
            try:
                async with self._client().post(self._url, json=body) as r:
                    if r.status != 200:
                        raise self._rejected(r.status, await r.text())
                    async for raw in r.content:
                        line = raw.decode(errors="replace").strip()
                        if not line.startswith("data:"):
                            continue
                        payload = line[5:].strip()
                        if payload == "[DONE]":
                            break
                        chunk = json.loads(payload)
                        usage = _usage(chunk.get("usage"))
                        if not chunk.get("choices"):
                            if usage:
                                yield Delta("", None, usage, raw=chunk)
                            continue
                        choice = chunk["choices"][0]
                        text = (choice.get("delta") or {}).get("content") or ""
                        yield Delta(text, choice.get("finish_reason"), usage, raw=chunk)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._failed(exc) from exc
        self.load.mark_up()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
