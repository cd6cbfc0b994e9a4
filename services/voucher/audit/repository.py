"""Every query on the audit trail. Events are inserted, sealed once, and never changed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher import pending
from services.voucher.audit.rules import ACCOUNT_FIELDS, ACCOUNT_OPENED, GENESIS
from services.voucher.db import PageRequest, dialect_name, paginate, table_of
from services.voucher.driver import insert_rows
from services.voucher.tables import (
    AuditCheckpoint,
    AuditEvent,
    AuditVerification,
    LedgerAccount,
    LedgerPosting,
    LedgerTransaction,
    Voucher,
)

E = table_of(AuditEvent)


def of_enterprise(enterprise_id: uuid.UUID) -> ColumnElement[bool]:
    """The events of one enterprise: those that name it, and those that name only one of its
    vouchers — the `ledger.posted` event of a journal on a voucher's accounts, which the
    ledger's entries count as the enterprise's (an independent review found an enterprise's
    audit trail without one event for the journals of its ledger entries)."""
    vouchers = select(table_of(Voucher).c.id).where(table_of(Voucher).c.enterprise_id == enterprise_id)
    return or_(E.c.enterprise_id == enterprise_id, and_(E.c.enterprise_id.is_(None), E.c.voucher_id.in_(vouchers)))


def of_provider(provider_id: uuid.UUID) -> ColumnElement[bool]:
    """The events of one provider: those that name it, and the `ledger.posted` event of every
    journal that posts to one of its accounts (its payable: captures, refunds, payments), which
    the ledger's entries count as the provider's. Those events name no provider, so a
    provider's audit trail had left out the journals of its own ledger entries (an independent
    review of exports, December 2026)."""
    accounts = table_of(LedgerAccount)
    journals = select(P.c.transaction_id).where(
        P.c.account_id.in_(select(accounts.c.id).where(accounts.c.provider_id == provider_id)))
    return or_(E.c.provider_id == provider_id, and_(E.c.journal_id.is_not(None), E.c.journal_id.in_(journals)))
C = table_of(AuditCheckpoint)
P = table_of(LedgerPosting)
T = table_of(LedgerTransaction)

#: pg_advisory_xact_lock key of the sealer ("audit" in ASCII): one sealer at a time.
SEALER_LOCK = 0x6175646974


_INSERT = insert_rows(E, gather=True)  # built once: the queued events are its parameters


async def insert_event(session: AsyncSession, values: dict[str, Any]) -> None:
    """Queue the event on the transaction open now: it is written with the commit (one
    executemany with the transaction's other events, in the COMMIT's round trip). One queued
    inside a savepoint that rolls back is dropped with it, and nothing is written if the
    transaction rolls back."""
    if not pending.defer(session, _INSERT, values):  # nothing begun yet: write it in the one this begins
        await session.execute(_INSERT, values)


async def lock_sealer(session: AsyncSession) -> None:
    """One sealer at a time. SQLite's BEGIN IMMEDIATE already serialises writers."""
    if dialect_name(session) == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEALER_LOCK})


async def sealed_head(session: AsyncSession) -> tuple[int, str]:
    row = (await session.execute(
        select(E.c.seq, E.c.chain_hash).where(E.c.seq.is_not(None)).order_by(E.c.seq.desc()).limit(1)
    )).first()
    return (0, GENESIS) if row is None else (int(row.seq), row.chain_hash)


async def unsealed(session: AsyncSession, limit: int) -> list[dict[str, Any]]:
    rows = await session.execute(select(E).where(E.c.seq.is_(None)).order_by(E.c.id).limit(limit))
    return [dict(r._mapping) for r in rows.all()]


async def count_unsealed(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(E).where(E.c.seq.is_(None)))).scalar_one()


_SEAL = (
    update(E)
    .where(E.c.id == bindparam("event_id"), E.c.seq.is_(None))
    .values(seq=bindparam("new_seq"), chain_hash=bindparam("new_hash"))
)


async def seal(session: AsyncSession, links: Sequence[dict[str, Any]]) -> None:
    if links:
        await session.execute(_SEAL, list(links))


async def stream_sealed(session: AsyncSession, after_seq: int) -> AsyncIterator[dict[str, Any]]:
    """Sealed events in chain order, streamed (constant memory however long the chain)."""
    stmt = select(E).where(E.c.seq > after_seq).order_by(E.c.seq).execution_options(yield_per=2000)
    result = await session.stream(stmt)
    async for row in result:
        yield dict(row._mapping)


async def events_outside_chain(session: AsyncSession) -> list[dict[str, Any]]:
    """Events whose seal names a position the chain cannot have (the database refuses these;
    only someone bypassing it plants them)."""
    rows = await session.execute(select(E.c.id, E.c.seq).where(E.c.seq <= 0).order_by(E.c.seq).limit(100))
    return [dict(r._mapping) for r in rows.all()]


async def chain_hash_at(session: AsyncSession, seq: int) -> str | None:
    return (await session.execute(select(E.c.chain_hash).where(E.c.seq == seq))).scalar_one_or_none()


