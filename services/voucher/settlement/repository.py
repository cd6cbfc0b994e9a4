"""Every query on settlements and their items. Tenant isolation lives here: a provider sees
its own settlements, operators and auditors all, enterprises none."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Exists,
    Select,
    and_,
    case,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Role
from services.voucher.db import PageRequest, paginate, table_of
from services.voucher.redemption.rules import CAPTURE_JOURNALS, REFUND_JOURNAL, Payee
from services.voucher.settlement.rules import ItemKind, SettlementStatus
from services.voucher.tables import (
    LedgerPosting,
    LedgerTransaction,
    ProgrammeEnrolment,
    Redemption,
    RedemptionRefund,
    Settlement,
    SettlementItem,
    Voucher,
)


def visible(actor: Actor) -> Select[Settlement]:
    stmt = select(Settlement)
    if actor.sees_everything:
        return stmt
    if actor.role is Role.PROVIDER and actor.provider_id is not None:
        return stmt.where(col(Settlement.provider_id) == actor.provider_id)
    return stmt.where(false())


async def get(
    session: AsyncSession, actor: Actor, settlement_id: uuid.UUID, *, for_update: bool = False
) -> Settlement | None:
    stmt = visible(actor).where(col(Settlement.id) == settlement_id).execution_options(populate_existing=True)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession, actor: Actor, page: PageRequest, *,
    provider_id: uuid.UUID | None, programme_id: uuid.UUID | None, status: str | None,
) -> tuple[list[Settlement], str | None]:
    stmt = visible(actor)
    if provider_id is not None:
        stmt = stmt.where(col(Settlement.provider_id) == provider_id)
    if programme_id is not None:
        stmt = stmt.where(col(Settlement.programme_id) == programme_id)
    if status is not None:
        stmt = stmt.where(col(Settlement.status) == status)
    rows, cursor = await paginate(session, stmt, col(Settlement.id), page)
    return list(rows), cursor


async def live_for_period(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID, first: date, last: date
) -> Settlement | None:
    stmt = select(Settlement).where(
        col(Settlement.provider_id) == provider_id, col(Settlement.programme_id) == programme_id,
        col(Settlement.period_start) == first, col(Settlement.period_end) == last,
        col(Settlement.status) != SettlementStatus.CANCELLED.value,
    )
    return (await session.execute(stmt)).scalars().first()


def _live_item(*conditions: ColumnElement[bool]) -> Exists:
    live = col(SettlementItem.released_at).is_(None)
    return select(col(SettlementItem.id)).where(live, *conditions).exists()


async def unsettled_captures(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID, starts_at: datetime, ends_at: datetime
) -> list[Any]:
    """Captures in [starts_at, ends_at) in no live settlement, oldest first: rows of (id,
    order_reference, captured_amount, captured_at) — plain rows, not entities, since a month
    may hold a hundred thousand."""
    stmt = (
        select(col(Redemption.id), col(Redemption.order_reference), col(Redemption.captured_amount),
               col(Redemption.captured_at))
        .where(
            col(Redemption.provider_id) == provider_id, col(Redemption.programme_id) == programme_id,
            col(Redemption.captured_at) >= starts_at, col(Redemption.captured_at) < ends_at,
            col(Redemption.captured_amount) > 0,
            col(Redemption.payee) == Payee.PROVIDER.value,  # claims are paid to enterprises, not settled
            ~_live_item(col(SettlementItem.redemption_id) == col(Redemption.id),
                        col(SettlementItem.kind) == ItemKind.CAPTURE.value),
        )
        .order_by(col(Redemption.captured_at), col(Redemption.id))
    )
    return list((await session.execute(stmt)).all())


#: A refund that a settlement would take back: in no live settlement itself, its capture in one.
_REFUND_TO_SETTLE = (
    ~_live_item(col(SettlementItem.refund_id) == col(RedemptionRefund.id)),
    _live_item(and_(col(SettlementItem.redemption_id) == col(RedemptionRefund.redemption_id),
                    col(SettlementItem.kind) == ItemKind.CAPTURE.value)),
)


async def unsettled_refunds(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID, ends_at: datetime
) -> list[Any]:
    """Refunds made before `ends_at`, in no live settlement, whose capture is settled (in a
    live settlement, this one included): a refund follows its capture. Rows of (id, amount,
    created_at, redemption_id, order_reference)."""
    stmt: Select[uuid.UUID, int, datetime, uuid.UUID, str] = (
        select(col(RedemptionRefund.id), col(RedemptionRefund.amount), col(RedemptionRefund.created_at),
               col(Redemption.id).label("redemption_id"), col(Redemption.order_reference))
        .join(Redemption, col(Redemption.id) == col(RedemptionRefund.redemption_id))
        .where(
            col(RedemptionRefund.provider_id) == provider_id, col(RedemptionRefund.programme_id) == programme_id,
            col(RedemptionRefund.created_at) < ends_at, *_REFUND_TO_SETTLE,
        )
        .order_by(col(RedemptionRefund.created_at), col(RedemptionRefund.id))
    )
    return list((await session.execute(stmt)).all())


async def refunds_of_unpaid_captures(session: AsyncSession, settlement_id: uuid.UUID) -> list[uuid.UUID]:
    """The redemptions whose refunds this settlement takes back while their capture is neither
    in it nor in a paid settlement (in one not paid yet, or, its settlement cancelled, in none):
    a repayment of them would give back what the provider has not been paid."""
    refund_line = table_of(SettlementItem).alias("refund_line")
    capture_line = table_of(SettlementItem).alias("capture_line")
    holder = table_of(Settlement).alias("holder")
    paid_capture = (
        select(capture_line.c.id)
        .join(holder, holder.c.id == capture_line.c.settlement_id)
        .where(capture_line.c.redemption_id == refund_line.c.redemption_id,
               capture_line.c.kind == ItemKind.CAPTURE.value, capture_line.c.released_at.is_(None),
               (holder.c.id == settlement_id) | (holder.c.status == SettlementStatus.PAID.value))
        .exists()
    )
    found = await session.execute(
        select(refund_line.c.redemption_id).distinct()
        .where(refund_line.c.settlement_id == settlement_id, refund_line.c.kind == ItemKind.REFUND.value,
               ~paid_capture)
        .order_by(refund_line.c.redemption_id))
    return list(found.scalars())


async def first_unsettled_refund(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID, since: datetime,
) -> datetime | None:
    """When the pair's oldest refund made since `since` that no live settlement holds, of a
    capture one does, was made: what a settlement of a month on or after it would take back.
    Read by the index on the pair's refunds by time, so neither a history settled long ago nor
    another pair's refunds are read."""
    found = await session.execute(
        select(col(RedemptionRefund.created_at))
        .where(col(RedemptionRefund.provider_id) == provider_id, col(RedemptionRefund.programme_id) == programme_id,
               col(RedemptionRefund.created_at) >= since, *_REFUND_TO_SETTLE)
        .order_by(col(RedemptionRefund.created_at)).limit(1))
    return found.scalar_one_or_none()


