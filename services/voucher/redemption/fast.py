"""One-step redeem on PostgreSQL in five statements (docs/decisions.md, "Redeem fast path").

The general path (`service.redeem`) handles every case through the ORM: about thirty
statements. Almost every redeem is the same case, though: an active voucher, an approved and
enrolled provider, a new order reference, a period already open, no expired hold to release
first. This module does exactly that case in five statements on the request's own connection
and transaction, under the same locks in the same order (voucher → order → period usage):

1. the voucher, locked, with its enterprise's USCC, its programme's terms and the provider's
   status;
2. the order's subsidy row, created (so locked) — a known order reference is not the case;
3. the enterprise's period usage, locked;
4. read after every lock, so current: the voucher's balances, the two accounts the capture pays
   through, the expired holds still counted in the period, the provider's enrolment, both
   parties' related parties, and whether the voucher has an expired hold to release;
5. everything written at once: order and usage counters, the redemption, both journals with
   their postings and balance moves, the outbox events, and the voucher's status if it settles.

Whenever the case is not the common one — any refusal, anything to create or to release — it
returns None before writing anything that matters, and the general path decides, with its own
refusals and explanations. The rows written, the audit events and the outbox events are the
general path's, built by the same functions (`ledger.journal`, `outbox.announcement`,
`audit.record`); tests/redemption/test_fast_path.py compares the two paths row by row.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.voucher import metrics
from services.voucher.actor import Actor
from services.voucher.audit import service as audit
from services.voucher.events import service as outbox
from services.voucher.ids import uuid7
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind, transfer
from services.voucher.programmes.rules import (
    CATEGORY_GROUPS_BY_KIND,
    PayoutMode,
    ProgrammeKind,
    category_group,
    period_key,
)
from services.voucher.providers.rules import ProviderStatus
from services.voucher.redemption.rules import Payee, RedemptionStatus
from services.voucher.redemption.subsidy import Item, compute, parse_tiers
from services.voucher.tables import Redemption
from services.voucher.vouchers.rules import VoucherStatus, normalise_code, settled_status

if TYPE_CHECKING:
    from services.voucher.redemption.service import HoldRequest

HELD = RedemptionStatus.HELD.value

_CONTEXT = """
SELECT v.id, v.programme_id, v.enterprise_id, v.kind, v.unit, v.face_value, v.status, v.valid_from,
       v.expires_at, v.available_account_id, v.held_account_id, v.used_account_id,
       e.uscc, p.kind, p.mode, p.rate_table, p.tiers, p.stacking_ceiling_bps, p.enterprise_cap, p.cap_period,
       p.cap_timezone, p.hold_ttl_seconds, pr.status
FROM voucher v
JOIN enterprise e ON e.id = v.enterprise_id
JOIN programme p ON p.id = v.programme_id
JOIN provider pr ON pr.id = %(provider)s
WHERE v.code = %(code)s
FOR UPDATE OF v
"""

_NEW_ORDER = """
INSERT INTO order_subsidy (id, provider_id, order_reference, enterprise_id, unit, order_amount, subsidised, created_at)
VALUES (%s, %s, %s, %s, %s, %s, 0, %s)
ON CONFLICT (provider_id, order_reference) DO NOTHING
RETURNING id
"""

_USAGE = """
SELECT id, subsidised, subsidised_spend FROM enterprise_period_usage
WHERE programme_id = %s AND enterprise_id = %s AND period_key = %s
FOR UPDATE
"""

_AMOUNTS = """
SELECT (SELECT balance FROM ledger_account WHERE id = %(available)s),
       (SELECT balance FROM ledger_account WHERE id = %(held)s),
       (SELECT balance FROM ledger_account WHERE id = %(used)s),
       (SELECT id FROM ledger_account WHERE code = %(spent)s),
       (SELECT id FROM ledger_account WHERE code = %(payable)s),
       coalesce(sum(r.held_amount), 0)::bigint,
       coalesce(sum(r.order_amount), 0)::bigint,
       EXISTS (SELECT 1 FROM programme_enrolment pe
               WHERE pe.programme_id = %(programme)s AND pe.provider_id = %(provider)s AND pe.withdrawn_at IS NULL),
       (SELECT related_parties FROM enterprise WHERE id = %(enterprise)s),
       (SELECT related_parties FROM provider WHERE id = %(provider)s),
       EXISTS (SELECT 1 FROM redemption h
               WHERE h.voucher_id = %(voucher)s AND h.status = %(held_status)s AND h.hold_expires_at <= %(now)s)
