"""The value engine: hold, capture, void, one-step redeem, refund, the hold-expiry job, and the
holds a claim, a revocation or an expiry releases — one implementation of each.

Every operation reads, decides, then writes:
1. read under its locks, in as few round trips as the statements' dependencies allow
   (services/voucher/driver.py pipelines each batch): the voucher first, then its redemption,
   then order subsidies and usage rows, each kind in sorted order — the fixed lock order every
   path follows, so concurrent requests queue instead of deadlocking;
2. decide in pure code (rules.py, subsidy.py): every refusal is raised there, before anything
   is written;
3. write everything at once — redemption rows, journals with their postings and balance moves,
   counters, refunds, the voucher's status, audit and outbox events — as one batch: sent with
   the COMMIT when the caller says nothing else in the transaction reads it back (`deferred`,
   the HTTP routes), else at once (claims, revocation, jobs).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher import driver, metrics, pending
from services.voucher.actor import SYSTEM, Actor
from services.voucher.apikeys.rules import Role
from services.voucher.audit import service as audit
from services.voucher.db import PageRequest, table_of
from services.voucher.driver import Batch
from services.voucher.errors import Forbidden, NotFound
from services.voucher.events import service as outbox
from services.voucher.i18n import msg
from services.voucher.ids import uuid7
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import (
    AccountKind,
    Leg,
    enterprise_code,
    programme_code,
    provider_code,
    transfer,
)
from services.voucher.programmes.rules import period_key
from services.voucher.redemption import repository
from services.voucher.redemption import rules as decide
from services.voucher.redemption.rules import (
    REFUND_JOURNAL,
    RELEASE_JOURNAL,
    Hold,
    Payee,
    RedemptionRecord,
    RedemptionStatus,
    VoidReason,
    VoucherState,
)
from services.voucher.tables import Redemption, RedemptionRefund
from services.voucher.vouchers.rules import VoucherStatus, parse_code, settled_status

_REFUND_COLUMNS = table_of(RedemptionRefund).c
_RECORD_FIELDS = tuple(f.name for f in fields(RedemptionRecord))


@dataclass(frozen=True)
class HoldRequest:
    voucher_code: str
    enterprise_uscc: str
    order_reference: str
    line_items: list[dict[str, Any]]
    #: The subsidy the provider quoted: granted exactly, or the hold is refused.
    expected_subsidy: int | None = None


class _Writes:
    """What one operation writes, gathered while it is decided and sent as one batch."""

    def __init__(self, session: AsyncSession, now: datetime) -> None:
        self.session, self.now = session, now
        self.batch = Batch()
        self.journals: list[ledger.Journal] = []
        self.orders: dict[uuid.UUID, int] = defaultdict(int)
        self.usages: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0])

    async def journal(self, voucher: VoucherState, kind: str, legs: list[Leg], now: datetime, *,
                      redemption_id: uuid.UUID | None, memo: str) -> None:
        entry = ledger.journal(kind=kind, legs=legs, now=now, programme_id=voucher.programme_id, voucher_id=voucher.id,
                               redemption_id=redemption_id, memo=memo)
        self.journals.append(entry)
        await ledger.record_journal(self.session, entry)

    def counters(self, order_id: uuid.UUID, usage_id: uuid.UUID, amount: int, spend: int) -> None:
        self.orders[order_id] += amount
        self.usages[usage_id][0] += amount
        self.usages[usage_id][1] += spend

    async def send(self, *, deferred: bool) -> None:
        repository.move_counters(self.batch, dict(self.orders), {k: (d, s) for k, (d, s) in self.usages.items()},
                                 self.now)
        await ledger.write(self.session, self.batch, self.journals, record=False)
        if deferred:
            for step in self.batch.steps:
                for params in step.params if isinstance(step.params, list) else [step.params or {}]:
                    if not pending.defer(self.session, step.statement, params):
                        raise RuntimeError("a deferred write needs the transaction it belongs to")
        else:
            await driver.run(self.session, self.batch)


# -- hold and one-step redeem -----------------------------------------------------------------


async def hold(
    session: AsyncSession, actor: Actor, request: HoldRequest, now: datetime, *,
    provider_id: uuid.UUID | None = None, payee: Payee = Payee.PROVIDER, ttl: timedelta | None = None,
    deferred: bool = False,
) -> RedemptionRecord:
    """Reserve the subsidy for one order: computed from the programme's rates and tiers, capped
    by the stacking ceiling, the enterprise's remaining cap and the voucher's balance; the held
    amount leaves `available` at once. Every refusal moves nothing. The voucher's own holds
    past their TTL are released first (they are void when read).

    Claims use the same path with the claim's provider, the enterprise as payee and a `ttl`
    that lasts the review."""
    return await _place(session, actor, request, now, provider_id=provider_id, payee=payee, ttl=ttl,
                        capture=False, deferred=deferred)


async def redeem(session: AsyncSession, actor: Actor, request: HoldRequest, now: datetime, *,
                 deferred: bool = False) -> RedemptionRecord:
    """One step: hold and capture the whole subsidy at once (providers that bill after use)."""
    return await _place(session, actor, request, now, provider_id=None, payee=Payee.PROVIDER, ttl=None,
                        capture=True, deferred=deferred)


async def quote(session: AsyncSession, actor: Actor, request: HoldRequest, now: datetime) -> RedemptionRecord:
    """What a hold for this order would grant now: the hold itself, decided by the same code
    with the same refusals, whose writes the caller never commits (the HTTP route rolls the
    transaction back). Its locks are held only while it runs."""
    return await _place(session, actor, request, now, provider_id=None, payee=Payee.PROVIDER, ttl=None,
                        capture=False, deferred=True)


async def _place(
    session: AsyncSession, actor: Actor, request: HoldRequest, now: datetime, *, provider_id: uuid.UUID | None,
    payee: Payee, ttl: timedelta | None, capture: bool, deferred: bool,
) -> RedemptionRecord:
    provider_id = provider_id or actor.provider_id
    if provider_id is None:
        raise Forbidden(msg("only a provider key can redeem vouchers"))
    code = parse_code(request.voucher_code)
    # Round trip 1: the voucher, locked; then its balances, terms and parties; its expired holds.
    found = await repository.lock_voucher_for_hold(session, code, provider_id, now)
    voucher = found.voucher
    if voucher is None or found.parties.enterprise_uscc != request.enterprise_uscc.strip().upper():
        decide.check_provider(await repository.provider_status(session, provider_id))
        raise NotFound(msg("no voucher with this code for this enterprise"))
    terms, parties, expired = found.terms, found.parties, found.expired
    decide.check_provider(parties.provider_status)  # a claim has checked the enrolment before (claims.file)
    decide.check_enrolled(terms, parties)
    decide.check_mode(terms, payee)
    decide.check_parties(parties)
    decide.check_usable(voucher, now, to_provider=payee is Payee.PROVIDER)
    decide.check_items(terms, request.line_items)

    order_amount = sum(int(i["amount"]) for i in request.line_items)
    period = period_key(terms.cap_period, terms.cap_timezone, now)
    order_key = (provider_id, request.order_reference)
    # Round trip 2: the orders and usage rows this hold and the releases touch, locked; then
    # what the decision reads after them.
    batch, locked = Batch(), repository.Locked()
    repository.lock_counters(
        session, batch, locked, orders=[order_key, *((h.provider_id, h.order_reference) for h in expired)],
        new_order={"id": uuid7(), "provider_id": provider_id, "order_reference": request.order_reference,
                   "enterprise_id": voucher.enterprise_id, "unit": voucher.unit, "order_amount": order_amount,
                   "now": now},
        programme_id=voucher.programme_id, enterprise_id=voucher.enterprise_id,
        periods=[period, *(h.period_key for h in expired)],
    )
    repository.read_for_hold(batch, locked, voucher_id=voucher.id, provider_id=provider_id,
                             order_reference=request.order_reference, programme_id=voucher.programme_id,
                             enterprise_id=voucher.enterprise_id, period_key=period, now=now,
                             account_codes=_payable_codes(voucher, provider_id, payee))
    await driver.run(session, batch)
    await repository.open_usages(session, locked, voucher.programme_id, voucher.enterprise_id)

    order, usage = locked.order(*order_key), locked.usage(period)
    decide.check_order(order, order_reference=request.order_reference, enterprise_id=voucher.enterprise_id,
                       order_amount=order_amount, unit=voucher.unit,
                       has_live_redemption=locked.has_live_redemption())
    released = sum(h.held_amount for h in expired)
    computation = decide.hold_subsidy(terms, request.line_items, order=order, usage=usage, stale=locked.stale(),
                                      available=voucher.available + released, unit=voucher.unit,
                                      expected=request.expected_subsidy, to_provider=payee is Payee.PROVIDER,
                                      released_spend=sum(h.order_amount for h in expired if h.period_key == period))
    subsidy = computation.subsidy

    writes = _Writes(session, now)
    for held in expired:
        await _release(writes, voucher, held, decide.release_reason(held, VoidReason.EXPIRED, voucher.expires_at, now),
                       now, locked)
    redemption = RedemptionRecord(
        id=uuid7(), voucher_id=voucher.id, programme_id=voucher.programme_id, enterprise_id=voucher.enterprise_id,
        provider_id=provider_id, order_reference=request.order_reference, order_amount=order_amount,
        unit=voucher.unit, line_items=request.line_items,
        computation={**computation.as_dict(), "period": period, "enterprise_cap": terms.enterprise_cap},
        status=RedemptionStatus.HELD.value, held_amount=subsidy, captured_amount=0, refunded_amount=0,
        period_key=period, hold_expires_at=now + (ttl or timedelta(seconds=terms.hold_ttl_seconds)),
        created_at=now, captured_at=None, voided_at=None, void_reason=None, payee=payee.value,
    )
    writes.counters(order.id, usage.id, subsidy, order_amount)
    placed = {**audit.fields(redemption, "order_reference order_amount held_amount hold_expires_at payee period_key"),
              "subsidy": subsidy, "limited_by": computation.limited_by}
    if capture:
        # One step, one state change: from nothing to captured, in one journal (the subsidy from
        # the voucher's available balance to used, and from the programme's spent to payable).
        spent, payable = await _account_ids(session, locked, voucher, provider_id, payee, now)
        redemption.status = RedemptionStatus.CAPTURED.value
        redemption.captured_amount, redemption.captured_at = subsidy, now
        await writes.journal(voucher, "redeemed", [
            *transfer(voucher.available_account_id, voucher.used_account_id, subsidy, voucher.unit),
            *transfer(spent, payable, subsidy, voucher.unit)], now,
            redemption_id=redemption.id, memo=f"redeemed for order {request.order_reference}")
        await _captured(writes, _after(voucher, available=released - subsidy, held=-released, used=subsidy),
                        _hold_of(redemption), subsidy, now, before=None,
                        after={"status": redemption.status, **placed, "captured_amount": subsidy, "released": 0})
    else:
        redemption.status = RedemptionStatus.HELD.value
        await writes.journal(voucher, "hold_placed", transfer(voucher.available_account_id, voucher.held_account_id,
                                                              subsidy, voucher.unit), now,
                             redemption_id=redemption.id, memo=f"hold for order {request.order_reference}")
        await audit.record(
            session, "hold.placed", "redemption", redemption.id, now=now, after={"status": redemption.status, **placed},
            programme_id=voucher.programme_id, enterprise_id=voucher.enterprise_id, provider_id=provider_id,
            voucher_id=voucher.id,
        )
    repository.insert_redemption(writes.batch, {name: getattr(redemption, name) for name in _RECORD_FIELDS})
    await writes.send(deferred=deferred)
    return redemption


def _payable_codes(voucher: VoucherState, provider_id: uuid.UUID, payee: Payee) -> tuple[str, str]:
    """The two accounts a capture pays through: the programme's spent, the payee's payable."""
    spent = programme_code(voucher.programme_id, AccountKind.PROGRAMME_SPENT)
    if payee is Payee.ENTERPRISE:
        return spent, enterprise_code(voucher.enterprise_id, voucher.programme_id,
                                             AccountKind.ENTERPRISE_PAYABLE)
    return spent, provider_code(provider_id, voucher.programme_id, AccountKind.PROVIDER_PAYABLE)


async def _account_ids(session: AsyncSession, locked: repository.Locked, voucher: VoucherState,
                       provider_id: uuid.UUID, payee: Payee, now: datetime) -> tuple[uuid.UUID, uuid.UUID]:
    """(spent, payable) account ids; the payee's accounts are opened on its first capture in the
    programme (race-free: by code)."""
    spent_code, payable_code = _payable_codes(voucher, provider_id, payee)
    ids = locked.account_ids()
    if payable_code not in ids:
        if payee is Payee.ENTERPRISE:
            opened = await ledger.ensure_enterprise_accounts(
                session, voucher.enterprise_id, voucher.programme_id, voucher.unit, now,
                [AccountKind.ENTERPRISE_PAYABLE, AccountKind.ENTERPRISE_PAID])
            ids[payable_code] = opened[AccountKind.ENTERPRISE_PAYABLE]
        else:
            opened = await ledger.ensure_provider_accounts(session, provider_id, voucher.programme_id, voucher.unit, now)
            ids[payable_code] = opened[AccountKind.PROVIDER_PAYABLE]
    return ids[spent_code], ids[payable_code]


def _after(voucher: VoucherState, *, available: int = 0, held: int = 0, used: int = 0) -> VoucherState:
    """The voucher's balances once this operation's moves so far are applied."""
    return replace(voucher, available=voucher.available + available, held=voucher.held + held,
                   used=voucher.used + used)


def _hold_of(redemption: RedemptionRecord) -> Hold:
    return Hold(**{name: getattr(redemption, name) for name in Hold.__dataclass_fields__})


# -- capture, void, refund -------------------------------------------------------------------


async def _locked(session: AsyncSession, actor: Actor, redemption_id: uuid.UUID) -> repository.HoldLocks:
    """The redemption's voucher, then the redemption, then its order and usage rows, locked, in
    one round trip (a provider: only its own redemptions)."""
    if actor.role is Role.PROVIDER:
        locks = await repository.lock_hold(session, redemption_id, actor.provider_id)
    elif actor.sees_everything:
        locks = await repository.lock_hold(session, redemption_id, None)
    else:
        locks = repository.HoldLocks()
        locks.hold = locks.voucher = None
    if locks.hold is None or locks.voucher is None:
        raise NotFound(msg("no redemption with id {redemption_id}", redemption_id=redemption_id))
    return locks


def _judged_at(locks: repository.HoldLocks, now: datetime) -> datetime:
    """The instant a locked hold's expiry is judged at: no earlier than the last operation on its
    order's and its period's totals, which may have counted it as void (`rules.judged_at`)."""
    held = locks.hold
    assert held is not None
    return decide.judged_at(now, locks.counters.found_order(held.provider_id, held.order_reference),
                            locks.counters.found_usage(held.period_key))


async def _counters_of(session: AsyncSession, locks: repository.HoldLocks) -> repository.Locked:
    """An existing redemption's order and usage rows and accounts, read and locked in its first
    round trip (`repository.lock_hold`); a usage row missing is created and locked then."""
    assert locks.hold is not None
    await repository.open_usages(session, locks.counters, locks.hold.programme_id, locks.hold.enterprise_id)
    return locks.counters


async def capture(
    session: AsyncSession, actor: Actor, redemption_id: uuid.UUID, amount: int | None, now: datetime, *,
    deferred: bool = False,
) -> RedemptionRecord:
    """Capture up to the held amount; the rest is released to the voucher. A hold resolves once."""
    return await _capture_by_id(session, actor, redemption_id, amount, now, approval=False, deferred=deferred)


async def capture_claim(session: AsyncSession, redemption_id: uuid.UUID, amount: int, now: datetime) -> RedemptionRecord:
    """Capture a claim's hold (the programme office approved it): like a provider's capture,
    payable to the enterprise. A hold the voucher's expiry or revocation voided cannot be."""
    return await _capture_by_id(session, SYSTEM, redemption_id, amount, now, approval=True, deferred=False)


