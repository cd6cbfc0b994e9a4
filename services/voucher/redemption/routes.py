"""Redemption over HTTP (provider-facing). Every POST that moves value requires an
Idempotency-Key: a provider's retry must never charge a voucher twice."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.http.auth import require
from services.voucher.http.deps import Now, Session
from services.voucher.http.idempotency import ValueCall, value_call
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.http.unit_of_work import discard
from services.voucher.redemption import service
from services.voucher.redemption.rules import RedemptionRecord, RedemptionStatus
from services.voucher.redemption.schemas import (
    CaptureRequest,
    HoldCreate,
    QuoteRequest,
    RedemptionPublic,
    RefundCreate,
    RefundPublic,
    SubsidyQuote,
    VoidRequest,
)
from services.voucher.redemption.subsidy import for_provider
from services.voucher.tables import Redemption

router = APIRouter(prefix="/v1/redemptions", tags=["redemption"])
Reader = Annotated[Actor, Depends(require(Scope.REDEMPTIONS_READ))]
Writer = Annotated[Actor, Depends(require(Scope.REDEMPTIONS_WRITE))]
#: The value operations' actor (authenticated, its scope checked and its Idempotency-Key claimed),
#: session and instant, from one dependency (each dependency costs FastAPI's resolution on every
#: request).
ValueWriter = Annotated[ValueCall, Depends(value_call(Scope.REDEMPTIONS_WRITE))]
IDEM = (errors.IdempotencyKeyRequired, errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress,
        errors.ConcurrentUpdate)
HOLD_ERRORS = (
    errors.InvalidVoucherCode, errors.NotFound, errors.ProviderNotApproved, errors.ProviderNotEnrolled,
    errors.RelatedParty, errors.VoucherNotYetValid, errors.VoucherExpired, errors.VoucherSuspended,
    errors.VoucherRevoked, errors.VoucherExhausted, errors.VoucherKindMismatch, errors.CategoryOutOfScope,
    errors.OrderAlreadySubsidised, errors.OrderReferenceConflict, errors.EnterpriseCapReached,
    errors.NothingToSubsidise, errors.WrongPayoutMode, errors.SubsidyBelowExpected, errors.PeriodSpendLimitReached,
)


def _public(redemption: Redemption | RedemptionRecord, now: datetime, viewer: Actor,
            voucher_expires_at: datetime | None = None) -> RedemptionPublic:
    """A redemption as of `now`, as `viewer` may see it: a hold that has lapsed reads as void since
    it lapsed, and a provider sees the computation without the enterprise's figures across
    providers (`subsidy.for_provider`). A write's own answer passes no voucher expiry: the
    operation has just judged the hold at `now`."""
    status, void_reason, voided_at = service.effective_redemption_status(redemption, voucher_expires_at, now)
    data = RedemptionPublic.model_validate(redemption, from_attributes=True)
    update: dict[str, Any] = {"status": status, "void_reason": void_reason, "voided_at": voided_at}
    if viewer.provider_id is not None:
        update["computation"] = for_provider(data.computation)
    return data.model_copy(update=update)


def _request(body: QuoteRequest) -> service.HoldRequest:
    """The engine's order from a hold's body or a quote's (which has no expected subsidy)."""
    return service.HoldRequest(
        voucher_code=body.voucher_code,
        enterprise_uscc=body.enterprise_uscc,
        order_reference=body.order_reference,
        line_items=[i.model_dump(exclude_none=True) for i in body.line_items],
        expected_subsidy=body.expected_subsidy if isinstance(body, HoldCreate) else None,
    )


@router.post(
    "/quote",
    operation_id="quote_subsidy",
    summary="Quote the subsidy an order would get (changes nothing)",
    description="A provider's billing system or its staff call this (`redemptions:write`, a provider key) before "
    "an SME orders, with the same order a hold would take. The answer is what a hold for it placed now would "
    "grant, step by step — computed by the hold's own code, with the same refusals — and nothing is held, "
    "written or announced. Send the quoted `subsidy` as the hold's `expected_subsidy` and the hold is granted "
    "exactly that or refused (`subsidy_below_expected`) if something changed in between. No Idempotency-Key: "
    "asking twice changes nothing.",
    response_model=SubsidyQuote,
    responses=responses(*AUTH_ERRORS, errors.ConcurrentUpdate, *[e for e in HOLD_ERRORS
                                                                 if e is not errors.SubsidyBelowExpected]),
)
async def quote_subsidy(body: QuoteRequest, request: Request, session: Session, now: Now,
                        actor: Writer) -> SubsidyQuote:
    discard(request.scope)  # before the hold runs: whatever happens, nothing it wrote commits
    held = await service.quote(session, actor, _request(body), now)
    computation = for_provider({k: v for k, v in held.computation.items() if k != "period"})
    return SubsidyQuote(voucher_code=body.voucher_code, order_reference=held.order_reference,
                        order_amount=held.order_amount, unit=held.unit, subsidy=held.held_amount,
                        limited_by=str(held.computation.get("limited_by", "rates")), computation=computation,
                        quoted_at=now)


