"""Interactive docs with no internet: Swagger UI and ReDoc assets are served by the app itself
(from the fastapi-offline package), and no page references a CDN or web font."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"
#: The docs pages share the console's origin: they are never framed (a "Try it out" with a key
#: typed in could be clickjacked), never cached, and never sniffed as anything else.
HEADERS = {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _guarded(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(HEADERS)
    return page


# Both pages are module-level handlers that read the app from the request: a handler closing over
# its app is kept by FastAPI's callable caches (4,096 entries, process-wide), and the app with it.
async def swagger_ui(request: Request) -> HTMLResponse:
    # A key typed into "Authorize" stays in the page's memory only: persisted, it had been
    # kept in localStorage in clear, readable by any script of this origin (an independent
    # review, December 2026), where the console keeps keys out of reach of page script.
    app = request.app
    return _guarded(get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} — API",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        swagger_ui_parameters={"persistAuthorization": False},
    ))


async def redoc(request: Request) -> HTMLResponse:
    app = request.app
    return _guarded(get_redoc_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} — reference",
        redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    ))


def install(app: FastAPI) -> None:
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