async def _capture_by_id(session: AsyncSession, actor: Actor, redemption_id: uuid.UUID, amount: int | None,
                         now: datetime, *, approval: bool, deferred: bool) -> RedemptionRecord:
    locks = await _locked(session, actor, redemption_id)
    voucher, held = locks.voucher, locks.hold
    assert voucher is not None and held is not None
    taken = decide.capture_amount(held, voucher, amount, _judged_at(locks, now), approval=approval)
    locked = await _counters_of(session, locks)
    payable = await _account_ids(session, locked, voucher, held.provider_id, Payee(held.payee), now)
    writes = _Writes(session, now)
    await _capture(writes, voucher, held, taken, now, payable, locked=locked)
    repository.set_captured(writes.batch, held.id, taken, now, RedemptionStatus.CAPTURED.value)
    await writes.send(deferred=deferred)
    return RedemptionRecord(**{**locks.row, "status": RedemptionStatus.CAPTURED.value, "captured_amount": taken,
                               "captured_at": now})


async def _capture(writes: _Writes, voucher: VoucherState, held: Hold, amount: int, now: datetime,
                   accounts: tuple[uuid.UUID, uuid.UUID], *, locked: repository.Locked | None) -> None:
    """The capture's moves: `amount` from held to used and from the programme's spent to the
    payee's payable; the rest of the hold back to available (and off the order and period)."""
    spent, payable = accounts
    unit, rest = voucher.unit, held.held_amount - amount
    legs: list[Leg] = [*transfer(voucher.held_account_id, voucher.used_account_id, amount, unit),
                       *transfer(spent, payable, amount, unit)]
    if rest:
        legs += transfer(voucher.held_account_id, voucher.available_account_id, rest, unit)
        assert locked is not None
        writes.counters(locked.order(held.provider_id, held.order_reference).id, locked.usage(held.period_key).id,
                        -rest, 0)
    await writes.journal(voucher, "hold_captured", legs, now, redemption_id=held.id,
                         memo=f"captured {amount} of {held.held_amount} for order {held.order_reference}")
    await _captured(writes, _after(voucher, available=rest, held=-held.held_amount, used=amount), held, amount, now,
                    before={"status": RedemptionStatus.HELD.value, "held_amount": held.held_amount},
                    after={"status": RedemptionStatus.CAPTURED.value, "captured_amount": amount, "released": rest})


