"""Usage reconciliation over HTTP: providers upload their records; they, operators and
auditors read the kept reports."""

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
from services.voucher.tables import UsageReconciliation
from services.voucher.usage import service
from services.voucher.usage.schemas import UsageReport, UsageUpload

router = APIRouter(prefix="/v1/usage-reconciliations", tags=["settlement"])
Reader = Annotated[Actor, Depends(require(Scope.REDEMPTIONS_READ))]
Uploader = Annotated[Actor, Depends(require(Scope.REDEMPTIONS_WRITE))]


def _public(row: UsageReconciliation, *, full: bool) -> UsageReport:
    return UsageReport(
        id=row.id, provider_id=row.provider_id, programme_id=row.programme_id, period_start=row.period_start,
        period_end=row.period_end, source_format=row.source_format, source_sha256=row.source_sha256,
        record_count=row.record_count, created_at=row.created_at, summary=row.summary,
        **(row.report if full else {}),
    )


@router.post(
    "",
    operation_id="reconcile_usage",
    summary="Compare the provider's own usage records of a period with ours; the report is kept",
    description="A provider (`redemptions:write`) uploads its own usage records of one programme for a period, as "
    "JSON records or CSV. They are compared order by order with the captures and refunds this service recorded, "
    "and the report (matches, differences, orders only one side has) is kept with the upload's SHA-256 and the "
    "audit event `usage_reconciliation.created`; no value moves. Refused with `not_found` (programme), "
    "`validation_failed` (malformed records, each named; a period not over, or over less than five minutes ago, "
    "while captures begun before its end may still be committing; or a period with more than 20,000 of the provider's "
    "orders, more than one upload holds: reconcile a shorter one), `payload_too_large` (over 16 MiB, or a body "
    "with more than 200,000 JSON values) or an Idempotency-Key conflict.",
    status_code=201,
    response_model=UsageReport,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.ValidationFailed, errors.PayloadTooLarge,
                        errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress),
    dependencies=[Depends(idempotent(Scope.REDEMPTIONS_WRITE))],
)
async def reconcile_usage(body: UsageUpload, session: Session, now: Now, actor: Uploader,
                          response: Response) -> UsageReport:
    report = await service.reconcile(
        session, actor, programme_id=body.programme_id, period_start=body.period_start, period_end=body.period_end,
        records=[r.model_dump() for r in body.records] if body.records is not None else None, csv_text=body.csv,
        now=now,
    )
    response.headers["Location"] = f"/v1/usage-reconciliations/{report.id}"
    return _public(report, full=True)


@router.get(
    "",
    operation_id="list_usage_reconciliations",
    summary="List kept usage reconciliation reports (summaries; a provider sees its own)",
    description="Any key with `redemptions:read`: a provider sees its own kept reports, operators and auditors "
    "all; summaries only, filter by programme. Changes nothing. Answers `invalid_cursor` for a cursor this service "
    "did not issue.",
    response_model=Page[UsageReport],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_usage_reconciliations(
    session: Session, actor: Reader, page: Paging, programme_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Page[UsageReport]:
    rows, cursor = await service.list_reports(session, actor, page, programme_id=programme_id)
    return Page(items=[_public(r, full=False) for r in rows], next_cursor=cursor)


@router.get(
    "/{report_id}",
    operation_id="get_usage_reconciliation",
    summary="One kept usage reconciliation report, with every order in its category",
    description="Any key with `redemptions:read`, for a report it may see (a provider its own): the kept report "
    "with every order in its category. Changes nothing. Answers `not_found` when the report does not exist or is "
    "not yours.",
    response_model=UsageReport,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_usage_reconciliation(report_id: uuid.UUID, session: Session, actor: Reader) -> UsageReport:
    return _public(await service.get(session, actor, report_id), full=True)