FROM redemption r
WHERE r.programme_id = %(programme)s AND r.enterprise_id = %(enterprise)s AND r.period_key = %(period)s
  AND r.status = %(held_status)s AND r.hold_expires_at <= %(now)s
"""

_REDEMPTION_COLUMNS = (
    "id voucher_id programme_id enterprise_id provider_id order_reference order_amount unit line_items "
    "computation status held_amount captured_amount refunded_amount period_key hold_expires_at created_at "
    "captured_at voided_at void_reason payee"
).split()
_EVENT_COLUMNS = "id type occurred_at programme_id enterprise_id provider_id resource_type resource_id data dedupe_key".split()


def enabled(session: AsyncSession) -> bool:
    return bool(session.info.get("redeem_fast_path"))


async def redeem(session: AsyncSession, actor: Actor, request: HoldRequest, now: datetime) -> Redemption | None:
    """Redeem in five statements, or None: the general path must decide (nothing that
    matters was written; see the module docstring)."""
    code = normalise_code(request.voucher_code)
    if code is None or actor.provider_id is None:
        return None
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    run = _Runner(connection, raw)

    # After a wait for the voucher's lock, only the voucher's own columns are re-read: the rest
    # of this row is what stays fixed while a programme is open (terms, USCC) or is read before
    # the lock on the general path too (the provider's status). What can change meanwhile is
    # read by statement 4, after every lock.
    found = await run.one(_CONTEXT, {"provider": actor.provider_id, "code": code})
    if found is None:
        return None
    (voucher_id, programme_id, enterprise_id, voucher_kind, unit, face_value, voucher_status, valid_from,
     expires_at, available_id, held_id, used_id, uscc, programme_kind, mode, rate_table, tiers,
     stacking_ceiling_bps, enterprise_cap, cap_period, cap_timezone, hold_ttl_seconds, provider_status) = found
    if (
        uscc != request.enterprise_uscc.strip().upper()
        or provider_status != ProviderStatus.APPROVED.value
        or mode != PayoutMode.PROVIDER_REDEMPTION.value
        or voucher_status != VoucherStatus.ACTIVE.value
        or not valid_from <= now < expires_at
        or not _items_covered(programme_kind, rate_table, request.line_items)
    ):
        return None

    provider_id = actor.provider_id
    order_amount = sum(int(i["amount"]) for i in request.line_items)
    period = period_key(cap_period, cap_timezone, now)
    order = await run.one(_NEW_ORDER, (uuid7(), provider_id, request.order_reference, enterprise_id, unit,
                                       order_amount, now))
    if order is None:  # a known order reference: stacking and conflicts are the general path's
        return None
    usage = await run.one(_USAGE, (programme_id, enterprise_id, period))
    if usage is None:  # the period is not open yet: the general path creates it
        return None
    usage_id, subsidised, subsidised_spend = usage
    (available, held, used, spent_id, payable_id, stale_amount, stale_spend, enrolled, enterprise_parties,
     provider_parties, expired_holds) = await run.one(_AMOUNTS, {
        "available": available_id, "held": held_id, "used": used_id,
        "spent": ledger.programme_code(programme_id, AccountKind.PROGRAMME_SPENT),
        "payable": ledger.provider_code(provider_id, programme_id, AccountKind.PROVIDER_PAYABLE),
        "programme": programme_id, "enterprise": enterprise_id, "provider": provider_id, "voucher": voucher_id,
        "period": period, "held_status": HELD, "now": now,
    })
    if (
        spent_id is None or payable_id is None  # the provider's first capture here opens its accounts
        or not enrolled
        or _party_ids(provider_parties) & _party_ids(enterprise_parties)
        or expired_holds  # the general path releases them first
    ):
        return None
    computation = compute(
        items=[Item(i["category"], int(i["amount"])) for i in request.line_items],
        rate_table=rate_table,
        tiers=parse_tiers(tiers),
        spend_so_far=subsidised_spend - stale_spend,
        stacking_ceiling_bps=stacking_ceiling_bps,
        already_subsidised_on_order=0,  # the order is new
        enterprise_cap_remaining=enterprise_cap - (subsidised - stale_amount),
        voucher_available=available,
    )
    subsidy = computation.subsidy
    if subsidy == 0:  # a refusal: the general path explains it
        return None

    # From here on the case is the common one; what follows is the general path's hold then
    # capture, built by the same functions, written in one statement.
    redemption = Redemption(
        voucher_id=voucher_id, programme_id=programme_id, enterprise_id=enterprise_id, provider_id=provider_id,
        order_reference=request.order_reference, order_amount=order_amount, unit=unit,
        line_items=request.line_items,
        computation={**computation.as_dict(), "period": period, "enterprise_cap": enterprise_cap,
                     "subsidised_this_period_before": subsidised},
        status=HELD, held_amount=subsidy, period_key=period,
        hold_expires_at=now + timedelta(seconds=hold_ttl_seconds), created_at=now, payee=Payee.PROVIDER.value,
        captured_amount=0, refunded_amount=0, captured_at=None, voided_at=None, void_reason=None,
    )
    placed = ledger.journal(
        kind="hold_placed", legs=transfer(available_id, held_id, subsidy, unit), now=now,
        programme_id=programme_id, voucher_id=voucher_id, redemption_id=redemption.id,
        memo=f"hold for order {request.order_reference}",
    )
    await ledger.record_journal(session, placed)
    await audit.record(
        session, "hold.placed", "redemption", redemption.id, now=now,
        after={**audit.fields(redemption, "status order_reference order_amount held_amount hold_expires_at payee "
                                          "period_key"),
               "subsidy": subsidy, "limited_by": computation.limited_by},
        programme_id=programme_id, enterprise_id=enterprise_id, provider_id=provider_id, voucher_id=voucher_id,
    )
    captured = ledger.journal(
        kind="hold_captured",
        legs=[*transfer(held_id, used_id, subsidy, unit), *transfer(spent_id, payable_id, subsidy, unit)],
        now=now, programme_id=programme_id, voucher_id=voucher_id, redemption_id=redemption.id,
        memo=f"captured {subsidy} of {subsidy} for order {request.order_reference}",
    )
    await ledger.record_journal(session, captured)
    redemption.status = RedemptionStatus.CAPTURED.value
    redemption.captured_amount = subsidy
    redemption.captured_at = now
    metrics.redemption_captured(session, programme_id=programme_id, kind=voucher_kind, unit=unit, amount=subsidy)
    after = {"status": redemption.status, "captured_amount": subsidy, "released": 0}
    ids = {"programme_id": programme_id, "enterprise_id": enterprise_id, "provider_id": provider_id}
    await audit.record(
        session, "redemption.captured", "redemption", redemption.id, now=now,
        before={"status": HELD, "held_amount": subsidy}, after=after, voucher_id=voucher_id, announce=False, **ids,
    )
    events = [outbox.announcement("redemption.captured", "redemption", redemption.id, now=now, after=after,
                                  voucher_id=voucher_id, **ids)]
    events += outbox.balance_marks(voucher_id=voucher_id, programme_id=programme_id, enterprise_id=enterprise_id,
                                   face_value=face_value, used=used + subsidy, unit=unit, now=now)
    settled = settled_status(VoucherStatus.ACTIVE, available - subsidy, held).value
    if settled != voucher_status:
        await audit.record(session, f"voucher.{settled}", "voucher", voucher_id, now=now,
                           before={"status": voucher_status}, after={"status": settled},
                           programme_id=programme_id, enterprise_id=enterprise_id, voucher_id=voucher_id)

    write = _Write()
    write.update("order_subsidy", "subsidised = subsidised + %s", (subsidy,), order[0])
    write.update("enterprise_period_usage", "subsidised = subsidised + %s, subsidised_spend = subsidised_spend + %s",
                 (subsidy, order_amount), usage_id)
    write.insert("redemption", _REDEMPTION_COLUMNS, [{c: getattr(redemption, c) for c in _REDEMPTION_COLUMNS}])
    write.insert("ledger_transaction", list(placed.transaction), [placed.transaction, captured.transaction])
    write.insert("ledger_posting", list(placed.postings[0]), [*placed.postings, *captured.postings])
    moves: dict[uuid.UUID, int] = {}
    for entry in (placed, captured):
        for account, delta in entry.deltas.items():
            moves[account] = moves.get(account, 0) + delta
    for account, delta in sorted(moves.items()):
        if delta:  # unmaterialised accounts (spent, payable) match no row, as in ledger.post
            write.update("ledger_account", "balance = balance + %s", (delta,), account, "AND is_materialised")
    plain_events = [e for e in events if e is not None and e["dedupe_key"] is None]
    marks = [e for e in events if e is not None and e["dedupe_key"] is not None]
    write.insert("outbox_event", _EVENT_COLUMNS, plain_events)
    write.insert("outbox_event", _EVENT_COLUMNS, marks, "ON CONFLICT (dedupe_key) DO NOTHING")
    if settled != voucher_status:
        write.update("voucher", "status = %s, status_changed_at = %s, version = version + 1", (settled, now), voucher_id)
    await run.execute(*write.statement())
    return redemption


def _dumps(value: Any) -> str:
    """Ids as text, instants in ISO 8601 with their offset (PostgreSQL reads both back)."""
    return json.dumps(value, default=_text, separators=(",", ":"))


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _party_ids(parties: list[dict[str, Any]] | None) -> set[str]:
    return {p["party_id"] for p in parties or []}


def _items_covered(programme_kind: str, rate_table: dict[str, Any], items: list[dict[str, Any]]) -> bool:
    groups = CATEGORY_GROUPS_BY_KIND[ProgrammeKind(programme_kind)]
    return all(category_group(i["category"]) in groups and i["category"] in rate_table for i in items)


class _Write:
    """One statement of data-modifying CTEs: each runs exactly once, all in one round trip.
    Every row it updates is already locked by this transaction, or (the voucher's accounts)
    only ever moved under the voucher's lock, which this transaction holds."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: list[Any] = []

    def update(
        self, table: str, assignments: str, values: tuple[Any, ...], row_id: uuid.UUID, extra: str = ""
    ) -> None:
        self.parts.append(f"UPDATE {table} SET {assignments} WHERE id = %s {extra}")  # noqa: S608 - our constants
        self.params += [*values, row_id]

    def insert(self, table: str, columns: list[str], rows: list[dict[str, Any]], extra: str = "") -> None:
        """The rows go as one JSON parameter, expanded by jsonb_populate_recordset: a few
        parameters per statement (psycopg caches the parsing of those with at most 50)."""
        if not rows:
            return
        names = ", ".join(columns)
        sql = f"INSERT INTO {table} ({names}) SELECT {names} FROM jsonb_populate_recordset(NULL::{table}, %s) {extra}"  # noqa: S608 - our constants
        self.parts.append(sql)
        self.params.append(Jsonb([{c: row[c] for c in columns} for row in rows], dumps=_dumps))

    def statement(self) -> tuple[str, list[Any]]:
        ctes = ",\n".join(f"w{i} AS ({part})" for i, part in enumerate(self.parts))
        return f"WITH {ctes}\nSELECT 1", self.params


class _Runner:
    """Statements on the driver connection (inside SQLAlchemy's transaction); a database
    error is raised as SQLAlchemy's, so it maps to the same problem as anywhere else."""

    def __init__(self, connection: AsyncConnection, raw: psycopg.AsyncConnection[Any]) -> None:
        self.connection = connection
        self.raw = raw

    async def one(self, sql: str, params: Any) -> tuple[Any, ...] | None:
        async with self.raw.cursor(row_factory=tuple_row) as cursor:
            await self._execute(cursor, sql, params)
            return await cursor.fetchone()

    async def execute(self, sql: str, params: Any) -> None:
        async with self.raw.cursor(row_factory=tuple_row) as cursor:
            await self._execute(cursor, sql, params)

    async def _execute(self, cursor: psycopg.AsyncCursor[Any], sql: str, params: Any) -> None:
        try:
            await cursor.execute(sql, params)
        except psycopg.Error as exc:
            # A lost connection is invalidated as SQLAlchemy does for its own statements, so the
            # rollback that follows does not fail on it and the pool never hands it out again.
            lost = self.raw.broken or self.raw.closed
            if lost:
                await self.connection.invalidate(exc)
            raise DBAPIError.instance(sql, params, exc, psycopg.Error, connection_invalidated=lost) from exc
