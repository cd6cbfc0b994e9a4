"""The hand-written half of the client: one HTTP call with auth, Idempotency-Key, retries and
typed errors. `_generated.py` adds one method per operation on top of these two classes."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal
from urllib.parse import quote

import httpx

from voucher_client import _retry
from voucher_client._retry import (
    NO_RETRIES,
    RetryPolicy,
    delay_for_failure,
    delay_for_response,
)
from voucher_client.errors import (
    ApiConnectionError,
    RetrySleepError,
    UnreadableResponseError,
    error_from_response,
)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
USER_AGENT = "voucher-client/1"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Operation:
    """What the generator knows about one operation of the OpenAPI document."""

    operation_id: str
    method: str
    path: str
    #: the operation documents an Idempotency-Key header: the client always sends one
    idempotent: bool
    #: what a success returns: parsed JSON, the raw bytes (CSV, NDJSON), or nothing
    returns: Literal["json", "bytes", "none"]

    @property
    def retry_safe(self) -> bool:
        """Sending it twice changes nothing more than sending it once."""
        return self.method in SAFE_METHODS or self.idempotent


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


#: Each client's last response, per task or thread. One variable for every client, holding a
#: map that is copied on each write (so a task never writes into its parent's), weakly keyed:
#: a variable per client had kept every client's last response, body and all, alive in each
#: thread's context for as long as the thread lived (an independent review).
_LAST: ContextVar[weakref.WeakKeyDictionary[_Base, httpx.Response] | None] = ContextVar(
    "voucher_client_last_response", default=None)


@dataclass
class _Prepared:
    method: str
    url: str
    params: tuple[tuple[str, str], ...]
    headers: dict[str, str]
    content: bytes | None
    idempotency_key: str | None


class _Base:
    def __init__(
        self,
        base_url: str | None,
        *,
        api_key: str | None,
        accept_language: str | None,
        retries: RetryPolicy | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        self.base_url = base_url.rstrip("/") if base_url else ""
        self.api_key = api_key
        self.accept_language = accept_language
        self.retries = retries or NO_RETRIES
        self.extra_headers = dict(headers or {})

    @property
    def last_response(self) -> httpx.Response | None:
        """The raw response of this client's last call in the current task or thread (its
        headers: ETag for If-Match, Idempotent-Replayed, X-Request-Id); None after a call that
        got no answer."""
        last = _LAST.get()
        return last.get(self) if last is not None else None

    def _remember(self, response: httpx.Response | None) -> None:
        last = weakref.WeakKeyDictionary(_LAST.get() or {})
        if response is None:
            last.pop(self, None)
        else:
            last[self] = response
        _LAST.set(last)

    def _prepare(
        self,
        operation: Operation,
        path: Mapping[str, object] | None,
        query: Mapping[str, object] | None,
        headers: Mapping[str, object] | None,
        body: object,
        send_body: bool,
        idempotency_key: str | None,
    ) -> _Prepared:
        url = operation.path
        for name, value in (path or {}).items():
            url = url.replace("{" + name + "}", quote(_query_value(value), safe=""))
        params: list[tuple[str, str]] = []
        for name, value in (query or {}).items():
            if value is None:
                continue
            if isinstance(value, list | tuple):
                params.extend((name, _query_value(v)) for v in value)
            else:
                params.append((name, _query_value(value)))
        sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **self.extra_headers}
        if self.api_key:
            sent["Authorization"] = f"Bearer {self.api_key}"
        if self.accept_language:
            sent["Accept-Language"] = self.accept_language
        for name, value in (headers or {}).items():
            if value is not None:
                sent[name] = _query_value(value)
        if operation.idempotent:
            # One key per logical call, the same on every retry of it: that is what makes the
            # retry safe (the service answers a repeat with the first answer).
            # An empty key given is sent as given (and refused): only None means "choose one".
            idempotency_key = str(uuid.uuid4()) if idempotency_key is None else idempotency_key
            sent["Idempotency-Key"] = idempotency_key
        content = None
        if send_body:
            # Serialised once, so every attempt carries byte-identical content (the service's
            # idempotency fingerprint covers the body).
            content = json.dumps(body, default=_json_default, ensure_ascii=False).encode("utf-8")
            sent["Content-Type"] = "application/json"
        return _Prepared(
            method=operation.method,
            url=self.base_url + url,
            params=tuple(params),
            headers=sent,
            content=content,
            idempotency_key=idempotency_key if operation.idempotent else None,
        )

    def _result(self, operation: Operation, prepared: _Prepared, response: httpx.Response) -> Any:
        self._remember(response)
        if response.is_success:
            if operation.returns == "none" or response.status_code == 204:
                return None
            if operation.returns == "bytes":
                return response.content
            try:
                return response.json()
            except ValueError:  # not JSON, or not UTF-8
                raise UnreadableResponseError(response, idempotency_key=prepared.idempotency_key) from None
        raise error_from_response(response, idempotency_key=prepared.idempotency_key,
                                  keyed_write=prepared.idempotency_key is not None)

    def _connection_error(self, prepared: _Prepared, error: Exception) -> ApiConnectionError:
        self._remember(None)
        return ApiConnectionError(
            f"{prepared.method} {prepared.url}: no answer ({type(error).__name__}: {error})",
            method=prepared.method,
            url=prepared.url,
            idempotency_key=prepared.idempotency_key,
        )


class SyncTransport(_Base):
    """Synchronous calls over an `httpx.Client` (yours via `http_client=`, or one it owns)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        accept_language: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        retries: RetryPolicy | None = RetryPolicy(),  # noqa: B008 - frozen dataclass
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key=api_key, accept_language=accept_language, retries=retries, headers=headers
        )
        if retries is not None and retries.sleep is not None and inspect.iscoroutinefunction(retries.sleep):
            # Found at the first retry, the request had been sent already and its key was lost.
            raise TypeError("the sync client needs a plain function as RetryPolicy.sleep, not a coroutine function")
        self._owns_http = http_client is None
        self.http = http_client or httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> SyncTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sleep(self, seconds: float, prepared: _Prepared) -> None:
        if self.retries.sleep is not None:
            result = self.retries.sleep(seconds)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()  # never awaited: no "never awaited" warning
                # Sent already: the key goes with the error (a lambda around asyncio.sleep passes
                # the check made when the client is built).
                raise RetrySleepError("the sync client needs a plain function as RetryPolicy.sleep; the request "
                                      "was sent and may have been applied", idempotency_key=prepared.idempotency_key)
        elif seconds > 0:
            time.sleep(seconds)

    def _call(
        self,
        operation: Operation,
        *,
        path: Mapping[str, object] | None = None,
        query: Mapping[str, object] | None = None,
        headers: Mapping[str, object] | None = None,
        body: object = None,
        send_body: bool = False,
        idempotency_key: str | None = None,
    ) -> Any:
        prepared = self._prepare(operation, path, query, headers, body, send_body, idempotency_key)
        attempt, started = 0, _retry.monotonic()
        while True:
            attempt += 1
            try:
                response = self.http.request(
                    prepared.method, prepared.url, params=prepared.params,
                    headers=prepared.headers, content=prepared.content,
                )
            except httpx.RequestError as error:  # transport failures, and a body that cannot be decoded
                delay = delay_for_failure(self.retries, error, attempt, retry_safe=operation.retry_safe, started=started)
                if delay is None:
                    raise self._connection_error(prepared, error) from error
                self._sleep(delay, prepared)
                continue
            delay = delay_for_response(self.retries, response, attempt, retry_safe=operation.retry_safe, started=started)
            if delay is None:
                return self._result(operation, prepared, response)
            response.close()
            self._sleep(delay, prepared)


