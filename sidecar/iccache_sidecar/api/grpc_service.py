"""gRPC face of the router: iccache.v1.Router, standard health checking, reflection."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import ValidationError
from starlette.datastructures import Headers

from iccache_sidecar.api.auth import Authenticator
from iccache_sidecar.api.decision_view import visible
from iccache_sidecar.api.grpc_errors import ErrorStatusInterceptor
from iccache_sidecar.api.intake import build_request, chat_messages, validation_message
from iccache_sidecar.api.openai_schema import ChatCompletionRequest
from iccache_sidecar.core.domain import Decision, Delta, Route, RouterRequest, Usage
from iccache_sidecar.core.errors import IccacheError, InvalidRequest
from iccache_sidecar.gen.iccache.v1 import router_pb2 as pb
from iccache_sidecar.gen.iccache.v1 import router_pb2_grpc as pb_grpc
from iccache_sidecar.requestpath.service import RouterService

log = logging.getLogger(__name__)

SERVICE_NAME = "iccache.v1.Router"

_ROUTES = {Route.SMALL: pb.MODEL_CHOICE_SMALL, Route.LARGE: pb.MODEL_CHOICE_LARGE}
_FORCE = {pb.MODEL_CHOICE_SMALL: "small", pb.MODEL_CHOICE_LARGE: "large"}


def decision_pb(decision: Decision, details: str) -> Any:
    """The decision as the caller may see it (``server.decision_details``)."""
    d = visible(decision, details)
    return pb.Decision(
        request_id=d.request_id,
        model=_ROUTES[d.route],
        backend_model=d.backend_model,
        example_ids=d.example_ids,
        max_similarity=d.max_similarity,
        policy=d.policy,
        reason=d.reason,
        exact_hit=d.exact_hit,
        degraded=bool(d.degraded),
        verified=d.verified,
        opening=d.opening,
    )


def usage_pb(u: Usage) -> Any:
    return pb.Usage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens)


class RouterServicer(pb_grpc.RouterServicer):
    def __init__(self, service: RouterService, auth: Authenticator) -> None:
        self.service = service
        self.auth = auth
        self._models = {b.model: route for route, b in service.backends.items()}
        self._details = service.settings.server.decision_details

    def _request(self, msg: Any, context: grpc.aio.ServicerContext) -> RouterRequest:
        settings = self.service.settings
        if msg.force_model not in (pb.MODEL_CHOICE_UNSPECIFIED, *_FORCE):
            raise InvalidRequest(
                f"force_model {msg.force_model} is not a ModelChoice: use 0 (the router"
                " decides), 1 (small) or 2 (large)",
                param="force_model",
            )
        if bool(msg.messages) == bool(msg.prompt):
            raise InvalidRequest("set exactly one of messages and prompt", param="messages")
        messages = (
            [{"role": m.role, "content": m.content} for m in msg.messages]
            if msg.messages
            else [{"role": "user", "content": msg.prompt}]
        )
        body: dict[str, Any] = {
            "model": settings.server.public_model,
            "messages": messages,
            "stop": list(msg.stop) or None,
            "iccache": {
                "skip_cache": msg.skip_cache,
                "no_store": msg.no_store,
                "force_model": _FORCE.get(msg.force_model),
            },
        }
        if msg.max_tokens:
            body["max_tokens"] = msg.max_tokens
        if msg.HasField("temperature"):
            body["temperature"] = msg.temperature
        if msg.HasField("top_p"):
            body["top_p"] = msg.top_p
        try:
            parsed = ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            message, param = validation_message(exc)
            raise InvalidRequest(message, param=param) from exc
        headers = metadata(context)
        return build_request(
            settings,
            self._models,
            parsed,
            chat_messages(parsed.messages),
            parsed.max_tokens,
            headers,
            self.auth.caller(headers, claimed_tenant=msg.tenant),
        )

    async def Generate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        done = await self.service.complete(self._request(request, context))
        return pb.GenerateResponse(
            text=done.text,
            finish_reason=done.finish_reason,
            usage=usage_pb(done.usage),
            decision=decision_pb(done.decision, self._details),
        )

    async def GenerateStream(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        async for event in self.service.stream(self._request(request, context)):
            if isinstance(event, Decision):
                yield pb.GenerateChunk(decision=decision_pb(event, self._details))
            elif isinstance(event, Delta) and (event.text or event.finish_reason or event.usage):
                yield pb.GenerateChunk(
                    delta=event.text,
                    finish_reason=event.finish_reason or "",
                    usage=usage_pb(event.usage) if event.usage else None,
                )

    async def Feedback(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not request.request_id:
            raise InvalidRequest("request_id is required", param="request_id")
        if not 0.0 <= request.score <= 1.0:
            raise InvalidRequest("score must be between 0 and 1", param="score")
        caller = self.auth.caller(metadata(context), claimed_tenant=request.tenant)
        await self.service.feedback(request.request_id, request.score, tenant=caller.tenant)
        return pb.FeedbackResponse(accepted=True)

    async def Stats(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.auth.caller(metadata(context))  # the router's load is not for anyone to read
        s = self.service
        small, large = s.metrics.routed
        exact = s.metrics.exact_served
        cached = 0
        if s.store is not None:
            try:
                cached = await s.store.count()
            except IccacheError:
                cached = 0
        backends = {
            route.value: pb.BackendStats(
                in_flight=b.load.in_flight,
                latency_ewma_seconds=b.load.latency_ewma,
                healthy=b.load.healthy,
                requests=b.load.requests,
            )
            for route, b in s.backends.items()
        }
        return pb.StatsResponse(
            requests=small + large + exact,
            small_requests=small,
            large_requests=large,
            exact_hits=exact,
            offload_ratio=small / (small + large) if small + large else 0.0,
            cached_examples=cached,
            policy=s.policy.name,
            backends=backends,
        )


def metadata(context: grpc.aio.ServicerContext) -> Headers:
    """The call's metadata by lower-case key (text values only), every value of a key
    kept, as HTTP headers are (so that a repeated one can be refused alike)."""
    pairs = context.invocation_metadata() or ()
    raw = [(k.lower().encode(), v.encode()) for k, v in pairs if isinstance(v, str)]
    return Headers(raw=raw)


def create_grpc_server(
    service: RouterService, address: str, auth: Authenticator, *, reuse_port: bool = False
) -> tuple[grpc.aio.Server, int]:
    """A server bound to ``address`` (port 0 picks one); returns it with its port. With
    ``reuse_port`` other processes may serve the same port (grpc's Linux default is on;
    off here, so that a second router cannot silently share a port by mistake)."""
    limit = service.settings.server.max_body_bytes
    server = grpc.aio.server(
        interceptors=[ErrorStatusInterceptor(service.metrics)],
        options=[
            # Larger messages get RESOURCE_EXHAUSTED from grpc itself, naming both sizes.
            ("grpc.max_receive_message_length", limit),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    pb_grpc.add_RouterServicer_to_server(RouterServicer(service, auth), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        pb.DESCRIPTOR.services_by_name["Router"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(address)
    server.health = health_servicer
    return server, port


async def mark_serving(server: grpc.aio.Server, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", SERVICE_NAME):
        await server.health.set(name, status)
