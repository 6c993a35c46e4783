"""Every HTTP error in OpenAI's shape (:class:`ErrorBody`), mapped from iccache's error
kinds here and only here (gRPC's mapping is ``grpc_errors.py``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from iccache_sidecar.api.http_state import get_state
from iccache_sidecar.api.intake import validation_message
from iccache_sidecar.api.openai_models import ErrorBody, ErrorDetail
from iccache_sidecar.core.errors import ErrorKind, IccacheError

HTTP_STATUS = {
    ErrorKind.INVALID_ARGUMENT: 400,
    ErrorKind.TOO_LONG: 400,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.SLOW_CLIENT: 408,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.PERMISSION_DENIED: 403,
    ErrorKind.OVERLOADED: 429,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TIMEOUT: 504,
}
ERROR_CODE = {
    ErrorKind.TOO_LONG: "context_length_exceeded",
    ErrorKind.TOO_LARGE: "request_too_large",
    ErrorKind.SLOW_CLIENT: "request_timeout",
    ErrorKind.NOT_FOUND: "not_found",
}
# The error statuses every route documents in the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in sorted(set(HTTP_STATUS.values()))
}


def json_response(
    body: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        body.model_dump_json(), status_code=status, headers=headers, media_type="application/json"
    )


def error_response(
    status: int,
    message: str,
    kind: str,
    param: str | None = None,
    retry_after: float | None = None,
) -> Response:
    body = ErrorBody(error=ErrorDetail(message=message, type=kind, param=param, code=kind))
    headers = {"retry-after": f"{max(1, round(retry_after))}"} if retry_after is not None else {}
    if status == 401:
        headers["www-authenticate"] = "Bearer"
    return json_response(body, status, headers or None)


def _count(request: Request, kind: ErrorKind) -> None:
    get_state(request).service.metrics.errors.labels(kind.value).inc()


def error_for(exc: IccacheError) -> Response:
    """The OpenAI-shaped response of one of the router's errors."""
    code = ERROR_CODE.get(exc.kind, exc.kind.value)
    status = exc.http_status or HTTP_STATUS[exc.kind]
    return error_response(status, exc.message, code, exc.param, exc.retry_after)


async def on_iccache_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IccacheError)  # registered for this class only
    _count(request, exc.kind)
    return error_for(exc)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    """FastAPI's own rejections (a body that is not JSON, an unknown path or method)
    in OpenAI's error shape, like every other error."""
    assert isinstance(exc, HTTPException)  # registered for this class only
    _count(request, ErrorKind.INVALID_ARGUMENT)
    message = str(exc.detail)
    if exc.status_code == 400 and "parsing the body" in message:
        message = "the request body is not valid JSON"
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    response = error_response(exc.status_code, message, kind)
    response.headers.update(exc.headers or {})
    return response


async def on_invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # registered for this class only
    _count(request, ErrorKind.INVALID_ARGUMENT)
    message, param = validation_message(exc)
    return error_response(400, message, "invalid_request_error", param)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(IccacheError, on_iccache_error)
    app.add_exception_handler(HTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
