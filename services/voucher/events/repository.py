"""Every query of the outbox."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import BigInteger, Select, and_, bindparam, cast, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher import pending
from services.voucher.db import dialect_name, table_of
from services.voucher.driver import insert_rows
from services.voucher.tables import DEDUPED, LedgerAccount, OutboxEvent, Voucher
from services.voucher.vouchers.repository import EXPIRED_HELD

E = table_of(OutboxEvent)
#: pg_advisory_xact_lock key of the publisher ("outbox" in ASCII): one publisher at a time.
PUBLISHER_LOCK = 0x6F7574626F78


_INSERT = insert_rows(E, gather=True)
_INSERT_ONCE = {
    name: make(E).on_conflict_do_nothing(index_elements=["dedupe_key"], index_where=DEDUPED)
    for name, make in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


async def insert_event(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert; an event whose `dedupe_key` exists already is skipped (False), race-free. One
    without a dedupe key is written with the commit (nothing reads it back before)."""
    if values.get("dedupe_key") is None:
        if not pending.defer(session, _INSERT, values):
            await session.execute(_INSERT, values)
        return True
    dialect = dialect_name(session)
    statement = _INSERT_ONCE[dialect].values(**values).returning(E.c.id)
    return (await session.execute(statement)).first() is not None


def defer_once(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Events with a dedupe key, each written at most once ever, with the commit (for callers
    that need not know whether it was the first time)."""
    for row in rows:
        if not pending.defer(session, _INSERT_ONCE[dialect_name(session)], row):
            raise RuntimeError("deferred events need a transaction")


async def lock_publisher(session: AsyncSession) -> None:
    """One publisher at a time. SQLite's BEGIN IMMEDIATE already serialises writers."""
    if dialect_name(session) == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PUBLISHER_LOCK})


async def last_seq(session: AsyncSession) -> int:
    row = (await session.execute(select(E.c.seq).where(E.c.seq.is_not(None)).order_by(E.c.seq.desc()).limit(1))).first()
    return 0 if row is None else int(row.seq)


async def unpublished(session: AsyncSession, limit: int) -> list[dict[str, Any]]:
    rows = await session.execute(select(E).where(E.c.seq.is_(None)).order_by(E.c.id).limit(limit))
    return [dict(r._mapping) for r in rows.all()]


_PUBLISH = (
    update(E)
    .where(E.c.id == bindparam("event_id"), E.c.seq.is_(None))
    .values(seq=bindparam("new_seq"), published_at=bindparam("at"))
)


async def publish(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(_PUBLISH, rows)


def visible_to(statement: Select[Any], enterprise_id: uuid.UUID | None, provider_id: uuid.UUID | None,
               sees_everything: bool) -> Select[Any]:
    if sees_everything:
        return statement
    if enterprise_id is not None:
        return statement.where(E.c.enterprise_id == enterprise_id)
    if provider_id is not None:
        return statement.where(E.c.provider_id == provider_id)
    return statement.where(and_(E.c.id.is_(None)))  # nobody else sees anything


async def page(session: AsyncSession, statement: Select[Any], after_seq: int, limit: int) -> list[dict[str, Any]]:
    rows = await session.execute(
        statement.where(E.c.seq.is_not(None), E.c.seq > after_seq).order_by(E.c.seq).limit(limit)
    )
    return [dict(r._mapping) for r in rows.all()]


def listing(types: list[str] | None, programme_id: uuid.UUID | None, resource_id: uuid.UUID | None) -> Select[Any]:
    statement = select(E)
    if types:
        statement = statement.where(or_(*(E.c.type == t for t in types)))
    if programme_id is not None:
        statement = statement.where(E.c.programme_id == programme_id)
    if resource_id is not None:
        statement = statement.where(E.c.resource_id == resource_id)
    return statement


async def get(session: AsyncSession, event_id: uuid.UUID) -> dict[str, Any] | None:
    row = (await session.execute(select(E).where(E.c.id == event_id))).first()
    return None if row is None else dict(row._mapping)


async def expiring(session: AsyncSession, start: Any, end: Any, limit: int) -> list[dict[str, Any]]:
    """Active vouchers expiring in (start, end] not yet warned, with their available balance
    as of `start`.

    On PostgreSQL the vouchers are locked and a voucher another worker holds is skipped, so two
    workers at once take disjoint sets (the dedupe key still makes a second warning a no-op);
    a voucher skipped because a redemption held it is warned on the next run."""
    V, A = table_of(Voucher), table_of(LedgerAccount)
    warned = select(E.c.id).where(E.c.type == "voucher.expiring", E.c.resource_id == V.c.id).exists()
    # What holds that have lapsed still hold in the ledger is available, as every read shows it
    # (DESIGN §2), whether or not the expiry job has posted their release yet.
    statement = (
        select(V.c.id, V.c.programme_id, V.c.enterprise_id, V.c.expires_at, V.c.face_value, V.c.unit,
               cast(A.c.balance + EXPIRED_HELD, BigInteger).label("available"))  # a sum is numeric on PostgreSQL
        .join(A, A.c.id == V.c.available_account_id)
        .where(V.c.status == "active", V.c.expires_at > start, V.c.expires_at <= end, ~warned)
        .order_by(V.c.expires_at, V.c.id)
        .limit(limit)
    )
    if dialect_name(session) == "postgresql":
        statement = statement.with_for_update(of=V, skip_locked=True, key_share=True)
    rows = await session.execute(statement, {"now": start})
    return [dict(r._mapping) for r in rows.all()]
