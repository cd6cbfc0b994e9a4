"""Every query of the exports: the datasets' statements, the read snapshot, the manifests.

Rows are streamed (a server-side cursor on PostgreSQL, the open statement on SQLite) in
batches of `FETCH_ROWS`, never loaded all at once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Text, TypeDecorator, Uuid, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.audit import repository as audit
from services.voucher.db import dialect_name, table_of
from services.voucher.exports.rules import SOURCE, TIME_COLUMN, Dataset, Filters
from services.voucher.ledger import repository as ledger
from services.voucher.redemption.repository import is_expired_hold
from services.voucher.tables import (
    AuditEvent,
    ExportManifest,
    Redemption,
    Settlement,
    SettlementItem,
    Voucher,
)
from services.voucher.vouchers.repository import EXPIRABLE

E = table_of(AuditEvent)
R = table_of(Redemption)
S = table_of(Settlement)
M = table_of(ExportManifest)
L = table_of(SettlementItem)  # a settlement's lines
V = table_of(Voucher)

_TABLES = {Dataset.REDEMPTIONS: R, Dataset.SETTLEMENTS: S, Dataset.AUDIT_EVENTS: E}

log = logging.getLogger(__name__)


async def lapsed_unreleased(session: AsyncSession, now: datetime) -> int:
    """Holds past their TTL and vouchers past their validity whose release is not posted yet, as
    of `now`: shown held in an export, released by every API read."""
    holds = select(func.count()).select_from(R).where(is_expired_hold(now)).scalar_subquery()
    vouchers = select(func.count()).select_from(V).where(
        V.c.expires_at <= now, V.c.expiry_posted_at.is_(None), V.c.status.in_(EXPIRABLE)).scalar_subquery()
    return int((await session.execute(select(holds + vouchers))).scalar_one())


async def begin_snapshot(session: AsyncSession) -> None:
    """Start the session's transaction so that every later read sees one snapshot.

    PostgreSQL: REPEATABLE READ (and READ ONLY), set before the first query. SQLite (WAL): a
    read transaction keeps the snapshot of its first read until it ends."""
    if session.in_transaction():
        await session.rollback()  # a fresh snapshot, taken now
    options: dict[str, Any] = {}
    if dialect_name(session) == "postgresql":
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    await session.connection(execution_options=options)


def statement(dataset: Dataset, filters: Filters) -> Select[Any]:
    """The rows `dataset` is read from (its source table's) matching `filters`, in a stable order."""
    dataset = SOURCE[dataset]
    if dataset is Dataset.LEDGER_ENTRIES:
        return ledger.entries_select(**filters.given())
    if dataset is Dataset.SETTLEMENT_ITEMS:
        return _where(_settlement_lines(), Dataset.SETTLEMENTS, filters).order_by(L.c.settlement_id, L.c.id)
    table = _TABLES[dataset]
    stmt = _where(select(table), dataset, filters)
    if dataset is Dataset.AUDIT_EVENTS:
        # Chain order, so the file can be rechecked link by link; events committed after the
        # last seal (no `seq` yet) come last, by id.
        return stmt.order_by(E.c.seq.asc().nulls_last(), E.c.id)
    return stmt.order_by(table.c.id)


def _where(stmt: Select[Any], dataset: Dataset, filters: Filters) -> Select[Any]:
    """`stmt` narrowed to the rows of `dataset`'s table that `filters` select."""
    table, given = _TABLES[dataset], filters.given()
    for name in ("programme_id", "enterprise_id", "provider_id", "voucher_id"):
        if name == "enterprise_id" and dataset is Dataset.AUDIT_EVENTS and name in given:
            stmt = stmt.where(audit.of_enterprise(given[name]))  # its vouchers' journals' events too
        elif name == "provider_id" and dataset is Dataset.AUDIT_EVENTS and name in given:
            stmt = stmt.where(audit.of_provider(given[name]))  # the events of journals on its accounts too
        elif name in given:
            stmt = stmt.where(table.c[name] == given[name])
    time = table.c[TIME_COLUMN[dataset]]
    if filters.since is not None:
        stmt = stmt.where(time >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(time < filters.until)
    return stmt


def _settlement_lines() -> Select[Any]:
    """Every line of every settlement (cancelled ones included, their lines marked
    `released_at`), each with its settlement's programme, provider, unit, period and status; the
    settlements' filters apply to it. Each settlement's `total` is the sum of its lines'
    `amount`, its `captured_total` of the positive ones."""
    return select(
        L.c.id, L.c.settlement_id, L.c.kind, L.c.redemption_id, L.c.refund_id, L.c.order_reference, L.c.amount,
        S.c.unit, L.c.occurred_at, L.c.released_at, S.c.programme_id, S.c.provider_id, S.c.period_start,
        S.c.period_end, S.c.status.label("settlement_status"), S.c.created_at.label("settlement_created_at"),
    ).join_from(L, S, S.c.id == L.c.settlement_id)


def columns(stmt: Select[Any]) -> list[tuple[str, type]]:
    """(name, Python type) of each column the statement reads, in order."""
    return [(str(column.key), _python_type(column.type)) for column in stmt.selected_columns]


def _python_type(type_: Any) -> type:
    if isinstance(type_, TypeDecorator):  # e.g. UTCDateTime: what its implementation holds
        type_ = type_.impl_instance
    try:
        found = type_.python_type
    except NotImplementedError:
        return object
    return found if isinstance(found, type) else object


async def stream(session: AsyncSession, stmt: Select[Any], batch: int) -> AsyncIterator[Sequence[Any]]:
    """The statement's rows (values in `columns(stmt)` order), `batch` at a time."""
    if dialect_name(session) == "postgresql":
        stmt = _ids_as_text(stmt)
    result = await session.stream(stmt.execution_options(yield_per=batch))
    async for rows in result.partitions(batch):
        yield rows


def _ids_as_text(stmt: Select[Any]) -> Select[Any]:
    """Ids rendered as text by PostgreSQL (the same canonical form as Python's): an export
    writes them as text anyway, and parsing a million UUIDs only to print them again is most
    of its cost. (SQLite stores them as hex without dashes, so it keeps the type's conversion.)"""
    return stmt.with_only_columns(
        *[cast(c, Text).label(c.key) if isinstance(c.type, Uuid) else c for c in stmt.selected_columns],
        maintain_column_froms=True,
    )


async def add_manifest(session: AsyncSession, manifest: ExportManifest) -> None:
    session.add(manifest)
    await session.flush()


async def finish_manifest(
    session: AsyncSession, export_id: uuid.UUID, *, row_count: int, sha256: str, finished_at: datetime
) -> None:
    done = await session.execute(
        update(M).where(M.c.id == export_id, M.c.finished_at.is_(None))
        .values(row_count=row_count, sha256=sha256, finished_at=finished_at)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        # Completed by someone else while the export streamed (the database lets a manifest be
        # completed once, by anyone who may write to it): what it says is not this export's.
        log.error("export manifest %s was already completed, not by this export: its figures are not the file's "
                  "(rows %s, sha256 %s)", export_id, row_count, sha256)


async def manifest(session: AsyncSession, export_id: uuid.UUID) -> ExportManifest | None:
    return await session.get(ExportManifest, export_id)
