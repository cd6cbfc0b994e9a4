"""Settlement use cases: create for a provider, programme and period; the provider confirms
or disputes; the operator resolves, approves, pays or cancels; statements as JSON and CSV.

Creation takes the provider's payable account row lock (per programme) first, so two
creations for one provider and programme run one after the other: the second sees the
first's lines taken. Partial unique indexes keep any capture or refund in one live settlement
even if that lock were bypassed. Paying moves the total from payable to paid in the ledger.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import SYSTEM, Actor
from services.voucher.audit import service as audit
from services.voucher.db import PageRequest
from services.voucher.errors import (
    Forbidden,
    InvalidTransition,
    NotFound,
    NothingToSettle,
    RecordsDiffer,
    SettlementAccountMissing,
    SettlementExists,
    ValidationFailed,
    field_error,
)
from services.voucher.i18n import Amount, Status, msg
from services.voucher.ids import uuid7
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind, transfer
from services.voucher.money import Unit
from services.voucher.programmes import service as programmes
from services.voucher.providers import service as providers
from services.voucher.settlement import repository
from services.voucher.settlement.rules import (
    PERIOD_ZONE,
    ItemKind,
    SettlementStatus,
    check_transition,
    month_after,
    month_part,
    payment_day_problem,
    period_bounds,
    period_problems,
    settle_window,
    still_committing,
    uncovered,
)
from services.voucher.settlement.statement import Line, digest, render_csv, statement_title
from services.voucher.tables import Settlement, SettlementItem

S = SettlementStatus
#: Days a provider has to confirm or dispute a repayment statement before the office may
#: approve it as it stands.
REPAYMENT_CONFIRM_DAYS = 15


async def create(
    session: AsyncSession, actor: Actor, *, provider_id: uuid.UUID, programme_id: uuid.UUID,
    period_start: date, period_end: date, now: datetime,
) -> Settlement:
    """A draft settlement of every unsettled capture in the period and every unsettled refund
    whose capture is settled (here or earlier): what the programme owes for the period or, when
    the refunds exceed the captures, what the provider owes back (a total below zero)."""
    today = now.astimezone(ZoneInfo(PERIOD_ZONE)).date()
    problems = period_problems(period_start, period_end, today)
    if problems:
        raise ValidationFailed([field_error(f, m) for f, m in problems])
    starts_at, ends_at = period_bounds(period_start, period_end)
    committing = still_committing(ends_at, now)
    if committing is not None:
        raise ValidationFailed([field_error("period_end", committing)])
    programme = await programmes.get_programme(session, actor, programme_id)
    await providers.get_provider(session, actor, provider_id)
    accounts = await ledger.ensure_provider_accounts(session, provider_id, programme.id, programme.unit, now)
    payable = accounts[AccountKind.PROVIDER_PAYABLE]
    # Creations for this provider and programme run one after the other; captures and refunds
    # posting to the payable account meanwhile are not blocked (and cannot deadlock with us).
    await ledger.serialise_on(session, payable)
    existing = await repository.live_for_period(session, provider_id, programme.id, period_start, period_end)
    if existing is not None:
        raise SettlementExists(
            msg("settlement {settlement_id} already covers {period_start}..{period_end} for this provider "
                "and programme ({status}); cancel it to settle the period again",
                settlement_id=existing.id, period_start=period_start, period_end=period_end,
                status=Status(existing.status)),
            settlement_id=str(existing.id), current_status=existing.status,
        )
    captures = await repository.unsettled_captures(session, provider_id, programme.id, starts_at, ends_at)
    # A refund is taken once its capture is in a live settlement, this one included: with
    # captures, the refunds are read after their items are written.
    refunds = [] if captures else await repository.unsettled_refunds(session, provider_id, programme.id, ends_at)
    if not captures and not refunds:
        raise NothingToSettle(msg("no unsettled capture or refund between {period_start} and {period_end} ({zone})",
                                  period_start=period_start, period_end=period_end, zone=PERIOD_ZONE))
    captured = sum(r.captured_amount for r in captures)
    settlement = Settlement(
        provider_id=provider_id, programme_id=programme.id, unit=programme.unit,
        period_start=period_start, period_end=period_end, starts_at=starts_at, ends_at=ends_at,
        status=S.DRAFT.value, captured_total=captured, refunded_total=0, total=captured,
        line_count=len(captures) + len(refunds), created_at=now, updated_at=now,
    )
    await repository.add_all(session, [settlement])
    await repository.insert_items(session, [
        {"id": uuid7(), "settlement_id": settlement.id, "kind": ItemKind.CAPTURE.value, "redemption_id": r.id,
         "refund_id": None, "order_reference": r.order_reference, "amount": r.captured_amount,
         "occurred_at": r.captured_at}
        for r in captures
    ])
    if captures:
        refunds = await repository.unsettled_refunds(session, provider_id, programme.id, ends_at)
    await repository.insert_items(session, [
        {"id": uuid7(), "settlement_id": settlement.id, "kind": ItemKind.REFUND.value,
         "redemption_id": refund.redemption_id, "refund_id": refund.id, "order_reference": refund.order_reference,
         "amount": -refund.amount, "occurred_at": refund.created_at}
        for refund in refunds
    ])
    # Refunds beyond the captures make a repayment statement (a total below zero): what the
    # provider pays back for captures it was paid for, or will be, and then refunded.
    refunded = sum(refund.amount for refund in refunds)
    settlement.refunded_total = refunded
    settlement.total = captured - refunded
    settlement.line_count = len(captures) + len(refunds)
    await session.flush()
    await audit.record(
        session, "settlement.created", "settlement", settlement.id, now=now,
        after=audit.fields(settlement,
                           "status period_start period_end unit captured_total refunded_total total line_count"),
        programme_id=settlement.programme_id, provider_id=settlement.provider_id,
    )
    return settlement


async def get(session: AsyncSession, actor: Actor, settlement_id: uuid.UUID, *, for_update: bool = False) -> Settlement:
    settlement = await repository.get(session, actor, settlement_id, for_update=for_update)
    if settlement is None:
        raise NotFound(msg("no settlement with id {settlement_id}", settlement_id=settlement_id))
    return settlement


async def list_settlements(
    session: AsyncSession, actor: Actor, page: PageRequest, *,
    provider_id: uuid.UUID | None = None, programme_id: uuid.UUID | None = None, status: str | None = None,
) -> tuple[list[Settlement], str | None]:
    return await repository.list_page(session, actor, page, provider_id=provider_id, programme_id=programme_id,
                                      status=status)


async def _move(session: AsyncSession, settlement: Settlement, target: S, now: datetime, reason: str | None = None,
                **extra: Any) -> None:
    check_transition(S(settlement.status), target)
    await audit.record(
        session, f"settlement.{target.value}", "settlement", settlement.id, now=now,
        before={"status": settlement.status}, after={"status": target.value, "status_reason": reason, **extra},
        programme_id=settlement.programme_id, provider_id=settlement.provider_id,
    )
    settlement.status = target.value
    settlement.status_reason = reason
    settlement.updated_at = now
    settlement.version += 1


async def _put_forward(session: AsyncSession, settlement: Settlement, now: datetime, reason: str | None) -> None:
    """draft → submitted: the provider's confirmation, its dispute's first step, or the office's
    deemed confirmation of a repayment."""
    await _move(session, settlement, S.SUBMITTED, now, reason)
    settlement.submitted_at = now


def _own(actor: Actor, settlement: Settlement) -> None:
    if actor.provider_id != settlement.provider_id:
        raise Forbidden(msg("only the provider being settled confirms or disputes its settlement"))


async def submit(session: AsyncSession, actor: Actor, settlement_id: uuid.UUID, note: str | None,
                 now: datetime) -> Settlement:
    """The provider confirms the statement (draft → submitted)."""
    settlement = await get(session, actor, settlement_id, for_update=True)
    _own(actor, settlement)
    if settlement.status != S.DRAFT.value:  # disputed → submitted is the office's answer (resolve)
        raise InvalidTransition(
            msg("the provider confirms a draft; this settlement is {status}", status=Status(settlement.status)),
            current_status=settlement.status, allowed=[],
        )
    await _put_forward(session, settlement, now, note)
    await session.flush()
    return settlement


async def dispute(session: AsyncSession, actor: Actor, settlement_id: uuid.UUID, reason: str,
                  now: datetime) -> Settlement:
    """The provider disputes its statement. A draft is put forward and disputed in one step
    (draft → submitted → disputed, both recorded): a provider had to confirm a draft before it
    could dispute it, and the office could approve what it had just confirmed in between — a
    repayment it never disputed in time is approved on its behalf (an independent review)."""
    settlement = await get(session, actor, settlement_id, for_update=True)
    _own(actor, settlement)
    if settlement.status == S.DRAFT.value:
        await _put_forward(session, settlement, now, msg("put forward by the provider to dispute it").render("en"))
    await _move(session, settlement, S.DISPUTED, now, reason)
    await session.flush()
    return settlement


async def resolve(session: AsyncSession, actor: Actor, settlement_id: uuid.UUID, note: str,
                  now: datetime) -> Settlement:
    """The programme office answers a dispute; the statement stands as submitted."""
    settlement = await get(session, actor, settlement_id, for_update=True)
    if settlement.status != S.DISPUTED.value:
        raise InvalidTransition(msg("only a disputed settlement is resolved; this one is {status}",
                                    status=Status(settlement.status)),
                                current_status=settlement.status, allowed=[])
    await _move(session, settlement, S.SUBMITTED, now, note)
    await session.flush()
    return settlement


async def approve(session: AsyncSession, actor: Actor, settlement_id: uuid.UUID, note: str | None,
                  now: datetime) -> Settlement:
    settlement = await get(session, actor, settlement_id, for_update=True)
    if settlement.status == S.DRAFT.value and settlement.total <= 0:
        # A repayment is not the provider's to hold up by silence: unconfirmed and undisputed
        # for REPAYMENT_CONFIRM_DAYS, the office approves it as it stands, recorded as confirmed
        # on the provider's behalf (an independent review: a silent provider kept its debt, and
        # the programme from being archived, for ever). Nor is a statement that pays nothing
        # (refunds equal to captures): it was the last thing keeping a programme open, and
        # cancelling it only left its captures and refunds unsettled (a later review).
        deemed_at = settlement.created_at + timedelta(days=REPAYMENT_CONFIRM_DAYS)
        if now < deemed_at:
            raise InvalidTransition(
                msg("the provider confirms or disputes its statement (it pays nothing or is a repayment); if it "
                    "has done neither, the office can approve it from {at}", at=deemed_at),
                current_status=settlement.status, allowed=[S.SUBMITTED.value, S.CANCELLED.value],
            )
        await _put_forward(session, settlement, now, msg(
            "not confirmed nor disputed by the provider within {days} days: confirmed on its behalf",
            days=REPAYMENT_CONFIRM_DAYS).render("en"))
    check_transition(S(settlement.status), S.APPROVED)  # one it cannot approve says so before the account
    account = None
    if settlement.total > 0:
        # Where the money goes is approved with the payment: the account as it stands now (one
        # column, the old value or the new one), whatever the registry says later.
        provider = await providers.get_provider(session, actor, settlement.provider_id)
        account = provider.settlement_account
        if not account:
            raise SettlementAccountMissing(
                msg("the provider has no settlement account on file: record its bank account in the registry, then "
                    "approve the payment"), provider_id=str(settlement.provider_id))
    await _move(session, settlement, S.APPROVED, now, note, payee_account=account)
    settlement.payee_account = account
    settlement.approved_at = now
    await session.flush()
    return settlement


async def pay(session: AsyncSession, actor: Actor, settlement_id: uuid.UUID, *, reference: str, paid_on: date,
              now: datetime) -> Settlement:
    """Record the bank payment and move the total from the provider's payable to paid; for a
    total below zero, the provider's repayment: from paid back to the payable."""
    settlement = await get(session, actor, settlement_id, for_update=True)
    check_transition(S(settlement.status), S.PAID)
    problem = payment_day_problem(paid_on, settlement.approved_at, now)
    if problem is not None:
        raise ValidationFailed([field_error("paid_on", problem)])
    # What is paid is what the lines say, each as the capture or refund it names and as the ledger
    # has it: a total changed behind the service had been paid as it stood (an independent review
    # paid 9,000,000 for one 300,000 capture), and a capture changed before the settlement was
    # drafted (a review of the first check).
    captured, refunded, lines = await repository.totals_from_records(session, settlement)
    if (captured, refunded, captured - refunded, lines) != (
            settlement.captured_total, settlement.refunded_total, settlement.total, settlement.line_count):
        raise RecordsDiffer(
            msg("settlement {settlement_id} says {total} over {count} line(s), but its lines, read as the captures "
                "and refunds they name and as the ledger has them, come to {expected} over {lines}: its records "
                "were changed outside the service, and nothing is paid. The ledger reconciliation lists what "
                "differs",
                settlement_id=settlement.id, total=Amount(settlement.total, settlement.unit),
                count=settlement.line_count, expected=Amount(captured - refunded, settlement.unit), lines=lines),
            expected_total=captured - refunded, total=settlement.total,
        )
    accounts = await ledger.ensure_provider_accounts(session, settlement.provider_id, settlement.programme_id,
                                                     settlement.unit, now)
    payable, paid = accounts[AccountKind.PROVIDER_PAYABLE], accounts[AccountKind.PROVIDER_PAID]
    if settlement.total > 0:
        await ledger.post(
            session, kind="settlement_paid", legs=transfer(payable, paid, settlement.total, settlement.unit),
            now=now, programme_id=settlement.programme_id,
            memo=f"settlement {settlement.id} paid, reference {reference}",
        )
    elif settlement.total < 0:
        # The provider gives back what it was paid for captures it then refunded: each refunded
        # capture must be in this settlement or a paid one (an independent review had a provider
        # repay, out of other captures' money, a capture whose settlement was never paid).
        unpaid = await repository.refunds_of_unpaid_captures(session, settlement.id)
        if unpaid:
            raise InvalidTransition(
                msg("{count} refunded capture(s) of this repayment have not been paid to the provider: pay the "
                    "settlement they are in first, or, if it was cancelled, settle their period again and pay "
                    "it; this repayment is paid after",
                    count=len(unpaid)),
                current_status=settlement.status, allowed=[],
                unpaid_redemption_ids=[str(r) for r in unpaid[:100]],
            )
        # The paid account is the one row of this journal that is materialised (the payable is
        # not), so locking it first orders nothing against another write; two repayments at once
        # then queue here instead of the second meeting the account's CHECK.
        owed_back = -settlement.total
        already_paid = (await ledger.balances(session, [paid], lock=True))[paid]
        if already_paid < owed_back:
            raise InvalidTransition(
                msg("the provider would repay {owed_back} but has been paid {paid} in this programme: record the "
                    "payment of the settlements holding the refunded captures first",
                    owed_back=Amount(owed_back, settlement.unit), paid=Amount(already_paid, settlement.unit)),
                current_status=settlement.status, allowed=[S.PAID.value], paid_total=already_paid,
            )
        await ledger.post(
            session, kind="settlement_repaid", legs=transfer(paid, payable, owed_back, settlement.unit),
            now=now, programme_id=settlement.programme_id,
            memo=f"settlement {settlement.id} repaid by the provider, reference {reference}",
        )
    # One UPDATE writes every field: once the row says `paid`, the database refuses any other.
    # `direction` says which way the money went: the events and webhooks of a repayment say so.
    await _move(session, settlement, S.PAID, now, total=settlement.total, unit=settlement.unit,
                payment_reference=reference, paid_on=paid_on,
                direction="repayment" if settlement.total < 0 else "payment")
    settlement.payment_reference = reference
    settlement.paid_on = paid_on
    settlement.paid_at = now
    await session.flush()
    return settlement


