"""Every query on redemptions, refunds and order subsidies. Tenant isolation lives here.

The value engine's statements (service.py) are built once, typed by the tables, and sent
through services/voucher/driver.py: several per round trip on PostgreSQL. Locks are taken in
one fixed order on every path — voucher → redemption → order subsidy → enterprise period usage
→ accounts — each kind in sorted order, so concurrent requests queue instead of deadlocking.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    and_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import col

from services.voucher import driver
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Role
from services.voucher.db import PageRequest, dialect_name, paginate, table_of
from services.voucher.driver import Batch, Step, insert_rows
from services.voucher.ids import uuid7
from services.voucher.ledger.rules import (
    AccountKind,
    enterprise_code,
    programme_code,
    provider_code,
)
from services.voucher.redemption.rules import (
    Hold,
    Order,
    Parties,
    Payee,
    RedemptionStatus,
    Stale,
    Terms,
    Usage,
    VoucherState,
)
from services.voucher.tables import (
    Enterprise,
    EnterprisePeriodUsage,
    LedgerAccount,
    OrderSubsidy,
    Programme,
    ProgrammeEnrolment,
    Provider,
    Redemption,
    RedemptionRefund,
    Voucher,
)

V, E, P, PR = table_of(Voucher), table_of(Enterprise), table_of(Programme), table_of(Provider)
EN, R, ORD = table_of(ProgrammeEnrolment), table_of(Redemption), table_of(OrderSubsidy)
U = table_of(EnterprisePeriodUsage)
A, RF = table_of(LedgerAccount), table_of(RedemptionRefund)
HELD = RedemptionStatus.HELD.value
#: `status = 'held'` written into the SQL, not bound: a prepared statement's generic plan can then
#: use the partial indexes on live holds (migration 0009), which a parameter would not prove.
IS_HELD = R.c.status == literal_column("'held'")


def is_expired_hold(now: Any) -> Any:
    """A hold past its TTL whose release is not posted yet: the hold-expiry job's work."""
    return and_(IS_HELD, R.c.hold_expires_at <= now)


def is_lapsed_hold(now: Any, voucher_expires_at: Any) -> Any:
    """A hold that has lapsed — its TTL passed or its voucher expired (`rules.lapse`) — whose
    release is not posted yet: void when read (DESIGN §2). `voucher_expires_at`: the expiry of
    the hold's voucher, joined or correlated by the caller."""
    return lapsed_hold_where(now, voucher_expires_at <= now)


def lapsed_hold_where(now: Any, voucher_has_expired: Any) -> Any:
    """`is_lapsed_hold`, with whether the hold's voucher has expired at `now` told however the
    caller reads it (a join, or an EXISTS on the voucher)."""
    return and_(IS_HELD, or_(R.c.hold_expires_at <= now, voucher_has_expired))


def _visible_to(actor: Actor) -> ColumnElement[bool]:
    """A provider sees its redemptions, an enterprise the redemptions of its vouchers."""
    if actor.sees_everything:
        return true()
    if actor.role is Role.PROVIDER and actor.provider_id is not None:
        # A claim names the provider but is the enterprise's: the provider neither sees nor moves it.
        return (col(Redemption.provider_id) == actor.provider_id) & (
            col(Redemption.payee) == Payee.PROVIDER.value)
    if actor.role is Role.ENTERPRISE and actor.enterprise_id is not None:
        return col(Redemption.enterprise_id) == actor.enterprise_id
    return false()


def _readable(actor: Actor) -> Any:
    """The redemptions the actor may see (`_visible_to`), each with its voucher's expiry: a read needs it to show a hold on a
    voucher that has expired as void (`rules.lapse`). The voucher is read by its primary key."""
    return (select(Redemption, V.c.expires_at)
            .join_from(table_of(Redemption), V, V.c.id == col(Redemption.voucher_id))
            .where(_visible_to(actor)))


