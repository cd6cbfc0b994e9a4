"""Queries of usage reconciliation: our side of the comparison, and the kept reports."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Role
from services.voucher.db import PageRequest, paginate
from services.voucher.redemption.rules import Payee
from services.voucher.tables import Redemption, UsageReconciliation


def visible(actor: Actor) -> Select[UsageReconciliation]:
    stmt = select(UsageReconciliation)
    if actor.sees_everything:
        return stmt
    if actor.role is Role.PROVIDER and actor.provider_id is not None:
        return stmt.where(col(UsageReconciliation.provider_id) == actor.provider_id)
    return stmt.where(false())


async def our_orders(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID, starts_at: datetime, ends_at: datetime,
    *, limit: int | None = None,
) -> list[tuple[str, int, int]]:
    """(order reference, order amount, subsidy net of refunds) of the provider's captures in
    [starts_at, ends_at), one row per order; at most `limit` of them."""
    stmt = (
        select(col(Redemption.order_reference), func.max(col(Redemption.order_amount)),
               func.sum(col(Redemption.captured_amount) - col(Redemption.refunded_amount)))
        .where(
            col(Redemption.provider_id) == provider_id, col(Redemption.programme_id) == programme_id,
            col(Redemption.captured_at) >= starts_at, col(Redemption.captured_at) < ends_at,
            col(Redemption.captured_amount) > 0,
            col(Redemption.payee) == Payee.PROVIDER.value,
        )
        .group_by(col(Redemption.order_reference))
        .limit(limit)
    )
    return [(ref, int(amount), int(subsidy)) for ref, amount, subsidy in (await session.execute(stmt)).all()]


async def add(session: AsyncSession, row: UsageReconciliation) -> None:
    session.add(row)
    await session.flush()


async def get(session: AsyncSession, actor: Actor, report_id: uuid.UUID) -> UsageReconciliation | None:
    stmt = visible(actor).where(col(UsageReconciliation.id) == report_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession, actor: Actor, page: PageRequest, *, programme_id: uuid.UUID | None
) -> tuple[list[UsageReconciliation], str | None]:
    stmt = visible(actor)
    if programme_id is not None:
        stmt = stmt.where(col(UsageReconciliation.programme_id) == programme_id)
    rows, cursor = await paginate(session, stmt, col(UsageReconciliation.id), page)
    return list(rows), cursor
