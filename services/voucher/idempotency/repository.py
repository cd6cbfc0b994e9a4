"""Every query on idempotency records."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.tables import IdempotencyRecord

T = IdempotencyRecord.__table__

#: Built once: every write request runs these, and a statement built per call costs more
#: Python than its round trip (the values come as parameters).
_INSERT = {
    name: insert(T).on_conflict_do_nothing(index_elements=["principal_id", "key"]).returning(T.c.id)
    for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}
_COMPLETE = (
    update(T)
    .where(T.c.id == bindparam("record_id"), T.c.state == "in_progress", T.c.locked_at == bindparam("claimed_at"))
    .values(state="completed", completed_at=bindparam("now", type_=T.c.completed_at.type),
            response_status=bindparam("status", type_=T.c.response_status.type),
            response_body=bindparam("body", type_=T.c.response_body.type),
            response_content_type=bindparam("content_type", type_=T.c.response_content_type.type),
            response_headers=bindparam("headers", type_=T.c.response_headers.type))
)


async def insert_if_absent(session: AsyncSession, values: dict[str, object]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; True if this call created the row."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    return (await session.execute(_INSERT[dialect], values)).first() is not None


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
    params = {"record_id": record_id, "claimed_at": locked_at, "now": now, "status": values["response_status"],
              "body": values["response_body"], "content_type": values["response_content_type"],
              "headers": values["response_headers"]}
    return (await session.execute(_COMPLETE, params)).rowcount == 1


async def release(session: AsyncSession, record_id: uuid.UUID, *, locked_at: datetime) -> None:
    stmt = delete(T).where(
        T.c.id == record_id, T.c.state == "in_progress", T.c.locked_at == locked_at
    )
    await session.execute(stmt)


async def purge_expired(session: AsyncSession, now: datetime) -> int:
    return (await session.execute(delete(T).where(T.c.expires_at < now))).rowcount