class AsyncTransport(_Base):
    """Asynchronous calls over an `httpx.AsyncClient` (e.g. over `httpx.ASGITransport(app)`)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        accept_language: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        retries: RetryPolicy | None = RetryPolicy(),  # noqa: B008 - frozen dataclass
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key=api_key, accept_language=accept_language, retries=retries, headers=headers
        )
        self._owns_http = http_client is None
        self.http = http_client or httpx.AsyncClient(timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> AsyncTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _sleep(self, seconds: float) -> None:
        if self.retries.sleep is not None:
            result = self.retries.sleep(seconds)
            if inspect.isawaitable(result):
                await result
        elif seconds > 0:
            await asyncio.sleep(seconds)

    async def _call(
        self,
        operation: Operation,
        *,
        path: Mapping[str, object] | None = None,
        query: Mapping[str, object] | None = None,
        headers: Mapping[str, object] | None = None,
        body: object = None,
        send_body: bool = False,
        idempotency_key: str | None = None,
    ) -> Any:
        prepared = self._prepare(operation, path, query, headers, body, send_body, idempotency_key)
        attempt, started = 0, _retry.monotonic()
        while True:
            attempt += 1
            try:
                response = await self.http.request(
                    prepared.method, prepared.url, params=prepared.params,
                    headers=prepared.headers, content=prepared.content,
                )
            except httpx.RequestError as error:  # transport failures, and a body that cannot be decoded
                delay = delay_for_failure(self.retries, error, attempt, retry_safe=operation.retry_safe, started=started)
                if delay is None:
                    raise self._connection_error(prepared, error) from error
                await self._sleep(delay)
                continue
            delay = delay_for_response(self.retries, response, attempt, retry_safe=operation.retry_safe, started=started)
            if delay is None:
                return self._result(operation, prepared, response)
            await response.aclose()
            await self._sleep(delay)