@router.post(
    "/holds",
    operation_id="create_hold",
    summary="Hold the subsidy for an order (phase one of two; capture or void it later)",
    description="A provider's billing system calls this (`redemptions:write`) when an SME orders, with a required "
    "Idempotency-Key. The subsidy is computed from the programme's rate table and cut to what the voucher's "
    "balance, the enterprise's cap and the stacking ceiling allow (the answer says which limit bound); it moves "
    "from the voucher's available to its held balance in one ledger journal, with the audit events `hold.placed` "
    "and `ledger.posted`, until it is captured, voided or its TTL passes. A refusal moves nothing: an unknown code "
    "or USCC (`invalid_voucher_code`, `not_found`), a provider that may not redeem it (`provider_not_approved`, "
    "`provider_not_enrolled`, `related_party`), a voucher that cannot be used (`voucher_not_yet_valid`, "
    "`voucher_expired`, `voucher_suspended`, `voucher_revoked`, `voucher_exhausted`, `voucher_kind_mismatch`, "
    "`wrong_payout_mode`), an order that does not qualify (`category_out_of_scope`, `order_already_subsidised`, "
    "`order_reference_conflict`, `enterprise_cap_reached`, `nothing_to_subsidise`, `subsidy_below_expected`), a "
    "concurrent change (`concurrent_update`) or an Idempotency-Key conflict.",
    status_code=201,
    response_model=RedemptionPublic,
    responses=responses(*AUTH_ERRORS, *IDEM, *HOLD_ERRORS),
)
async def create_hold(body: HoldCreate, call: ValueWriter, response: Response) -> RedemptionPublic:
    redemption = await service.hold(call.session, call.actor, _request(body), call.now, deferred=True)
    response.headers["Location"] = f"/v1/redemptions/{redemption.id}"
    return _public(redemption, call.now, call.actor)


@router.post(
    "",
    operation_id="redeem",
    summary="Redeem in one step: hold and capture the whole subsidy at once",
    description="A provider that bills after use calls this (`redemptions:write`), with a required "
    "Idempotency-Key: a hold and its capture in one step. The subsidy, computed and limited as for a hold, moves "
    "from the voucher's available to its used balance and from the programme's spent account to the provider's "
    "payable in one ledger journal; it records `redemption.captured` and `ledger.posted`, announces "
    "`redemption.captured` (and `voucher.balance_low` at 80 % and 100 % use) to events and webhooks, and marks the "
    "voucher exhausted when nothing is left. It is refused, moving nothing, for the same reasons as a hold: an "
    "unknown code or USCC, a provider not approved, not enrolled or related to the enterprise, a voucher that "
    "cannot be used, an order that does not qualify or was already subsidised, a subsidy below `expected_subsidy`, "
    "a concurrent change or an Idempotency-Key conflict.",
    status_code=201,
    response_model=RedemptionPublic,
    responses=responses(*AUTH_ERRORS, *IDEM, *HOLD_ERRORS),
)
async def redeem(body: HoldCreate, call: ValueWriter, response: Response) -> RedemptionPublic:
    redemption = await service.redeem(call.session, call.actor, _request(body), call.now, deferred=True)
    response.headers["Location"] = f"/v1/redemptions/{redemption.id}"
    return _public(redemption, call.now, call.actor)


@router.post(
    "/{redemption_id}/capture",
    operation_id="capture_hold",
    summary="Capture a hold (at most what is held; the rest is released)",
    description="The provider that placed the hold calls this (`redemptions:write`), with a required "
    "Idempotency-Key, once it bills the order. At most the held amount is captured (all of it when `amount` is "
    "left out): it moves from held to used and from the programme's spent account to the provider's payable, the "
    "rest returns to available, in one ledger journal with the audit events `redemption.captured` and "
    "`ledger.posted`; `redemption.captured` (and `voucher.balance_low` at 80 % and 100 % use) goes to events and "
    "webhooks. Refused with `not_found` (not your redemption), `hold_not_active` (already captured or voided), "
    "`hold_expired` (past its TTL), `capture_exceeds_hold`, `voucher_expired`, `concurrent_update` or an "
    "Idempotency-Key conflict.",
    response_model=RedemptionPublic,
    responses=responses(*AUTH_ERRORS, *IDEM, errors.NotFound, errors.HoldNotActive, errors.HoldExpired,
                        errors.CaptureExceedsHold, errors.VoucherExpired),
)
async def capture_hold(
    redemption_id: uuid.UUID, body: CaptureRequest, call: ValueWriter
) -> RedemptionPublic:
    return _public(await service.capture(call.session, call.actor, redemption_id, body.amount, call.now, deferred=True),
                   call.now, call.actor)


