"""Vouchers over HTTP: operators issue and manage; enterprises read their own; providers look
one up by code and USCC to quote a subsidy."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.applications import service as applications
from services.voucher.db import Database
from services.voucher.http.auth import require
from services.voucher.http.deps import Db, Now, Session, get_database
from services.voucher.http.idempotency import idempotent
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.i18n import msg
from services.voucher.programmes import repository as programmes_repository
from services.voucher.vouchers import service
from services.voucher.vouchers.rules import VoucherStatus, effective_status
from services.voucher.vouchers.schemas import (
    Balances,
    ClawbackEntry,
    ClawbackEntryPublic,
    ClawbackOverpaymentReturn,
    ClawbackPublic,
    ClawbackRepayment,
    ClawbackReversal,
    ClawbackWriteOff,
    PostingPage,
    Revocation,
    StatusChange,
    VoucherBulkIssue,
    VoucherIssue,
    VoucherLookup,
    VoucherPublic,
    VoucherQuote,
)

router = APIRouter(prefix="/v1/vouchers", tags=["vouchers"])
Reader = Annotated[Actor, Depends(require(Scope.VOUCHERS_READ))]
Writer = Annotated[Actor, Depends(require(Scope.VOUCHERS_WRITE))]
ISSUE_ERRORS = (errors.NotFound, errors.ProgrammeNotOpen, errors.ExceedsMaxPerVoucher,
                errors.EnterpriseCapExceeded, errors.BudgetExhausted, errors.ValidationFailed,
                errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress)


def _public(view: service.VoucherView) -> VoucherPublic:
    v = view.voucher
    return VoucherPublic(
        id=v.id, code=v.code, programme_id=v.programme_id, enterprise_id=v.enterprise_id, kind=v.kind,
        unit=v.unit, face_value=v.face_value, status=view.status,
        balances=Balances(available=view.balances.available, held=view.balances.held, used=view.balances.used),
        valid_from=v.valid_from, expires_at=v.expires_at, period_key=v.period_key, issued_at=v.issued_at,
        status_reason=v.status_reason, reference=v.issue_reference,
    )


@router.post(
    "",
    operation_id="issue_voucher",
    summary="Issue a voucher to an enterprise (commits budget and counts against its cap)",
    description="The programme office grants a voucher directly (`vouchers:write`), with a required "
    "Idempotency-Key; vouchers of approved applications are issued when their publicity ends. The face value moves "
    "from the programme's uncommitted budget to the new voucher's available balance in one ledger journal and "
    "counts against the enterprise's cap for the period; it records `voucher.issued` and `ledger.posted` and "
    "announces `voucher.issued` to events and the enterprise's webhooks. Refused with `not_found` (programme or "
    "enterprise), `programme_not_open`, `exceeds_max_per_voucher`, `enterprise_cap_exceeded`, `budget_exhausted`, "
    "`validation_failed` (e.g. `valid_from` out of range) or an Idempotency-Key conflict.",
    status_code=201,
    response_model=VoucherPublic,
    responses=responses(*AUTH_ERRORS, *ISSUE_ERRORS),
    dependencies=[Depends(idempotent(Scope.VOUCHERS_WRITE, required=True))],
)
async def issue_voucher(body: VoucherIssue, session: Session, now: Now, actor: Writer, response: Response) -> VoucherPublic:
    voucher = await service.issue_voucher(
        session, programme_id=body.programme_id, enterprise_id=body.enterprise_id, face_value=body.face_value,
        valid_from=body.valid_from, reference=body.reference, now=now,
    )
    response.headers["Location"] = f"/v1/vouchers/{voucher.id}"
    return _public(await service.view(session, voucher, now))


@router.post(
    "/bulk",
    operation_id="issue_vouchers_bulk",
    summary="Issue many vouchers at once, all or nothing",
    description="The programme office (`vouchers:write`), with a required Idempotency-Key, grants many vouchers of "
    "one programme in one transaction, e.g. from an offline selection. Each grant moves its face value as "
    "`issue_voucher` does (a ledger journal, the audit events `voucher.issued` and `ledger.posted`, a "
    "`voucher.issued` event); one refusal refuses the whole batch, names the grant (`grant_index`, from 0, and "
    "its own refusal in words, `grant_reason`; a `validation_failed` names each grant in its errors' pointers, "
    "`/grants/2/valid_from`) and issues "
    "nothing. Refused with `not_found`, `programme_not_open`, `exceeds_max_per_voucher`, "
    "`enterprise_cap_exceeded`, `budget_exhausted`, `validation_failed` or an Idempotency-Key conflict.",
    status_code=201,
    response_model=list[VoucherPublic],
    responses=responses(*AUTH_ERRORS, *ISSUE_ERRORS),
    dependencies=[Depends(idempotent(Scope.VOUCHERS_WRITE, required=True))],
)
async def issue_vouchers_bulk(body: VoucherBulkIssue, session: Session, now: Now, actor: Writer) -> list[VoucherPublic]:
    vouchers = await service.issue_bulk(
        session, programme_id=body.programme_id, grants=[g.model_dump() for g in body.grants], now=now
    )
    return [_public(v) for v in await service.views(session, vouchers, now)]


@router.get(
    "",
    operation_id="list_vouchers",
    summary="List vouchers (an enterprise sees its own) with their balances",
    description="Any key with `vouchers:read`: an enterprise sees its own vouchers, operators and auditors all; "
    "filter by programme, enterprise or stored status. Balances and status are as of now (expired holds released, "
    "expiry applied). Before answering it issues the vouchers of publicity periods that have ended, as the worker "
    "would, so a new voucher shows at once; otherwise it changes nothing. Answers `invalid_cursor` for a cursor "
    "this service did not issue.",
    response_model=Page[VoucherPublic],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_vouchers(
    session: Session,
    database: Annotated[Database, Depends(get_database)],
    now: Now,
    actor: Reader,
    page: Paging,
    programme_id: Annotated[uuid.UUID | None, Query()] = None,
    enterprise_id: Annotated[uuid.UUID | None, Query()] = None,
    status: Annotated[VoucherStatus | None, Query(description="Status as each voucher reads now: one past `expires_at` is `expired` even before the worker posts its expiry.")] = None,
) -> Page[VoucherPublic]:
    # Vouchers whose application's publicity has ended are issued first: an SME sees its
    # voucher the moment the period ends, whether or not the job has run.
    if await applications.settle_due(database, actor, now):
        await session.rollback()
    views, cursor = await service.list_vouchers(
        session, actor, page, now, programme_id=programme_id, enterprise_id=enterprise_id,
        status=status.value if status else None,
    )
    return Page(items=[_public(v) for v in views], next_cursor=cursor)


@router.get(
    "/{voucher_id}",
    operation_id="get_voucher",
    summary="Read a voucher with its available, held and used balances",
    description="Any key with `vouchers:read`, for a voucher it may see (an enterprise its own). Balances and "
    "status are as of now: expired holds count as released and a voucher past `expires_at` reads as expired; "
    "changes nothing. Answers `not_found` when the voucher does not exist or is not yours.",
    response_model=VoucherPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_voucher(voucher_id: uuid.UUID, db: Db, now: Now, actor: Reader) -> VoucherPublic:
    return _public(await service.read_voucher(db, actor, voucher_id, now))


@router.get(
    "/{voucher_id}/history",
    operation_id="get_voucher_history",
    summary="The voucher's ledger postings, oldest first",
    description="Any key with `vouchers:read`, for a voucher it may see. Lists the ledger postings on the "
    "voucher's available, held and used accounts, oldest first, each naming its account and journal; changes "
    "nothing. Answers `not_found` for a voucher you cannot see and `invalid_cursor` for a cursor this service did "
    "not issue.",
    response_model=PostingPage,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidCursor),
)
async def get_voucher_history(
    voucher_id: uuid.UUID,
    session: Session,
    actor: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
) -> PostingPage:
    voucher = await service.get_voucher(session, actor, voucher_id)
    after = None
    if cursor is not None:
        if not re.fullmatch(r"[0-9]{1,18}", cursor):
            raise errors.InvalidCursor(msg("the cursor is not one this service issued"))
        after = int(cursor)
    rows = await service.history(session, voucher, after=after, limit=limit + 1)
    names = {voucher.available_account_id: "available", voucher.held_account_id: "held",
             voucher.used_account_id: "used"}
    items = [{**r, "account": names[r["account_id"]]} for r in rows[:limit]]
    return PostingPage(items=items, next_cursor=str(rows[limit - 1]["id"]) if len(rows) > limit else None)


def _status_route(verb: str, summary: str, description: str, call: object) -> None:
    async def handler(
        voucher_id: uuid.UUID, body: StatusChange, session: Session, now: Now, actor: Writer
    ) -> VoucherPublic:
        voucher = await call(session, actor, voucher_id, body.reason, now)  # type: ignore[operator]
        return _public(await service.view(session, voucher, now))

    router.add_api_route(
        f"/{{voucher_id}}/{verb}", handler, methods=["POST"], operation_id=f"{verb}_voucher", summary=summary,
        description=description,
        response_model=VoucherPublic, responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidTransition),
        dependencies=[Depends(idempotent(Scope.VOUCHERS_WRITE, required=True))],
    )


_status_route("suspend", "Suspend a voucher: no new holds until it is resumed",
              "The programme office (`vouchers:write`), with a required Idempotency-Key and a reason: the voucher "
              "takes no new holds until it is resumed, while holds already placed may still be captured or voided. "
              "Changes the voucher's status and records the audit event `voucher.suspended`; no value moves. "
              "An exhausted voucher can be suspended too, so a refund does not make it spendable again. "
              "Refused with `not_found` or `invalid_transition` (the voucher is suspended already, expired or revoked).",
              service.suspend)
_status_route("resume", "Resume a suspended voucher",
              "The programme office (`vouchers:write`), with a required Idempotency-Key and a reason: a suspended "
              "voucher becomes active again (exhausted, when nothing is left to use). Records the audit event "
              "`voucher.resumed`; no value moves. Refused with `not_found` or `invalid_transition` (the voucher is "
              "not suspended).",
              service.resume)


@router.post(
    "/{voucher_id}/revoke",
    operation_id="revoke_voucher",
    summary="Revoke a voucher: holds voided, unused value back to the pool, clawback recorded",
    description="The programme office (`vouchers:write`), with a required Idempotency-Key and a reason. Live holds "
    "are voided, the unused balance returns to the programme's pool, and an optional `clawback` of value already "
    "used is recorded as a receivable from the enterprise, each as a ledger journal (history is never rewritten); "
    "audit events `voucher.revoked`, `hold.voided` and `ledger.posted`. Refused with `not_found`, "
    "`invalid_transition` (already revoked or expired) or `validation_failed` (a clawback above the used value).",
    response_model=VoucherPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidTransition, errors.ValidationFailed),
    dependencies=[Depends(idempotent(Scope.VOUCHERS_WRITE, required=True))],
)
async def revoke_voucher(voucher_id: uuid.UUID, body: Revocation, session: Session, now: Now, actor: Writer) -> VoucherPublic:
    voucher = await service.revoke(session, actor, voucher_id, body.reason, now, clawback=body.clawback)
    return _public(await service.view(session, voucher, now))


def _clawback(state: service.ClawbackState, now: datetime) -> ClawbackPublic:
    v = state.voucher
    c = state.clawback
    return ClawbackPublic(voucher_id=v.id, status=effective_status(VoucherStatus(v.status), v.expires_at, now),
                          unit=v.unit, used=state.used, clawed_back=c.clawed_back,
                          recovered_by_refunds=state.recovered_by_refunds, repaid=c.repaid, written_off=c.written_off,
                          owed=state.owed, room=state.room, overpaid=state.overpaid,
                          overpayment_returned=c.returned, forgivable=state.forgivable)


@router.get(
    "/{voucher_id}/clawback",
    operation_id="get_voucher_clawback",
    summary="What the enterprise owes back for a voucher (its clawback)",
    description="Any key with `vouchers:read`, for a voucher it may see (an enterprise sees its own). Answers the "
    "voucher's used value and its clawback: what was clawed back (at revocation, or later), what refunds of its "
    "used value recovered, what the enterprise repaid and the office wrote off, what is still owed, and what "
    "the enterprise overpaid and what the office returned of it; these are 0 when none was recorded. Changes nothing. Answers `not_found` for a voucher you cannot see.",
    response_model=ClawbackPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_voucher_clawback(voucher_id: uuid.UUID, session: Session, now: Now, actor: Reader) -> ClawbackPublic:
    return _clawback(await service.clawback_state(session, actor, voucher_id, now), now)


@router.post(
    "/{voucher_id}/clawback",
    operation_id="record_clawback",
    summary="Record a clawback on an expired or revoked voucher",
    description="The programme office (`vouchers:write`), with a required Idempotency-Key and a reason, when "
    "misuse comes to light after the voucher ended: its expiry passed, or it was revoked with less clawed back "
    "than is now known to be owed. The `amount` of used value is recorded as a receivable from the enterprise, "
    "as a revocation's clawback is (a `clawback_recorded` journal; history is never rewritten), at most the "
    "used value not clawed back yet (`room`); a voucher past its expiry has its expiry posted first. What the "
    "enterprise paid beyond the clawed-back value, after a clawback it paid was reversed, covers it: a "
    "`clawback_recovered_by_refunds` journal takes that part off again. Audit events "
    "`voucher.clawback_recorded` and `ledger.posted`. Refused with `not_found`, `clawback_on_live_voucher` "
    "(a live voucher's clawback is recorded by revoking it) or `validation_failed` (an amount above what can "
    "still be clawed back).",
    response_model=ClawbackPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.ClawbackOnLiveVoucher, errors.ValidationFailed),
    dependencies=[Depends(idempotent(Scope.VOUCHERS_WRITE, required=True))],
)
async def record_clawback(voucher_id: uuid.UUID, body: ClawbackEntry, session: Session, now: Now,
                          actor: Writer) -> ClawbackPublic:
    return _clawback(await service.record_clawback(session, actor, voucher_id, body.amount, body.reason, now), now)


@router.post(
    "/{voucher_id}/clawback/repayments",
    operation_id="record_clawback_repayment",
    summary="Record the enterprise's repayment of a clawback",
    description="The programme office (`vouchers:write`), with a required Idempotency-Key, once the enterprise has "
    "paid back value clawed back from this voucher: the `amount` (at most what is owed for the voucher), the "
    "bank's `reference` and the day it was paid (`paid_on`, in Beijing time: not after today, not before the "
    "voucher's first clawback). A `clawback_repaid` journal takes the amount off the enterprise's receivable "
    "against the programme's clawback account; the money goes back to whoever funds the programme, not into its "
    "pool. Audit events `voucher.clawback_repaid` and `ledger.posted`. Refused with `not_found`, "
    "`repayment_already_recorded` (this voucher has a repayment, not reversed, with the same reference, case, "
    "spaces and full-width forms aside: one bank payment is recorded once) or `validation_failed` (nothing or less owed, a day out of range).",
    response_model=ClawbackPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.RepaymentAlreadyRecorded, errors.ValidationFailed),
    dependencies=[Depends(idempotent(Scope.VOUCHERS_WRITE, required=True))],
)
async def record_clawback_repayment(voucher_id: uuid.UUID, body: ClawbackRepayment, session: Session, now: Now,
                                    actor: Writer) -> ClawbackPublic:
    return _clawback(await service.repay_clawback(session, actor, voucher_id, body.amount, body.reference,
                                                  body.paid_on, now), now)


@router.post(
    "/{voucher_id}/clawback/write-offs",
    operation_id="write_off_clawback",
    summary="Write off what the enterprise owes back for a voucher",
    description="The programme office (`vouchers:write`), with a required Idempotency-Key and a reason, when a "
    "clawback cannot be collected (the enterprise was deregistered, a court settled it): the `amount`, at most "
    "what is owed for the voucher, comes off the receivable against the programme's clawback account (a "
    "`clawback_written_off` journal: the value is not recovered, and the clawback stays recorded). Audit events "
    "`voucher.clawback_written_off` and `ledger.posted`. Refused with `not_found` or `validation_failed` "
    "(nothing or less owed).",
    response_model=ClawbackPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.ValidationFailed),
    dependencies=[Depends(idempotent(Scope.VOUCHERS_WRITE, required=True))],
)
async def write_off_clawback(voucher_id: uuid.UUID, body: ClawbackWriteOff, session: Session, now: Now,
                             actor: Writer) -> ClawbackPublic:
    return _clawback(await service.write_off_clawback(session, actor, voucher_id, body.amount, body.reason, now),
                     now)


@router.post(
    "/{voucher_id}/clawback/overpayment-returns",
    operation_id="record_clawback_overpayment_return",
    summary="Record the office's return of what the enterprise overpaid on a clawback",
    description="The programme office (`vouchers:write`), with a required Idempotency-Key, once it has paid back to "
    "the enterprise what it overpaid for this voucher (it repaid a clawback, then a refund of the order returned "
    "the same value through the provider, or a clawback it repaid was reversed: the clawback's `overpaid`): the "
    "`amount` (at most `overpaid`), the "
    "bank's `reference` of the office's transfer and the day it was paid (`paid_on`, Beijing time: not after "
    "today, not before the voucher's first clawback). A `clawback_overpayment_returned` journal puts the amount "
    "on the enterprise's receivable and a `clawback_recovered_by_refunds` journal takes it off again (its memo "
    "says \"refunds recover\", kept from its first form, whatever made the overpayment), so nothing is owed "
    "before or after; if the repayment is reversed later, the returned "
    "money is owed back with the rest. Audit events `voucher.clawback_overpayment_returned` and `ledger.posted`. "
    "Refused with `not_found`, `overpayment_return_already_recorded` (this voucher has a return, not reversed, "
    "with the same reference, case, spaces and full-width forms aside) or `validation_failed` (nothing or less "
    "overpaid, a day out of range).",
    response_model=ClawbackPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.OverpaymentReturnAlreadyRecorded,
                        errors.ValidationFailed),
    dependencies=[Depends(idempotent(Scope.VOUCHERS_WRITE, required=True))],
)
async def record_clawback_overpayment_return(voucher_id: uuid.UUID, body: ClawbackOverpaymentReturn,
                                             session: Session, now: Now, actor: Writer) -> ClawbackPublic:
    return _clawback(await service.return_overpayment(session, actor, voucher_id, body.amount, body.reference,
                                                      body.paid_on, now), now)


@router.get(
    "/{voucher_id}/clawback/entries",
    operation_id="list_voucher_clawback_entries",
    summary="The journals behind what the enterprise owes back for a voucher, oldest first",
    description="Any key with `vouchers:read`, for a voucher it may see (an enterprise sees its own, with the "
    "office's reasons: the debtor is told what it owes back and why). Lists every "
    "journal of the voucher on the enterprise's receivable: clawbacks, repayments (with the bank's reference), "
    "write-offs, returns of an overpayment, reversals and refunds' recoveries, each with what it did to what is "
    "owed; a clawback, repayment, write-off or return names the reversal that undid it, and a reversal the entry "
    "it undid. Changes nothing. Answers "
    "`not_found` for a voucher you cannot see and `invalid_cursor` for a cursor this service did not issue.",
    response_model=Page[ClawbackEntryPublic],
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidCursor),
)
async def list_voucher_clawback_entries(voucher_id: uuid.UUID, session: Session, actor: Reader,
                                        page: Paging) -> Page[ClawbackEntryPublic]:
    voucher, entries, cursor = await service.clawback_entries(session, actor, voucher_id, page)
    return Page(items=[ClawbackEntryPublic(
        id=e.id, kind=e.kind, amount=e.amount, unit=voucher.unit, at=e.at, memo=e.memo, reference=e.reference,
        reverses=e.reverses, reversed_by=e.reversed_by) for e in entries], next_cursor=cursor)


@router.post(
    "/{voucher_id}/clawback/reversals",
    operation_id="reverse_clawback_entry",
    summary="Undo a clawback, or its repayment, write-off or overpayment return, recorded by mistake",
    description="The programme office (`vouchers:write`), with a required Idempotency-Key and a reason, when a "
    "clawback of this voucher, or a repayment, write-off or overpayment return of it, was recorded by mistake "
    "(the clawback was entered twice or mistyped, the transfer bounced, it was the wrong voucher, the write-off "
    "is taken back). The entry (`entry_id`, from the voucher's clawback entries) is undone in full: a "
    "`clawback_reversed`, `clawback_repayment_reversed`, `clawback_write_off_reversed` or "
    "`clawback_overpayment_return_reversed` journal moves the receivable back by its amount. If refunds of the "
    "voucher's orders came while it stood, the part they recover moves it again (a "
    "`clawback_recovered_by_refunds` journal), so what is owed is the clawed-back value still used, less what "
    "stays repaid (net of what was returned) and written off, plus what was returned beyond what stands repaid. "
    "A clawback is not undone while a write-off of the voucher's clawback stands (the write-off is reversed "
    "first: it would forgive what is left). What the enterprise paid beyond what is left clawed back is then "
    "`overpaid`, which the office returns, or which covers a clawback recorded later: a mistyped clawback is "
    "corrected by reversing it and recording the right amount. The entry stays in the "
    "ledger; a reversed entry's reference may be recorded again. Audit events `voucher.clawback_reversed`, "
    "`voucher.clawback_repayment_reversed`, `voucher.clawback_write_off_reversed` or "
    "`voucher.clawback_overpayment_return_reversed`, and `ledger.posted`. Refused with `not_found`, "
    "`already_reversed` (naming the reversal's journal) or `validation_failed` (not a clawback, repayment, "
    "write-off or overpayment return of this voucher; or a clawback while a write-off of the voucher's clawback "
    "stands).",
    response_model=ClawbackPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.AlreadyReversed, errors.ValidationFailed),
    dependencies=[Depends(idempotent(Scope.VOUCHERS_WRITE, required=True))],
)
async def reverse_clawback_entry(voucher_id: uuid.UUID, body: ClawbackReversal, session: Session, now: Now,
                                 actor: Writer) -> ClawbackPublic:
    return _clawback(await service.reverse_clawback_entry(session, actor, voucher_id, body.entry_id, body.reason,
                                                          now), now)


@router.post(
    "/lookup",
    operation_id="lookup_voucher",
    summary="Provider: look a voucher up by code and the enterprise's USCC to quote a subsidy",
    description="Providers call this (`vouchers:lookup`) with a voucher code and the enterprise's USCC before "
    "quoting a subsidy. Answers the voucher's kind, unit, status, validity and available balance (0 unless "
    "active); changes nothing. Answers `not_found` when no voucher has this code for this enterprise or the "
    "provider is not enrolled in its programme, and `invalid_voucher_code` when the code is malformed or its check "
    "character is wrong.",
    response_model=VoucherQuote,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidVoucherCode),
)
async def lookup_voucher(
    body: VoucherLookup,
    session: Session,
    now: Now,
    actor: Annotated[Actor, Depends(require(Scope.VOUCHERS_LOOKUP))],
) -> VoucherQuote:
    voucher = await service.find_by_code_for_enterprise(session, body.code, body.enterprise_uscc)
    if actor.provider_id is not None:
        enrolment = await programmes_repository.enrolment(session, voucher.programme_id, actor.provider_id)
        if enrolment is None or enrolment.withdrawn_at is not None:
            raise errors.NotFound(msg("no voucher with this code for this enterprise"))
    view = await service.view(session, voucher, now)
    return VoucherQuote(
        code=voucher.code, kind=voucher.kind, unit=voucher.unit, status=view.status,
        available=view.balances.available if view.status is VoucherStatus.ACTIVE else 0,
        valid_from=voucher.valid_from, expires_at=voucher.expires_at,
    )