async def get(session: AsyncSession, actor: Actor, redemption_id: uuid.UUID) -> tuple[Redemption, datetime] | None:
    """A redemption the actor may see, with its voucher's expiry."""
    found = (await session.execute(_readable(actor).where(col(Redemption.id) == redemption_id))).first()
    return None if found is None else (found[0], found[1])


async def list_page(
    session: AsyncSession,
    actor: Actor,
    page: PageRequest,
    *,
    voucher_id: uuid.UUID | None,
    status: str | None,
    order_reference: str | None,
    now: datetime,
) -> tuple[list[tuple[Redemption, datetime]], str | None]:
    """A page of the redemptions the actor may see, each with its voucher's expiry; `status` as
    reads show it: a hold that has lapsed is `voided`, not `held`."""
    stmt = _readable(actor)
    if voucher_id is not None:
        stmt = stmt.where(col(Redemption.voucher_id) == voucher_id)
    if status == HELD:
        stmt = stmt.where(IS_HELD, ~is_lapsed_hold(now, V.c.expires_at))
    elif status == RedemptionStatus.VOIDED.value:
        stmt = stmt.where(or_(col(Redemption.status) == status, is_lapsed_hold(now, V.c.expires_at)))
    elif status is not None:
        stmt = stmt.where(col(Redemption.status) == status)
    if order_reference is not None:
        stmt = stmt.where(col(Redemption.order_reference) == order_reference)
    rows, cursor = await paginate(session, stmt, col(Redemption.id), page, whole_rows=True)
    return [(r[0], r[1]) for r in rows], cursor


async def refunds_of(session: AsyncSession, redemption_id: uuid.UUID) -> list[RedemptionRefund]:
    stmt = (
        select(RedemptionRefund)
        .where(col(RedemptionRefund.redemption_id) == redemption_id)
        .order_by(col(RedemptionRefund.id))
    )
    return list((await session.execute(stmt)).scalars())


