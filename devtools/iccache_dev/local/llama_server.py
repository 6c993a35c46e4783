"""llama-cpp-python's OpenAI server, plus prompt log-probabilities in vLLM's form.

``python -m iccache_dev.local.llama_server`` takes the same flags as
``python -m llama_cpp.server`` and serves the same API. One addition: a ``/v1/completions``
request with ``prompt_logprobs`` (vLLM's field) is answered from one evaluation of the
prompt, with each position's token, log-probability and rank and the top token, as vLLM
answers it, so that the router's verifier meets on this machine the form it meets on GPU
servers. llama-cpp-python's own ``echo`` path computes the same figures but sorts the
whole vocabulary in Python at every position (about 0.3 s a token for a 150k-token
vocabulary here), which would make a prefill cost more than a whole answer.

The same sort runs for every generated token when a request asks for ``logprobs``
(0.16 s a token here against 0.04 s to generate it). ``fast_top_logprobs`` replaces it,
inside llama-cpp-python's module only, with a partial sort of the few top entries an
answer can show, so that generation log-probabilities cost what they cost on a GPU
server: next to nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


# OpenAI's API shows at most 20 top log-probabilities a token; keep a margin.
TOP_KEPT = 32


class _Ranked:
    """``zip(logprobs, range(n))`` over a whole vocabulary, kept as an array."""

    def __init__(self, values: Any) -> None:
        self.values = np.asarray(values, dtype=np.float32)


def _zip(*args: Any, **kwargs: Any) -> Any:
    if (
        len(args) == 2
        and not kwargs
        and isinstance(args[1], range)
        and len(args[1]) > 4 * TOP_KEPT
        and isinstance(args[0], list | np.ndarray)
    ):
        return _Ranked(args[0])
    return builtins.zip(*args, **kwargs)  # noqa: B905 - as the replaced call had it


def _sorted(iterable: Any, *, key: Any = None, reverse: bool = False) -> list[Any]:
    if isinstance(iterable, _Ranked) and key is None and reverse:
        values = iterable.values
        best = np.argpartition(-values, TOP_KEPT)[:TOP_KEPT]
        best = best[np.argsort(-values[best], kind="stable")]
        return [(float(values[i]), int(i)) for i in best]
    return builtins.sorted(iterable, key=key, reverse=reverse)


def fast_top_logprobs() -> None:
    """Make llama-cpp-python's per-token log-probabilities cheap: its code sorts
    ``zip(logprobs, range(vocabulary))`` to take the first few; give it those first few
    from a partial sort. Only names inside ``llama_cpp.llama`` are replaced."""
    import llama_cpp.llama as module

    module.zip = _zip  # type: ignore[attr-defined]
    module.sorted = _sorted  # type: ignore[attr-defined]


def prompt_logprobs(llama: Any, prompt: str, top: int) -> tuple[list[Any], int]:
    """vLLM's ``prompt_logprobs`` list for ``prompt`` (None at the first position) and
    the prompt's token count. Reuses the evaluated prefix the model already holds."""
    tokens: list[int] = llama.tokenize(prompt.encode(), add_bos=True, special=True)
    held = llama._input_ids.tolist()
    keep = 0
    for a, b in zip(held, tokens, strict=False):
        if a != b:
            break
        keep += 1
    keep = min(keep, len(tokens) - 1)
    llama.n_tokens = keep
    llama.eval(tokens[keep:])
    logits = np.asarray(llama.scores[: len(tokens)], dtype=np.float64)
    peak = logits.max(axis=1, keepdims=True)
    lse = (peak + np.log(np.exp(logits - peak).sum(axis=1, keepdims=True)))[:, 0]
    out: list[Any] = [None]
    for i in range(1, len(tokens)):
        row, token = logits[i - 1], tokens[i]
        entry = {str(token): _entry(llama, tokens, i, token, row, lse[i - 1])}
        for best in np.argpartition(-row, top)[:top] if top < row.size else range(row.size):
            entry.setdefault(str(int(best)), _entry(llama, tokens, i, int(best), row, lse[i - 1]))
        out.append(entry)
    return out, len(tokens)


def _entry(
    llama: Any, tokens: list[int], i: int, token: int, row: np.ndarray, lse: float
) -> dict[str, Any]:
    text = llama.detokenize([token], prev_tokens=tokens[:i]).decode(errors="replace")
    return {
        "logprob": float(row[token] - lse),
        "rank": int((row > row[token]).sum()) + 1,
        "decoded_token": text,
    }


class PromptLogprobs:
    """ASGI middleware: answers ``POST /v1/completions`` with ``prompt_logprobs`` itself
    and passes everything else to llama-cpp-python's app."""

    def __init__(self, app: App, hold_model: Callable[[], Any]) -> None:
        self.app = app
        self.hold_model = hold_model  # llama-cpp-python's own lock around its model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].endswith("/completions")
            or scope["path"].endswith("/chat/completions")
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        with contextlib.suppress(ValueError):
            body = json.loads(raw)
            if isinstance(body, dict) and body.get("prompt_logprobs") is not None:
                await self._answer(body, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app(scope, replay, send)

    async def _answer(self, body: dict[str, Any], send: Send) -> None:
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            prompt = prompt[0] if prompt else ""
        if not isinstance(prompt, str) or not prompt:
            await _json(send, 400, {"error": {"message": "prompt must be a non-empty string"}})
            return
        top = max(1, int(body.get("prompt_logprobs") or 1))

        async with self.hold_model() as proxy:
            listed, count = await asyncio.to_thread(prompt_logprobs, proxy(), prompt, top)
        await _json(
            send,
            200,
            {
                "id": f"cmpl-{uuid.uuid4().hex}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "text": "",
                        "finish_reason": "length",
                        "logprobs": None,
                        "prompt_logprobs": listed,
                    }
                ],
                "usage": {"prompt_tokens": count, "completion_tokens": 0, "total_tokens": count},
            },
        )


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def main() -> None:
    from llama_cpp.server import app as server_app

    fast_top_logprobs()
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    parser = argparse.ArgumentParser(description="llama.cpp server with prompt_logprobs")
    add_args_from_model(parser, Settings)
    args = parser.parse_args()
    server_settings: Any = parse_model_from_args(ServerSettings, args)
    model_settings: Any = parse_model_from_args(ModelSettings, args)
    app = server_app.create_app(server_settings=server_settings, model_settings=[model_settings])
    # The same lock llama-cpp-python's routes take around the model: scoring waits for a
    # generation in progress and the other way round.
    hold_model = contextlib.asynccontextmanager(server_app.get_llama_proxy)
    wrapped = PromptLogprobs(app, hold_model)
    uvicorn.run(wrapped, host=server_settings.host, port=server_settings.port, log_level="warning")


if __name__ == "__main__":
    main()
