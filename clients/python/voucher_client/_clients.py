"""The two public client classes: the generated operations over the hand-written transport."""

from __future__ import annotations

from typing import Self

from voucher_client._generated import AsyncOperations, SyncOperations


class VoucherClient(SyncOperations):
    """Blocking client. `VoucherClient(base_url, api_key=…, accept_language="zh-CN",
    timeout=…, retries=RetryPolicy(…) or None, http_client=… or transport=…)`.

    Use it as a context manager (or call `close()`) unless you passed your own `http_client`,
    which is then yours to close.
    """

    def __enter__(self) -> Self:
        return self


class AsyncVoucherClient(AsyncOperations):
    """Asyncio client; the same arguments as `VoucherClient`, with an `httpx.AsyncClient` or
    `httpx.AsyncBaseTransport` (e.g. `httpx.ASGITransport(app=app)` in tests)."""

    async def __aenter__(self) -> Self:
        return self
