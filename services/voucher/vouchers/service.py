"""Voucher use cases: issue (one or in bulk), read, look up by code, suspend, resume, revoke,
expire. Budget and the enterprise's cap are committed atomically with issuance."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.audit import service as audit
from services.voucher.db import Database, PageRequest, encode_cursor
from services.voucher.errors import (
    AlreadyReversed,
    BudgetExhausted,
    ClawbackOnLiveVoucher,
    EnterpriseCapExceeded,
    ExceedsMaxPerVoucher,
    InvalidTransition,
    NotFound,
    OverpaymentReturnAlreadyRecorded,
    ProgrammeNotOpen,
    RepaymentAlreadyRecorded,
    ValidationFailed,
    field_error,
)
from services.voucher.i18n import Amount, Message, Status, msg
from services.voucher.ids import uuid7
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import (
    EXPIRY_JOURNAL,
    ISSUE_JOURNAL,
    REVOKE_JOURNAL,
    AccountKind,
    Leg,
    transfer,
)
from services.voucher.programmes.rules import ExpiryDisposition, ProgrammeStatus, period_key
from services.voucher.redemption import service as redemptions
from services.voucher.redemption.rules import (
    CLAWBACK_OVERPAYMENT_RETURNED,
    CLAWBACK_RECORDED,
    CLAWBACK_RECOVERED_BY_REFUNDS,
    CLAWBACK_REPAID,
    CLAWBACK_REVERSALS,
    CLAWBACK_WRITTEN_OFF,
    Clawback,
    VoidReason,
    clawback_forgivable,
    clawback_overpaid,
    clawback_overpayment_return,
    clawback_recording,
    clawback_refunded,
    clawback_reversal,
    clawback_reversible,
    clawback_room,
)
from services.voucher.settlement.rules import payment_day_problem
from services.voucher.tables import Enterprise, EnterprisePeriodUsage, Programme, Voucher
from services.voucher.vouchers import repository
from services.voucher.vouchers.repository import VoucherRow
from services.voucher.vouchers.rules import (
    CLAWBACK_MEMO,
    COVER_MEMO,
    RECOVERY_MEMO,
    REPAYMENT_MEMO,
    RETURN_MEMO,
    RETURN_RECOVERY_MEMO,
    REVERSAL_MEMO,
    UNCOVER_MEMO,
    VoucherStatus,
    check_transition,
    effective_status,
    new_code,
    parse_code,
    payment_reference_key,
    repayment_day_problem,
    reversed_entry,
    settled_status,
)

#: How far ahead a voucher's validity may be made to start.
MAX_START_DAYS = 366
_START_RANGE = msg("must be between yesterday and {days} days from now", days=MAX_START_DAYS)


def _may_start(start: datetime, now: datetime) -> bool:
    """Whether an operator's own grant may start at `start`: at most a day back, at most
    MAX_START_DAYS ahead."""
    return now - timedelta(days=1) <= start <= now + timedelta(days=MAX_START_DAYS)


async def programme_for_change(session: AsyncSession, programme_id: uuid.UUID) -> Programme:
    """The programme, share-locked: it cannot close while value is committed or issued under it."""
    programme = await repository.programme_for_issue(session, programme_id)
    if programme is None:
        raise NotFound(msg("no programme with id {programme_id}", programme_id=programme_id))
    return programme


@dataclass(frozen=True)
class Balances:
    available: int
    held: int
    used: int


@dataclass(frozen=True)
class VoucherView:
    voucher: Voucher | VoucherRow
    status: VoucherStatus  # effective: expiry applies on read
    balances: Balances


async def _programme(session: AsyncSession, programme_id: uuid.UUID) -> Programme:
    programme = await session.get(Programme, programme_id)
    if programme is None:
        raise NotFound(msg("no programme with id {programme_id}", programme_id=programme_id))
    return programme


async def remaining_cap(
    session: AsyncSession, programme: Programme, enterprise_id: uuid.UUID, now: datetime
) -> tuple[str, int]:
    """(period, cap left for this enterprise in it), without locking: for judging and reports."""
    period = period_key(programme.cap_period, programme.cap_timezone, now)
    usage = await repository.usage(session, programme.id, enterprise_id, period)
    taken = (usage.granted + usage.committed) if usage is not None else 0
    return period, max(programme.enterprise_cap - taken, 0)


async def lock_voucher(session: AsyncSession, voucher_id: uuid.UUID) -> Voucher:
    voucher = await repository.get_by_id(session, voucher_id, for_update=True)
    if voucher is None:
        raise NotFound(msg("no voucher with id {voucher_id}", voucher_id=voucher_id))
    return voucher


async def lock_cap(
    session: AsyncSession, programme: Programme, enterprise_id: uuid.UUID, period: str
) -> EnterprisePeriodUsage:
    """The enterprise's usage row for the period, locked: everything that changes its cap
    (issuance, approval, release) serialises on it."""
    return await repository.lock_usage(session, programme.id, enterprise_id, period)


def check_cap(cap: int, granted: int, committed: int, amount: int, period: str, unit: str) -> None:
    """Granted plus committed plus `amount` stays within the enterprise's cap for the period
    (every amount in minor units of the programme's `unit`)."""
    if granted + committed + amount > cap:
        raise EnterpriseCapExceeded(
            msg("the enterprise has been granted {granted} and has {committed} approved awaiting "
                "issue, of its {cap} cap for {period}; {amount} more would exceed it",
                granted=Amount(granted, unit), committed=Amount(committed, unit), cap=Amount(cap, unit),
                period=period, amount=Amount(amount, unit)),
            granted=granted,
            committed=committed,
            cap=cap,
            remaining=max(cap - granted - committed, 0),
            period=period,
        )


async def issue_voucher(
    session: AsyncSession,
    *,
    programme_id: uuid.UUID,
    enterprise_id: uuid.UUID,
    face_value: int,
    now: datetime,
    valid_from: datetime | None = None,
    application_id: uuid.UUID | None = None,
    reference: str | None = None,
    commitment_period: str | None = None,
) -> Voucher:
    """Grant a voucher: the face value leaves the programme's budget and counts against the
    enterprise's cap for the period, in one transaction under the usage-row and budget locks.

    `commitment_period`: an approved application already committed this face value, in that
    cap period (the application flow). The budget then moves from `committed` rather than
    `available`, the cap's commitment turns into a grant, and a programme closed since the
    approval still honours it.
    """
    from_committed = commitment_period is not None
    # A shared lock: a programme cannot close while a voucher is being issued under it.
    programme = await programme_for_change(session, programme_id)
    honoured = (ProgrammeStatus.OPEN.value, ProgrammeStatus.CLOSED.value) if from_committed \
        else (ProgrammeStatus.OPEN.value,)
    if programme.status not in honoured:
        raise ProgrammeNotOpen(msg("programme {code} is {status}", code=programme.code, status=Status(programme.status)),
                               current_status=programme.status)
    if await session.get(Enterprise, enterprise_id) is None:
        raise NotFound(msg("no enterprise with id {enterprise_id}", enterprise_id=enterprise_id))
    if face_value > programme.max_per_voucher:
        raise ExceedsMaxPerVoucher(
            msg("{amount} exceeds the programme's maximum per voucher of {max_per_voucher}",
                amount=Amount(face_value, programme.unit),
                max_per_voucher=Amount(programme.max_per_voucher, programme.unit)),
            max_per_voucher=programme.max_per_voucher,
        )
    period = commitment_period or period_key(programme.cap_period, programme.cap_timezone, now)
    usage = await repository.lock_usage(session, programme.id, enterprise_id, period)
    if from_committed:
        if usage.committed < face_value:  # a bug, never a user error: refuse to invent cap room
            raise RuntimeError(f"commitment of {usage.committed} in {period} cannot cover {face_value}")
        usage.committed -= face_value
    else:
        check_cap(programme.enterprise_cap, usage.granted, usage.committed, face_value, period, programme.unit)
    accounts = await ledger.programme_accounts(session, programme.id)
    source_kind = AccountKind.PROGRAMME_COMMITTED if from_committed else AccountKind.PROGRAMME_AVAILABLE
    source = accounts[source_kind]
    budget = (await ledger.balances(session, [source], lock=True))[source]
    if budget < face_value:
        raise BudgetExhausted(
            msg("the programme has {budget} left committed; cannot grant {face_value}",
                budget=Amount(budget, programme.unit), face_value=Amount(face_value, programme.unit))
            if from_committed else
            msg("the programme has {budget} left uncommitted; cannot grant {face_value}",
                budget=Amount(budget, programme.unit), face_value=Amount(face_value, programme.unit)),
            remaining=budget,
        )
    start = valid_from or now
    # An approved application's validity starts when its publicity ended, however late the
    # issuance runs; an operator's own grant may start at most a day back.
    if not from_committed and not _may_start(start, now):
        raise ValidationFailed([field_error("valid_from", _START_RANGE)])
    voucher_id = uuid7()
    voucher_accounts = await ledger.open_voucher_accounts(session, voucher_id, programme.id, programme.unit, now)
    voucher = Voucher(
        id=voucher_id,
        code=new_code(programme.kind),
        programme_id=programme.id,
        enterprise_id=enterprise_id,
        kind=programme.kind,
        unit=programme.unit,
        face_value=face_value,
        status=VoucherStatus.ACTIVE.value,
        valid_from=start,
        expires_at=start + timedelta(days=programme.voucher_validity_days),
        period_key=period,
        available_account_id=voucher_accounts[AccountKind.VOUCHER_AVAILABLE],
        held_account_id=voucher_accounts[AccountKind.VOUCHER_HELD],
        used_account_id=voucher_accounts[AccountKind.VOUCHER_USED],
        application_id=application_id,
        issue_reference=reference,
        issued_at=now,
    )
    await repository.add(session, voucher)
    await ledger.post(
        session,
        kind=ISSUE_JOURNAL,
        legs=transfer(source, voucher.available_account_id, face_value, programme.unit),
        now=now,
        programme_id=programme.id,
        voucher_id=voucher.id,
        memo=f"voucher {voucher.code} issued",
    )
    usage.granted += face_value
    await session.flush()
    await audit.record(
        session, "voucher.issued", "voucher", voucher.id, now=now,
        after=audit.fields(voucher, "code kind unit face_value status valid_from expires_at period_key "
                                    "application_id issue_reference"),
        programme_id=voucher.programme_id, enterprise_id=voucher.enterprise_id, voucher_id=voucher.id,
    )
    return voucher


async def _status_event(session: AsyncSession, action: str, voucher: Voucher, before: str, now: datetime,
                        **extra: Any) -> None:
    await audit.record(
        session, action, "voucher", voucher.id, now=now, before={"status": before},
        after={"status": voucher.status, "status_reason": voucher.status_reason, **extra},
        programme_id=voucher.programme_id, enterprise_id=voucher.enterprise_id, voucher_id=voucher.id,
    )


async def issue_bulk(
    session: AsyncSession,
    *,
    programme_id: uuid.UUID,
    grants: list[dict[str, Any]],
    now: datetime,
) -> list[Voucher]:
    """Issue many vouchers (e.g. an offline selection) all or nothing: one refusal refuses all,
    naming the entry, and nothing is issued.

    Every grant's usage row is locked first, in enterprise order, before any grant takes the
    programme's budget: a grant locks its usage row and then the budget, so a batch that took
    the budget for its first grant and then waited on the second's usage row deadlocked with an
    approval (or an issue) holding that row and waiting on the budget (PostgreSQL; found by an
    independent review, tests/test_lock_order.py)."""
    # Every grant's start is checked before anything is locked, each named by its place: a
    # refused one had been answered `/valid_from`, naming no grant of up to a thousand (an
    # independent review of the registries, December 2026).
    late = [field_error(f"grants/{index}/valid_from", _START_RANGE) for index, grant in enumerate(grants)
            if grant.get("valid_from") is not None and not _may_start(grant["valid_from"], now)]
    if late:
        raise ValidationFailed(late)
    programme = await programme_for_change(session, programme_id)
    period = period_key(programme.cap_period, programme.cap_timezone, now)
    for enterprise_id in sorted({grant["enterprise_id"] for grant in grants}):
        if await session.get(Enterprise, enterprise_id) is not None:  # an unknown one is its grant's 404
            await repository.lock_usage(session, programme.id, enterprise_id, period)
    issued = []
    for index, grant in enumerate(grants):
        try:
            issued.append(
                await issue_voucher(
                    session,
                    programme_id=programme_id,
                    enterprise_id=grant["enterprise_id"],
                    face_value=grant["face_value"],
                    reference=grant.get("reference"),
                    valid_from=grant.get("valid_from"),
                    now=now,
                )
            )
        except (NotFound, EnterpriseCapExceeded, BudgetExhausted, ExceedsMaxPerVoucher) as exc:
            # The title is a catalogue msgid already: a Message of it renders in either language.
            reason = exc.message if exc.message is not None else Message(exc.title)
            exc.message = msg("grant {number}: {reason}; no voucher of this batch was issued", number=index + 1,
                              reason=reason)
            exc.args = (exc.detail,)
            exc.extra["grant_index"] = index
            exc.extra["grant_reason"] = reason  # the grant's own refusal, for a caller that names rows its own way
            raise
    return issued


async def view(session: AsyncSession, voucher: Voucher, now: datetime) -> VoucherView:
    return (await views(session, [voucher], now))[0]


async def views(session: AsyncSession, vouchers: list[Voucher], now: datetime) -> list[VoucherView]:
    """Vouchers with their ledger balances and their status as of `now`."""
    balances = await repository.balances_of(session, vouchers, now)  # lapsed holds released, job or not
    out = []
    for v in vouchers:
        out.append(VoucherView(v, effective_status(VoucherStatus(v.status), v.expires_at, now),
                               Balances(*balances[v.id])))
    return out


async def read_voucher(db: Database, actor: Actor, voucher_id: uuid.UUID, now: datetime) -> VoucherView:
    """A voucher with its balances and status as of `now`, in one read; 404 when missing and when
    it is another enterprise's."""
    found = await repository.get_with_balances(db, actor, voucher_id, now)
    if found is None:
        raise NotFound(msg("no voucher with id {voucher_id}", voucher_id=voucher_id))
    voucher, available, held, used = found
    return VoucherView(voucher, effective_status(VoucherStatus(voucher.status), voucher.expires_at, now),
                       Balances(available, held, used))


async def get_voucher(
    session: AsyncSession, actor: Actor, voucher_id: uuid.UUID, *, for_update: bool = False
) -> Voucher:
    """404 when missing and when it is another enterprise's."""
    voucher = await repository.get(session, actor, voucher_id, for_update=for_update)
    if voucher is None:
        raise NotFound(msg("no voucher with id {voucher_id}", voucher_id=voucher_id))
    return voucher


async def list_vouchers(
    session: AsyncSession,
    actor: Actor,
    page: PageRequest,
    now: datetime,
    *,
    programme_id: uuid.UUID | None = None,
    enterprise_id: uuid.UUID | None = None,
    status: str | None = None,
) -> tuple[list[VoucherView], str | None]:
    rows, cursor = await repository.list_page(
        session, actor, page, programme_id=programme_id, enterprise_id=enterprise_id, status=status, now=now
    )
    return await views(session, list(rows), now), cursor


async def find_by_code_for_enterprise(
    session: AsyncSession, code_text: str, enterprise_uscc: str, *, for_update: bool = False
) -> Voucher:
    """A voucher by code, only if it belongs to the enterprise with this USCC; otherwise 404
    (a provider must know both, and learns nothing from a wrong guess)."""
    return (await voucher_and_owner(session, code_text, enterprise_uscc, for_update=for_update))[0]


async def voucher_and_owner(
    session: AsyncSession, code_text: str, enterprise_uscc: str, *, for_update: bool = False
) -> tuple[Voucher, Enterprise]:
    """`find_by_code_for_enterprise`, with the enterprise it read (callers that need it keep
    the object: the session's identity map holds only weak references)."""
    code = parse_code(code_text)
    voucher = await repository.get_by_code(session, code, for_update=for_update)
    if voucher is not None:
        enterprise = await session.get(Enterprise, voucher.enterprise_id)
        if enterprise is not None and enterprise.uscc == enterprise_uscc.strip().upper():
            return voucher, enterprise
    raise NotFound(msg("no voucher with this code for this enterprise"))


def _set_status(voucher: Voucher, target: VoucherStatus, reason: str | None, now: datetime) -> None:
    check_transition(VoucherStatus(voucher.status), target)
    voucher.status = target.value
    voucher.status_reason = reason
    voucher.status_changed_at = now
    voucher.version += 1


async def _lock_for_change(session: AsyncSession, actor: Actor, voucher_id: uuid.UUID, now: datetime) -> Voucher:
    voucher = await get_voucher(session, actor, voucher_id, for_update=True)
    if effective_status(VoucherStatus(voucher.status), voucher.expires_at, now) is VoucherStatus.EXPIRED:
        await expire_voucher(session, voucher, now)
    return voucher


async def suspend(session: AsyncSession, actor: Actor, voucher_id: uuid.UUID, reason: str, now: datetime) -> Voucher:
    """No new holds while suspended; holds already placed may still be captured or voided."""
    voucher = await _lock_for_change(session, actor, voucher_id, now)
    before = voucher.status
    _set_status(voucher, VoucherStatus.SUSPENDED, reason, now)
    await session.flush()
    await _status_event(session, "voucher.suspended", voucher, before, now)
    return voucher


async def resume(session: AsyncSession, actor: Actor, voucher_id: uuid.UUID, reason: str, now: datetime) -> Voucher:
    voucher = await _lock_for_change(session, actor, voucher_id, now)
    before = voucher.status
    if before != VoucherStatus.SUSPENDED.value:
        # Only a suspension is undone here; exhausted → active is a refund's (an independent
        # review resumed an exhausted voucher: 200 and an audit event for a change that was none).
        raise InvalidTransition(
            msg("only a suspended voucher can be resumed; this one is '{current}'", current=Status(before)),
            current_status=before,
        )
    _set_status(voucher, VoucherStatus.ACTIVE, reason, now)
    bal = (await view(session, voucher, now)).balances
    voucher.status = settled_status(VoucherStatus.ACTIVE, bal.available, bal.held).value
    await session.flush()
    await _status_event(session, "voucher.resumed", voucher, before, now)
    return voucher


async def revoke(
    session: AsyncSession,
    actor: Actor,
    voucher_id: uuid.UUID,
    reason: str,
    now: datetime,
    *,
    clawback: int = 0,
) -> Voucher:
    """Revoke: active holds are voided, the unused balance returns to the programme's pool,
    and any clawback of value already used is recorded as a receivable from the enterprise —
    history is never rewritten."""
    voucher = await _lock_for_change(session, actor, voucher_id, now)
    before = voucher.status
    _set_status(voucher, VoucherStatus.REVOKED, reason, now)
    await redemptions.release_voucher_holds(session, voucher, VoidReason.VOUCHER_REVOKED, now)
    accounts = await ledger.programme_accounts(session, voucher.programme_id)
    bal = (await view(session, voucher, now)).balances
    if clawback > bal.used:
        raise ValidationFailed([field_error("clawback", msg("at most the used value, {used}",
                                                            used=Amount(bal.used, voucher.unit)))])
    # Both journals in one write, so their balance moves lock the pool and the receivable in
    # the one order every merged write uses (a refund on another revoked voucher of the
    # enterprise moves the same two accounts: posted one after the other, they deadlocked).
    journals = []
    if bal.available:
        journals.append(ledger.journal(
            kind=REVOKE_JOURNAL, now=now, programme_id=voucher.programme_id, voucher_id=voucher.id,
            legs=transfer(voucher.available_account_id, accounts[AccountKind.PROGRAMME_AVAILABLE], bal.available,
                          voucher.unit),
            memo=f"revoked: {reason}"))
    if clawback:
        journals.append(await _clawback_journal(session, voucher, accounts, clawback, reason, now))
    if journals:
        await ledger.post_all(session, journals)
    await session.flush()
    await _status_event(session, "voucher.revoked", voucher, before, now, returned_to_pool=bal.available,
                        clawback=clawback)
    return voucher


@dataclass(frozen=True)
class ClawbackState:
    """A voucher's used value and its clawback: what its journals put on the enterprise's
    receivable in the programme and took off it (`rules.Clawback`)."""

    voucher: Voucher
    used: int
    clawback: Clawback
    receivable: uuid.UUID | None = None  # the enterprise's in the programme, once opened

    @property
    def owed(self) -> int:
        return self.clawback.owed

    @property
    def room(self) -> int:
        return clawback_room(self.clawback, self.used)

    @property
    def recovered_by_refunds(self) -> int:
        return clawback_refunded(self.clawback, self.used)

    @property
    def overpaid(self) -> int:
        return clawback_overpaid(self.clawback, self.used)

    @property
    def forgivable(self) -> int:
        return clawback_forgivable(self.clawback, self.used)


async def clawback_state(session: AsyncSession, actor: Actor, voucher_id: uuid.UUID, now: datetime) -> ClawbackState:
    """What is owed back for a voucher the caller may see (nothing when no clawback was recorded)."""
    voucher = await get_voucher(session, actor, voucher_id)
    return await _clawback_state(session, voucher, now)


async def _clawback_state(session: AsyncSession, voucher: Voucher, now: datetime) -> ClawbackState:
    used = (await view(session, voucher, now)).balances.used
    receivable, clawback = await ledger.clawback_owed(session, voucher.enterprise_id, voucher.programme_id,
                                                      voucher.id)
    return ClawbackState(voucher, used, clawback, receivable)


async def _clawback_journal(session: AsyncSession, voucher: Voucher, accounts: dict[AccountKind, uuid.UUID],
                            amount: int, reason: str, now: datetime) -> ledger.Journal:
    """A clawback of used value as the receivable it records (a revocation's or a later one):
    the reconciliation's clawback check reads these journals by their kind."""
    return ledger.journal(
        kind=CLAWBACK_RECORDED, now=now, programme_id=voucher.programme_id, voucher_id=voucher.id,
        legs=transfer(accounts[AccountKind.PROGRAMME_CLAWBACK], await _receivable(session, voucher, now),
                      amount, voucher.unit),
        memo=f"{CLAWBACK_MEMO}{reason}")


async def _receivable(session: AsyncSession, voucher: Voucher, now: datetime) -> uuid.UUID:
    """The enterprise's receivable in the voucher's programme, opened by its first clawback."""
    return (await ledger.ensure_enterprise_accounts(
        session, voucher.enterprise_id, voucher.programme_id, voucher.unit, now,
        [AccountKind.ENTERPRISE_RECEIVABLE]))[AccountKind.ENTERPRISE_RECEIVABLE]


async def record_clawback(
    session: AsyncSession, actor: Actor, voucher_id: uuid.UUID, amount: int, reason: str, now: datetime,
) -> ClawbackState:
    """A clawback of used value found after the voucher ended — expired, or revoked with less
    (or none) clawed back than is now known to be owed: recorded as a receivable from the
    enterprise, as a revocation records it. A live voucher's clawback is its revocation's (the
    office stops the voucher first); the amount is at most the used value not clawed back yet."""
    voucher = await _lock_for_change(session, actor, voucher_id, now)  # a due expiry is posted first
    status = VoucherStatus(voucher.status)
    if status not in (VoucherStatus.EXPIRED, VoucherStatus.REVOKED):
        raise ClawbackOnLiveVoucher(
            msg("the voucher is '{current}': a live voucher's clawback is recorded by revoking it",
                current=Status(status.value)),
            current_status=status.value)
    before = await _clawback_state(session, voucher, now)
    if amount > before.room:
        raise ValidationFailed([field_error("amount", msg(
            "at most the used value not clawed back yet, {room}", room=Amount(before.room, voucher.unit)))])
    # What the enterprise paid beyond the clawed-back value, once a clawback it paid was
    # reversed, covers this one: a second journal takes that part off (`rules.clawback_recording`).
    recorded, covered = clawback_recording(before.clawback, before.used, amount)
    receivable = await _receivable(session, voucher, now)
    await ledger.post_all(session, await _entry_and_recovery(
        session, voucher, receivable, now, kind=CLAWBACK_RECORDED, move=amount, memo=f"{CLAWBACK_MEMO}{reason}",
        recovered=covered, recovery_memo=lambda entry: f"{COVER_MEMO}{entry}"))
    after = replace(before, clawback=recorded, receivable=receivable)
    await audit.record(
        session, "voucher.clawback_recorded", "voucher", voucher.id, now=now,
        before={"status": voucher.status, "clawback_owed": before.owed},
        after={"status": voucher.status, "clawback_owed": after.owed, "amount": amount, "reason": reason,
               "covered_by_payments": covered},
        programme_id=voucher.programme_id, enterprise_id=voucher.enterprise_id, voucher_id=voucher.id,
    )
    return after


async def repay_clawback(
    session: AsyncSession, actor: Actor, voucher_id: uuid.UUID, amount: int, reference: str, paid_on: date,
    now: datetime,
) -> ClawbackState:
    """The enterprise paid back part or all of what it owes for a voucher: the receivable falls
    by the amount, against the programme's clawback account. The money goes back to whoever
    funds the programme, not into its pool: put there, a refund of the same order afterwards
    returned the value a second time, and the pool could pass the budget (an independent
    review). At most what is owed; paid no earlier than the voucher's first clawback and not
    after today."""
    return await _settle_clawback(
        session, actor, voucher_id, amount, now, kind=CLAWBACK_REPAID, reference=reference, paid_on=paid_on,
        memo=f"{REPAYMENT_MEMO}{reference}", event="voucher.clawback_repaid",
        details={"reference": reference, "paid_on": paid_on.isoformat()})


async def write_off_clawback(
    session: AsyncSession, actor: Actor, voucher_id: uuid.UUID, amount: int, reason: str, now: datetime,
) -> ClawbackState:
    """The office gives up part or all of what the enterprise owes for a voucher (it cannot be
    collected: the enterprise was deregistered, a court settled it): the receivable falls by
    the amount against the programme's clawback account, as a repayment does, and the journal's
    kind says which it was. At most what is owed; the clawback, its repayments and this
    write-off all stay in the ledger."""
    return await _settle_clawback(
        session, actor, voucher_id, amount, now, kind=CLAWBACK_WRITTEN_OFF,
        memo=f"clawback written off: {reason}", event="voucher.clawback_written_off", details={"reason": reason})


async def _settle_clawback(
    session: AsyncSession, actor: Actor, voucher_id: uuid.UUID, amount: int, now: datetime, *, kind: str,
    memo: str, event: str, details: dict[str, Any], reference: str | None = None, paid_on: date | None = None,
) -> ClawbackState:
    """Take `amount` off what the enterprise owes for a voucher, under the voucher's lock (only
    the voucher's own journals post to its share of the receivable, each under it)."""
    voucher = await _lock_for_change(session, actor, voucher_id, now)
    before = await _clawback_state(session, voucher, now)
    # A repayment reads the voucher's entries (their references, the first clawback's day);
    # a write-off needs none of them.
    entries = await _entries(session, voucher, before.receivable) if reference is not None else []
    if reference is not None:
        # One bank payment is recorded once: a second clerk, or a second tab, entering the same
        # transfer under another Idempotency-Key would take the debt off twice. Checked first,
        # so a retyped transfer that already paid the debt off is named as such rather than
        # refused for its amount; under the voucher's lock, so two at once cannot both pass. A
        # repayment that was reversed no longer counts: the clerk enters it again as it was.
        _check_reference_new(entries, reference)
    # A write-off forgives clawed-back value only: money the office returned to the enterprise
    # and is owed back (a repayment reversed after its overpayment was returned) is repaid.
    forgivable = before.owed if kind == CLAWBACK_REPAID else before.forgivable
    if amount > forgivable:
        if forgivable < before.owed:
            problem = msg("at most the clawed-back value still owed, {forgivable}: the {returned} the office returned "
                          "to the enterprise and is owed back is repaid, not written off",
                          forgivable=Amount(forgivable, voucher.unit),
                          returned=Amount(before.owed - forgivable, voucher.unit))
        elif before.owed > 0:
            problem = msg("at most what is owed back for the voucher, {owed}", owed=Amount(before.owed, voucher.unit))
        else:
            problem = msg("nothing is owed back for this voucher")
        raise ValidationFailed([field_error("amount", problem)])
    assert before.receivable is not None  # something is owed on it
    if paid_on is not None:
        _check_paid_on(entries, paid_on, now)
    accounts = await ledger.programme_accounts(session, voucher.programme_id)
    await ledger.post_all(session, [ledger.journal(
        kind=kind, now=now, programme_id=voucher.programme_id, voucher_id=voucher.id,
        legs=transfer(before.receivable, accounts[AccountKind.PROGRAMME_CLAWBACK], amount, voucher.unit),
        memo=memo)])
    c = before.clawback
    settled = replace(c, owed=c.owed - amount, **({"repaid": c.repaid + amount} if kind == CLAWBACK_REPAID
                                                  else {"written_off": c.written_off + amount}))
    after = replace(before, clawback=settled)
    await audit.record(
        session, event, "voucher", voucher.id, now=now,
        before={"status": voucher.status, "clawback_owed": before.owed},
        after={"status": voucher.status, "clawback_owed": after.owed, "amount": amount, **details},
        programme_id=voucher.programme_id, enterprise_id=voucher.enterprise_id, voucher_id=voucher.id,
    )
    return after


def _check_paid_on(entries: list[ClawbackLedgerEntry], paid_on: date, now: datetime) -> None:
    """A bank payment of a clawback (the enterprise's, or the office's return) is dated no later
    than today and no earlier than the voucher's first clawback."""
    first = next((e.at for e in entries if e.kind == CLAWBACK_RECORDED), None)
    day_problem = payment_day_problem(paid_on, None, now) or repayment_day_problem(paid_on, first)
    if day_problem is not None:
        raise ValidationFailed([field_error("paid_on", day_problem)])


def _check_reference_new(entries: list[ClawbackLedgerEntry], reference: str, kind: str = CLAWBACK_REPAID) -> None:
    """Refuse a repayment (or an overpayment return) whose bank reference one of the voucher's
    standing entries of the same kind already has (`payment_reference_key`: case, spaces and
    full-width forms aside)."""
    key = payment_reference_key(reference)
    for entry in entries:
        if (entry.kind == kind and entry.reversed_by is None and entry.reference is not None
                and payment_reference_key(entry.reference) == key):
            if kind == CLAWBACK_OVERPAYMENT_RETURNED:
                raise OverpaymentReturnAlreadyRecorded(msg(
                    "a return of an overpayment with this payment reference was recorded for the voucher on {when}",
                    when=entry.at), journal_id=str(entry.id))
            raise RepaymentAlreadyRecorded(
                msg("a repayment with this payment reference was recorded for the voucher on {when}", when=entry.at),
                journal_id=str(entry.id))


@dataclass(frozen=True, slots=True)
class ClawbackLedgerEntry:
    """One journal of a voucher on the enterprise's receivable, as the office reads it: what it
    did to what is owed (`amount`: + raises it, − lowers it), the bank reference of a
    repayment, and which reversal undid it or which entry it undoes."""

    id: uuid.UUID
    kind: str
    amount: int
    at: datetime
    memo: str
    reference: str | None = None
    reverses: uuid.UUID | None = None
    reversed_by: uuid.UUID | None = None


async def _entries(session: AsyncSession, voucher: Voucher, receivable: uuid.UUID | None) -> list[ClawbackLedgerEntry]:
    """The voucher's journals on the receivable, oldest first, each reversal linked both ways."""
    if receivable is None:
        return []
    rows = await ledger.voucher_entries_on(session, receivable, voucher.id)
    undone = {reversed_entry(memo): journal_id for journal_id, kind, _, _, memo in rows
              if kind in CLAWBACK_REVERSALS.values()}
    return [ClawbackLedgerEntry(
        id=journal_id, kind=kind, amount=amount, at=when, memo=memo or "",
        reference=_reference(kind, memo),
        reverses=reversed_entry(memo) if kind in (*CLAWBACK_REVERSALS.values(), CLAWBACK_RECOVERED_BY_REFUNDS) else None,
        reversed_by=undone.get(journal_id)) for journal_id, kind, amount, when, memo in rows]


def _reference(kind: str, memo: str | None) -> str | None:
    """The bank reference a repayment's or an overpayment return's memo ends in."""
    prefix = {CLAWBACK_REPAID: REPAYMENT_MEMO, CLAWBACK_OVERPAYMENT_RETURNED: RETURN_MEMO}.get(kind)
    return memo.removeprefix(prefix) if prefix is not None and memo else None


async def clawback_entries(session: AsyncSession, actor: Actor, voucher_id: uuid.UUID,
                           page: PageRequest) -> tuple[Voucher, list[ClawbackLedgerEntry], str | None]:
    """A voucher the caller may see, and a page of its journals on the enterprise's receivable,
    oldest first. They are read whole (each is an office's entry or a refund's recovery, a
    handful per voucher), so each reversal is linked to what it undoes on any page."""
    voucher = await get_voucher(session, actor, voucher_id)
    receivable = await ledger.receivable_of(session, voucher.enterprise_id, voucher.programme_id)
    entries = [e for e in await _entries(session, voucher, receivable) if page.after is None or e.id > page.after]
    more = len(entries) > page.limit
    return voucher, entries[:page.limit], encode_cursor(entries[page.limit - 1].id) if more else None


async def reverse_clawback_entry(
    session: AsyncSession, actor: Actor, voucher_id: uuid.UUID, entry_id: uuid.UUID, reason: str, now: datetime,
) -> ClawbackState:
    """Undo, in full, a clawback, repayment, write-off or overpayment return of the voucher
    recorded by mistake (a clawback entered twice or mistyped, a bounced transfer, the wrong
    voucher, a write-off the office takes back): a reversal journal moves the receivable back by
    its amount, and the clawed-back, repaid, written-off or returned sum falls by it. What refunds
    made while it stood would have recovered comes off again in a second journal
    (`rules.clawback_reversal`), so what is owed is what the rule says. The entry itself stays
    in the ledger; once undone, it cannot be undone again, and a reversed repayment's bank
    reference may be recorded again."""
    voucher = await _lock_for_change(session, actor, voucher_id, now)
    before = await _clawback_state(session, voucher, now)
    entries = await _entries(session, voucher, before.receivable)
    entry = next((e for e in entries if e.id == entry_id and e.kind in CLAWBACK_REVERSALS), None)
    if entry is None:
        raise ValidationFailed([field_error("entry_id", msg(
            "not a clawback, repayment, write-off or overpayment return of this voucher (GET its clawback "
            "entries for their ids)"))])
    if entry.reversed_by is not None:
        undone_at = next(e.at for e in entries if e.id == entry.reversed_by)
        raise AlreadyReversed(msg("this entry was reversed on {when}", when=undone_at),
                              journal_id=str(entry.reversed_by))
    assert before.receivable is not None
    # What the entry moved on the receivable (a clawback and a return put their amount on it).
    amount = abs(entry.amount)
    if not clawback_reversible(before.clawback, entry.kind):
        raise ValidationFailed([field_error("entry_id", msg(
            "the office wrote off {written_off} of this voucher's clawback: reverse the write-off first (it would "
            "forgive what is left once this entry is undone), and write off again what it still means to",
            written_off=Amount(before.clawback.written_off, voucher.unit)))])
    undone, recovered = clawback_reversal(before.clawback, before.used, entry.kind, amount)
    await ledger.post_all(session, await _entry_and_recovery(
        session, voucher, before.receivable, now, kind=CLAWBACK_REVERSALS[entry.kind], move=-entry.amount,
        memo=f"{REVERSAL_MEMO}{entry.id}: {reason}", recovered=recovered,
        recovery_memo=lambda _: f"{UNCOVER_MEMO if entry.kind == CLAWBACK_RECORDED else RECOVERY_MEMO}{entry.id}"))
    after = replace(before, clawback=undone)
    await audit.record(
        session, f"voucher.{CLAWBACK_REVERSALS[entry.kind]}", "voucher", voucher.id, now=now,
        before={"status": voucher.status, "clawback_owed": before.owed},
        after={"status": voucher.status, "clawback_owed": after.owed, "entry_id": str(entry.id), "amount": amount,
               "recovered_by_refunds": recovered, "reason": reason},
        programme_id=voucher.programme_id, enterprise_id=voucher.enterprise_id, voucher_id=voucher.id,
    )
    return after


async def _entry_and_recovery(
    session: AsyncSession, voucher: Voucher, receivable: uuid.UUID, now: datetime, *, kind: str, move: int, memo: str,
    recovered: int, recovery_memo: Callable[[uuid.UUID], str],
) -> list[ledger.Journal]:
    """An office's entry moving the enterprise's receivable by `move` (up when positive) against
    the programme's clawback account, and, when refunds recover part of it, the journal taking
    that off (`recovered` < 0 puts it back), its memo naming the entry's journal."""
    contra = (await ledger.programme_accounts(session, voucher.programme_id))[AccountKind.PROGRAMME_CLAWBACK]
    entry = ledger.journal(kind=kind, now=now, programme_id=voucher.programme_id, voucher_id=voucher.id,
                           legs=_on_receivable(receivable, contra, move, voucher.unit), memo=memo)
    if not recovered:
        return [entry]
    return [entry, ledger.journal(
        kind=CLAWBACK_RECOVERED_BY_REFUNDS, now=now, programme_id=voucher.programme_id, voucher_id=voucher.id,
        legs=_on_receivable(receivable, contra, -recovered, voucher.unit), memo=recovery_memo(entry.id))]


def _on_receivable(receivable: uuid.UUID, contra: uuid.UUID, amount: int, unit: str) -> list[Leg]:
    """The legs that move the enterprise's receivable by `amount` (up when positive) against the
    programme's clawback account."""
    return transfer(contra, receivable, amount, unit) if amount > 0 else transfer(receivable, contra, -amount, unit)


async def return_overpayment(
    session: AsyncSession, actor: Actor, voucher_id: uuid.UUID, amount: int, reference: str, paid_on: date,
    now: datetime,
) -> ClawbackState:
    """The office paid back to the enterprise part or all of what it overpaid for a voucher (it
    repaid a clawback, then a refund of the order returned the same value through the provider:
    `clawback_overpaid`). At most what is overpaid and not returned yet; one bank payment is
    recorded once, as a repayment is. Two journals (`rules.clawback_overpayment_return`): the
    return puts the amount on the receivable, as undoing that much of the repayment would, and
    what the refunds recovered takes it off again, so nothing is owed before or after — but a
    later reversal of the repayment then asks the returned money back too."""
    voucher = await _lock_for_change(session, actor, voucher_id, now)
    before = await _clawback_state(session, voucher, now)
    entries = await _entries(session, voucher, before.receivable)
    _check_reference_new(entries, reference, CLAWBACK_OVERPAYMENT_RETURNED)
    if amount > before.overpaid:
        problem = (msg("at most what the enterprise overpaid for the voucher and was not returned yet, {overpaid}",
                       overpaid=Amount(before.overpaid, voucher.unit))
                   if before.overpaid > 0 else msg("the enterprise overpaid nothing for this voucher"))
        raise ValidationFailed([field_error("amount", problem)])
    assert before.receivable is not None  # it repaid on it
    _check_paid_on(entries, paid_on, now)
    after_clawback, recovered = clawback_overpayment_return(before.clawback, before.used, amount)
    await ledger.post_all(session, await _entry_and_recovery(
        session, voucher, before.receivable, now, kind=CLAWBACK_OVERPAYMENT_RETURNED, move=amount,
        memo=f"{RETURN_MEMO}{reference}", recovered=recovered,
        recovery_memo=lambda returned: f"{RETURN_RECOVERY_MEMO}{returned}"))
    after = replace(before, clawback=after_clawback)
    await audit.record(
        session, "voucher.clawback_overpayment_returned", "voucher", voucher.id, now=now,
        before={"status": voucher.status, "clawback_owed": before.owed, "overpaid": before.overpaid},
        after={"status": voucher.status, "clawback_owed": after.owed, "overpaid": after.overpaid, "amount": amount,
               "reference": reference, "paid_on": paid_on.isoformat()},
        programme_id=voucher.programme_id, enterprise_id=voucher.enterprise_id, voucher_id=voucher.id,
    )
    return after


async def expire_voucher(session: AsyncSession, voucher: Voucher, now: datetime) -> bool:
    """Post a (locked) voucher's expiry: holds voided first, then the remaining value goes back
    to the pool or to breakage, as the programme says. Idempotent: whether it posted."""
    live = (VoucherStatus.ACTIVE.value, VoucherStatus.SUSPENDED.value, VoucherStatus.EXHAUSTED.value)
    if voucher.expiry_posted_at is not None or now < voucher.expires_at or voucher.status not in live:
        return False  # posted already, not due, or revoked: nothing changes, so nothing is recorded
    await redemptions.release_voucher_holds(session, voucher, VoidReason.VOUCHER_EXPIRED, now)
    before, available = voucher.status, 0
    voucher.status = VoucherStatus.EXPIRED.value
    voucher.status_changed_at = now
    voucher.status_reason = "validity ended"
    voucher.version += 1
    available = (await view(session, voucher, now)).balances.available
    if available:
        programme = await _programme(session, voucher.programme_id)
        accounts = await ledger.programme_accounts(session, voucher.programme_id)
        to_pool = programme.expiry_disposition == ExpiryDisposition.POOL.value
        target = accounts[AccountKind.PROGRAMME_AVAILABLE if to_pool else AccountKind.PROGRAMME_BREAKAGE]
        await ledger.post(
            session,
            kind=EXPIRY_JOURNAL,
            legs=transfer(voucher.available_account_id, target, available, voucher.unit),
            now=now, programme_id=voucher.programme_id, voucher_id=voucher.id,
            memo="voucher expired: unused value to " + ("the pool" if to_pool else "breakage"),
        )
    voucher.expiry_posted_at = now
    await session.flush()
    await _status_event(session, "voucher.expired", voucher, before, now, unused_value=available)
    return True


async def due_for_expiry(session: AsyncSession, now: datetime, limit: int = 500) -> list[uuid.UUID]:
    """Vouchers past their validity whose expiry has not been posted yet."""
    return await repository.due_for_expiry(session, now, limit)


async def expire_by_id(session: AsyncSession, voucher_id: uuid.UUID, now: datetime) -> int:
    """Post one voucher's expiry (1), or nothing if posted already or revoked meanwhile (0)."""
    voucher = await repository.get_by_id(session, voucher_id, for_update=True)
    if voucher is None:
        return 0
    return int(await expire_voucher(session, voucher, now))


async def expire_due(session: AsyncSession, now: datetime, limit: int = 500) -> int:
    """Post due expiries in one transaction (tests, small batches); the job runner gives each
    voucher its own transaction instead (services/voucher/jobs.py)."""
    return sum([await expire_by_id(session, i, now) for i in await due_for_expiry(session, now, limit)])


async def history(
    session: AsyncSession, voucher: Voucher, *, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """The voucher's ledger postings, oldest first."""
    return await ledger.postings_for_accounts(
        session, [voucher.available_account_id, voucher.held_account_id, voucher.used_account_id],
        after=after, limit=limit,
    )
