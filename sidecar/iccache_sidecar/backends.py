"""Calls to OpenAI-compatible model servers (llama.cpp, vLLM, external endpoints)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import openai

from iccache_sidecar.domain import ChatMessage, GenerationParams, Route, Usage
from iccache_sidecar.errors import (
    BackendTimeout,
    BackendUnavailable,
    ContextTooLong,
    IccacheError,
    InvalidRequest,
)
from iccache_sidecar.load import LoadTracker
from iccache_sidecar.settings import BackendSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delta:
    text: str
    finish_reason: str | None = None
    usage: Usage | None = None


def _translate(route: Route, exc: openai.OpenAIError) -> IccacheError:
    """One place that turns client errors into iccache errors."""
    if isinstance(exc, openai.APITimeoutError):
        return BackendTimeout(f"the {route.value} model timed out")
    if isinstance(exc, openai.BadRequestError):
        message = str(exc.message)
        if "context" in message.lower() or "too long" in message.lower():
            return ContextTooLong(f"the {route.value} model rejected the prompt: {message}")
        return InvalidRequest(f"the {route.value} model rejected the request: {message}")
    return BackendUnavailable(f"the {route.value} model is unavailable: {exc}")


class Backend:
    def __init__(self, route: Route, settings: BackendSettings) -> None:
        self.route = route
        self.settings = settings
        self.load = LoadTracker(settings.max_in_flight)
        api_key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=api_key or "unused",
            timeout=settings.timeout_seconds,
            max_retries=settings.max_retries,
        )

    @property
    def model(self) -> str:
        return self.settings.model

    def _args(self, messages: Sequence[ChatMessage], params: GenerationParams) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": params.max_tokens,
        }
        if params.temperature is not None:
            args["temperature"] = params.temperature
        if params.top_p is not None:
            args["top_p"] = params.top_p
        if params.stop:
            args["stop"] = list(params.stop)
        return args

    async def complete(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> tuple[str, str, Usage]:
        with self.load.track():
            try:
                reply = await self._client.chat.completions.create(**self._args(messages, params))
            except openai.OpenAIError as exc:
                self._note_failure(exc)
                raise _translate(self.route, exc) from exc
        self.load.mark_up()
        choice = reply.choices[0]
        usage = Usage(
            reply.usage.prompt_tokens if reply.usage else 0,
            reply.usage.completion_tokens if reply.usage else 0,
        )
        return choice.message.content or "", choice.finish_reason or "stop", usage

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]:
        with self.load.track():
            try:
                chunks = await self._client.chat.completions.create(
                    **self._args(messages, params),
                    stream=True,
                    stream_options={"include_usage": True},
                )
                async for chunk in chunks:
                    usage = (
                        Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                        if chunk.usage
                        else None
                    )
                    if not chunk.choices:
                        if usage:
                            yield Delta("", None, usage)
                        continue
                    choice = chunk.choices[0]
                    yield Delta(choice.delta.content or "", choice.finish_reason, usage)
            except openai.OpenAIError as exc:
                self._note_failure(exc)
                raise _translate(self.route, exc) from exc
        self.load.mark_up()

    def _note_failure(self, exc: openai.OpenAIError) -> None:
        if isinstance(exc, openai.APIConnectionError | openai.InternalServerError):
            log.warning("%s backend failed: %s", self.route.value, exc)
            self.load.mark_down()

    async def close(self) -> None:
        await self._client.close()
