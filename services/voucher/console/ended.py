"""Console sessions signed out before their time (table `console_session_end`, migration 0030).

The session is the cookie (console/session.py), so sign-out alone could only ask the browser
to forget it: a copy taken before kept working until the session's own end. Sign-out records
the SHA-256 of the session's id here, with that end, and every page asks first. This is the
console's own state, not the API's, and the one place the console reads the database itself:
one primary-key lookup per page, no API route that a key could call."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select

from services.voucher.db import Database, insert_of, table_of
from services.voucher.tables import ConsoleSessionEnd

T = table_of(ConsoleSessionEnd)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def has_ended(database: Database, session_id: str) -> bool:
    async with database.unit_of_work(write=False) as session:
        found = await session.execute(select(T.c.session_hash).where(T.c.session_hash == _hash(session_id)))
        return found.first() is not None


async def end(database: Database, session_id: str, expires_at: datetime, now: datetime) -> None:
    """Record the session as ended (again: nothing changes)."""
    async with database.unit_of_work() as session:
        await session.execute(insert_of(session)(T).values(session_hash=_hash(session_id), expires_at=expires_at, ended_at=now)
                              .on_conflict_do_nothing(index_elements=[T.c.session_hash]))


#: How long a record is kept past its session's end: the purging worker's clock may run ahead
#: of a web process's.
MARGIN = timedelta(hours=1)


async def purge(database: Database, now: datetime) -> int:
    """Forget sessions that ended more than `MARGIN` before `now` (real time, as sessions end)."""
    async with database.unit_of_work() as session:
        result = await session.execute(delete(T).where(T.c.expires_at <= now - MARGIN))
        return cast(CursorResult[Any], result).rowcount
