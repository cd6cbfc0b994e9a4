"""Typed exceptions for the voucher API client.

Every error response of the service is an RFC 9457 problem (`application/problem+json`) with a
stable machine `code`; `ApiError` carries that whole body. The class raised is chosen by `code`
first (for the few codes a caller typically branches on), then by HTTP status, so
`except ConflictError` catches every refusal answered 409 and `except ApiError` every error
answer. `OutcomeUnknownError` is not a refusal: a write may or may not have been applied, and
the same call with its `idempotency_key` finds out safely. Catch it before `ConflictError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from voucher_client._retry import retry_after_seconds

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "ConcurrentUpdateError",
    "ConflictError",
    "IdempotencyInProgressError",
    "IdempotencyKeyReusedError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "PreconditionRequiredError",
    "RateLimitedError",
    "RetrySleepError",
    "ServerError",
    "ServiceUnavailableError",
    "UnansweredWriteError",
    "UnreadableResponseError",
    "ValidationError",
    "VoucherClientError",
    "error_from_response",
]


class VoucherClientError(Exception):
    """Root of everything this client raises."""


class OutcomeUnknownError(VoucherClientError):
    """Whether a write was applied is not known: no answer came, the answer could not be read,
    or the service was still running the first request with this key when the retries ran out.
    Never take it for a refusal: repeat the call with the same `idempotency_key` (the service
    answers a repeat with the first request's answer, once it has one), never with a new one."""

    idempotency_key: str | None


class ApiConnectionError(OutcomeUnknownError):
    """No HTTP answer was received (connection refused or reset, timeout), or its body could
    not be decoded, after any retries.

    For a write, the request may or may not have been applied: retry it with the same
    `idempotency_key` to find out safely (the service answers a repeat with the first answer).
    """

    def __init__(self, message: str, *, method: str, url: str, idempotency_key: str | None) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.idempotency_key = idempotency_key


class ApiError(VoucherClientError):
    """The service answered with an error status. `problem` is the whole problem body."""

    def __init__(
        self,
        response: httpx.Response,
        problem: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        self.response = response
        self.status: int = response.status_code
        self.problem: dict[str, Any] = dict(problem or {})
        self.code: str | None = _str_or_none(self.problem.get("code"))
        self.title: str | None = _str_or_none(self.problem.get("title"))
        self.detail: str | None = _str_or_none(self.problem.get("detail"))
        self.type: str | None = _str_or_none(self.problem.get("type"))
        self.request_id: str | None = (
            _str_or_none(self.problem.get("request_id")) or response.headers.get("x-request-id")
        )
        self.idempotency_key = idempotency_key
        super().__init__(self._message())

    def _message(self) -> str:
        what = self.detail or self.title or self.response.reason_phrase or "error"
        code = f" {self.code}" if self.code else ""
        request = f" (request {self.request_id})" if self.request_id else ""
        return f"{self.status}{code}: {what}{request}"


class BadRequestError(ApiError):
    """400."""


class AuthenticationError(ApiError):
    """401: no key, an unknown, expired or revoked key."""


class PermissionDeniedError(ApiError):
    """403: the key may not do this (scope, tenant, role) or the business rule forbids it."""


class NotFoundError(ApiError):
    """404."""


class ConflictError(ApiError):
    """409: a business refusal (state, balance, limits) or a lost race."""


class ConcurrentUpdateError(ConflictError):
    """409 `concurrent_update`: another request changed or locked the same data; re-read and retry."""


class IdempotencyInProgressError(ApiError, OutcomeUnknownError):
    """409 `idempotency_request_in_progress`: the first request with this key is still running
    and may yet be applied. An `OutcomeUnknownError`, not a `ConflictError`: repeat the call
    with the same `idempotency_key` later to get its answer."""


class UnreadableResponseError(ApiError, OutcomeUnknownError):
    """A success status whose body is not the JSON the operation answers (a proxy in the way):
    the write was applied, but its answer is not known. Repeat the call with the same
    `idempotency_key` to get the stored answer."""


class PreconditionFailedError(ApiError):
    """412: the If-Match ETag is stale; read the resource again."""


class ValidationError(ApiError):
    """422: malformed input. `errors` lists each bad field (location, pointer, message, type)."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        found = self.problem.get("errors")
        return list(found) if isinstance(found, list) else []


class IdempotencyKeyReusedError(ValidationError):
    """422 `idempotency_key_reused`: the key was used before with a different request."""


class PreconditionRequiredError(ApiError):
    """428: the operation needs an If-Match or Idempotency-Key header."""


class RateLimitedError(ApiError):
    """429. `retry_after` is the number of seconds the service asked to wait, if it said."""

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.response)


class ServerError(ApiError):
    """5xx."""


class ServiceUnavailableError(ServerError):
    """503 (and 502/504 from a gateway): `database_unavailable` when the service lost its
    database for a moment. Retried by the client with the same Idempotency-Key; raised once the
    retries are spent. `retry_after` is the number of seconds the service asked to wait."""

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.response)


#: By problem code: the class, and the status the code comes with (another status with the
#: same code is raised by its status).
class UnansweredWriteError(ServiceUnavailableError, OutcomeUnknownError):
    """A write with an Idempotency-Key still answered by a gateway (502, 504, or a 503 that is
    not the service's own problem) once the retries ran out: the gateway may have given up
    after the service applied it. Repeat with the same `idempotency_key`. (The service's own
    503 says nothing was changed, and stays a plain `ServiceUnavailableError`.)"""


class RetrySleepError(OutcomeUnknownError, TypeError):
    """`RetryPolicy.sleep` gave the sync client an awaitable, after the request had been sent:
    it may have been applied. Repeat with the same `idempotency_key` from a client whose sleep
    is a plain function."""

    def __init__(self, message: str, *, idempotency_key: str | None) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key


_BY_CODE: dict[str, tuple[type[ApiError], int]] = {
    "concurrent_update": (ConcurrentUpdateError, 409),
    "idempotency_request_in_progress": (IdempotencyInProgressError, 409),
    "idempotency_key_reused": (IdempotencyKeyReusedError, 422),
}

_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailedError,
    422: ValidationError,
    428: PreconditionRequiredError,
    429: RateLimitedError,
    502: ServiceUnavailableError,
    503: ServiceUnavailableError,
    504: ServiceUnavailableError,
}


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _problem_of(response: httpx.Response) -> dict[str, Any] | None:
    """The problem body, when the response has a JSON object body (a proxy's HTML page has none)."""
    content_type = response.headers.get("content-type", "")
    if "json" not in content_type:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def error_from_response(
    response: httpx.Response, *, idempotency_key: str | None = None, keyed_write: bool = False,
) -> ApiError:
    """The typed exception for an error response: by problem `code`, else by status; a keyed
    write a gateway answered is an `UnansweredWriteError` (its outcome is not known)."""
    problem = _problem_of(response)
    code = problem.get("code") if problem else None
    gateway = response.status_code in (502, 504) or (response.status_code == 503 and not isinstance(code, str))
    if keyed_write and gateway:
        return UnansweredWriteError(response, problem, idempotency_key=idempotency_key)
    by_code = _BY_CODE.get(code) if isinstance(code, str) else None
    cls = by_code[0] if by_code is not None and by_code[1] == response.status_code else None
    if cls is None:
        cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = ServerError if response.status_code >= 500 else ApiError
    return cls(response, problem, idempotency_key=idempotency_key)

