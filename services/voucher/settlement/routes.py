"""Settlements over HTTP: operators create, approve, pay, cancel; the provider confirms or
disputes its own; statements as JSON, CSV and .xlsx."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import IO, Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.http.auth import require
from services.voucher.http.deps import Now, Session
from services.voucher.http.idempotency import idempotent
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.money import Unit
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
from services.voucher.settlement.statement import Line, render_xlsx, statement_title
from services.voucher.spreadsheet import XLSX_MEDIA_TYPE
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
    description="The programme office (`settlements:write`), with a required Idempotency-Key, settles one "
    "provider's redemptions of one programme for a period of whole days (Asia/Shanghai). The draft takes every "
    "unsettled capture in the period and every unsettled refund of a settled capture, its totals equal to the sum "
    "of its lines, and records the audit event `settlement.created`; no value moves until payment. When the refunds "
    "exceed the captures the total is below zero: a repayment statement, what the provider pays back. Refused with "
    "`not_found` (provider or programme), `settlement_exists` (a live settlement covers the period), "
    "`nothing_to_settle` (no unsettled capture or refund), `validation_failed` (the period) or an "
    "Idempotency-Key conflict.",
    summary="Settle a provider's captures and refunds of one programme for a period (a draft)",
    status_code=201,
    response_model=SettlementPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.ValidationFailed, errors.SettlementExists,
                        errors.NothingToSettle, *IDEM),
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
    description="Any key with `settlements:read`: a provider sees its own settlements, operators and auditors all; "
    "filter by provider, programme or status. Changes nothing. Answers `invalid_cursor` for a cursor this service "
    "did not issue.",
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
    description="Any key with `settlements:read`, for a settlement it may see (a provider its own). Changes "
    "nothing. Answers `not_found` when the settlement does not exist or is not yours.",
    summary="Read a settlement",
    response_model=SettlementPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_settlement(settlement_id: uuid.UUID, session: Session, actor: Reader) -> SettlementPublic:
    return _public(await service.get(session, actor, settlement_id))


@router.get(
    "/{settlement_id}/statement",
    operation_id="settlement_statement",
    description="Any key with `settlements:read`, for a settlement it may see. Answers every line (captures "
    "positive, refunds negative), totals equal to their sum, and the SHA-256 of the CSV rendering of the same "
    "lines; changes nothing. Answers `not_found` when the settlement does not exist or is not yours.",
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
        xlsx_url=f"/v1/settlements/{settlement_id}/statement.xlsx",
    )


@router.get(
    "/{settlement_id}/statement.csv",
    operation_id="settlement_statement_csv",
    description="Any key with `settlements:read`, for a settlement it may see: the statement as a CSV file whose "
    "SHA-256 is the JSON statement's `csv_sha256` (also in the `Digest` header). Changes nothing. Answers "
    "`not_found` when the settlement does not exist or is not yours.",
    summary="The statement as CSV (UTF-8 with BOM; amounts in major units, two decimals for CNY; "
            "times in Beijing time with their offset)",
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


XLSX_DESCRIPTION = """\
The statement as an Excel workbook, for the finance office: the same lines as the CSV and the JSON
statement. One sheet: the title (settlement id and period, Asia/Shanghai days), the unit, a frozen
header row, one row per line (序号 line, 类型 kind, 订单号 order_reference, 核销编号 redemption_id,
退款编号 refund_id, 发生时间 occurred_at, 金额 amount) and the total row. Amounts are numbers in the
unit (CNY `#,##0.00`, GPU-hours `#,##0.000`, tokens `#,##0`), negative for refunds; times are
Excel date-times in Beijing time (Asia/Shanghai, as the header says); every text cell is text, never
a formula. The same lines give the same bytes: the `Digest` header carries the SHA-256 of the file.