async def expired_hold_ids(session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    stmt = (
        select(col(Redemption.id))
        .where(is_expired_hold(now))
        .order_by(col(Redemption.hold_expires_at))
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


# -- the value engine: what it locks and reads -----------------------------------------------

_VOUCHER_COLUMNS = (V.c.id, V.c.code, V.c.programme_id, V.c.enterprise_id, V.c.kind, V.c.unit, V.c.face_value,
                    V.c.status, V.c.status_reason, V.c.valid_from, V.c.expires_at, V.c.available_account_id,
                    V.c.held_account_id, V.c.used_account_id)
_HOLD_COLUMNS = (R.c.id, R.c.voucher_id, R.c.programme_id, R.c.enterprise_id, R.c.provider_id, R.c.order_reference,
                 R.c.order_amount, R.c.unit, R.c.status, R.c.held_amount, R.c.captured_amount, R.c.refunded_amount,
                 R.c.period_key, R.c.hold_expires_at, R.c.payee, R.c.void_reason)
_AV, _HE, _US = aliased(A), aliased(A), aliased(A)

_BY_CODE = V.c.code == bindparam("code")
_VOUCHER_ID_BY_CODE = select(V.c.id).where(_BY_CODE).scalar_subquery()
# Locking by code: PostgreSQL re-reads the locked row after a wait, so its columns are current.
_LOCK_VOUCHER_BY_CODE = select(*_VOUCHER_COLUMNS).where(_BY_CODE).with_for_update()
# Sent after the lock, so a fresh snapshot: balances (they move only under the voucher's lock),
# the programme's terms, and what can change while the lock was awaited (the provider's status
# and enrolment, both parties' related parties).
_HOLD_CONTEXT = (
    select(
        _AV.c.balance, _HE.c.balance, _US.c.balance,
        E.c.uscc, E.c.related_parties, PR.c.status, PR.c.related_parties,
        exists().where(EN.c.programme_id == V.c.programme_id, EN.c.provider_id == bindparam("provider_id"),
                       EN.c.withdrawn_at.is_(None)),
        PR.c.uscc, P.c.id, P.c.code, P.c.kind, P.c.mode, P.c.rate_table, P.c.tiers, P.c.stacking_ceiling_bps,
        P.c.enterprise_cap, P.c.cap_period, P.c.cap_timezone, P.c.hold_ttl_seconds,
    )
    .select_from(
        V.join(E, E.c.id == V.c.enterprise_id).join(P, P.c.id == V.c.programme_id)
        .join(_AV, _AV.c.id == V.c.available_account_id).join(_HE, _HE.c.id == V.c.held_account_id)
        .join(_US, _US.c.id == V.c.used_account_id)
        .outerjoin(PR, PR.c.id == bindparam("provider_id"))
    )
    .where(_BY_CODE)
)
_EXPIRED_HOLDS_BY_CODE = (
    select(*_HOLD_COLUMNS)
    .where(R.c.voucher_id == _VOUCHER_ID_BY_CODE, is_expired_hold(bindparam("now")))
    .order_by(R.c.id)
    .with_for_update()
)
_BALANCES = (
    select(_AV.c.balance, _HE.c.balance, _US.c.balance)
    .select_from(V.join(_AV, _AV.c.id == V.c.available_account_id).join(_HE, _HE.c.id == V.c.held_account_id)
                 .join(_US, _US.c.id == V.c.used_account_id))
    .where(V.c.id == bindparam("voucher_id"))
)


def _of_redemption(visible_only: bool) -> ColumnElement[bool]:
    """The redemption named by `:redemption_id`, if the caller may move it (a provider: its own
    redemptions, never a claim's)."""
    where = R.c.id == bindparam("redemption_id")
    if visible_only:
        where = where & (R.c.provider_id == bindparam("provider_id")) & (R.c.payee == Payee.PROVIDER.value)
    return where


_LOCK_VOUCHER_OF = {
    flag: select(*_VOUCHER_COLUMNS).where(V.c.id == select(R.c.voucher_id).where(_of_redemption(flag))
                                          .scalar_subquery()).with_for_update()
    for flag in (True, False)
}
_LOCK_REDEMPTION = {flag: select(R).where(_of_redemption(flag)).with_for_update() for flag in (True, False)}
_R_NAMES = [c.key for c in R.c]
_HOLD_NAMES = [c.key for c in _HOLD_COLUMNS]
_BALANCES_OF = {
    flag: select(_AV.c.balance, _HE.c.balance, _US.c.balance)
    .select_from(V.join(_AV, _AV.c.id == V.c.available_account_id).join(_HE, _HE.c.id == V.c.held_account_id)
                 .join(_US, _US.c.id == V.c.used_account_id))
    .where(V.c.id == select(R.c.voucher_id).where(_of_redemption(flag)).scalar_subquery())
    for flag in (True, False)
}

_ORDER_KEY = (ORD.c.provider_id == bindparam("provider_id")) & (ORD.c.order_reference == bindparam("order_reference"))
_ORDER_COLUMNS = (ORD.c.id, ORD.c.enterprise_id, ORD.c.unit, ORD.c.order_amount, ORD.c.subsidised, ORD.c.decided_at)
_USAGE_COLUMNS = (U.c.id, U.c.period_key, U.c.subsidised, U.c.subsidised_spend, U.c.decided_at)
# A hold's order: created, or (known) locked — one statement either way. On a known order the
# no-op update takes the row's lock and returns it as it stands.
_NEW_OR_KNOWN_ORDER = {
    name: make(ORD).values(id=bindparam("id"), provider_id=bindparam("provider_id"),
                           order_reference=bindparam("order_reference"), enterprise_id=bindparam("enterprise_id"),
                           unit=bindparam("unit"), order_amount=bindparam("order_amount"), subsidised=0,
                           created_at=bindparam("now"))
    .on_conflict_do_update(index_elements=["provider_id", "order_reference"],
                           set_={"order_reference": make(ORD).excluded.order_reference})
    .returning(*_ORDER_COLUMNS)
    for name, make in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}
_LOCK_ORDER = select(*_ORDER_COLUMNS).where(_ORDER_KEY).with_for_update()
_USAGE_KEY = ((U.c.programme_id == bindparam("programme_id")) & (U.c.enterprise_id == bindparam("enterprise_id"))
              & (U.c.period_key == bindparam("period_key")))
_NEW_USAGE = {
    name: make(U).values(id=bindparam("id"), programme_id=bindparam("programme_id"),
                         enterprise_id=bindparam("enterprise_id"), period_key=bindparam("period_key"),
                         granted=0, committed=0, subsidised=0, subsidised_spend=0).on_conflict_do_nothing(
                             index_elements=["programme_id", "enterprise_id", "period_key"])
    for name, make in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}
_LOCK_USAGE = select(*_USAGE_COLUMNS).where(_USAGE_KEY).with_for_update()


class _UuidText(FunctionElement[str]):
    """A uuid column as Python's `str(uuid)` spells it (lower-case, dashed), on both engines."""

    type = String()
    name = "uuid_text"
    inherit_cache = True


@compiles(_UuidText)
@compiles(_UuidText, "postgresql")
def _uuid_text_pg(element: _UuidText, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS TEXT)"


@compiles(_UuidText, "sqlite")
def _uuid_text_sqlite(element: _UuidText, compiler: SQLCompiler, **kw: Any) -> str:
    hex_ = compiler.process(element.clauses, **kw)  # SQLAlchemy keeps a uuid as 32 hex digits here
    parts = " || '-' || ".join(f"substr({hex_}, {start}, {length})"
                               for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12)))
    return f"lower({parts})"


