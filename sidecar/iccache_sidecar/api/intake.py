"""Turn a validated OpenAI-shaped request into a RouterRequest (HTTP and gRPC share it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pydantic import ValidationError

from iccache_contract.settings import RouterSettings, ServerSettings
from iccache_sidecar.api.auth import Caller
from iccache_sidecar.api.openai_schema import CompletionRequestBase, MessageIn
from iccache_sidecar.core.domain import ChatMessage, GenerationParams, Route, RouterRequest
from iccache_sidecar.core.errors import (
    InvalidRequest,
    PermissionDenied,
    RequestTooLarge,
    UnknownModel,
)


def chat_messages(items: Sequence[MessageIn]) -> list[ChatMessage]:
    return [
        ChatMessage("system" if m.role == "developer" else m.role, m.text(), raw=m.wire())
        for m in items
    ]


class _HasErrors(Protocol):
    def errors(self) -> Sequence[Any]: ...


def validation_message(exc: ValidationError | _HasErrors) -> tuple[str, str | None]:
    """A one-line account of what is wrong, and the first offending field."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        if err.get("type") == "json_invalid":
            problems.append(f"malformed JSON: {err.get('ctx', {}).get('error', err['msg'])}")
        else:
            problems.append(f"{where or 'body'}: {err['msg']}")
    first = exc.errors()[0] if exc.errors() else None
    param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") if first else None
    return "; ".join(problems), param or None


def check_size(server: ServerSettings, messages: Sequence[ChatMessage]) -> None:
    """The server's limits on one request's messages (HTTP and gRPC alike)."""
    if len(messages) > server.max_messages:
        raise RequestTooLarge(
            f"{len(messages)} messages; this server takes at most {server.max_messages}",
            param="messages",
        )
    size = sum(len(m.content.encode()) for m in messages)
    if size > server.max_prompt_bytes:
        raise RequestTooLarge(
            f"the messages hold {size} bytes of text; this server takes at most "
            f"{server.max_prompt_bytes}",
            param="messages",
        )


def build_request(
    settings: RouterSettings,
    backend_models: Mapping[str, Route],
    body: CompletionRequestBase,
    messages: list[ChatMessage],
    max_tokens: int | None,
    headers: Mapping[str, str],
    caller: Caller,
) -> RouterRequest:
    """``caller`` is who the authenticator found behind the request: it names the tenant
    (nothing in the body or headers does)."""
    public = settings.server.public_model
    check_size(settings.server, messages)
    auth_model_check(caller, body.model)
    force: Route | None = None
    if body.model != public:
        if body.model not in backend_models:
            raise UnknownModel(
                f"model {body.model!r} does not exist; use {public!r} (routed) or one of "
                f"{sorted(backend_models)} (forced)",
                param="model",
            )
        force = backend_models[body.model]
    if body.iccache.force_model:
        force = Route(body.iccache.force_model)
        # Forcing a model is asking for it by name: the key must allow that name.
        for name, route in backend_models.items():
            if route is force:
                auth_model_check(caller, name)
    if not any(m.role == "user" and _has_content(m) for m in messages):
        raise InvalidRequest("messages must contain a non-empty user message", param="messages")
    options = body.stream_options
    return RouterRequest(
        tenant=caller.tenant,
        messages=tuple(messages),
        params=GenerationParams(
            max_tokens=max_tokens or settings.server.max_tokens_default,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stops(),
            passthrough=body.passthrough(),
            stream_usage=bool(options and options.include_usage),
        ),
        skip_cache=body.iccache.skip_cache or headers.get("x-iccache-skip-cache") == "true",
        no_store=body.iccache.no_store or headers.get("x-iccache-no-store") == "true",
        force=force,
        limits=caller.limits,
        user=caller.user,
    )


def _has_content(message: ChatMessage) -> bool:
    content = (message.raw or {}).get("content")
    if isinstance(content, list):
        return any(
            part.get("type") != "text" or str(part.get("text", "")).strip() for part in content
        )
    return bool(message.content.strip())


def auth_model_check(caller: Caller, model: str) -> None:
    if caller.models is not None and model not in caller.models:
        raise PermissionDenied(
            f"this API key may not use model {model!r}; it may use {sorted(caller.models)}"
        )