Operators and auditors read any settlement's statement, a provider only its own (another's is
404, as for a missing one); changes nothing.
"""

_STATEMENT_CHUNK = 64 * 1024


@router.get(
    "/{settlement_id}/statement.xlsx",
    operation_id="settlement_statement_xlsx",
    summary="The statement as an Excel workbook (.xlsx; amounts as numbers, times in Beijing time)",
    description=XLSX_DESCRIPTION,
    response_class=StreamingResponse,
    responses={200: {"content": {XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                     "description": "The statement workbook",
                     "headers": {"Digest": {"description": "sha-256=<hex SHA-256 of the file>",
                                            "schema": {"type": "string"}}}},
               **responses(*AUTH_ERRORS, errors.NotFound)},
)
async def settlement_statement_xlsx(settlement_id: uuid.UUID, session: Session, actor: Reader) -> StreamingResponse:
    settlement, items = await service.statement_items(session, actor, settlement_id)
    lines = [Line.of(item) for item in items]
    title = statement_title(settlement.id, settlement.period_start, settlement.period_end)
    file, sha256, size = await asyncio.to_thread(_workbook, title, Unit(settlement.unit), lines,
                                                 settlement.created_at)
    return StreamingResponse(
        _send(file), media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="settlement-{settlement_id}.xlsx"',
                 "Content-Length": str(size), "Digest": f"sha-256={sha256}"},
    )


def _workbook(title: str, unit: Unit, lines: list[Line], created: datetime) -> tuple[IO[bytes], str, int]:
    """The workbook written to a temporary directory and opened, then the directory removed
    (the open file is all that is left; it goes when the response has been sent or abandoned);
    with its SHA-256 and size."""
    directory = tempfile.mkdtemp(prefix="voucher-statement-")
    try:
        path = os.path.join(directory, "statement.xlsx")
        render_xlsx(title, unit, lines, path, created=created, directory=directory)
        file = open(path, "rb")  # noqa: SIM115 - closed by _send
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    found, size = hashlib.sha256(), 0
    while chunk := file.read(_STATEMENT_CHUNK):
        found.update(chunk)
        size += len(chunk)
    file.seek(0)
    return file, found.hexdigest(), size


async def _send(file: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := file.read(_STATEMENT_CHUNK):
            yield chunk
    finally:
        file.close()


@router.post("/{settlement_id}/submit", operation_id="submit_settlement",
    description="The provider being settled (`settlements:confirm`) confirms its draft statement, with an optional "
    "note. The status becomes `submitted` and the audit event `settlement.submitted` is recorded and announced to "
    "events and webhooks; no value moves. Refused with `not_found`, `invalid_transition` (not a draft) or an "
    "Idempotency-Key conflict.",
             summary="The provider confirms its statement (draft → submitted)", response_model=SettlementPublic,
             responses=responses(*AUTH_ERRORS, *MOVE), dependencies=[Depends(idempotent(Scope.SETTLEMENTS_CONFIRM))])
async def submit_settlement(settlement_id: uuid.UUID, session: Session, now: Now, actor: Provider,
                            body: Note | None = None) -> SettlementPublic:
    return _public(await service.submit(session, actor, settlement_id, body.note if body else None, now))


@router.post("/{settlement_id}/dispute", operation_id="dispute_settlement",
    description="The provider being settled (`settlements:confirm`) disputes its statement, with a reason. The "
    "status becomes `disputed` and the audit event `settlement.disputed` is recorded; a draft is put forward and "
    "disputed in one step (`settlement.submitted`, then `settlement.disputed`), so a provider need not confirm "
    "what it disputes. No value moves until the office resolves it. Refused with `not_found`, `invalid_transition` or an Idempotency-Key conflict.",
             summary="The provider disputes its statement, with a reason", response_model=SettlementPublic,
             responses=responses(*AUTH_ERRORS, *MOVE), dependencies=[Depends(idempotent(Scope.SETTLEMENTS_CONFIRM))])
async def dispute_settlement(settlement_id: uuid.UUID, body: Reason, session: Session, now: Now,
                             actor: Provider) -> SettlementPublic:
    return _public(await service.dispute(session, actor, settlement_id, body.reason, now))


@router.post("/{settlement_id}/resolve", operation_id="resolve_settlement_dispute",
    description="The programme office (`settlements:write`) answers a dispute with a note; the statement stands "
    "and returns to `submitted`. Records the audit event `settlement.submitted`, announced to events and webhooks; "
    "no value moves. Refused with `not_found`, `invalid_transition` (not disputed) or an Idempotency-Key conflict.",
             summary="Answer a dispute; the statement returns to submitted", response_model=SettlementPublic,
             responses=responses(*AUTH_ERRORS, *MOVE), dependencies=[Depends(idempotent(Scope.SETTLEMENTS_WRITE))])
async def resolve_settlement(settlement_id: uuid.UUID, body: Reason, session: Session, now: Now,
                             actor: Writer) -> SettlementPublic:
    return _public(await service.resolve(session, actor, settlement_id, body.reason, now))


@router.post("/{settlement_id}/approve", operation_id="approve_settlement",
    description="The programme office (`settlements:write`) approves a submitted settlement for payment, with an "
    "optional note. A draft whose total is zero or below (it pays nothing, or is a repayment statement) that the "
    "provider neither confirmed nor disputed within 15 days of it is approved too, recorded as submitted on the "
    "provider's behalf. The status becomes `approved` and the audit event `settlement.approved` is recorded; no value "
    "moves until payment. A settlement that pays the provider is approved to the provider's settlement account as "
    "it stands, recorded on it as `payee_account`. Refused with `not_found`, `invalid_transition` (not submitted, "
    "or such a draft before its 15 days), `settlement_account_missing` (it pays the provider, who has no settlement "
    "account on file) or an Idempotency-Key conflict.",
             summary="Approve a submitted settlement for payment", response_model=SettlementPublic,
             responses=responses(*AUTH_ERRORS, *MOVE, errors.SettlementAccountMissing), dependencies=[Depends(idempotent(Scope.SETTLEMENTS_WRITE))])
async def approve_settlement(settlement_id: uuid.UUID, session: Session, now: Now, actor: Writer,
                             body: Note | None = None) -> SettlementPublic:
    return _public(await service.approve(session, actor, settlement_id, body.note if body else None, now))


@router.post("/{settlement_id}/pay", operation_id="pay_settlement",
    description="The programme office (`settlements:write`), with a required Idempotency-Key, records the bank "
    "payment of an approved settlement with its reference and date. The total moves from the provider's payable to "
    "paid in one ledger journal and the settlement becomes immutable; audit events `settlement.paid` (also "
    "announced to events and webhooks) and `ledger.posted`. A total below zero records the provider's repayment: "
    "it moves from paid back to the payable. Refused with `not_found`, `invalid_transition` (not approved, or a "
    "repayment larger than what the provider has been paid in the programme), `validation_failed` (`paid_on` "
    "before the day it was approved or after today, Beijing time), `records_differ` (the settlement's totals "
    "differ from its lines read as the captures and refunds they name: a record changed outside the service) or "
    "an Idempotency-Key conflict.",
             summary="Record the payment: the total moves from payable to paid; immutable afterwards",
             response_model=SettlementPublic,
             responses=responses(*AUTH_ERRORS, *MOVE, errors.ValidationFailed, errors.RecordsDiffer),
             dependencies=[Depends(idempotent(Scope.SETTLEMENTS_WRITE, required=True))])
async def pay_settlement(settlement_id: uuid.UUID, body: Payment, session: Session, now: Now,
                         actor: Writer) -> SettlementPublic:
    return _public(await service.pay(session, actor, settlement_id, reference=body.reference,
                                     paid_on=body.paid_on, now=now))


@router.post("/{settlement_id}/cancel", operation_id="cancel_settlement",
    description="The programme office (`settlements:write`) cancels a draft or submitted settlement, with a "
    "reason; its captures and refunds can be settled again. Records the audit event `settlement.cancelled`, announced to "
    "events and webhooks (the provider's captures are to be settled again); no value moves. Refused with `not_found`, `invalid_transition` (approved, paid or already cancelled; or "
    "disputed: the dispute is answered first, which returns it to submitted) or an Idempotency-Key conflict.",
             summary="Cancel a draft or submitted settlement; its lines can be settled again",
             response_model=SettlementPublic, responses=responses(*AUTH_ERRORS, *MOVE),
             dependencies=[Depends(idempotent(Scope.SETTLEMENTS_WRITE))])
async def cancel_settlement(settlement_id: uuid.UUID, body: Reason, session: Session, now: Now,
                            actor: Writer) -> SettlementPublic:
    return _public(await service.cancel(session, actor, settlement_id, body.reason, now))