async def _captured(writes: _Writes, voucher: VoucherState, held: Hold, amount: int, now: datetime, *,
                    before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    """What every capture records once its journal is written: the count, the audit event (and
    its announcement), the voucher's 80 % / 100 % marks (use only grows on capture), and its
    status. `voucher`: its balances once this operation's moves are applied."""
    metrics.redemption_captured(writes.session, programme_id=voucher.programme_id, kind=voucher.kind,
                                unit=voucher.unit, amount=amount)
    await audit.record(
        writes.session, "redemption.captured", "redemption", held.id, now=now, before=before, after=after,
        programme_id=voucher.programme_id, enterprise_id=held.enterprise_id, provider_id=held.provider_id,
        voucher_id=voucher.id, announce_to_provider=held.pays_provider,
    )
    outbox.defer_marks(writes.session, voucher_id=voucher.id, programme_id=voucher.programme_id,
                       enterprise_id=voucher.enterprise_id, face_value=voucher.face_value, used=voucher.used,
                       unit=voucher.unit, now=now)
    await _settle(writes, voucher, now)


async def _settle(writes: _Writes, voucher: VoucherState, now: datetime) -> None:
    """Active and exhausted follow the balances (after this operation's moves)."""
    if voucher.status not in (VoucherStatus.ACTIVE.value, VoucherStatus.EXHAUSTED.value):
        return
    settled = settled_status(VoucherStatus(voucher.status), voucher.available, voucher.held)
    if settled.value == voucher.status:
        return
    repository.set_voucher_status(writes.batch, voucher.id, settled.value, now)
    await audit.record(writes.session, f"voucher.{settled.value}", "voucher", voucher.id, now=now,
                       before={"status": voucher.status}, after={"status": settled.value},
                       programme_id=voucher.programme_id, enterprise_id=voucher.enterprise_id, voucher_id=voucher.id)


async def void(session: AsyncSession, actor: Actor, redemption_id: uuid.UUID, now: datetime, *,
               note: str | None = None, deferred: bool = False) -> RedemptionRecord:
    """Release the whole hold. Voiding a hold that has lapsed (its TTL passed, or its voucher
    expired first) records why it lapsed (`rules.lapse`).
    `note`: the caller's words, kept in the audit event and the journal's memo."""
    locks = await _locked(session, actor, redemption_id)
    assert locks.hold is not None
    # A hold another operation already counted as void is recorded as lapsed, whatever this
    # request's own instant reads.
    assert locks.voucher is not None
    reason = decide.void_reason(locks.hold, locks.voucher.expires_at, _judged_at(locks, now))
    await _void(session, locks, reason, now, deferred=deferred, note=note)
    return RedemptionRecord(**{**locks.row, "status": RedemptionStatus.VOIDED.value,
                               "voided_at": decide.voided_at(locks.hold, reason, locks.voucher.expires_at, now),
                               "void_reason": reason.value})


async def _void(session: AsyncSession, locks: repository.HoldLocks, reason: VoidReason, now: datetime, *,
                deferred: bool, note: str | None = None) -> None:
    voucher, held = locks.voucher, locks.hold
    assert voucher is not None and held is not None
    locked = await _counters_of(session, locks)
    writes = _Writes(session, now)
    await _release(writes, voucher, held, reason, now, locked, note=note, asked=True)
    await _settle(writes, _after(voucher, available=held.held_amount, held=-held.held_amount), now)
    await writes.send(deferred=deferred)


async def _release(writes: _Writes, voucher: VoucherState, held: Hold, reason: VoidReason, now: datetime,
                   locked: repository.Locked, *, note: str | None = None, asked: bool = False) -> None:
    """Return the whole held amount to the voucher and take it (and its spend) off the order
    and the period. `note`: the words of whoever voided it, if they gave any. A hold that
    lapsed is released as the system's doing (`audit.as_system`) when another operation only
    posts it — the next hold on its voucher may be another provider's, and retrying that
    request would not redo the release — but as the caller's when the caller voided that very
    hold (`asked`: its void, and its retry, are the caller's act)."""
    lapsed = reason in decide.LAPSES  # its TTL passed or its voucher expired: announced either way
    with audit.as_system() if lapsed and not asked else nullcontext():
        await _post_release(writes, voucher, held, reason, now, locked, lapsed=lapsed, note=note)


async def _post_release(writes: _Writes, voucher: VoucherState, held: Hold, reason: VoidReason, now: datetime,
                        locked: repository.Locked, *, lapsed: bool, note: str | None) -> None:
    amount = held.held_amount
    await writes.journal(voucher, RELEASE_JOURNAL[reason],
                         transfer(voucher.held_account_id, voucher.available_account_id, amount, voucher.unit), now,
                         redemption_id=held.id,
                         memo=f"hold released ({reason.value})" + (f": {note}" if note else ""))
    writes.counters(locked.order(held.provider_id, held.order_reference).id, locked.usage(held.period_key).id,
                    -amount, -held.order_amount)
    repository.set_voided(writes.batch, held.id, reason.value, decide.voided_at(held, reason, voucher.expires_at, now))
    if lapsed:
        metrics.hold_expired(writes.session, programme_id=held.programme_id)
    await audit.record(
        writes.session, "hold.expired" if lapsed else "hold.voided", "redemption", held.id,
        now=now, before={"status": RedemptionStatus.HELD.value},
        after={"status": RedemptionStatus.VOIDED.value, "void_reason": reason.value, "released": amount,
               **({"note": note} if note else {})},
        programme_id=voucher.programme_id, enterprise_id=held.enterprise_id, provider_id=held.provider_id,
        voucher_id=voucher.id, announce_to_provider=held.pays_provider,
    )


async def refund(
    session: AsyncSession, actor: Actor, redemption_id: uuid.UUID, amount: int, reason: str, now: datetime, *,
    deferred: bool = False, withdrawn: bool = False,
) -> RedemptionRefund:
    """Give back part or all of a captured subsidy: to the voucher while it is valid, else to
    the programme's pool. The payee's payable drops by the same amount; on a revoked voucher,
    the voucher's clawback shrinks by what the refund takes its used value below it. A refund
    keeps the order's spend in the enterprise's period (the purchase happened) unless the whole
    redemption is `withdrawn` — an approved claim rejected, whose purchase the office refuses —
    which takes it out, as a rejection under review does (tiers price the next order without it)."""
    locks = await _locked(session, actor, redemption_id)
    voucher, held = locks.voucher, locks.hold
    assert voucher is not None and held is not None
    decide.check_refund(held, amount)
    to_voucher = decide.refund_goes_to_voucher(voucher, now)
    payee = Payee(held.payee)
    pool_code = programme_code(voucher.programme_id, AccountKind.PROGRAMME_AVAILABLE)
    locked = await _counters_of(session, locks)
    spent, payable = await _account_ids(session, locked, voucher, held.provider_id, payee, now)
    unit = voucher.unit
    target = voucher.available_account_id if to_voucher else locked.account_ids()[pool_code]
    legs = [*transfer(voucher.used_account_id, target, amount, unit), *transfer(payable, spent, amount, unit)]
    if voucher.status in (VoucherStatus.REVOKED.value, VoucherStatus.EXPIRED.value):  # ended: may owe a clawback
        legs += await _clawback_recovered(session, voucher, amount)
    writes = _Writes(session, now)
    writes.counters(locked.order(held.provider_id, held.order_reference).id, locked.usage(held.period_key).id,
                    -amount, -held.order_amount if withdrawn else 0)
    await writes.journal(voucher, REFUND_JOURNAL, legs, now, redemption_id=held.id,
                         memo=f"refund to {'voucher' if to_voucher else 'programme pool'}: {reason}")
    row = RedemptionRefund(redemption_id=held.id, provider_id=held.provider_id, programme_id=held.programme_id,
                           amount=amount, reason=reason,
                           destination="voucher" if to_voucher else "pool", created_at=now)
    repository.insert_refund(writes.batch, {c.key: getattr(row, c.key) for c in _REFUND_COLUMNS})
    refunded = held.refunded_amount + amount
    status = RedemptionStatus.REFUNDED.value if refunded == held.captured_amount else held.status
    repository.set_refunded(writes.batch, held.id, refunded, status)
    await audit.record(
        session, "refund.created", "redemption", held.id, now=now,
        before={"status": held.status, "refunded_amount": held.refunded_amount},
        after={"status": status, "refunded_amount": refunded, "refund_id": row.id, "amount": amount,
               "destination": row.destination, "reason": reason},
        programme_id=voucher.programme_id, enterprise_id=held.enterprise_id, provider_id=held.provider_id,
        voucher_id=voucher.id, announce_to_provider=held.pays_provider,
    )
    await _settle(writes, _after(voucher, available=amount if to_voucher else 0, used=-amount), now)
    await writes.send(deferred=deferred)
    return row


async def _clawback_recovered(session: AsyncSession, voucher: VoucherState, amount: int) -> list[Leg]:
    """Used value the enterprise was asked to pay back (a clawback, recorded when the voucher
    was revoked or after it ended) and that the provider now refunds is recovered once. The
    clawback is this voucher's own (the receivable is the enterprise's in the programme, shared
    by its vouchers): it stays owed as long as the value still used on the voucher covers it,
    and shrinks only by what the refund takes below it (less what was repaid or written off).
    A refund on another voucher, or of used value that was not clawed back, leaves it (rare:
    read at once)."""
    # Under the voucher's lock: only its revocation, its clawbacks, their repayments and
    # write-offs, and its refunds post to its share, so the share is current without locking the receivable, which the enterprise's
    # other vouchers share (a lock here, before the batch's own updates, once deadlocked a
    # revocation).
    receivable, clawback = await ledger.clawback_owed(session, voucher.enterprise_id, voucher.programme_id,
                                                      voucher.id)
    recovered = decide.clawback_recovered(clawback, voucher.used, amount)
    if receivable is None or not recovered:  # nothing was ever clawed back, or the refund leaves it owed
        return []
    contra = (await ledger.programme_accounts(session, voucher.programme_id))[AccountKind.PROGRAMME_CLAWBACK]
    return transfer(receivable, contra, recovered, voucher.unit)


# -- releases the office and the jobs make ----------------------------------------------------


async def void_claim(session: AsyncSession, redemption_id: uuid.UUID, now: datetime) -> None:
    """Release a rejected claim's hold, exactly what it held (nothing if it is no longer held)."""
    locks = await _locked(session, SYSTEM, redemption_id)
    assert locks.hold is not None
    if locks.hold.status == RedemptionStatus.HELD.value:
        assert locks.voucher is not None
        reason = decide.release_reason(locks.hold, VoidReason.CLAIM_REJECTED, locks.voucher.expires_at,
                                       _judged_at(locks, now))
        await _void(session, locks, reason, now, deferred=False)


async def due_holds(session: AsyncSession, now: datetime, limit: int = 500) -> list[uuid.UUID]:
    """Holds past their TTL whose release has not been posted yet."""
    return await repository.expired_hold_ids(session, now, limit)


async def expire_hold(session: AsyncSession, redemption_id: uuid.UUID, now: datetime) -> int:
    """Post the release of one expired hold (1), or nothing if it was resolved meanwhile (0)."""
    locks = await _locked(session, SYSTEM, redemption_id)
    assert locks.hold is not None
    if locks.hold.status != RedemptionStatus.HELD.value or locks.hold.hold_expires_at > now:
        return 0
    assert locks.voucher is not None  # its voucher may have expired first: the release says so
    await _void(session, locks, decide.release_reason(locks.hold, VoidReason.EXPIRED, locks.voucher.expires_at, now),
                now, deferred=False)
    return 1


async def expire_holds(session: AsyncSession, now: datetime, limit: int = 500) -> int:
    """Release expired holds in one transaction (tests, small batches); the job runner gives
    each hold its own transaction instead (services/voucher/jobs.py)."""
    return sum([await expire_hold(session, i, now) for i in await due_holds(session, now, limit)])


async def release_voucher_holds(session: AsyncSession, voucher: Any, reason: VoidReason, now: datetime) -> None:
    """Release every live hold of a voucher the caller has locked (revocation, expiry), now:
    the caller goes on to read the balances this frees."""
    holds = await repository.voucher_holds(session, voucher.id)
    if not holds:
        return
    available, held, used = await repository.balances(session, voucher.id)
    state = VoucherState(
        voucher.id, voucher.code, voucher.programme_id, voucher.enterprise_id, voucher.kind, voucher.unit,
        voucher.face_value, voucher.status, voucher.status_reason, voucher.valid_from, voucher.expires_at,
        voucher.available_account_id, voucher.held_account_id, voucher.used_account_id, available, held, used)
    batch, locked = Batch(), repository.Locked()
    repository.lock_counters(session, batch, locked, orders=[(h.provider_id, h.order_reference) for h in holds],
                             new_order=None, programme_id=voucher.programme_id, enterprise_id=voucher.enterprise_id,
                             periods=[h.period_key for h in holds])
    await driver.run(session, batch)
    writes = _Writes(session, now)
    for hold_ in holds:
        await _release(writes, state, hold_, decide.release_reason(hold_, reason, voucher.expires_at, now), now, locked)
    await writes.send(deferred=False)


# -- reads -----------------------------------------------------------------------------------


async def get_redemption(session: AsyncSession, actor: Actor, redemption_id: uuid.UUID) -> tuple[Redemption, datetime]:
    """A redemption the actor may see, with its voucher's expiry (`effective_redemption_status`)."""
    found = await repository.get(session, actor, redemption_id)
    if found is None:
        raise NotFound(msg("no redemption with id {redemption_id}", redemption_id=redemption_id))
    return found


async def list_redemptions(
    session: AsyncSession,
    actor: Actor,
    page: PageRequest,
    *,
    voucher_id: uuid.UUID | None = None,
    status: str | None = None,
    order_reference: str | None = None,
    now: datetime,
) -> tuple[list[tuple[Redemption, datetime]], str | None]:
    """Each with its voucher's expiry; `status` as reads show it: a hold that has lapsed (its TTL
    passed or its voucher expired) is `voided`, not `held`."""
    return await repository.list_page(
        session, actor, page, voucher_id=voucher_id, status=status, order_reference=order_reference, now=now
    )


async def refunds_of(session: AsyncSession, redemption_id: uuid.UUID) -> list[RedemptionRefund]:
    return await repository.refunds_of(session, redemption_id)


def effective_redemption_status(redemption: Redemption | RedemptionRecord, voucher_expires_at: datetime | None,
                                now: datetime) -> tuple[str, str | None, datetime | None]:
    """Status, void reason and void instant as reads show them: a hold that has lapsed — its TTL
    passed, or its voucher expired first — reads as voided since then, before any job posts it."""
    return decide.effective_redemption_status(redemption.status, redemption.void_reason, redemption.voided_at,
                                              redemption.hold_expires_at, voucher_expires_at, now)