_MARKS = (uuid.UUID(int=1), uuid.UUID(int=2))


def _code_in_sql(code: str, *columns: Any) -> Any:
    """The SQL for an account code that ledger/rules.py spelled as `code` with the uuids
    `_MARKS` in place of `columns`: the same format, never a copy of it."""
    marks = {str(mark): column for mark, column in zip(_MARKS, columns, strict=False)}
    pieces: list[ColumnElement[str]] = [_UuidText(marks[p]) if p in marks else literal_column("'" + p.replace("'", "''") + "'", String)
              for p in re.split("(" + "|".join(map(re.escape, marks)) + ")", code) if p]
    expression = pieces[0]
    for piece in pieces[1:]:
        expression = expression.op("||", return_type=String)(piece)
    return expression


_ONE, _TWO = _MARKS
# The accounts an existing redemption's capture or refund pays through, named from its own row:
# the programme's spent and available (the pool), and the payee's payable.
_SPENT_CODE = _code_in_sql(programme_code(_ONE, AccountKind.PROGRAMME_SPENT), R.c.programme_id)
_POOL_CODE = _code_in_sql(programme_code(_ONE, AccountKind.PROGRAMME_AVAILABLE), R.c.programme_id)
_PAYABLE_CODE = case(
    (R.c.payee == Payee.ENTERPRISE.value,
     _code_in_sql(enterprise_code(_ONE, _TWO, AccountKind.ENTERPRISE_PAYABLE), R.c.enterprise_id, R.c.programme_id)),
    else_=_code_in_sql(provider_code(_ONE, _TWO, AccountKind.PROVIDER_PAYABLE), R.c.provider_id, R.c.programme_id),
)

# An existing redemption's order and usage rows, locked in the same round trip as the redemption
# (after it, in the lock order), found through the redemption's own columns, which never change.
_LOCK_ORDER_OF = {
    flag: select(*_ORDER_COLUMNS)
    .select_from(ORD.join(R, and_(ORD.c.provider_id == R.c.provider_id, ORD.c.order_reference == R.c.order_reference)))
    .where(_of_redemption(flag)).with_for_update(of=ORD)
    for flag in (True, False)
}
_LOCK_USAGE_OF = {
    flag: select(*_USAGE_COLUMNS)
    .select_from(U.join(R, and_(U.c.programme_id == R.c.programme_id, U.c.enterprise_id == R.c.enterprise_id,
                                U.c.period_key == R.c.period_key)))
    .where(_of_redemption(flag)).with_for_update(of=U)
    for flag in (True, False)
}
_ACCOUNTS_OF = {
    flag: select(A.c.code, A.c.id).where(A.c.code.in_([
        select(code).where(_of_redemption(flag)).scalar_subquery() for code in (_SPENT_CODE, _PAYABLE_CODE, _POOL_CODE)
    ]))
    for flag in (True, False)
}