async def stream_journal_legs(session: AsyncSession) -> AsyncIterator[Any]:
    """Every journal transaction with its postings, ordered by journal; a journal with no
    postings still appears (with a null account) so a deleted set of postings is seen."""
    stmt = (
        select(T.c.id, T.c.kind, T.c.created_at, T.c.programme_id, T.c.voucher_id, T.c.redemption_id, T.c.memo,
               P.c.account_id, P.c.amount, P.c.unit, P.c.created_at.label("posted_at"))
        .select_from(T.outerjoin(P, P.c.transaction_id == T.c.id))
        .order_by(T.c.id, P.c.id)
        .execution_options(yield_per=5000)
    )
    result = await session.stream(stmt)
    async for row in result:
        yield row


async def stream_posting_events(
    session: AsyncSession,
) -> AsyncIterator[tuple[uuid.UUID, int | None, dict[str, Any] | None]]:
    """(journal id, seq, recorded legs) of every `ledger.posted` event, ordered by journal."""
    stmt = (
        select(E.c.journal_id, E.c.seq, E.c.after)
        .where(E.c.journal_id.is_not(None))
        .order_by(E.c.journal_id)
        .execution_options(yield_per=5000)
    )
    result = await session.stream(stmt)
    async for row in result:
        yield row.journal_id, row.seq, row.after


async def stream_accounts(session: AsyncSession) -> AsyncIterator[dict[str, Any]]:
    """Every ledger account's identity (`ACCOUNT_FIELDS`), ordered by id."""
    A = table_of(LedgerAccount)
    stmt = (select(*(A.c[name] for name in ACCOUNT_FIELDS)).order_by(A.c.id)
            .execution_options(yield_per=5000))
    result = await session.stream(stmt)
    async for row in result:
        yield dict(row._mapping)


async def stream_account_events(session: AsyncSession) -> AsyncIterator[tuple[uuid.UUID, int | None, Any]]:
    """(account id, seq, recorded account) of every `ledger.account_opened` event, ordered by
    account (ix_audit_event_resource), then by its place in the chain: of two for one account,
    the one sealed first is the account's own (an id is whatever an inserter chooses)."""
    stmt = (
        select(E.c.resource_id, E.c.seq, E.c.after)
        .where(E.c.resource_type == "ledger_account", E.c.action == ACCOUNT_OPENED)
        .order_by(E.c.resource_id, E.c.seq.asc().nulls_last(), E.c.id)
        .execution_options(yield_per=5000)
    )
    result = await session.stream(stmt)
    async for row in result:
        yield row.resource_id, row.seq, row.after


async def add_checkpoint(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(C).values(**values))


async def checkpoints_page(session: AsyncSession, page: PageRequest) -> tuple[Sequence[Any], str | None]:
    return await paginate(session, select(AuditCheckpoint), col(AuditCheckpoint.id), page)


async def checkpoint(session: AsyncSession, checkpoint_id: uuid.UUID) -> AuditCheckpoint | None:
    return await session.get(AuditCheckpoint, checkpoint_id)


async def all_checkpoints(session: AsyncSession) -> list[AuditCheckpoint]:
    stmt = select(AuditCheckpoint).order_by(col(AuditCheckpoint.seq), col(AuditCheckpoint.id))
    return list((await session.execute(stmt)).scalars())


async def checkpoints_signed_by(session: AsyncSession, key_id: str) -> list[AuditCheckpoint]:
    """The stored checkpoints that name the key `key_id`, first signed first."""
    stmt = (select(AuditCheckpoint).where(col(AuditCheckpoint.key_id) == key_id)
            .order_by(col(AuditCheckpoint.signed_at), col(AuditCheckpoint.id)))
    return list((await session.execute(stmt)).scalars())


async def add_verification(session: AsyncSession, verification: AuditVerification) -> None:
    session.add(verification)
    await session.flush()


async def verification(session: AsyncSession, verification_id: uuid.UUID) -> AuditVerification | None:
    return await session.get(AuditVerification, verification_id)


async def events_page(
    session: AsyncSession,
    page: PageRequest,
    *,
    programme_id: uuid.UUID | None = None,
    enterprise_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
    voucher_id: uuid.UUID | None = None,
    resource_type: str | None = None,
    resource_id: uuid.UUID | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[Sequence[AuditEvent], str | None]:
    stmt = select(AuditEvent)
    if enterprise_id is not None:
        stmt = stmt.where(of_enterprise(enterprise_id))
    if provider_id is not None:
        stmt = stmt.where(of_provider(provider_id))
    for column, value in (
        (col(AuditEvent.programme_id), programme_id), (col(AuditEvent.voucher_id), voucher_id),
        (col(AuditEvent.resource_type), resource_type), (col(AuditEvent.resource_id), resource_id),
        (col(AuditEvent.action), action),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(col(AuditEvent.occurred_at) >= since)
    if until is not None:
        stmt = stmt.where(col(AuditEvent.occurred_at) < until)
    return await paginate(session, stmt, col(AuditEvent.id), page)