async def cancel(session: AsyncSession, actor: Actor, settlement_id: uuid.UUID, reason: str,
                 now: datetime) -> Settlement:
    """Cancel a draft or submitted settlement; its captures and refunds can be settled again."""
    settlement = await get(session, actor, settlement_id, for_update=True)
    await _move(session, settlement, S.CANCELLED, now, reason)
    settlement.cancelled_at = now
    await session.flush()
    await repository.release_items(session, settlement.id, now)
    return settlement


async def statement_items(session: AsyncSession, actor: Actor,
                          settlement_id: uuid.UUID) -> tuple[Settlement, list[SettlementItem]]:
    """The settlement and its lines, whose sum its totals equal."""
    settlement = await get(session, actor, settlement_id)
    return settlement, await repository.items(session, settlement.id)


async def statement(session: AsyncSession, actor: Actor, settlement_id: uuid.UUID) -> dict[str, Any]:
    """The statement: the settlement, its lines, and the CSV rendering of the same lines and
    its SHA-256, rendered on a thread: a statement of 100,000 lines had held the event loop,
    and every request of the process, for the seconds it takes (an independent review,
    December 2026)."""
    settlement, items = await statement_items(session, actor, settlement_id)
    title = statement_title(settlement.id, settlement.period_start, settlement.period_end)
    lines = [Line.of(i) for i in items]
    document, sha256 = await asyncio.to_thread(_rendered, title, Unit(settlement.unit), lines)
    return {"settlement": settlement, "items": items, "csv": document, "csv_sha256": sha256}


