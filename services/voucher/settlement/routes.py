"""Settlements over HTTP: operators create, approve, pay, cancel; the provider confirms or
disputes its own; statements as JSON and as CSV."""

from __future__ import annotations

import uuid
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
from services.voucher.settlement import service
from services.voucher.settlement.rules import SettlementStatus
from services.voucher.settlement.schemas import (
    Note,
    Payment,
    Reason,
    SettlementCreate,
    SettlementPublic,
    Statement,
    StatementLine,
)
from services.voucher.tables import Settlement

router = APIRouter(prefix="/v1/settlements", tags=["settlement"])
Reader = Annotated[Actor, Depends(require(Scope.SETTLEMENTS_READ))]
Writer = Annotated[Actor, Depends(require(Scope.SETTLEMENTS_WRITE))]
Provider = Annotated[Actor, Depends(require(Scope.SETTLEMENTS_CONFIRM))]
IDEM = (errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress)
MOVE = (errors.NotFound, errors.InvalidTransition, *IDEM)


def _public(settlement: Settlement) -> SettlementPublic:
    return SettlementPublic.model_validate(settlement)


@router.post(
    "",
    operation_id="create_settlement",
    summary="Settle a provider's captures and refunds of one programme for a period (a draft)",
    status_code=201,
    response_model=SettlementPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.ValidationFailed, errors.SettlementExists,
                        errors.NothingToSettle, errors.NegativeSettlement, *IDEM),
    dependencies=[Depends(idempotent(Scope.SETTLEMENTS_WRITE, required=True))],
)
async def create_settlement(body: SettlementCreate, session: Session, now: Now, actor: Writer,
                            response: Response) -> SettlementPublic:
    settlement = await service.create(
        session, actor, provider_id=body.provider_id, programme_id=body.programme_id,
        period_start=body.period_start, period_end=body.period_end, now=now,
    )
    response.headers["Location"] = f"/v1/settlements/{settlement.id}"
    return _public(settlement)


