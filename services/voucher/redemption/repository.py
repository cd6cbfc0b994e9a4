"""Every query on redemptions, refunds and order subsidies. Tenant isolation lives here."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Select, cast, false, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Role
from services.voucher.db import PageRequest, paginate
from services.voucher.ids import uuid7
from services.voucher.redemption.rules import Payee, RedemptionStatus
from services.voucher.tables import OrderSubsidy, Redemption, RedemptionRefund

ORDERS = OrderSubsidy.__table__


def visible(actor: Actor) -> Select[Any]:
    """A provider sees its redemptions, an enterprise the redemptions of its vouchers."""
    stmt = select(Redemption)
    if actor.sees_everything:
        return stmt
    if actor.role is Role.PROVIDER and actor.provider_id is not None:
        # A claim names the provider but is the enterprise's: the provider neither sees nor moves it.
        return stmt.where(Redemption.provider_id == actor.provider_id, Redemption.payee == Payee.PROVIDER.value)
    if actor.role is Role.ENTERPRISE and actor.enterprise_id is not None:
        return stmt.where(Redemption.enterprise_id == actor.enterprise_id)
    return stmt.where(false())


async def get(
    session: AsyncSession, actor: Actor, redemption_id: uuid.UUID, *, for_update: bool = False
) -> Redemption | None:
    stmt = visible(actor).where(Redemption.id == redemption_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession,
    actor: Actor,
    page: PageRequest,
    *,
    voucher_id: uuid.UUID | None,
    status: str | None,
    order_reference: str | None,
) -> tuple[Any, str | None]:
    stmt = visible(actor)
    if voucher_id is not None:
        stmt = stmt.where(Redemption.voucher_id == voucher_id)
    if status is not None:
        stmt = stmt.where(Redemption.status == status)
    if order_reference is not None:
        stmt = stmt.where(Redemption.order_reference == order_reference)
    return await paginate(session, stmt, Redemption.id, page)


async def live_on_order(
    session: AsyncSession, voucher_id: uuid.UUID, provider_id: uuid.UUID, order_reference: str
) -> Redemption | None:
    stmt = select(Redemption).where(
        Redemption.voucher_id == voucher_id,
        Redemption.provider_id == provider_id,
        Redemption.order_reference == order_reference,
        Redemption.status != RedemptionStatus.VOIDED.value,
    )
    return (await session.execute(stmt)).scalars().first()


async def active_holds_of_voucher(session: AsyncSession, voucher_id: uuid.UUID) -> list[Redemption]:
    stmt = (
        select(Redemption)
        .where(Redemption.voucher_id == voucher_id, Redemption.status == RedemptionStatus.HELD.value)
        .order_by(Redemption.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


async def expired_hold_ids(session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    stmt = (
        select(Redemption.id)
        .where(Redemption.status == RedemptionStatus.HELD.value, Redemption.hold_expires_at <= now)
        .order_by(Redemption.hold_expires_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def lock_order(
    session: AsyncSession,
    *,
    provider_id: uuid.UUID,
    order_reference: str,
    enterprise_id: uuid.UUID,
    unit: str,
    order_amount: int,
    now: datetime,
) -> OrderSubsidy:
    """The order's subsidy row, created on first use, locked. An order is usually new: the
    insert returns the row then (ours alone until we commit); otherwise it is read locked."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    created = (await session.scalars(
        insert(OrderSubsidy)
        .values(id=uuid7(), provider_id=provider_id, order_reference=order_reference,
                enterprise_id=enterprise_id, unit=unit, order_amount=order_amount, subsidised=0,
                created_at=now)
        .on_conflict_do_nothing(index_elements=["provider_id", "order_reference"])
        .returning(OrderSubsidy)
    )).first()
    if created is not None:
        return created
    stmt = (
        select(OrderSubsidy)
        .where(OrderSubsidy.provider_id == provider_id, OrderSubsidy.order_reference == order_reference)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one()


async def order_for(session: AsyncSession, provider_id: uuid.UUID, order_reference: str) -> OrderSubsidy:
    stmt = (
        select(OrderSubsidy)
        .where(OrderSubsidy.provider_id == provider_id, OrderSubsidy.order_reference == order_reference)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one()


async def refunds_of(session: AsyncSession, redemption_id: uuid.UUID) -> list[RedemptionRefund]:
    stmt = select(RedemptionRefund).where(RedemptionRefund.redemption_id == redemption_id).order_by(RedemptionRefund.id)
    return list((await session.execute(stmt)).scalars())


async def add(session: AsyncSession, *rows: Any) -> None:
    session.add_all(rows)
    await session.flush()


async def stale_holds_on_order(
    session: AsyncSession, provider_id: uuid.UUID, order_reference: str, now: datetime
) -> int:
    """Subsidy still counted on an order by holds whose TTL has passed but whose release has
    not been posted yet (they are void when read)."""
    stmt = select(func.coalesce(cast(func.sum(Redemption.held_amount), BigInteger), 0)).where(
        Redemption.provider_id == provider_id,
        Redemption.order_reference == order_reference,
        Redemption.status == RedemptionStatus.HELD.value,
        Redemption.hold_expires_at <= now,
    )
    return int((await session.execute(stmt)).scalar_one())


async def stale_holds_in_period(
    session: AsyncSession, programme_id: uuid.UUID, enterprise_id: uuid.UUID, period_key: str, now: datetime
) -> tuple[int, int]:
    """(subsidy, order spend) still counted in a period by expired, unposted holds."""
    stmt = select(
        func.coalesce(cast(func.sum(Redemption.held_amount), BigInteger), 0),
        func.coalesce(cast(func.sum(Redemption.order_amount), BigInteger), 0),
    ).where(
        Redemption.programme_id == programme_id,
        Redemption.enterprise_id == enterprise_id,
        Redemption.period_key == period_key,
        Redemption.status == RedemptionStatus.HELD.value,
        Redemption.hold_expires_at <= now,
    )
    amount, spend = (await session.execute(stmt)).one()
    return int(amount), int(spend)
