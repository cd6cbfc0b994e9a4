"""Every query on settlements and their items. Tenant isolation lives here: a provider sees
its own settlements, operators and auditors all, enterprises none."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, and_, false, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Role
from services.voucher.db import PageRequest, paginate
from services.voucher.redemption.rules import Payee
from services.voucher.settlement.rules import ItemKind, SettlementStatus
from services.voucher.tables import Redemption, RedemptionRefund, Settlement, SettlementItem


def visible(actor: Actor) -> Select[Any]:
    stmt = select(Settlement)
    if actor.sees_everything:
        return stmt
    if actor.role is Role.PROVIDER and actor.provider_id is not None:
        return stmt.where(Settlement.provider_id == actor.provider_id)
    return stmt.where(false())


async def get(
    session: AsyncSession, actor: Actor, settlement_id: uuid.UUID, *, for_update: bool = False
) -> Settlement | None:
    stmt = visible(actor).where(Settlement.id == settlement_id).execution_options(populate_existing=True)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession, actor: Actor, page: PageRequest, *,
    provider_id: uuid.UUID | None, programme_id: uuid.UUID | None, status: str | None,
) -> tuple[list[Settlement], str | None]:
    stmt = visible(actor)
    if provider_id is not None:
        stmt = stmt.where(Settlement.provider_id == provider_id)
    if programme_id is not None:
        stmt = stmt.where(Settlement.programme_id == programme_id)
    if status is not None:
        stmt = stmt.where(Settlement.status == status)
    rows, cursor = await paginate(session, stmt, Settlement.id, page)
    return list(rows), cursor


async def live_for_period(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID, first: date, last: date
) -> Settlement | None:
    stmt = select(Settlement).where(
        Settlement.provider_id == provider_id, Settlement.programme_id == programme_id,
        Settlement.period_start == first, Settlement.period_end == last,
        Settlement.status != SettlementStatus.CANCELLED.value,
    )
    return (await session.execute(stmt)).scalars().first()


def _live_item(*conditions: Any) -> Any:
    return select(SettlementItem.id).where(SettlementItem.released_at.is_(None), *conditions).exists()  # type: ignore[union-attr]


async def unsettled_captures(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID, starts_at: datetime, ends_at: datetime
) -> list[Any]:
    """Captures in [starts_at, ends_at) in no live settlement, oldest first: rows of (id,
    order_reference, captured_amount, captured_at) — plain rows, not entities, since a month
    may hold a hundred thousand."""
    stmt = (
        select(Redemption.id, Redemption.order_reference, Redemption.captured_amount,  # type: ignore[call-overload]
               Redemption.captured_at)
        .where(
            Redemption.provider_id == provider_id, Redemption.programme_id == programme_id,
            Redemption.captured_at >= starts_at, Redemption.captured_at < ends_at,  # type: ignore[operator]
            Redemption.captured_amount > 0,
            Redemption.payee == Payee.PROVIDER.value,  # claims are paid to enterprises, not settled
            ~_live_item(SettlementItem.redemption_id == Redemption.id, SettlementItem.kind == ItemKind.CAPTURE.value),
        )
        .order_by(Redemption.captured_at, Redemption.id)  # type: ignore[arg-type]
    )
    return list((await session.execute(stmt)).all())


async def unsettled_refunds(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID, ends_at: datetime
) -> list[Any]:
    """Refunds made before `ends_at`, in no live settlement, whose capture is settled (in a
    live settlement, this one included): a refund follows its capture. Rows of (id, amount,
    created_at, redemption_id, order_reference)."""
    stmt = (
        select(RedemptionRefund.id, RedemptionRefund.amount, RedemptionRefund.created_at,  # type: ignore[call-overload]
               Redemption.id.label("redemption_id"), Redemption.order_reference)
        .join(Redemption, Redemption.id == RedemptionRefund.redemption_id)  # type: ignore[arg-type]
        .where(
            Redemption.provider_id == provider_id, Redemption.programme_id == programme_id,
            RedemptionRefund.created_at < ends_at,  # type: ignore[operator]
            ~_live_item(SettlementItem.refund_id == RedemptionRefund.id),
            _live_item(and_(SettlementItem.redemption_id == Redemption.id,
                            SettlementItem.kind == ItemKind.CAPTURE.value)),
        )
        .order_by(RedemptionRefund.created_at, RedemptionRefund.id)  # type: ignore[arg-type]
    )
    return list((await session.execute(stmt)).all())


async def items(session: AsyncSession, settlement_id: uuid.UUID) -> list[SettlementItem]:
    stmt = (
        select(SettlementItem)
        .where(SettlementItem.settlement_id == settlement_id)
        .order_by(SettlementItem.occurred_at, SettlementItem.id)  # type: ignore[arg-type]
    )
    return list((await session.execute(stmt)).scalars().all())


async def insert_items(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Settlement items in bulk (one executemany, no ORM objects)."""
    if rows:
        await session.execute(insert(SettlementItem.__table__), rows)  # type: ignore[attr-defined]


async def add_all(session: AsyncSession, rows: list[Any]) -> None:
    session.add_all(rows)
    await session.flush()


async def monthly_due(session: AsyncSession, first: date, last: date, start: datetime, end: datetime,
                      limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(provider, programme) pairs with a capture in [start, end) that no live settlement holds
    and no settlement at all for exactly this period: the scheduled run's work. One the office
    cancelled is not made again by the schedule (the office creates it by hand if it wants)."""
    live_period = select(Settlement.id).where(
        Settlement.provider_id == Redemption.provider_id, Settlement.programme_id == Redemption.programme_id,
        Settlement.period_start == first, Settlement.period_end == last,
    ).exists()
    held = _live_item(SettlementItem.kind == ItemKind.CAPTURE.value, SettlementItem.redemption_id == Redemption.id)
    rows = await session.execute(
        select(Redemption.provider_id, Redemption.programme_id).distinct()
        .where(Redemption.captured_at >= start, Redemption.captured_at < end,  # type: ignore[operator]
               Redemption.payee == Payee.PROVIDER.value, ~held, ~live_period)
        .order_by(Redemption.provider_id, Redemption.programme_id).limit(limit)
    )
    return [(p, g) for p, g in rows.all()]