@router.post(
    "/{redemption_id}/void",
    operation_id="void_hold",
    summary="Void a hold: the whole held amount returns to the voucher",
    description="The provider that placed the hold calls this (`redemptions:write`), with a required "
    "Idempotency-Key, when the order will not be billed. The whole held amount returns to the voucher's available "
    "balance in one ledger journal, with the audit events `hold.voided` (`hold.expired` when it had already lapsed: "
    "its TTL passed, reason `expired`, or its voucher expired first, reason `voucher_expired`) and `ledger.posted`; an optional reason is kept. Refused with `not_found` (not your redemption), "
    "`hold_not_active` (already captured or voided), `concurrent_update` or an Idempotency-Key conflict.",
    response_model=RedemptionPublic,
    responses=responses(*AUTH_ERRORS, *IDEM, errors.NotFound, errors.HoldNotActive),
)
async def void_hold(
    redemption_id: uuid.UUID, call: ValueWriter, body: VoidRequest | None = None
) -> RedemptionPublic:
    note = body.reason if body is not None else None
    return _public(await service.void(call.session, call.actor, redemption_id, call.now, note=note, deferred=True),
                   call.now, call.actor)


@router.post(
    "/{redemption_id}/refunds",
    operation_id="refund_redemption",
    summary="Refund part or all of a captured subsidy (to the voucher while valid, else the pool)",
    description="The provider calls this (`redemptions:write`), with a required Idempotency-Key, when it refunds "
    "an order it was subsidised for. The amount leaves the voucher's used balance for its available balance while "
    "the voucher is valid, or for the programme's pool otherwise, and the provider's payable drops by as much (on "
    "a revoked voucher, the clawback recorded against it shrinks by as much as the refund takes the voucher's used "
    "value below it): one ledger journal, a refund row, the audit events "
    "`refund.created` and `ledger.posted`, and `refund.created` to events and webhooks. Refused with `not_found`, "
    "`redemption_not_captured` (nothing captured to refund), `refund_exceeds_captured`, `concurrent_update` or an "
    "Idempotency-Key conflict.",
    status_code=201,
    response_model=RefundPublic,
    responses=responses(*AUTH_ERRORS, *IDEM, errors.NotFound, errors.RedemptionNotCaptured, errors.RefundExceedsCaptured),
)
async def refund_redemption(
    redemption_id: uuid.UUID, body: RefundCreate, call: ValueWriter
) -> RefundPublic:
    row = await service.refund(call.session, call.actor, redemption_id, body.amount, body.reason, call.now,
                               deferred=True)
    return RefundPublic.model_validate(row, from_attributes=True)


@router.get(
    "",
    operation_id="list_redemptions",
    summary="List redemptions (a provider sees its own, an enterprise those of its vouchers)",
    description="Any key with `redemptions:read`: a provider sees its own redemptions, an enterprise those of its "
    "vouchers, operators and auditors all; filter by voucher, status or order reference. Changes nothing; a hold "
    "past its TTL, or on a voucher that has expired, reads as voided. Answers `invalid_cursor` for a cursor this service did not issue.",
    response_model=Page[RedemptionPublic],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_redemptions(
    session: Session,
    now: Now,
    actor: Reader,
    page: Paging,
    voucher_id: Annotated[uuid.UUID | None, Query()] = None,
    status: Annotated[RedemptionStatus | None, Query()] = None,
    order_reference: Annotated[str | None, Query(max_length=128)] = None,
) -> Page[RedemptionPublic]:
    rows, cursor = await service.list_redemptions(
        session, actor, page, voucher_id=voucher_id, status=status.value if status else None,
        order_reference=order_reference, now=now,
    )
    return Page(items=[_public(r, now, actor, expires_at) for r, expires_at in rows], next_cursor=cursor)


@router.get(
    "/{redemption_id}",
    operation_id="get_redemption",
    summary="Read a redemption with its subsidy computation",
    description="Any key with `redemptions:read`, for a redemption it may see (a provider its own, an enterprise "
    "those of its vouchers, operators and auditors any). Shows each step of the subsidy computation and the status "
    "as of now (a hold past its TTL, or on a voucher that has expired, reads as voided since then, reason `expired` "
    "or `voucher_expired`); changes nothing. Answers `not_found` when the redemption "
    "does not exist or is not yours.",
    response_model=RedemptionPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_redemption(redemption_id: uuid.UUID, session: Session, now: Now, actor: Reader) -> RedemptionPublic:
    redemption, voucher_expires_at = await service.get_redemption(session, actor, redemption_id)
    return _public(redemption, now, actor, voucher_expires_at)


@router.get(
    "/{redemption_id}/refunds",
    operation_id="list_refunds",
    summary="The refunds of a redemption",
    description="Any key with `redemptions:read`, for a redemption it may see. Lists every refund with its amount, "
    "reason and where the value went (the voucher or the programme's pool); changes nothing. Answers `not_found` "
    "when the redemption does not exist or is not yours.",
    response_model=list[RefundPublic],
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def list_refunds(redemption_id: uuid.UUID, session: Session, actor: Reader) -> list[RefundPublic]:
    await service.get_redemption(session, actor, redemption_id)
    return [RefundPublic.model_validate(r, from_attributes=True) for r in await service.refunds_of(session, redemption_id)]
