"""Mounting the console on the service's app (main.py calls `install`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from services.voucher.settings import Settings

log = logging.getLogger("voucher.console")


class DeferredConsole:
    """The console app, built when first needed: at once where the service is served, at the
    first request that reaches /console under test.

    Its pages are some seventy routes whose handlers close over the app they belong to: building
    them costs more than the rest of create_app together, which a test suite building an app per
    test paid for thousands of apps that never served a page. A served process builds it with
    the app, so a console that cannot be built stops the start (not every page), and what it
    builds is among what asgi.py freezes out of the collector's walks. Building awaits nothing,
    so two first requests cannot build two consoles."""

    def __init__(self, build: Callable[[], FastAPI], *, now: bool) -> None:
        self._build = build
        self._app: FastAPI | None = None
        if now:
            self._app = build()

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            self._app = self._build()
        return self._app

    @property
    def state(self) -> Any:
        return self.app.state

    @property
    def routes(self) -> list[Any]:
        """The console's routes, as a mount reads them (url_path_for("console:static", ...))."""
        return self.app.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the console at /console, unless this is production without VOUCHER_CONSOLE_SECRET:
    a secret made up at start would sign everyone out at each restart and differ between
    processes, which production must not silently do."""
    if settings.environment == "production" and settings.console_secret is None:
        log.warning("the console is not served: set VOUCHER_CONSOLE_SECRET to serve it")
        return

    def build() -> FastAPI:
        from services.voucher.console.web import create_console

        return create_console(app, settings)

    app.mount("/console", DeferredConsole(build, now=settings.environment != "test"), name="console")
