"""``POST /v1/embeddings``: vectors from the router's own embedding model or from a
configured embeddings server (``embeddings_api`` in the settings), for an authenticated
tenant and within its request rate, in OpenAI's shape (float lists or base64)."""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from iccache_sidecar.api.http_errors import ERROR_RESPONSES
from iccache_sidecar.api.http_state import State
from iccache_sidecar.core.errors import InvalidRequest, UnknownModel, UnknownRequest

router = APIRouter()


class EmbeddingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    input: str | list[str] = Field(description="A text, or a list of texts (not token ids)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingOut(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingOut]
    model: str
    usage: EmbeddingsUsage


@router.post("/v1/embeddings", responses=ERROR_RESPONSES)
async def embeddings(body: EmbeddingsIn, http: Request, state: State) -> EmbeddingsOut:
    source = state.embeddings
    if source is None:
        raise UnknownRequest("this router does not serve embeddings (embeddings_api.source)")
    caller = state.auth.caller(http.headers)
    if body.model != source.model:
        raise UnknownModel(
            f"model {body.model!r} does not exist here; embeddings come from {source.model!r}",
            param="model",
        )
    texts = body.texts()
    limit = state.service.settings.embeddings_api.max_inputs
    if not texts or len(texts) > limit:
        raise InvalidRequest(f"input holds {len(texts)} texts; give 1 to {limit}", param="input")
    if empty := [i for i, t in enumerate(texts) if not t.strip()]:
        raise InvalidRequest(f"input[{empty[0]}] is empty", param="input")
    await state.service.admit(caller.tenant, caller.limits)
    result = await source.embed_texts(texts)
    width = len(result.vectors[0]) if result.vectors else 0
    if body.dimensions is not None and body.dimensions != width:
        raise InvalidRequest(
            f"dimensions {body.dimensions}: {source.model!r} gives {width}", param="dimensions"
        )
    data = [
        EmbeddingOut(index=i, embedding=_encoded(v, body.encoding_format))
        for i, v in enumerate(result.vectors)
    ]
    tokens = result.prompt_tokens
    return EmbeddingsOut(
        data=data,
        model=source.model,
        usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
