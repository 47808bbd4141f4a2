"""The service's own errors and the ONE table that turns any error into an HTTP status.

Layers below raise leanrank's error tree (`leanrank.errors`) and know nothing of HTTP; this module is the
only place a status code is chosen, so a new error type needs one row here and nowhere else. A lookup
walks the error's class hierarchy and takes the most specific row, e.g. `UnknownCourseError` (404)
before its parent `InputError` (422).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from leanrank.cost.budget import BudgetExceededError
from leanrank.cost.ledger import LedgerError, RequestConflictError
from leanrank.cost.meter import BUDGET_SKIP
from leanrank.errors import (
    BackendError,
    ConfigError,
    DependencyError,
    DocumentError,
    EmptyQueryError,
    InputError,
    LeanrankError,
    QueryTooLongError,
    StorageFullError,
    StoreError,
    UnknownCourseError,
)


class ServeError(LeanrankError):
    """Root of the errors only the service raises (the HTTP layer's own conditions)."""


class UnauthorizedError(ServeError):
    """No API key, or one that matches no stored hash."""


class ForbiddenError(ServeError):
    """A valid key used outside its scopes (another course, or an admin-only endpoint)."""


class NotFoundError(ServeError):
    """A document or ingest job that does not exist (in the caller's course)."""


class UnknownModelError(InputError):
    """A rerank request naming a model the service has no backend for (`serve.unknown_model=refuse`)."""


class EmptyInputError(InputError):
    """Nothing to work on: no documents, an empty query (TEI answers these with 400)."""


class LimitExceededError(InputError):
    """A request above one of the configured limits; `limit` is the setting's name."""

    def __init__(self, limit: str, value: int, maximum: int, what: str) -> None:
        super().__init__(f"{what}: {value} is above the limit of {maximum} (serve.{limit})")
        self.limit = limit


class OverloadedError(ServeError):
    """Every worker slot and queue place is taken: fail fast rather than queue without bound."""


class RateLimitedError(ServeError):
    """A key used up a per-minute limit (`serve.rate_limits`); `retry_after_s` says when to retry."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReadyError(ServeError):
    """The service is starting or stopping; load balancers should send traffic elsewhere."""


@dataclass(frozen=True, slots=True)
class Status:
    """What a client sees for one error type: the HTTP status, a stable name and the limit it concerns."""

    code: int
    error_type: str
    limit: str | None = None


STATUS_TABLE: dict[type[Exception], Status] = {
    UnauthorizedError: Status(401, "unauthorized"),
    ForbiddenError: Status(403, "forbidden"),
    NotFoundError: Status(404, "not_found"),
    UnknownCourseError: Status(404, "unknown_course"),
    UnknownModelError: Status(404, "unknown_model"),
    LimitExceededError: Status(413, "limit_exceeded"),
    EmptyInputError: Status(400, "empty_input"),
    EmptyQueryError: Status(400, "empty_input"),
    QueryTooLongError: Status(422, "limit_exceeded", "max_query_chars"),
    DocumentError: Status(422, "invalid_document"),
    InputError: Status(422, "invalid_input"),
    OverloadedError: Status(429, "overloaded"),
    RateLimitedError: Status(429, "rate_limited", "rate_limits"),
    BudgetExceededError: Status(402, "budget_exceeded"),
    RequestConflictError: Status(409, "request_conflict"),
    BackendError: Status(424, "backend_failed"),
    LedgerError: Status(503, "ledger_unavailable"),
    StorageFullError: Status(507, "storage_full"),
    StoreError: Status(503, "store_unavailable"),
    NotReadyError: Status(503, "not_ready"),
    ConfigError: Status(500, "misconfigured"),
    DependencyError: Status(500, "misconfigured"),
    LeanrankError: Status(500, "internal"),
    Exception: Status(500, "internal"),
}


def status_of(exc: BaseException) -> Status:
    """The row of the most specific class of `exc` in `STATUS_TABLE` (anything unknown is a 500)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_TABLE:
            return STATUS_TABLE[cls]
    return STATUS_TABLE[Exception]


def error_response(exc: BaseException, request_id: str | None) -> JSONResponse:
    """The JSON error for `exc` (see `wire.ErrorBody`); server-side failures are logged, never echoed.

    The one redaction rule for whatever leaves the service: a client's own mistakes come back with the
    error's message; failures of backends and of the service carry upstream URLs, provider messages or
    internals: those go to the log under the request id, the client gets a fixed message naming the
    component that failed (`public_failure` applies the same rule to the backends a search tried first).
    No stack trace ever reaches a client.
    """
    status = status_of(exc)
    if _public(exc, status):
        message = str(exc)
    else:
        message = _FIXED.get(status.error_type, "internal error; quote the request id to the operator")
        unexpected = not isinstance(exc, LeanrankError)
        _log.error(
            "request %s failed: %s: %s",
            request_id,
            type(exc).__name__,
            exc,
            exc_info=exc if unexpected else None,
        )
    body = error_body(message, status.error_type, request_id, getattr(exc, "limit", None) or status.limit)
    headers = {"retry-after": str(getattr(exc, "retry_after_s", 1))} if status.code == 429 else None
    return JSONResponse(body, status.code, headers=headers)


def public_failure(entry: str) -> str:
    """A `failed` entry (`BACKEND: why`) as a client may see it: the backend's name and the fixed message;
    the why (an upstream URL, the provider's own words) is logged where the backend failed. Only the
    meter's own note that the caller's budget stopped a paid backend is shown as written."""
    backend, _, why = entry.partition(": ")
    if why.startswith(BUDGET_SKIP):
        return entry
    return f"{backend}: {_FIXED['backend_failed']}"


def _public(exc: BaseException, status: Status) -> bool:
    return isinstance(exc, ServeError) or (status.code < 500 and status.code != 424)


def error_body(
    message: str, error_type: str, request_id: str | None, limit: str | None = None
) -> dict[str, Any]:
    """The one error shape (`wire.ErrorBody`): the text under `error` and, for the Cohere SDK and Jina's
    clients, under `message` and `detail`."""
    return {
        "error": message,
        "message": message,
        "detail": message,
        "error_type": error_type,
        "limit": limit,
        "request_id": request_id,
    }


_log = logging.getLogger("leanrank.serve")

_FIXED = {
    "backend_failed": "the rerank backend failed; quote the request id to the operator",
    "ledger_unavailable": "the cost ledger is unavailable; quote the request id to the operator",
    "store_unavailable": "the index is unavailable; quote the request id to the operator",
    "storage_full": "the server's disk is full: writes are refused until space is freed, searches go on",
}
