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
    OVERLOADED = "overloaded"  # bounded queue full
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


class Overloaded(IccacheError):
    kind = ErrorKind.OVERLOADED


class BackendUnavailable(IccacheError):
    kind = ErrorKind.UNAVAILABLE


class BackendTimeout(IccacheError):
    kind = ErrorKind.TIMEOUT


class DependencyDown(IccacheError):
    """Redis or the embedder failed; the caller degrades instead of failing."""

    kind = ErrorKind.UNAVAILABLE
