"""Request-scoped dependencies: the session, the clock, the settings.

They are `async def` although none awaits: FastAPI runs a plain `def` dependency in a worker
thread, and a dozen thread hops per request cost more than the work they do."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.db import Database
from services.voucher.http.unit_of_work import RequestUnit
from services.voucher.settings import Settings


async def get_unit(request: Request) -> RequestUnit:
    unit: RequestUnit = request.scope["state"]["unit"]
    return unit


async def get_session(request: Request) -> AsyncSession:
    """The request's session; the unit of work commits or rolls it back."""
    unit: RequestUnit = request.scope["state"]["unit"]
    return unit.session


async def get_database(request: Request) -> Database:
    db: Database = request.app.state.database
    return db


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_now(request: Request) -> datetime:
    """The request's 'now', from the app's clock (tests move it by hand)."""
    return request.app.state.clock()  # type: ignore[no-any-return]


#: The request's session, clock and database, as route parameters.
Session = Annotated[AsyncSession, Depends(get_session)]
Now = Annotated[datetime, Depends(get_now)]
Db = Annotated[Database, Depends(get_database)]