@router.get(
    "",
    operation_id="list_settlements",
    summary="List settlements (a provider sees its own)",
    response_model=Page[SettlementPublic],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_settlements(
    session: Session, actor: Reader, page: Paging,
    provider_id: Annotated[uuid.UUID | None, Query()] = None,
    programme_id: Annotated[uuid.UUID | None, Query()] = None,
    status: Annotated[SettlementStatus | None, Query()] = None,
) -> Page[SettlementPublic]:
    rows, cursor = await service.list_settlements(session, actor, page, provider_id=provider_id,
                                                  programme_id=programme_id, status=status.value if status else None)
    return Page(items=[_public(s) for s in rows], next_cursor=cursor)


@router.get(
    "/{settlement_id}",
    operation_id="get_settlement",
    summary="Read a settlement",
    response_model=SettlementPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_settlement(settlement_id: uuid.UUID, session: Session, actor: Reader) -> SettlementPublic:
    return _public(await service.get(session, actor, settlement_id))


@router.get(
    "/{settlement_id}/statement",
    operation_id="settlement_statement",
    summary="The statement: every line, totals equal to their sum, and the SHA-256 of the CSV",
    response_model=Statement,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def settlement_statement(settlement_id: uuid.UUID, session: Session, actor: Reader) -> Statement:
    found = await service.statement(session, actor, settlement_id)
    settlement = found["settlement"]
    lines = [StatementLine.model_validate(i) for i in found["items"]]
    return Statement(
        settlement=_public(settlement), lines=lines,
        captured_total=sum(li.amount for li in lines if li.amount > 0),
        refunded_total=-sum(li.amount for li in lines if li.amount < 0),
        total=sum(li.amount for li in lines), csv_sha256=found["csv_sha256"],
        csv_url=f"/v1/settlements/{settlement_id}/statement.csv",
    )


@router.get(
    "/{settlement_id}/statement.csv",
    operation_id="settlement_statement_csv",
    summary="The statement as CSV (UTF-8 with BOM; amounts in major units, two decimals for CNY)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                     "description": "The CSV statement"},
               **responses(*AUTH_ERRORS, errors.NotFound)},
)
async def settlement_statement_csv(settlement_id: uuid.UUID, session: Session, actor: Reader) -> Response:
    found = await service.statement(session, actor, settlement_id)
    return Response(
        content=found["csv"], media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="settlement-{settlement_id}.csv"',
                 "Digest": f"sha-256={found['csv_sha256']}"},
    )


@router.post("/{settlement_id}/submit", operation_id="submit_settlement",
             summary="The provider confirms its statement (draft → submitted)", response_model=SettlementPublic,
             responses=responses(*AUTH_ERRORS, *MOVE), dependencies=[Depends(idempotent(Scope.SETTLEMENTS_CONFIRM))])
async def submit_settlement(settlement_id: uuid.UUID, session: Session, now: Now, actor: Provider,
                            body: Note | None = None) -> SettlementPublic:
    return _public(await service.submit(session, actor, settlement_id, body.note if body else None, now))


@router.post("/{settlement_id}/dispute", operation_id="dispute_settlement",
             summary="The provider disputes its statement, with a reason", response_model=SettlementPublic,
             responses=responses(*AUTH_ERRORS, *MOVE), dependencies=[Depends(idempotent(Scope.SETTLEMENTS_CONFIRM))])
async def dispute_settlement(settlement_id: uuid.UUID, body: Reason, session: Session, now: Now,
                             actor: Provider) -> SettlementPublic:
    return _public(await service.dispute(session, actor, settlement_id, body.reason, now))


@router.post("/{settlement_id}/resolve", operation_id="resolve_settlement_dispute",
             summary="Answer a dispute; the statement returns to submitted", response_model=SettlementPublic,
             responses=responses(*AUTH_ERRORS, *MOVE), dependencies=[Depends(idempotent(Scope.SETTLEMENTS_WRITE))])
async def resolve_settlement(settlement_id: uuid.UUID, body: Reason, session: Session, now: Now,
                             actor: Writer) -> SettlementPublic:
    return _public(await service.resolve(session, actor, settlement_id, body.reason, now))


@router.post("/{settlement_id}/approve", operation_id="approve_settlement",
             summary="Approve a submitted settlement for payment", response_model=SettlementPublic,
             responses=responses(*AUTH_ERRORS, *MOVE), dependencies=[Depends(idempotent(Scope.SETTLEMENTS_WRITE))])
async def approve_settlement(settlement_id: uuid.UUID, session: Session, now: Now, actor: Writer,
                             body: Note | None = None) -> SettlementPublic:
    return _public(await service.approve(session, actor, settlement_id, body.note if body else None, now))


@router.post("/{settlement_id}/pay", operation_id="pay_settlement",
             summary="Record the payment: the total moves from payable to paid; immutable afterwards",
             response_model=SettlementPublic, responses=responses(*AUTH_ERRORS, *MOVE),
             dependencies=[Depends(idempotent(Scope.SETTLEMENTS_WRITE, required=True))])
async def pay_settlement(settlement_id: uuid.UUID, body: Payment, session: Session, now: Now,
                         actor: Writer) -> SettlementPublic:
    return _public(await service.pay(session, actor, settlement_id, reference=body.reference,
                                     paid_on=body.paid_on, now=now))


@router.post("/{settlement_id}/cancel", operation_id="cancel_settlement",
             summary="Cancel a draft or submitted settlement; its lines can be settled again",
             response_model=SettlementPublic, responses=responses(*AUTH_ERRORS, *MOVE),
             dependencies=[Depends(idempotent(Scope.SETTLEMENTS_WRITE))])
async def cancel_settlement(settlement_id: uuid.UUID, body: Reason, session: Session, now: Now,
                            actor: Writer) -> SettlementPublic:
    return _public(await service.cancel(session, actor, settlement_id, body.reason, now))
