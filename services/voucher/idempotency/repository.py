"""Every query on idempotency records (protocol: idempotency/service.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, CursorResult, bindparam, delete, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher import driver
from services.voucher.db import dialect_name, is_transient, table_of
from services.voucher.driver import Batch, Step
from services.voucher.errors import IdempotencyRequestInProgress
from services.voucher.i18n import msg
from services.voucher.tables import IdempotencyRecord

T = table_of(IdempotencyRecord)

# Built once: every write request runs these (the values come as parameters).
_LOCK = select(func.pg_advisory_xact_lock(bindparam("lock", type_=BigInteger)))
#: What names the key's lock statement in an error (`failed_with_reads`).
_LOCK_FUNCTION = "pg_advisory_xact_lock"
_READ = select(
    T.c.id, T.c.method, T.c.path, T.c.request_hash, T.c.state, T.c.response_status, T.c.response_body,
    T.c.response_content_type, T.c.response_headers, T.c.expires_at, T.c.completed_at,
).where(T.c.principal_id == bindparam("principal_id"), T.c.key == bindparam("key"))
_INSERT = insert(T)
#: A record past its retention is replaced in place (one statement: a DELETE and an INSERT of
#: the same key in one batch would collide on the key's unique index).
_REPLACE = {
    name: make(T).on_conflict_do_update(
        index_elements=["principal_id", "key"],
        set_={c.key: getattr(make(T).excluded, c.key) for c in T.c if c.key not in ("principal_id", "key")},
    )
    for name, make in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


@dataclass(frozen=True)
class Record:
    id: uuid.UUID
    method: str
    path: str
    request_hash: str
    state: str
    response_status: int | None
    response_body: bytes | None
    response_content_type: str | None
    response_headers: dict[str, str] | None
    expires_at: datetime
    completed_at: datetime | None


def lock_and_read(session: AsyncSession, lock: int, principal_id: uuid.UUID, key: str) -> tuple[Batch, Step]:
    """Take the key's lock for the rest of the transaction, then read its record (`record_of`
    the step, once run): on PostgreSQL a transaction-scoped advisory lock; on SQLite the
    transaction's write lock is the key's lock."""
    batch = Batch()
    if dialect_name(session) == "postgresql":
        batch.add(_LOCK, {"lock": lock})
    return batch, batch.add(_READ, {"principal_id": principal_id, "key": key})


async def run(session: AsyncSession, batch: Batch) -> None:
    """Run the claim on its own: one round trip (the BEGIN goes with it)."""
    try:
        await driver.run(session, batch)
    except DBAPIError as exc:
        if is_transient(exc):  # waited longer than the lock timeout for the first attempt
            raise _in_progress() from exc
        raise


def failed_with_reads(exc: Exception) -> None:
    """The claim sent with the first reads failed with them: if it was the key's lock that
    waited too long, the first request with this key is still running (not the reads' own
    lost race, which stays a `concurrent_update`)."""
    if isinstance(exc, DBAPIError) and is_transient(exc) and _LOCK_FUNCTION in str(exc.statement or ""):
        raise _in_progress() from exc


def _in_progress() -> IdempotencyRequestInProgress:
    return IdempotencyRequestInProgress(msg(
        "the first request with this Idempotency-Key is still running; retry after it finishes to get its answer",
    ))


def record_of(found: Step) -> Record | None:
    row = found.first()
    if row is None:
        return None
    values: list[Any] = list(row)
    if isinstance(values[6], memoryview):
        values[6] = bytes(values[6])
    return Record(*values)


def store(values: dict[str, Any], *, replaces: bool, dialect: str) -> Batch:
    """The statement that stores an answer: a record past its retention is replaced."""
    batch = Batch()
    batch.add(_REPLACE[dialect] if replaces else _INSERT, values)
    return batch


async def purge_expired(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(delete(T).where(T.c.expires_at < now))
    return cast(CursorResult[Any], result).rowcount  # a DELETE's result is a CursorResult


async def withdraw_bodies(session: AsyncSession, path_pattern: str, completed_before: datetime,
                          keep: Callable[[IdempotencyRecord], bool]) -> int:
    """Empty the stored bodies of completed records whose path matches `path_pattern` (LIKE),
    completed before `completed_before`, unless `keep` says otherwise; how many were emptied."""
    statement = select(IdempotencyRecord).where(T.c.path.like(path_pattern), T.c.response_body.is_not(None),
                                                T.c.completed_at < completed_before)
    withdrawn = 0
    for record in (await session.execute(statement)).scalars():
        if not keep(record):
            record.response_body = None
            withdrawn += 1
    await session.flush()
    return withdrawn


async def answers_under(session: AsyncSession, path_pattern: str) -> list[IdempotencyRecord]:
    """Completed records whose path matches `path_pattern` (LIKE), locked (`voucher secrets reseal`)."""
    statement = (select(IdempotencyRecord)
                 .where(T.c.path.like(path_pattern), T.c.response_body.is_not(None))
                 .order_by(T.c.id))
    if dialect_name(session) == "postgresql":
        statement = statement.with_for_update()
    return list((await session.execute(statement)).scalars().all())
