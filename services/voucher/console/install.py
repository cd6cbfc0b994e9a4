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
    """The console app, built at the first request that reaches /console, not with the API.

    Its pages are some seventy routes whose handlers close over the app they belong to: building
    them costs more than the rest of create_app together, and a process that never serves a page
    (a worker, an API-only deployment, most of the test suite's apps) need not pay for it. Building
    awaits nothing, so two first requests cannot build two consoles."""

    def __init__(self, build: Callable[[], FastAPI]) -> None:
        self._build = build
        self._app: FastAPI | None = None

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            self._app = self._build()
        return self._app

    @property
    def state(self) -> Any:
        return self.app.state

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

    app.mount("/console", DeferredConsole(build), name="console")
