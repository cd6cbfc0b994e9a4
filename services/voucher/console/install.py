"""Mounting the console on the service's app (main.py calls `install`)."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from services.voucher.settings import Settings

log = logging.getLogger("voucher.console")


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the console at /console, unless this is production without VOUCHER_CONSOLE_SECRET:
    a secret made up at start would sign everyone out at each restart and differ between
    processes, which production must not silently do."""
    if settings.environment == "production" and settings.console_secret is None:
        log.warning("the console is not served: set VOUCHER_CONSOLE_SECRET to serve it")
        return
    from services.voucher.console.web import create_console

    app.mount("/console", create_console(app, settings), name="console")