def _sum(column: Any) -> Any:
    return func.coalesce(cast(func.sum(column), BigInteger), 0)


def _account(n: int) -> Any:
    return select(A.c.id).where(A.c.code == bindparam(f"code_{n}")).scalar_subquery()


# The new hold's own voucher's holds: its TTL alone decides, for that voucher has just been found
# usable at `now`, under its lock, so its expiry has not come (`rules.lapse` agrees).
_VOID_WHEN_READ = is_expired_hold(bindparam("now"))
# Another voucher's hold is void for the order's room and the cap once its TTL has passed or its
# voucher has expired (its holds are voided first, DESIGN §2), whether or not the job has posted
# either. A capture of it locked after this operation is judged at this operation's instant or
# later (`rules.judged_at`), so it is refused then: the room is never given twice.
_STALE = lapsed_hold_where(bindparam("now"), exists().where(V.c.id == R.c.voucher_id, V.c.expires_at <= bindparam("now")))
# Read after every lock, in one statement: whether the voucher already subsidises the order (its
# holds past their TTL are void when read, and released by this very operation); what holds past
# their TTL, or on vouchers that have expired, still count on the order and in the period (only
# live holds are read); the accounts a capture pays through.
_AFTER_LOCKS = select(
    exists().where(R.c.voucher_id == bindparam("voucher_id"), R.c.provider_id == bindparam("provider_id"),
                   R.c.order_reference == bindparam("order_reference"),
                   R.c.status != RedemptionStatus.VOIDED.value, ~_VOID_WHEN_READ),
    select(_sum(R.c.held_amount)).where(R.c.provider_id == bindparam("provider_id"),
                                        R.c.order_reference == bindparam("order_reference"),
                                        _STALE).scalar_subquery(),
    select(_sum(R.c.held_amount)).where(R.c.programme_id == bindparam("programme_id"),
                                        R.c.enterprise_id == bindparam("enterprise_id"),
                                        R.c.period_key == bindparam("period_key"), _STALE).scalar_subquery(),
    select(_sum(R.c.order_amount)).where(R.c.programme_id == bindparam("programme_id"),
                                         R.c.enterprise_id == bindparam("enterprise_id"),
                                         R.c.period_key == bindparam("period_key"), _STALE).scalar_subquery(),
    _account(1), _account(2), _account(3),
)
_LOCK_ACCOUNT = select(A.c.balance).where(A.c.id == bindparam("account_id")).with_for_update()


def _dialect(session: AsyncSession) -> str:
    return dialect_name(session)


def _voucher(row: tuple[Any, ...], balances: tuple[Any, ...]) -> VoucherState:
    return VoucherState(*row, *(int(b) for b in balances))


async def provider_status(session: AsyncSession, provider_id: uuid.UUID) -> str | None:
    step = (await driver.run(session, driver.one_statement(select(PR.c.status).where(PR.c.id == bindparam("id")),
                                                          {"id": provider_id}))).steps[0]
    return step.scalar()  # type: ignore[no-any-return]


class HoldContext:
    """What a new hold is decided on, read in two round trips (service.py explains when)."""

    voucher: VoucherState | None
    terms: Terms
    parties: Parties
    expired: list[Hold]