def _rendered(title: str, unit: Unit, lines: list[Line]) -> tuple[bytes, str]:
    document = render_csv(title, unit, lines)
    return document, digest(document)


async def due_monthly(
    session: AsyncSession, now: datetime, limit: int = 500,
) -> list[tuple[uuid.UUID, uuid.UUID, date, date]]:
    """(provider, programme, first day, last day) of the days no settlement covers in every
    calendar month that ended at least
    `SETTLE_AFTER` ago and holds a capture payable to the provider that no settlement's period
    covers, or is the first such month since a refund of a settled capture that no settlement
    has taken back (a repayment) — oldest first. Every month since the pair's first capture is looked at, not only
    the last one, so months the schedule did not run through (a worker down for weeks, a
    sandbox clock moved by a year) are settled too. The days the pair's settlements cover, in
    any status, are left out (one the office cancelled is not made again, as before): what is
    left is read in captured order, one index probe per month found and one per run of
    uncovered days, so a run of a pair whose months are all settled reads no capture. The draft
    covers only those days of the month: the whole month had taken the captures of a part the
    office had cancelled, against the rule above (an independent review, December 2026)."""
    due: list[tuple[uuid.UUID, uuid.UUID, date, date]] = []
    for provider_id, programme_id in await repository.enrolled_pairs(session):
        first = await repository.first_capture(session, provider_id, programme_id)
        window = settle_window(first, now) if first is not None else None
        if window is None:
            continue
        settled = await repository.settled_periods(session, provider_id, programme_id)
        runs = list(uncovered(*window, settled))
        periods: list[tuple[date, date]] = []  # a run's days in one month each
        for start_day, end_day in runs:
            day = start_day
            while day <= end_day:
                found = await repository.next_unsettled_capture(
                    session, provider_id, programme_id, *period_bounds(day, end_day))
                if found is None:
                    break
                month = found.astimezone(ZoneInfo(PERIOD_ZONE)).date().replace(day=1)
                periods.append(month_part(month, start_day, end_day))
                day = month_after(month)
        # A refund of a settled capture with no capture after it (the programme winding down) is
        # settled as a repayment: the first month on or after it that no settlement covers. Only
        # refunds made since the first uncovered day are looked for — one before it was taken by
        # the settlement covering its day — or since the first day of a cancelled settlement,
        # whose refunds no live settlement took (an independent review found them owed for ever),
        # or since the first day of a settlement made before an earlier period's, which could
        # not take the refunds of captures that one settled (a later review), or since the first
        # day of the pair's newest settlements, which a refund that committed after they were made
        # escaped (a third review: one stamped 23:59:59 on the last day of the month, committed
        # after the month's draft, of a programme with no capture after it, was owed for ever).
        refunded = None
        if runs:
            since = runs[0][0]
            for gap in (await repository.first_cancelled_day(session, provider_id, programme_id),
                        await repository.first_out_of_order_day(session, provider_id, programme_id),
                        await repository.first_recent_day(session, provider_id, programme_id)):
                if gap is not None and gap < since:
                    since = gap
            refunded = await repository.first_unsettled_refund(
                session, provider_id, programme_id, period_bounds(since, since)[0])
        if refunded is not None:
            since = refunded.astimezone(ZoneInfo(PERIOD_ZONE)).date()
            run = next(((max(start_day, since), start_day, end_day) for start_day, end_day in runs
                        if end_day >= since), None)
            if run is not None:
                period = month_part(run[0].replace(day=1), run[1], run[2])
                if period not in periods:
                    periods.append(period)
        for start_day, end_day in sorted(periods):
            due.append((provider_id, programme_id, start_day, end_day))
            if len(due) >= limit:
                return due
    return due


async def create_monthly(
    session: AsyncSession, provider_id: uuid.UUID, programme_id: uuid.UUID, first_day: date, last_day: date,
    now: datetime,
) -> int:
    """The `create-settlements` job's item: the draft settlement of one month's days no
    settlement covers (`due_monthly`), for one provider and programme, as the system. Run twice,
    it refuses the second time (settlement_exists)."""
    with audit.as_system():
        await create(session, SYSTEM, provider_id=provider_id, programme_id=programme_id,
                     period_start=first_day, period_end=last_day, now=now)
    return 1
