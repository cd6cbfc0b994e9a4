"""A typed Python client for the voucher service API (httpx; sync and async).

    from voucher_client import VoucherClient, NotFoundError

    with VoucherClient("https://vouchers.example.gov.cn", api_key="vk_…") as api:
        voucher = api.get_voucher(voucher_id)

Every operation of the OpenAPI document is a method named by its operationId, generated into
`_generated.py` by `clients/python/generate.py` in the service's repository (`make client`).
Writes that document an Idempotency-Key get one automatically; what is safe to retry is
retried; every error answer raises an `ApiError` subclass carrying the problem body. See
docs/client.md.

The `voucher-client` distribution depends on httpx only: this package imports nothing but
itself, httpx and the standard library (never the server's `services` package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voucher_client._retry import NO_RETRIES, RetryPolicy
from voucher_client._transport import Operation
from voucher_client.errors import (
    ApiConnectionError,
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConcurrentUpdateError,
    ConflictError,
    IdempotencyInProgressError,
    IdempotencyKeyReusedError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    PreconditionFailedError,
    PreconditionRequiredError,
    RateLimitedError,
    RetrySleepError,
    ServerError,
    ServiceUnavailableError,
    UnansweredWriteError,
    UnreadableResponseError,
    ValidationError,
    VoucherClientError,
)

if TYPE_CHECKING:
    from voucher_client._clients import AsyncVoucherClient, VoucherClient
    from voucher_client._generated import OPERATIONS

_GENERATED = {"AsyncVoucherClient": "_clients", "VoucherClient": "_clients", "OPERATIONS": "_generated"}


def __getattr__(name: str) -> Any:
    # Imported on first use, so that a stale or broken _generated.py never stops
    # anything that imports this package (an older generator did) from fixing it.
    if name in _GENERATED:
        from importlib import import_module

        value = getattr(import_module(f"voucher_client.{_GENERATED[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "NO_RETRIES",
    "OPERATIONS",
    "ApiConnectionError",
    "ApiError",
    "AsyncVoucherClient",
    "AuthenticationError",
    "BadRequestError",
    "ConcurrentUpdateError",
    "ConflictError",
    "IdempotencyInProgressError",
    "IdempotencyKeyReusedError",
    "NotFoundError",
    "Operation",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "PreconditionRequiredError",
    "RateLimitedError",
    "RetryPolicy",
    "RetrySleepError",
    "ServerError",
    "ServiceUnavailableError",
    "UnansweredWriteError",
    "UnreadableResponseError",
    "ValidationError",
    "VoucherClient",
    "VoucherClientError",
]
