"""Console fixtures: a browser-like client (cookies kept, redirects not followed) over the app,
and helpers that sign in and read a page's CSRF token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.world import World, build_world

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = TOKEN.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class Browser:
    """Cookies like a browser, on https://test (so Secure cookies are sent back)."""

    def __init__(self, app: Any) -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.7", 51000))
        self.http = httpx.AsyncClient(transport=transport, base_url="https://test", follow_redirects=False)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.post(path, **kwargs)

    async def sign_in(self, key: str, *, language: str | None = None) -> httpx.Response:
        if language:
            await self.get(f"/console/language/{language}")
        form = await self.get("/console/sign-in")
        assert form.status_code == 200, form.text
        return await self.post("/console/sign-in", data={"api_key": key, "csrf_token": csrf_of(form.text),
                                                         "next": "/console/"})

    async def csrf(self, path: str) -> str:
        page = await self.get(path)
        assert page.status_code == 200, page.text
        return csrf_of(page.text)


@pytest.fixture
async def browser(app: Any) -> AsyncIterator[Browser]:
    b = Browser(app)
    yield b
    await b.http.aclose()


@pytest.fixture
async def world(app: Any, client: httpx.AsyncClient) -> World:
    return await build_world(app, client)
