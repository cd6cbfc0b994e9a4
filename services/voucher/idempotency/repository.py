"""Every query on idempotency records."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.tables import IdempotencyRecord

T = IdempotencyRecord.__table__


async def insert_if_absent(session: AsyncSession, values: dict[str, object]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; True if this call created the row."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(T)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["principal_id", "key"])
        .returning(T.c.id)
    )
    return (await session.execute(stmt)).first() is not None


async def get_for_update(
    session: AsyncSession, principal_id: uuid.UUID, key: str
) -> IdempotencyRecord | None:
    stmt = (
        select(IdempotencyRecord)
        .where(IdempotencyRecord.principal_id == principal_id, IdempotencyRecord.key == key)
        .with_for_update()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def relock(
    session: AsyncSession,
    record_id: uuid.UUID,
    *,
    old_locked_at: datetime,
    values: dict[str, object],
) -> bool:
    stmt = (
        update(T)
        .where(T.c.id == record_id, T.c.locked_at == old_locked_at)
        .values(**values)
    )
    return (await session.execute(stmt)).rowcount == 1


async def complete(
    session: AsyncSession,
    record_id: uuid.UUID,
    *,
    locked_at: datetime,
    values: dict[str, object],
    now: datetime,
) -> bool:
    """Store the answer, but only while this request still owns the claim."""
    stmt = (
        update(T)
        .where(T.c.id == record_id, T.c.state == "in_progress", T.c.locked_at == locked_at)
        .values(state="completed", completed_at=now, **values)
    )
    return (await session.execute(stmt)).rowcount == 1


async def release(session: AsyncSession, record_id: uuid.UUID, *, locked_at: datetime) -> None:
    stmt = delete(T).where(
        T.c.id == record_id, T.c.state == "in_progress", T.c.locked_at == locked_at
    )
    await session.execute(stmt)


async def purge_expired(session: AsyncSession, now: datetime) -> int:
    return (await session.execute(delete(T).where(T.c.expires_at < now))).rowcount