async def lock_voucher_for_hold(
    session: AsyncSession, code: str, provider_id: uuid.UUID, now: datetime
) -> HoldContext:
    """Round trip 1 of a hold: the voucher locked by code, then (a fresh snapshot, after the
    lock) its balances, terms and parties, and its holds past their TTL, locked."""
    batch = Batch()
    locked = batch.add(_LOCK_VOUCHER_BY_CODE, {"code": code})
    context = batch.add(_HOLD_CONTEXT, {"code": code, "provider_id": provider_id})
    expired = batch.add(_EXPIRED_HOLDS_BY_CODE, {"code": code, "now": now})
    await driver.run(session, batch)
    found = HoldContext()
    row, extra = locked.first(), context.first()
    if row is None or extra is None:
        found.voucher = None
        return found
    found.voucher = _voucher(row, extra[:3])
    found.parties = Parties(extra[3], extra[4] or [], extra[5], extra[6] or [], bool(extra[7]), extra[8])
    found.terms = Terms(*extra[9:])
    found.expired = [Hold(*r) for r in expired.rows]
    return found


class Locked:
    """Orders and usage rows locked, and what the decision reads after them (a hold's round trip 2;
    an existing redemption's round trip 1, `lock_hold`)."""

    def __init__(self) -> None:
        self.orders: dict[tuple[uuid.UUID, str], Step] = {}
        self.usages: dict[str, Step] = {}
        self.after: Step | None = None
        self.codes: tuple[str, ...] = ()
        #: (code, id) rows of the accounts read by code in SQL (an existing redemption's).
        self.by_code: Step | None = None

    def order(self, provider_id: uuid.UUID, order_reference: str) -> Order:
        return Order(*self.orders[(provider_id, order_reference)].rows[0])

    def usage(self, period_key: str) -> Usage:
        return Usage(*self.usages[period_key].rows[0])

    def found_order(self, provider_id: uuid.UUID, order_reference: str) -> Order | None:
        step = self.orders.get((provider_id, order_reference))
        return Order(*step.rows[0]) if step is not None and step.rows else None

    def found_usage(self, period_key: str) -> Usage | None:
        step = self.usages.get(period_key)
        return Usage(*step.rows[0]) if step is not None and step.rows else None

    def missing_usages(self) -> list[str]:
        return [period for period, step in self.usages.items() if not step.rows]

    def has_live_redemption(self) -> bool:
        assert self.after is not None
        return bool(self.after.rows[0][0])

    def stale(self) -> Stale:
        assert self.after is not None
        _, on_order, in_period, spend, *_ = self.after.rows[0]
        return Stale(int(on_order), int(in_period), int(spend))

    def account_ids(self) -> dict[str, uuid.UUID]:
        """The accounts read by code (a code with no account yet is absent)."""
        if self.by_code is not None:
            return {code: id_ for code, id_ in self.by_code.rows}
        if self.after is None:
            return {}
        found = self.after.rows[0][-3:]
        return {code: id_ for code, id_ in zip(self.codes, found, strict=False) if id_ is not None}


def _codes(codes: Sequence[str]) -> dict[str, str]:
    padded = [*codes, *list(codes[-1:]) * (3 - len(codes))]
    return {"code_1": padded[0], "code_2": padded[1], "code_3": padded[2]}


def lock_counters(
    session: AsyncSession, batch: Batch, locked: Locked, *, orders: Sequence[tuple[uuid.UUID, str]],
    new_order: dict[str, Any] | None, programme_id: uuid.UUID, enterprise_id: uuid.UUID, periods: Sequence[str],
) -> None:
    """Lock the order rows (creating the new order's) and the enterprise's usage rows, each kind
    in sorted order. A usage row missing (a period's first use) is `open_usages`' to create."""
    dialect = _dialect(session)
    for provider_id, order_reference in sorted(set(orders)):
        key = {"provider_id": provider_id, "order_reference": order_reference}
        is_new = new_order is not None and (new_order["provider_id"], new_order["order_reference"]) == (
            provider_id, order_reference)
        locked.orders[(provider_id, order_reference)] = (
            batch.add(_NEW_OR_KNOWN_ORDER[dialect], new_order) if is_new else batch.add(_LOCK_ORDER, key))
    for period in sorted(set(periods)):
        locked.usages[period] = batch.add(
            _LOCK_USAGE, {"programme_id": programme_id, "enterprise_id": enterprise_id, "period_key": period})


