"""The one place where iccache's errors become gRPC statuses: a server interceptor that
wraps every unary and server-streaming method.

It also decodes the request itself: bytes that are no valid message are the client's
mistake (INVALID_ARGUMENT naming the message type), where grpc's own decoding would
answer UNKNOWN with a Python exception's name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from iccache_sidecar.core.errors import ErrorKind, IccacheError, InvalidRequest
from iccache_sidecar.metrics import Metrics

GRPC_STATUS = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.TOO_LONG: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,  # not worth a retry
    ErrorKind.SLOW_CLIENT: grpc.StatusCode.DEADLINE_EXCEEDED,  # HTTP only; grpc has deadlines
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}


class ErrorStatusInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def _abort(self, context: grpc.aio.ServicerContext, exc: IccacheError) -> None:
        self._metrics.errors.labels(exc.kind.value).inc()
        trailers = () if exc.retry_after is None else (("retry-after", f"{exc.retry_after:.0f}"),)
        await context.abort(GRPC_STATUS[exc.kind], exc.message, trailing_metadata=trailers)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        decode = _decoder(handler.request_deserializer, details.method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, decode),
                request_deserializer=None,  # bytes: decoded in the wrapper
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, decode),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        return handler  # streaming requests (reflection) raise no iccache errors

    def _unary(
        self,
        method: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
        decode: Callable[[bytes], Any],
    ) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def call(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await method(decode(raw), context)
            except IccacheError as exc:
                await self._abort(context, exc)

        return call

    def _streaming(
        self,
        method: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]],
        decode: Callable[[bytes], Any],
    ) -> Callable[[bytes, grpc.aio.ServicerContext], AsyncIterator[Any]]:
        async def call(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in method(decode(raw), context):
                    yield item
            except IccacheError as exc:
                await self._abort(context, exc)

        return call


def _decoder(deserialize: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any]:
    def decode(raw: bytes) -> Any:
        if deserialize is None:
            return raw
        try:
            return deserialize(raw)
        except DecodeError as exc:
            raise InvalidRequest(
                f"the request to {method} could not be decoded: {exc}", param="request"
            ) from exc

    return decode