async def release_items(session: AsyncSession, settlement_id: uuid.UUID, now: datetime) -> None:
    """Every line of a cancelled settlement released, in one statement: one UPDATE per line,
    through ORM objects, had taken a 100,000-line draft's cancellation that many statements."""
    it = table_of(SettlementItem)
    await session.execute(update(it).where(it.c.settlement_id == settlement_id, it.c.released_at.is_(None))
                          .values(released_at=now))


async def items(session: AsyncSession, settlement_id: uuid.UUID) -> list[SettlementItem]:
    stmt = (
        select(SettlementItem)
        .where(col(SettlementItem.settlement_id) == settlement_id)
        .order_by(col(SettlementItem.occurred_at), col(SettlementItem.id))
    )
    return list((await session.execute(stmt)).scalars().all())


async def totals_from_records(session: AsyncSession, settlement: Settlement) -> tuple[int, int, int]:
    """What a settlement's lines add up to, each read as the capture or refund it names and as
    the ledger has it: (captured, refunded, lines). A capture line counts only if its amount is
    its redemption's captured amount and what that redemption's journals moved to its voucher's
    used value; a refund line only if it is its refund's amount and the redemption's refunds are
    what its journals took back; either only for a redemption of the settlement's provider and
    programme, paid to the provider. A line that differs counts nothing, so the totals then
    differ from the settlement's own. The ledger is read through the vouchers' used accounts
    (postings are indexed by account), so the cost follows the settlement's vouchers, not the
    whole ledger."""
    it, r, rr, v = table_of(SettlementItem), table_of(Redemption), table_of(RedemptionRefund), table_of(Voucher)
    p, t = table_of(LedgerPosting), table_of(LedgerTransaction)
    live = and_(it.c.settlement_id == settlement.id, it.c.released_at.is_(None))
    named = select(it.c.redemption_id).where(live)
    used = select(v.c.used_account_id).select_from(v.join(r, r.c.voucher_id == v.c.id)).where(r.c.id.in_(named))
    ledger = (
        select(t.c.redemption_id,
               func.sum(case((t.c.kind.in_(CAPTURE_JOURNALS), p.c.amount), else_=0)).label("captured"),
               func.sum(case((t.c.kind == REFUND_JOURNAL, -p.c.amount), else_=0)).label("refunded"))
        .select_from(p.join(t, t.c.id == p.c.transaction_id))
        .where(p.c.account_id.in_(used), t.c.redemption_id.in_(named))
        .group_by(t.c.redemption_id).subquery()
    )
    refunds = (select(rr.c.redemption_id, func.sum(rr.c.amount).label("recorded"))
               .where(rr.c.redemption_id.in_(named)).group_by(rr.c.redemption_id).subquery())
    line_refund = rr.alias("line_refund")
    mine = and_(r.c.provider_id == settlement.provider_id, r.c.programme_id == settlement.programme_id,
                r.c.payee == Payee.PROVIDER.value)
    capture = and_(mine, it.c.kind == ItemKind.CAPTURE.value, it.c.amount == r.c.captured_amount,
                   r.c.captured_amount == func.coalesce(ledger.c.captured, 0))
    refund = and_(mine, it.c.kind == ItemKind.REFUND.value, it.c.amount == -line_refund.c.amount,
                  line_refund.c.redemption_id == it.c.redemption_id,
                  func.coalesce(refunds.c.recorded, 0) == func.coalesce(ledger.c.refunded, 0))
    stmt = (
        select(func.coalesce(func.sum(case((capture, it.c.amount), else_=0)), 0),
               func.coalesce(func.sum(case((refund, -it.c.amount), else_=0)), 0), func.count())
        .select_from(it.join(r, r.c.id == it.c.redemption_id)
                     .outerjoin(line_refund, line_refund.c.id == it.c.refund_id)
                     .outerjoin(ledger, ledger.c.redemption_id == it.c.redemption_id)
                     .outerjoin(refunds, refunds.c.redemption_id == it.c.redemption_id))
        .where(live)
    )
    captured, refunded, lines = (await session.execute(stmt)).one()
    return int(captured), int(refunded), int(lines)