async def open_usages(session: AsyncSession, locked: Locked, programme_id: uuid.UUID, enterprise_id: uuid.UUID) -> None:
    """Create and lock the usage rows `lock_counters` found missing (rare: a period's first use)."""
    missing = locked.missing_usages()
    if not missing:
        return
    batch = Batch()
    for period in sorted(missing):
        key = {"programme_id": programme_id, "enterprise_id": enterprise_id, "period_key": period}
        batch.add(_NEW_USAGE[_dialect(session)], {**key, "id": uuid7()})
        locked.usages[period] = batch.add(_LOCK_USAGE, key)
    await driver.run(session, batch)


def read_for_hold(
    batch: Batch, locked: Locked, *, voucher_id: uuid.UUID, provider_id: uuid.UUID, order_reference: str,
    programme_id: uuid.UUID, enterprise_id: uuid.UUID, period_key: str, now: datetime,
    account_codes: Sequence[str],
) -> None:
    """After the locks, in one statement: `_AFTER_LOCKS`."""
    locked.codes = tuple(account_codes)
    locked.after = batch.add(_AFTER_LOCKS, {
        "voucher_id": voucher_id, "provider_id": provider_id, "order_reference": order_reference,
        "programme_id": programme_id, "enterprise_id": enterprise_id, "period_key": period_key, "now": now,
        **_codes(account_codes)})


class HoldLocks:
    voucher: VoucherState | None
    hold: Hold | None
    #: The redemption's whole row (column -> value), for the answer.
    row: dict[str, Any]
    #: Its order and usage rows, locked, and the accounts it pays through (an existing hold's).
    counters: Locked


async def lock_hold(session: AsyncSession, redemption_id: uuid.UUID, provider_id: uuid.UUID | None) -> HoldLocks:
    """One round trip: a redemption's voucher, then the redemption, locked; then (after the
    locks) the voucher's balances; then its order and usage rows, locked, and the accounts a
    capture or a refund of it pays through. `provider_id`: only that provider's own redemptions
    (None: any, for the office's and the jobs' use). A redemption not found locks nothing more;
    one that is found but then refused (already captured, say) has locked its counters for
    nothing until the transaction ends."""
    flag = provider_id is not None
    params = {"redemption_id": redemption_id, **({"provider_id": provider_id} if flag else {})}
    batch = Batch()
    voucher = batch.add(_LOCK_VOUCHER_OF[flag], params)
    hold = batch.add(_LOCK_REDEMPTION[flag], params)
    balances = batch.add(_BALANCES_OF[flag], params)
    order = batch.add(_LOCK_ORDER_OF[flag], params)
    usage = batch.add(_LOCK_USAGE_OF[flag], params)
    accounts = batch.add(_ACCOUNTS_OF[flag], params)
    await driver.run(session, batch)
    found = HoldLocks()
    row, balance_row, hold_row = voucher.first(), balances.first(), hold.first()
    found.voucher = _voucher(row, balance_row) if row is not None and balance_row is not None else None
    found.hold, found.row, found.counters = None, {}, Locked()
    if hold_row is not None and found.voucher is not None:
        found.row = dict(zip(_R_NAMES, hold_row, strict=True))
        found.hold = held = Hold(**{name: found.row[name] for name in _HOLD_NAMES})
        found.counters.orders[(held.provider_id, held.order_reference)] = order
        found.counters.usages[held.period_key] = usage
        found.counters.by_code = accounts
    return found


def lock_account(batch: Batch, account_id: uuid.UUID) -> Step:
    return batch.add(_LOCK_ACCOUNT, {"account_id": account_id})


async def voucher_holds(session: AsyncSession, voucher_id: uuid.UUID) -> list[Hold]:
    """Every live hold of a (locked) voucher, locked, in id order."""
    stmt = select(*_HOLD_COLUMNS).where(R.c.voucher_id == voucher_id, IS_HELD).order_by(
        R.c.id).with_for_update()
    return [Hold(*r) for r in (await driver.run(session, driver.one_statement(stmt))).steps[0].rows]


