"""Every query on vouchers and on enterprises' period usage. Tenant isolation lives here."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, and_, bindparam, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from services.voucher import driver
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Role
from services.voucher.db import Database, PageRequest, insert_of, paginate, table_of
from services.voucher.ids import uuid7
from services.voucher.redemption.repository import is_lapsed_hold
from services.voucher.tables import (
    EnterprisePeriodUsage,
    LedgerAccount,
    Programme,
    Redemption,
    Voucher,
)
from services.voucher.vouchers.rules import LAPSING, VoucherStatus

U = table_of(EnterprisePeriodUsage)


def visible(actor: Actor) -> Select[Voucher]:
    """Operators and auditors see every voucher, an enterprise its own, a provider none
    (providers look vouchers up by code and USCC instead)."""
    stmt = select(Voucher)
    if actor.sees_everything:
        return stmt
    if actor.role is Role.ENTERPRISE and actor.enterprise_id is not None:
        return stmt.where(col(Voucher.enterprise_id) == actor.enterprise_id)
    return stmt.where(false())


async def get(
    session: AsyncSession, actor: Actor, voucher_id: uuid.UUID, *, for_update: bool = False
) -> Voucher | None:
    stmt = visible(actor).where(col(Voucher.id) == voucher_id)
    if for_update:  # as get_by_id: decide on the locked row, not an object read before the lock
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_id(session: AsyncSession, voucher_id: uuid.UUID, *, for_update: bool = False) -> Voucher | None:
    stmt = select(Voucher).where(col(Voucher.id) == voucher_id)
    if for_update:  # refresh an object the session read before the lock: decide on the locked row
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_code(session: AsyncSession, code: str, *, for_update: bool = False) -> Voucher | None:
    stmt = select(Voucher).where(col(Voucher.code) == code)
    if for_update:  # refresh an object the session read before the lock: decide on the locked row
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession,
    actor: Actor,
    page: PageRequest,
    *,
    programme_id: uuid.UUID | None,
    enterprise_id: uuid.UUID | None,
    status: str | None,
    now: datetime,
) -> tuple[Any, str | None]:
    """`status` as each voucher reads now: one past its expiry whose expiry the job has not posted
    yet is expired, not the active it is stored as (as `effective_status` reads it)."""
    stmt = visible(actor)
    if programme_id is not None:
        stmt = stmt.where(col(Voucher.programme_id) == programme_id)
    if enterprise_id is not None:
        stmt = stmt.where(col(Voucher.enterprise_id) == enterprise_id)
    if status == VoucherStatus.EXPIRED.value:
        lapsing = [s.value for s in LAPSING]
        stmt = stmt.where(or_(col(Voucher.status) == status,
                              and_(col(Voucher.status).in_(lapsing), col(Voucher.expires_at) <= now)))
    elif status is not None:
        stmt = stmt.where(col(Voucher.status) == status)
        if VoucherStatus(status) in LAPSING:
            stmt = stmt.where(col(Voucher.expires_at) > now)
    return await paginate(session, stmt, col(Voucher.id), page)


async def add(session: AsyncSession, row: Voucher) -> None:
    session.add(row)
    await session.flush()


_AV, _HE, _US = (aliased(LedgerAccount) for _ in range(3))


V = table_of(Voucher)
# What the voucher's holds that have lapsed — past their TTL, or all of them once the voucher has
# expired — still hold in the ledger (their release is posted by a job or the voucher's next
# hold): read from live holds only (a partial index). Bind `now`.
EXPIRED_HELD = (
    select(func.coalesce(func.sum(Redemption.held_amount), 0))
    .where(col(Redemption.voucher_id) == V.c.id, is_lapsed_hold(bindparam("now"), V.c.expires_at))
    .correlate(V)
    .scalar_subquery()
)
class VoucherRow(NamedTuple):
    """A voucher as a read shows it: the columns of `Voucher` a view needs, straight from the
    row (a table model's instance costs more to build than the read costs to run)."""

    id: uuid.UUID
    code: str
    programme_id: uuid.UUID
    enterprise_id: uuid.UUID
    kind: str
    unit: str
    face_value: int
    status: str
    valid_from: datetime
    expires_at: datetime
    period_key: str
    issue_reference: str | None
    status_reason: str | None
    issued_at: datetime


_WITH_BALANCES = (
    select(*(V.c[name] for name in VoucherRow._fields),
           col(_AV.balance) + EXPIRED_HELD, col(_HE.balance) - EXPIRED_HELD, col(_US.balance))
    .join(_AV, col(_AV.id) == V.c.available_account_id)
    .join(_HE, col(_HE.id) == V.c.held_account_id)
    .join(_US, col(_US.id) == V.c.used_account_id)
    .where(V.c.id == bindparam("voucher_id"))
)
#: By what the actor may see (`visible`): every voucher, or an enterprise's own.
_WITH_BALANCES_OF = {True: _WITH_BALANCES,
                     False: _WITH_BALANCES.where(V.c.enterprise_id == bindparam("enterprise_id"))}
_WIDTH = len(VoucherRow._fields)


async def get_with_balances(
    db: Database, actor: Actor, voucher_id: uuid.UUID, now: datetime
) -> tuple[VoucherRow, int, int, int] | None:
    """A voucher the actor may see, with its three balances as of `now` (holds past their TTL
    count as released): one statement outside any transaction, on the driver's own connections
    (a read per request on the value path: no session of its own). Who sees what is
    `visible`'s rule: a provider none."""
    if actor.sees_everything:
        step = driver.one_statement(_WITH_BALANCES_OF[True], {"voucher_id": voucher_id, "now": now})
    elif actor.role is Role.ENTERPRISE and actor.enterprise_id is not None:
        step = driver.one_statement(_WITH_BALANCES_OF[False], {"voucher_id": voucher_id, "now": now,
                                                               "enterprise_id": actor.enterprise_id})
    else:
        return None
    row = (await db.read(step)).steps[0].first()
    if row is None:
        return None
    return VoucherRow(*row[:_WIDTH]), int(row[_WIDTH]), int(row[_WIDTH + 1]), int(row[_WIDTH + 2])


async def balances_of(session: AsyncSession, vouchers: list[Voucher], now: datetime) -> dict[uuid.UUID,
                                                                                            tuple[int, int, int]]:
    """Per voucher, its available, held and used balances as of `now` (holds past their TTL count
    as released, `EXPIRED_HELD`), in one statement: the balances and the lapsed holds had been
    two, and on PostgreSQL (a read outside a transaction) a hold that committed between them
    showed as released from balances that did not yet hold it — held below zero, available
    above face value (an independent review, December 2026)."""
    if not vouchers:
        return {}
    stmt = (
        select(V.c.id, col(_AV.balance) + EXPIRED_HELD, col(_HE.balance) - EXPIRED_HELD, col(_US.balance))
        .join(_AV, col(_AV.id) == V.c.available_account_id)
        .join(_HE, col(_HE.id) == V.c.held_account_id)
        .join(_US, col(_US.id) == V.c.used_account_id)
        .where(V.c.id.in_([v.id for v in vouchers]))
    )
    rows = (await session.execute(stmt, {"now": now})).all()
    return {voucher_id: (int(available), int(held), int(used)) for voucher_id, available, held, used in rows}


async def usage(
    session: AsyncSession, programme_id: uuid.UUID, enterprise_id: uuid.UUID, period_key: str
) -> EnterprisePeriodUsage | None:
    stmt = select(EnterprisePeriodUsage).where(
        col(EnterprisePeriodUsage.programme_id) == programme_id,
        col(EnterprisePeriodUsage.enterprise_id) == enterprise_id,
        col(EnterprisePeriodUsage.period_key) == period_key,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def lock_usage(
    session: AsyncSession, programme_id: uuid.UUID, enterprise_id: uuid.UUID, period_key: str
) -> EnterprisePeriodUsage:
    """The usage row for this enterprise, programme and period, created if missing, locked.
    It usually exists (issuing a voucher makes it): read it locked first, insert only if not."""
    stmt = (
        select(EnterprisePeriodUsage)
        .where(
            col(EnterprisePeriodUsage.programme_id) == programme_id,
            col(EnterprisePeriodUsage.enterprise_id) == enterprise_id,
            col(EnterprisePeriodUsage.period_key) == period_key,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    found = (await session.execute(stmt)).scalar_one_or_none()
    if found is not None:
        return found
    await session.execute(
        insert_of(session)(U)
        .values(id=uuid7(), programme_id=programme_id, enterprise_id=enterprise_id, period_key=period_key,
                granted=0, committed=0, subsidised=0, subsidised_spend=0)
        .on_conflict_do_nothing(index_elements=["programme_id", "enterprise_id", "period_key"])
    )
    return (await session.execute(stmt)).scalar_one()


#: What expiry changes: a revoked voucher has nothing left to expire (its revocation voided its
#: holds and returned its unused value), and expiring it would record a change that is none.
EXPIRABLE = [VoucherStatus.ACTIVE.value, VoucherStatus.SUSPENDED.value, VoucherStatus.EXHAUSTED.value]


async def due_for_expiry(session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    stmt = (
        select(col(Voucher.id))
        .where(col(Voucher.expires_at) <= now, col(Voucher.expiry_posted_at).is_(None),
               col(Voucher.status).in_(EXPIRABLE))
        .order_by(col(Voucher.expires_at))
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def programme_for_issue(session: AsyncSession, programme_id: uuid.UUID) -> Programme | None:
    """The programme, share-locked: closing it (an exclusive lock) waits for issuance to end."""
    stmt = (
        select(Programme)
        .where(col(Programme.id) == programme_id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()