async def insert_items(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Settlement items in bulk (one executemany, no ORM objects)."""
    if rows:
        await session.execute(insert(table_of(SettlementItem)), rows)


async def add_all(session: AsyncSession, rows: list[Any]) -> None:
    session.add_all(rows)
    await session.flush()


async def enrolled_pairs(session: AsyncSession) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(provider, programme) of every enrolment ever made (a withdrawal keeps its row): every
    pair that can have captures to settle."""
    rows = await session.execute(
        select(col(ProgrammeEnrolment.provider_id), col(ProgrammeEnrolment.programme_id))
        .order_by(col(ProgrammeEnrolment.provider_id), col(ProgrammeEnrolment.programme_id)))
    return [(p, g) for p, g in rows.all()]


async def first_capture(session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID) -> datetime | None:
    """When the pair's first capture was made (the index on provider, programme, captured_at)."""
    found = await session.execute(
        select(func.min(col(Redemption.captured_at)))
        .where(col(Redemption.provider_id) == provider_id, col(Redemption.programme_id) == programme_id,
               col(Redemption.captured_at).is_not(None)))
    return found.scalar_one()


async def settled_periods(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID,
) -> set[tuple[date, date]]:
    """The periods of the pair's settlements in any status, a cancelled one included: the
    schedule does not make again what the office cancelled."""
    rows = await session.execute(
        select(col(Settlement.period_start), col(Settlement.period_end))
        .where(col(Settlement.provider_id) == provider_id, col(Settlement.programme_id) == programme_id))
    return {(a, b) for a, b in rows.all()}


async def first_cancelled_day(session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID) -> date | None:
    """The first day of the pair's earliest cancelled settlement: a refund in its days is taken
    back by no live settlement, and the job, which does not make a cancelled period again,
    looks for refunds from there."""
    return (await session.execute(
        select(func.min(col(Settlement.period_start)))
        .where(col(Settlement.provider_id) == provider_id, col(Settlement.programme_id) == programme_id,
               col(Settlement.status) == SettlementStatus.CANCELLED.value))).scalar_one_or_none()


#: How many of a pair's newest live settlements the job looks back through for a refund that
#: committed after they were made (`first_recent_day`).
RECENT_SETTLEMENTS = 2


async def first_recent_day(session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID) -> date | None:
    """The first day of the pair's `RECENT_SETTLEMENTS` newest live settlements (ids are in
    creation order). A refund stamped before such a settlement's end and committed after it was
    made (a request that stalled across its creation) is taken back by no settlement made so
    far, and no later one of a later period need ever be made (an independent review, December
    2026): the job looks for refunds from there too. A stall across more creations than that is
    the reconciliation's to show ("refund of a settled capture that a live settlement should
    have taken back")."""
    st = table_of(Settlement)
    newest = (
        select(st.c.period_start)
        .where(st.c.provider_id == provider_id, st.c.programme_id == programme_id,
               st.c.status != SettlementStatus.CANCELLED.value)
        .order_by(st.c.id.desc()).limit(RECENT_SETTLEMENTS).subquery()
    )
    first: date | None = (await session.execute(select(func.min(newest.c.period_start)))).scalar_one_or_none()
    return first


async def first_out_of_order_day(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID,
) -> date | None:
    """The first day of the pair's earliest live settlement made before a live one that starts
    earlier (the office settled April, or 16 March to 30 April, by hand before the job drafted
    March; or a capture that missed its month was settled later as a day of its own). A refund
    made after that earlier-starting one ends, of a capture it settles, was taken back by
    neither — the one made first found its capture unsettled, the one made last takes refunds
    made before its own end — so the job looks for refunds from there."""
    later, earlier = table_of(Settlement).alias("later"), table_of(Settlement).alias("earlier")
    made_after = (
        select(earlier.c.id)
        .where(earlier.c.provider_id == provider_id, earlier.c.programme_id == programme_id,
               earlier.c.status != SettlementStatus.CANCELLED.value,
               earlier.c.period_start < later.c.period_start, earlier.c.id > later.c.id)  # made after: ids in creation order
        .exists()
    )
    first: date | None = (await session.execute(
        select(func.min(later.c.period_start))
        .where(later.c.provider_id == provider_id, later.c.programme_id == programme_id,
               later.c.status != SettlementStatus.CANCELLED.value, made_after))).scalar_one_or_none()
    return first


async def next_unsettled_capture(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID, start: datetime, end: datetime,
) -> datetime | None:
    """When the pair's first capture payable to the provider in [start, end) that no live
    settlement holds was made: the index on (provider, programme, captured_at) read in order,
    stopping at the first."""
    held = _live_item(col(SettlementItem.kind) == ItemKind.CAPTURE.value,
                      col(SettlementItem.redemption_id) == col(Redemption.id))
    found = await session.execute(
        select(col(Redemption.captured_at))
        .where(col(Redemption.provider_id) == provider_id, col(Redemption.programme_id) == programme_id,
               col(Redemption.captured_at) >= start, col(Redemption.captured_at) < end,
               col(Redemption.payee) == Payee.PROVIDER.value, ~held)
        .order_by(col(Redemption.captured_at)).limit(1))
    return found.scalar_one_or_none()