async def balances(session: AsyncSession, voucher_id: uuid.UUID) -> tuple[int, int, int]:
    step = (await driver.run(session, driver.one_statement(_BALANCES, {"voucher_id": voucher_id}))).steps[0]
    available, held, used = step.rows[0]
    return int(available), int(held), int(used)


# -- the value engine: what it writes ------------------------------------------------------

_INSERT_REDEMPTION = insert_rows(R)
_INSERT_REFUND = insert_rows(RF)
_SET_CAPTURED = update(R).where(R.c.id == bindparam("redemption_id")).values(
    status=bindparam("status"), captured_amount=bindparam("captured_amount"), captured_at=bindparam("at"))
_SET_VOIDED = update(R).where(R.c.id == bindparam("redemption_id")).values(
    status=RedemptionStatus.VOIDED.value, voided_at=bindparam("at"), void_reason=bindparam("void_reason"))
_SET_REFUNDED = update(R).where(R.c.id == bindparam("redemption_id")).values(
    status=bindparam("status"), refunded_amount=bindparam("refunded_amount"))


def _later(column: Any) -> Any:
    """The column's instant or the operation's, whichever is later (never moved back)."""
    now = bindparam("now", type_=column.type)
    return case((column > now, column), else_=now)


# Each also records the operation's instant on the row (`decided_at`): a capture that locks the
# row after this operation committed judges a hold's expiry no earlier (`rules.judged_at`).
_ORDER_ADD = update(ORD).where(ORD.c.id == bindparam("order_id")).values(
    subsidised=ORD.c.subsidised + bindparam("delta"), decided_at=_later(ORD.c.decided_at))
_USAGE_ADD = update(U).where(U.c.id == bindparam("usage_id")).values(
    subsidised=U.c.subsidised + bindparam("delta"), subsidised_spend=U.c.subsidised_spend + bindparam("spend"),
    decided_at=_later(U.c.decided_at))
_VOUCHER_STATUS = update(V).where(V.c.id == bindparam("voucher_id")).values(
    status=bindparam("status"), status_changed_at=bindparam("at"), version=V.c.version + 1)


def insert_redemption(batch: Batch, row: dict[str, Any]) -> None:
    batch.add(_INSERT_REDEMPTION, row)


def insert_refund(batch: Batch, row: dict[str, Any]) -> None:
    batch.add(_INSERT_REFUND, row)


def set_captured(batch: Batch, redemption_id: uuid.UUID, amount: int, at: datetime, status: str) -> None:
    batch.add(_SET_CAPTURED, {"redemption_id": redemption_id, "captured_amount": amount, "at": at, "status": status})


def set_voided(batch: Batch, redemption_id: uuid.UUID, reason: str, at: datetime) -> None:
    batch.add(_SET_VOIDED, {"redemption_id": redemption_id, "void_reason": reason, "at": at})


def set_refunded(batch: Batch, redemption_id: uuid.UUID, refunded: int, status: str) -> None:
    batch.add(_SET_REFUNDED, {"redemption_id": redemption_id, "refunded_amount": refunded, "status": status})


def move_counters(batch: Batch, orders: dict[uuid.UUID, int], usages: dict[uuid.UUID, tuple[int, int]],
                  now: datetime) -> None:
    """Add to orders' subsidised totals and usage rows' (subsidised, spend), netted per row, and
    record `now` on each: a row whose moves net to nothing too (a hold that releases its voucher's
    expired hold on the order and takes as much again has still judged other holds at `now`)."""
    batch.add(_ORDER_ADD, [{"order_id": k, "delta": v, "now": now} for k, v in sorted(orders.items())])
    batch.add(_USAGE_ADD, [{"usage_id": k, "delta": d, "spend": s, "now": now} for k, (d, s) in sorted(usages.items())])


def set_voucher_status(batch: Batch, voucher_id: uuid.UUID, status: str, at: datetime) -> None:
    batch.add(_VOUCHER_STATUS, {"voucher_id": voucher_id, "status": status, "at": at})
