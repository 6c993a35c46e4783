"""The one exception root of the data plane.

Each error carries its meaning as a ``kind``; the HTTP layer and the gRPC layer each map
kinds to status codes in exactly one place.
"""

from __future__ import annotations

from enum import Enum


class ErrorKind(Enum):
    INVALID_ARGUMENT = "invalid_argument"  # malformed request, bad parameter
    NOT_FOUND = "not_found"  # unknown model, unknown request id
    TOO_LONG = "too_long"  # prompt over the context limit
    TOO_LARGE = "too_large"  # request over the server's size limits
    SLOW_CLIENT = "slow_client"  # a request head or body that took too long to arrive
    UNAUTHENTICATED = "unauthenticated"  # no credential, or a wrong one
    PERMISSION_DENIED = "permission_denied"  # a revoked key, or one not allowed this
    OVERLOADED = "overloaded"  # bounded queue full, or a tenant over its rate
    UNAVAILABLE = "unavailable"  # no backend could answer
    TIMEOUT = "timeout"  # backend took too long
    INTERNAL = "internal"


class IccacheError(Exception):
    """Base of every error iccache raises on purpose."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    @property
    def http_status(self) -> int | None:
        """A status of its own, where the kind's status does not say enough."""
        return None

    retry_after: float | None = None
    """Seconds after which the same request may succeed (sent as ``Retry-After``)."""


class InvalidRequest(IccacheError):
    kind = ErrorKind.INVALID_ARGUMENT


class BackendRejected(IccacheError):
    """The model refused the request (an unsupported parameter, say): the client gets
    the model's status and message, not an error of the router."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.kind = ErrorKind.NOT_FOUND if status == 404 else ErrorKind.INVALID_ARGUMENT

    @property
    def http_status(self) -> int | None:
        return self.status


class UnknownModel(IccacheError):
    kind = ErrorKind.NOT_FOUND


class UnknownRequest(IccacheError):
    kind = ErrorKind.NOT_FOUND


class ContextTooLong(IccacheError):
    kind = ErrorKind.TOO_LONG


class RequestTooLarge(IccacheError):
    """A request over one of the server's limits (body, messages, prompt bytes)."""

    kind = ErrorKind.TOO_LARGE


class Overloaded(IccacheError):
    kind = ErrorKind.OVERLOADED
    retry_after = 1.0


class RateLimited(IccacheError):
    """A tenant spent its requests or tokens of this minute."""

    kind = ErrorKind.OVERLOADED

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unauthenticated(IccacheError):
    kind = ErrorKind.UNAUTHENTICATED


class PermissionDenied(IccacheError):
    kind = ErrorKind.PERMISSION_DENIED


class BackendUnavailable(IccacheError):
    kind = ErrorKind.UNAVAILABLE


class BackendTimeout(IccacheError):
    kind = ErrorKind.TIMEOUT


class DependencyDown(IccacheError):
    """Redis or the embedder failed; the caller degrades instead of failing."""

    kind = ErrorKind.UNAVAILABLE
