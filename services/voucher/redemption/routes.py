"""Redemption over HTTP (provider-facing). Every POST that moves value requires an
Idempotency-Key: a provider's retry must never charge a voucher twice."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.http.auth import require
from services.voucher.http.deps import Now, Session
from services.voucher.http.idempotency import idempotent
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.redemption import service
from services.voucher.redemption.rules import RedemptionStatus
from services.voucher.redemption.schemas import (
    CaptureRequest,
    HoldCreate,
    RedemptionPublic,
    RefundCreate,
    RefundPublic,
    VoidRequest,
)
from services.voucher.tables import Redemption

router = APIRouter(prefix="/v1/redemptions", tags=["redemption"])
Reader = Annotated[Actor, Depends(require(Scope.REDEMPTIONS_READ))]
Writer = Annotated[Actor, Depends(require(Scope.REDEMPTIONS_WRITE))]
IDEM = (errors.IdempotencyKeyRequired, errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress,
        errors.ConcurrentUpdate)
HOLD_ERRORS = (
    errors.InvalidVoucherCode, errors.NotFound, errors.ProviderNotApproved, errors.ProviderNotEnrolled,
    errors.RelatedParty, errors.VoucherNotYetValid, errors.VoucherExpired, errors.VoucherSuspended,
    errors.VoucherRevoked, errors.VoucherExhausted, errors.VoucherKindMismatch, errors.CategoryOutOfScope,
    errors.OrderAlreadySubsidised, errors.OrderReferenceConflict, errors.EnterpriseCapReached,
    errors.NothingToSubsidise, errors.WrongPayoutMode, errors.SubsidyBelowExpected,
)


def _public(redemption: Redemption, now: datetime) -> RedemptionPublic:
    status, void_reason = service.effective_redemption_status(redemption, now)
    data = RedemptionPublic.model_validate(redemption, from_attributes=True)
    if status != redemption.status:  # a hold past its TTL: void since the moment it expired
        return data.model_copy(update={"status": status, "void_reason": void_reason,
                                       "voided_at": redemption.hold_expires_at})
    return data.model_copy(update={"status": status, "void_reason": void_reason})


def _request(body: HoldCreate) -> service.HoldRequest:
    return service.HoldRequest(
        voucher_code=body.voucher_code,
        enterprise_uscc=body.enterprise_uscc,
        order_reference=body.order_reference,
        line_items=[i.model_dump(exclude_none=True) for i in body.line_items],
        expected_subsidy=body.expected_subsidy,
    )


@router.post(
    "/holds",
    operation_id="create_hold",
    summary="Hold the subsidy for an order (phase one of two; capture or void it later)",
    status_code=201,
    response_model=RedemptionPublic,
    responses=responses(*AUTH_ERRORS, *IDEM, *HOLD_ERRORS),
    dependencies=[Depends(idempotent(Scope.REDEMPTIONS_WRITE, required=True, with_first_reads=True))],
)
async def create_hold(body: HoldCreate, session: Session, now: Now, actor: Writer, response: Response) -> RedemptionPublic:
    redemption = await service.hold(session, actor, _request(body), now, deferred=True)
    response.headers["Location"] = f"/v1/redemptions/{redemption.id}"
    return _public(redemption, now)


@router.post(
    "",
    operation_id="redeem",
    summary="Redeem in one step: hold and capture the whole subsidy at once",
    status_code=201,
    response_model=RedemptionPublic,
    responses=responses(*AUTH_ERRORS, *IDEM, *HOLD_ERRORS),
    dependencies=[Depends(idempotent(Scope.REDEMPTIONS_WRITE, required=True, with_first_reads=True))],
)
async def redeem(body: HoldCreate, session: Session, now: Now, actor: Writer, response: Response) -> RedemptionPublic:
    redemption = await service.redeem(session, actor, _request(body), now, deferred=True)
    response.headers["Location"] = f"/v1/redemptions/{redemption.id}"
    return _public(redemption, now)


@router.post(
    "/{redemption_id}/capture",
    operation_id="capture_hold",
    summary="Capture a hold (at most what is held; the rest is released)",
    response_model=RedemptionPublic,
    responses=responses(*AUTH_ERRORS, *IDEM, errors.NotFound, errors.HoldNotActive, errors.HoldExpired,
                        errors.CaptureExceedsHold, errors.VoucherExpired),
    dependencies=[Depends(idempotent(Scope.REDEMPTIONS_WRITE, required=True, with_first_reads=True))],
)
async def capture_hold(
    redemption_id: uuid.UUID, body: CaptureRequest, session: Session, now: Now, actor: Writer
) -> RedemptionPublic:
    return _public(await service.capture(session, actor, redemption_id, body.amount, now, deferred=True), now)


@router.post(
    "/{redemption_id}/void",
    operation_id="void_hold",
    summary="Void a hold: the whole held amount returns to the voucher",
    response_model=RedemptionPublic,
    responses=responses(*AUTH_ERRORS, *IDEM, errors.NotFound, errors.HoldNotActive),
    dependencies=[Depends(idempotent(Scope.REDEMPTIONS_WRITE, required=True, with_first_reads=True))],
)
async def void_hold(
    redemption_id: uuid.UUID, session: Session, now: Now, actor: Writer, body: VoidRequest | None = None
) -> RedemptionPublic:
    note = body.reason if body is not None else None
    return _public(await service.void(session, actor, redemption_id, now, note=note, deferred=True), now)


@router.post(
    "/{redemption_id}/refunds",
    operation_id="refund_redemption",
    summary="Refund part or all of a captured subsidy (to the voucher while valid, else the pool)",
    status_code=201,
    response_model=RefundPublic,
    responses=responses(*AUTH_ERRORS, *IDEM, errors.NotFound, errors.RedemptionNotCaptured, errors.RefundExceedsCaptured),
    dependencies=[Depends(idempotent(Scope.REDEMPTIONS_WRITE, required=True, with_first_reads=True))],
)
async def refund_redemption(
    redemption_id: uuid.UUID, body: RefundCreate, session: Session, now: Now, actor: Writer
) -> RefundPublic:
    row = await service.refund(session, actor, redemption_id, body.amount, body.reason, now, deferred=True)
    return RefundPublic.model_validate(row, from_attributes=True)


@router.get(
    "",
    operation_id="list_redemptions",
    summary="List redemptions (a provider sees its own, an enterprise those of its vouchers)",
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
    return Page(items=[_public(r, now) for r in rows], next_cursor=cursor)


@router.get(
    "/{redemption_id}",
    operation_id="get_redemption",
    summary="Read a redemption with its subsidy computation",
    response_model=RedemptionPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_redemption(redemption_id: uuid.UUID, session: Session, now: Now, actor: Reader) -> RedemptionPublic:
    return _public(await service.get_redemption(session, actor, redemption_id), now)


@router.get(
    "/{redemption_id}/refunds",
    operation_id="list_refunds",
    summary="The refunds of a redemption",
    response_model=list[RefundPublic],
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def list_refunds(redemption_id: uuid.UUID, session: Session, actor: Reader) -> list[RefundPublic]:
    await service.get_redemption(session, actor, redemption_id)
    return [RefundPublic.model_validate(r, from_attributes=True) for r in await service.refunds_of(session, redemption_id)]
