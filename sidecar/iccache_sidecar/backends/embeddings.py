"""``POST /v1/embeddings`` passed to an OpenAI-compatible embeddings server."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence

import aiohttp

from iccache_contract.settings import EmbeddingsApiSettings
from iccache_sidecar.core.domain import Embeddings
from iccache_sidecar.core.errors import BackendRejected, BackendTimeout, BackendUnavailable


class EmbeddingsServer:
    def __init__(self, settings: EmbeddingsApiSettings) -> None:
        assert settings.base_url is not None  # the settings refuse a backend without one
        self._url = settings.base_url.rstrip("/") + "/embeddings"
        self._model = settings.model
        self._sent_model = settings.backend_model or settings.model
        key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        self._headers = {"authorization": f"Bearer {key}"} if key else {}
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    @property
    def model(self) -> str:
        return self._model

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        body = {"model": self._sent_model, "input": list(texts), "encoding_format": "float"}
        try:
            async with self._session.post(self._url, json=body) as r:
                status, text = r.status, await r.text()
        except TimeoutError as exc:
            raise BackendTimeout("the embeddings server timed out") from exc
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(f"the embeddings server is unavailable: {exc!r}") from exc
        if status != 200:
            detail = text[:300]
            with contextlib.suppress(ValueError, KeyError, TypeError):
                detail = str(json.loads(text)["error"]["message"])[:300]
            if 400 <= status < 500 and status != 429:
                raise BackendRejected(f"the embeddings server refused ({status}): {detail}", status)
            raise BackendUnavailable(f"the embeddings server answered {status}: {detail}")
        data = json.loads(text)
        rows = sorted(data["data"], key=lambda row: int(row.get("index", 0)))
        usage = data.get("usage") or {}
        return Embeddings([row["embedding"] for row in rows], int(usage.get("prompt_tokens", 0)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
