"""Every query of the anomaly reports. Read-only; callers are operators and auditors, who see
every tenant. Rows are streamed in the order the detectors consume them, so a report holds one
group (a pair, a voucher, a reference) in memory at a time, not the whole history."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnClause, and_, case, false, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher.anomalies.rules import Claimed, Redeemed
from services.voucher.claims.rules import ClaimStatus
from services.voucher.db import Database, table_of
from services.voucher.redemption.repository import IS_HELD, is_lapsed_hold
from services.voucher.redemption.rules import Payee, RedemptionStatus
from services.voucher.tables import Claim, Enterprise, Programme, Provider, Redemption, Voucher

R = table_of(Redemption).c
C = table_of(Claim).c
V = table_of(Voucher).c
STREAM = {"yield_per": 2000}


@dataclass(frozen=True)
class Scope:
    """Which redemptions a report reads: a programme (or all), made in [since, until); `now`
    decides which holds still live."""

    now: datetime
    programme_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


def _value(now: datetime) -> Any:
    """The value a redemption carries now: captured net of refunds, or a hold that still lives
    (a hold past its TTL or on a voucher that has expired is void when read, whether or not a job
    has posted it)."""
    # The hold's own voucher, whatever other vouchers the enclosing query reads.
    voucher_expires_at = (select(V.expires_at).where(V.id == R.voucher_id)
                          .correlate_except(table_of(Voucher)).scalar_subquery())
    return case(
        (R.status.in_([RedemptionStatus.CAPTURED.value, RedemptionStatus.REFUNDED.value]),
         R.captured_amount - R.refunded_amount),
        (and_(IS_HELD, ~is_lapsed_hold(now, voucher_expires_at)), R.held_amount),
        else_=0,
    )


def _conditions(scope: Scope) -> list[Any]:
    conditions = [_value(scope.now) > 0]
    if scope.programme_id is not None:
        conditions.append(R.programme_id == scope.programme_id)
    if scope.since is not None:
        conditions.append(R.created_at >= scope.since)
    if scope.until is not None:
        conditions.append(R.created_at < scope.until)
    return conditions


def _rows(scope: Scope, *extra: Any) -> Any:
    return select(
        R.id, R.programme_id, R.enterprise_id, R.provider_id, R.voucher_id, R.order_reference,
        R.order_amount, _value(scope.now).label("amount"), R.unit, R.created_at,
    ).where(*_conditions(scope), *extra)


def _redeemed(row: Any) -> Redeemed:
    return Redeemed(
        redemption_id=row.id, programme_id=row.programme_id, enterprise_id=row.enterprise_id,
        provider_id=row.provider_id, voucher_id=row.voucher_id, order_reference=row.order_reference,
        order_amount=int(row.order_amount), amount=int(row.amount), unit=row.unit, at=row.created_at,
    )


async def _stream(session: AsyncSession, stmt: Any) -> AsyncIterator[Redeemed]:
    await Database.in_transaction(session)  # a server-side cursor needs a transaction
    result = await session.stream(stmt.execution_options(**STREAM))
    async for row in result:
        yield _redeemed(row)


async def programme_exists(session: AsyncSession, programme_id: uuid.UUID) -> bool:
    found = await session.execute(select(col(Programme.id)).where(col(Programme.id) == programme_id))
    return found.scalar_one_or_none() is not None


async def programme_limits(session: AsyncSession, programme_id: uuid.UUID | None) -> dict[uuid.UUID, int]:
    """max_per_voucher of every programme in scope (programmes are few)."""
    stmt = select(col(Programme.id), col(Programme.max_per_voucher))
    if programme_id is not None:
        stmt = stmt.where(col(Programme.id) == programme_id)
    return {row.id: int(row.max_per_voucher) for row in (await session.execute(stmt)).all()}


async def pairs_with_parties(
    session: AsyncSession, scope: Scope
) -> list[tuple[uuid.UUID, uuid.UUID, list[dict[str, Any]], list[dict[str, Any]], str, str]]:
    """Each enterprise–provider pair with value-carrying redemptions in scope, with both
    sides' related parties as recorded now, and their USCCs."""
    pairs = select(R.enterprise_id, R.provider_id).where(*_conditions(scope)).distinct().subquery()
    stmt = (
        select(pairs.c.enterprise_id, pairs.c.provider_id, col(Enterprise.related_parties),
               col(Provider.related_parties), col(Enterprise.uscc), col(Provider.uscc))
        .join(Enterprise, col(Enterprise.id) == pairs.c.enterprise_id)
        .join(Provider, col(Provider.id) == pairs.c.provider_id)
        .order_by(pairs.c.enterprise_id, pairs.c.provider_id)
    )
    return [(row[0], row[1], list(row[2] or []), list(row[3] or []), row[4], row[5])
            for row in (await session.execute(stmt)).all()]


