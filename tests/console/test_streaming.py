"""Downloads reach the browser as the API writes them (console/api.py, `Api.streamed`): the
answer's headers and first chunk arrive while the API is still writing, nothing is held whole,
and a browser that goes away stops the API's work."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.voucher.console.api import Api, Refusal


def slow_app(written: list[int], wait: asyncio.Event, stopped: asyncio.Event):  # type: ignore[no-untyped-def]
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["path"] == "/v1/exports/x" and scope["query_string"] == b"format=csv"
        headers = dict(scope["headers"])
        assert headers[b"authorization"] == b"Bearer vk_test"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/csv"), (b"export-id", b"e-1")]})
        try:
            for n in range(5):
                written.append(n)
                await send({"type": "http.response.body", "body": f"row {n}\n".encode(), "more_body": True})
                if n == 0:
                    await wait.wait()  # the first row is out before the rest is written
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            stopped.set()
            raise
    return app


async def test_a_download_is_handed_over_as_it_is_written() -> None:
    written: list[int] = []
    wait, stopped = asyncio.Event(), asyncio.Event()
    api = Api(slow_app(written, wait, stopped), "vk_test", ("127.0.0.1", 1), "zh")
    async with api.streamed("/v1/exports/x", format="csv", empty=None) as response:
        assert response.status_code == 200 and response.headers["export-id"] == "e-1"
        chunks = response.aiter_raw()
        assert await anext(chunks) == b"row 0\n"
        assert written == [0]  # the API has written one row so far: nothing is held whole
        wait.set()
        rest = [chunk async for chunk in chunks]
    assert b"".join(rest) == b"row 1\nrow 2\nrow 3\nrow 4\n" and not stopped.is_set()


async def test_a_browser_that_goes_away_stops_the_api() -> None:
    written: list[int] = []
    wait, stopped = asyncio.Event(), asyncio.Event()
    api = Api(slow_app(written, wait, stopped), "vk_test", ("127.0.0.1", 1), "zh")
    async with api.streamed("/v1/exports/x", format="csv") as response:
        assert await anext(response.aiter_raw()) == b"row 0\n"
    await asyncio.wait_for(stopped.wait(), 5)
    assert written == [0]


async def test_a_refusal_is_raised_before_anything_is_handed_over() -> None:
    async def refusing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/problem+json")]})
        await send({"type": "http.response.body", "body": b'{"code": "insufficient_scope", "title": "t", '
                                                          b'"detail": "d"}'})

    api = Api(refusing, "vk_test", ("127.0.0.1", 1), "zh")
    with pytest.raises(Refusal) as refused:
        async with api.streamed("/v1/exports/x", format="csv"):
            pass
    assert refused.value.status == 403 and refused.value.code == "insufficient_scope"
