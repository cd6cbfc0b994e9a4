"""The sandbox clock (docs/sandbox.md): read it, move it forward, and share it between
processes through the one-row `sandbox_clock` table.

Every time-dependent rule already takes `now` from the app's clock; in sandbox mode that clock
is a `SandboxClock` (clock.py), whose offset this module keeps in step with the database: each
request and each worker round calls `refresh` first, so every process sees a move at its next
request, and a move is never undone by a process that had not heard of it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher import errors
from services.voucher.audit import service as audit
from services.voucher.clock import Clock, SandboxClock, system_clock
from services.voucher.db import Database
from services.voucher.i18n import msg
from services.voucher.tables import SandboxClock as ClockRow

#: The audit trail's resource id for the clock (there is one).
CLOCK_ID = uuid.UUID("00000000-0000-7000-8000-000000000001")
#: The most one move may advance the clock: a slip of the finger (P1000Y) is refused, not obeyed.
MAX_MOVE = timedelta(days=3660)
#: Where the clock stops: moves past it are refused. Every rule adds its own span to `now` (a
#: voucher's validity, a kept answer's retention, a key's lifetime) and must stay a date; moved
#: on ten years at a time the clock had reached year 9991, where a move, every request with an
#: Idempotency-Key and every issuance failed with a 500, for good (an independent review).
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class ClockState:
    now: datetime
    real_time: datetime
    offset: timedelta
    moved_at: datetime | None


async def moved_offset(database: Database) -> timedelta:
    """How far the database's sandbox clock was ever moved (0: never, or no such row)."""
    async with database.session(write=False) as session:
        stmt = select(col(ClockRow.offset_us)).where(col(ClockRow.id) == 1)
        offset_us = (await session.execute(stmt)).scalar()
    return timedelta(microseconds=offset_us or 0)


async def refuse_a_sandbox_database_in_production(database: Database) -> None:
    """Production refuses a database whose sandbox clock was moved: its keys' expiries, holds'
    TTLs, validity periods and settlement periods are in sandbox time, which real time would
    roll back — a key that had expired worked again (an independent review of keys, December
    2026). A database that cannot be read here is left to `/readyz`."""
    if database.settings.environment != "production":
        return
    try:
        offset = await moved_offset(database)
    except Exception:  # noqa: BLE001 - not reachable or not migrated: /readyz says which
        return
    if offset:
        raise RuntimeError(
            f"this database was used as a sandbox: its clock was moved {offset} ahead of real time, so what it "
            "records (key expiries, holds, validity and settlement periods) is in sandbox time; production refuses "
            "it. Serve it with VOUCHER_SANDBOX=true outside production, or start production on a fresh database")


async def refresh(database: Database, clock: SandboxClock) -> None:
    """Bring this process's clock in step with the database's offset (never backwards)."""
    offset = await moved_offset(database)
    if offset > clock.offset:
        clock.offset = offset


async def read(session: AsyncSession, clock: SandboxClock) -> ClockState:
    row = await session.get(ClockRow, 1)
    offset = timedelta(microseconds=row.offset_us) if row is not None else timedelta(0)
    clock.offset = max(clock.offset, offset)
    real = clock.real()
    return ClockState(now=real + clock.offset, real_time=real, offset=clock.offset,
                      moved_at=row.moved_at if row is not None else None)


def start_of_next(unit: str, now: datetime, timezone: str) -> datetime:
    """The start of the calendar day, month or year after the one `now` falls in, in `timezone`."""
    local = now.astimezone(ZoneInfo(timezone))
    day = local.date()
    if unit == "next_day":
        first = day + timedelta(days=1)
    elif unit == "next_month":
        first = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    else:
        first = date(day.year + 1, 1, 1)
    return datetime.combine(first, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


async def move(session: AsyncSession, clock: SandboxClock, *, advance: timedelta | None = None,
               to: datetime | None = None, advance_to: str | None = None, timezone: str = "Asia/Shanghai",
               ) -> ClockState:
    """Move the clock forward by `advance`, to `to`, or to the start of the next day, month or
    year (`advance_to`, in `timezone`); refused (409, nothing changed) if that would take it back.
    The row is locked, so two moves at once apply one after the other. No process's clock moves
    until the transaction commits (the caller sets this one's then; the others read the row)."""
    if sum(v is not None for v in (advance, to, advance_to)) != 1:
        raise ValueError("give one of advance, to and advance_to")
    stmt = select(ClockRow).where(col(ClockRow.id) == 1).with_for_update()
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:  # a database migrated before the row existed cannot be: 0011 inserts it
        row = ClockRow(id=1, offset_us=0)
        session.add(row)
    real = clock.real()
    before = real + timedelta(microseconds=row.offset_us)
    try:
        if advance is not None:
            target = before + advance
        elif advance_to is not None:
            target = start_of_next(advance_to, before, timezone)
        else:
            assert to is not None
            target = to
    except OverflowError:  # a clock moved near year 9999 before it stopped at LATEST
        target = datetime.max.replace(tzinfo=UTC)
    if target < before:
        raise errors.SandboxClockBackwards(
            msg("the sandbox clock reads {now}; it only moves forward, and {target} is earlier",
                now=before, target=target),
            now=before.isoformat(),
        )
    if target > LATEST:
        raise errors.ValidationFailed(
            [errors.field_error("to" if to is not None else "advance_to" if advance_to is not None else "advance",
                                msg("the sandbox clock goes no further than {latest}", latest=LATEST))],
            detail=msg("the sandbox clock goes no further than {latest}", latest=LATEST),
        )
    if target - before > MAX_MOVE:
        raise errors.ValidationFailed(
            [errors.field_error("to" if to is not None else "advance",
                                msg("one move may advance the clock by at most {days} days", days=MAX_MOVE.days))],
            detail=msg("one move may advance the sandbox clock by at most {days} days", days=MAX_MOVE.days),
        )
    offset = target - real
    row.offset_us = offset // MICROSECOND
    row.moved_at = real
    await audit.record(
        session, "sandbox.clock_moved", "sandbox_clock", CLOCK_ID, now=before,
        before={"now": before.isoformat()},
        after={"now": target.isoformat(), "advanced_microseconds": (target - before) // MICROSECOND,
               "real_time": real.isoformat()},
    )
    return ClockState(now=target, real_time=real, offset=offset, moved_at=real)


async def clock_for(database: Database) -> Clock:
    """The clock a command-line tool or a worker uses: real time, or in sandbox mode the
    sandbox clock as the database has it now (a worker's rounds refresh it)."""
    if not database.settings.sandbox:
        return system_clock
    clock = SandboxClock()
    await refresh(database, clock)
    return clock
