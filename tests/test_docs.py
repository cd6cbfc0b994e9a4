"""Interactive docs work on an air-gapped network (DESIGN §5): /docs and /redoc load every asset
from the service itself and reference no CDN, web font or other outside address."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

DOC_PAGES = ["/docs", "/redoc"]


class _References(HTMLParser):
    """Every URL an HTML page makes the browser fetch: src/href attributes and ReDoc's spec-url."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value is not None:
                self.urls.append(value)


def _references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    parser.close()
    # Swagger UI is told where the document is in an inline script: `url: '/openapi.json'`.
    parser.urls += re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", html)
    return parser.urls


def _is_served_by_the_app(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and url.startswith("/")


@pytest.mark.parametrize("page", DOC_PAGES)
async def test_doc_page_loads_only_assets_the_app_serves(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")

    urls = _references(response.text)
    assert any(u.endswith(".js") for u in urls), urls
    outside = [u for u in urls if not _is_served_by_the_app(u)]
    assert outside == [], f"{page} references assets from outside the service"
    for url in urls:
        asset = await client.get(url)
        assert asset.status_code == 200, f"{page} references {url}, which answers {asset.status_code}"
        assert asset.content, url


@pytest.mark.parametrize("page", DOC_PAGES)
async def test_doc_page_has_no_absolute_web_address(client: httpx.AsyncClient, page: str) -> None:
    text = (await client.get(page)).text
    assert re.findall(r"https?://\S*", text) == []
    assert "//fonts." not in text and "cdn" not in text.lower()


async def test_doc_stylesheets_load_nothing_from_outside(client: httpx.AsyncClient) -> None:
    """CSS `url(...)` is fetched by the browser too: only data: URIs or the app's own paths."""
    css_urls = [u for u in _references((await client.get("/docs")).text) if u.endswith(".css")]
    assert css_urls
    for css_url in css_urls:
        css = (await client.get(css_url)).text
        targets = [t.strip("'\" ") for t in re.findall(r"url\(([^)]*)\)", css)]
        outside = [t[:80] for t in targets if not t.startswith("data:") and not _is_served_by_the_app(t)]
        assert outside == [], f"{css_url} fetches {outside}"
        assert "@import" not in css, css_url


async def test_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1.")


@pytest.mark.parametrize("path", DOC_PAGES)
async def test_doc_pages_are_never_framed_cached_or_keep_a_key(client: httpx.AsyncClient, path: str) -> None:
    """They share the console's origin: no framing (clickjacking a "Try it out"), no caching,
    and Swagger keeps a typed key in memory only, not in localStorage for any script to read."""
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert '"persistAuthorization": true' not in page.text