def rows_of_pairs(session: AsyncSession, scope: Scope, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> AsyncIterator[Redeemed]:
    """Value-carrying redemptions of these pairs, by programme, pair and time."""
    match = or_(false(), *(and_(R.enterprise_id == e, R.provider_id == p) for e, p in pairs))
    stmt = _rows(scope, match).order_by(R.programme_id, R.enterprise_id, R.provider_id, R.created_at, R.id)
    return _stream(session, stmt)


def rows_in_bands(session: AsyncSession, scope: Scope, bands: dict[uuid.UUID, tuple[int, int]]) -> AsyncIterator[Redeemed]:
    """Value-carrying redemptions whose order amount is in its programme's band [low, high),
    by programme, pair and time."""
    match = or_(false(), *(and_(R.programme_id == programme, R.order_amount >= low, R.order_amount < high)
                           for programme, (low, high) in bands.items()))
    stmt = _rows(scope, match).order_by(R.programme_id, R.enterprise_id, R.provider_id, R.created_at, R.id)
    return _stream(session, stmt)


def rows_by_pair(session: AsyncSession, scope: Scope, before: datetime) -> AsyncIterator[Redeemed]:
    """Value-carrying redemptions made before `before`, by programme, pair and time."""
    stmt = _rows(scope, R.created_at < before).order_by(
        R.programme_id, R.enterprise_id, R.provider_id, R.created_at, R.id)
    return _stream(session, stmt)


async def rows_of_expiring_vouchers(
    session: AsyncSession, scope: Scope, expiring_by: datetime, expiring_after: datetime | None = None
) -> AsyncIterator[tuple[datetime, Redeemed]]:
    """Value-carrying redemptions of vouchers that expire in (`expiring_after`, `expiring_by`],
    with the voucher's expiry, by voucher and time."""
    bounds = [V.expires_at <= expiring_by] + ([V.expires_at > expiring_after] if expiring_after is not None else [])
    stmt = (
        _rows(scope, *bounds)
        .add_columns(V.expires_at)
        .join_from(table_of(Redemption), table_of(Voucher), V.id == R.voucher_id)
        .order_by(R.voucher_id, R.created_at, R.id)
        .execution_options(**STREAM)
    )
    await Database.in_transaction(session)  # a server-side cursor needs a transaction
    result = await session.stream(stmt)
    async for row in result:
        yield row.expires_at, _redeemed(row)


def _folded(column: Any) -> Any:
    """Order references compared as contract and invoice numbers are (applications/rules.py
    `reference_key`): case folded, O read as 0, I and L as 1. References are printable ASCII;
    their brackets are compared as typed (the contract key's bracket fold is for 文号)."""
    # Constants written into the SQL, not bound: PostgreSQL must see the grouped expression and
    # the selected one as the same text.
    letters: list[ColumnClause[str]] = [literal_column(f"'{c}'") for c in "O0I1L"]
    o, zero, i, one, ell = letters
    return func.replace(func.replace(func.replace(func.upper(column), o, zero), i, one), ell, one)


async def rows_of_shared_references(session: AsyncSession, scope: Scope) -> AsyncIterator[tuple[str, Redeemed]]:
    """(folded reference, row): provider redemptions whose order reference (folded as contract
    numbers are) appears under two or more enterprises, by reference and time. Claims' redemptions are left to the invoice
    query: their reference is the invoice."""
    provider_paid = R.payee == Payee.PROVIDER.value
    shared = (
        select(_folded(R.order_reference).label("reference"))
        .where(*_conditions(scope), provider_paid)
        .group_by(_folded(R.order_reference))
        .having(func.count(R.enterprise_id.distinct()) >= 2)
    )
    stmt = (
        _rows(scope, provider_paid, _folded(R.order_reference).in_(shared))
        .add_columns(_folded(R.order_reference).label("reference"))
        .order_by(_folded(R.order_reference), R.created_at, R.id)
        .execution_options(**STREAM)
    )
    await Database.in_transaction(session)  # a server-side cursor needs a transaction
    result = await session.stream(stmt)
    async for row in result:
        yield row.reference, _redeemed(row)


async def claims_of_shared_invoices(session: AsyncSession, scope: Scope) -> AsyncIterator[Claimed]:
    """Standing (not rejected) claims whose invoice number appears under two or more
    enterprises, compared by their keys (O read as 0, I and L as 1), by invoice key and time."""
    conditions = [C.status != ClaimStatus.REJECTED.value]
    if scope.programme_id is not None:
        conditions.append(C.programme_id == scope.programme_id)
    if scope.since is not None:
        conditions.append(C.created_at >= scope.since)
    if scope.until is not None:
        conditions.append(C.created_at < scope.until)
    shared = (
        select(C.invoice_key).where(*conditions).group_by(C.invoice_key)
        .having(func.count(C.enterprise_id.distinct()) >= 2)
    )
    stmt = (
        select(C.id, C.redemption_id, C.programme_id, C.enterprise_id, C.provider_id, C.voucher_id,
               C.invoice_number, C.invoice_key, func.coalesce(C.approved_amount, C.subsidy).label("amount"),
               C.unit, C.status, C.created_at)
        .where(*conditions, C.invoice_key.in_(shared))
        .order_by(C.invoice_key, C.created_at, C.id)
        .execution_options(**STREAM)
    )
    await Database.in_transaction(session)  # a server-side cursor needs a transaction
    result = await session.stream(stmt)
    async for row in result:
        yield Claimed(
            claim_id=row.id, redemption_id=row.redemption_id, programme_id=row.programme_id,
            enterprise_id=row.enterprise_id, provider_id=row.provider_id, voucher_id=row.voucher_id,
            invoice_number=row.invoice_number, invoice_key=row.invoice_key, amount=int(row.amount), unit=row.unit,
            status=row.status,
            at=row.created_at,
        )
