"""Applications over HTTP: enterprises apply and withdraw, operators review and lodge
objections, everyone reads the public publicity notice."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.applications import service
from services.voucher.applications.rules import ApplicationStatus, mask_uscc
from services.voucher.applications.schemas import (
    ApplicationCreate,
    ApplicationDryRun,
    ApplicationPublic,
    Approval,
    Objection,
    PublicityEntry,
    PublicityNotice,
    Rejection,
    TransitionPublic,
    Withdrawal,
)
from services.voucher.db import Database
from services.voucher.eligibility.schemas import Eligibility
from services.voucher.http.auth import require
from services.voucher.http.deps import Now, Session, get_database
from services.voucher.http.idempotency import idempotent
from services.voucher.http.language import Language
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.tables import Application

router = APIRouter(prefix="/v1/applications", tags=["applications"])
public_router = APIRouter(prefix="/v1/programmes", tags=["applications"])
Reader = Annotated[Actor, Depends(require(Scope.APPLICATIONS_READ))]
Applicant = Annotated[Actor, Depends(require(Scope.APPLICATIONS_WRITE))]
Reviewer = Annotated[Actor, Depends(require(Scope.APPLICATIONS_REVIEW))]
Db = Annotated[Database, Depends(get_database)]
STAFF_ONLY_DETAILS = frozenset({"objector"})
IDEMPOTENCY_ERRORS = (errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress)
COMMIT_ERRORS = (errors.BudgetExhausted, errors.EnterpriseCapExceeded, errors.ExceedsMaxPerVoucher,
                 errors.ProgrammeNotOpen)


def _public(application: Application, language: str, response: Response | None = None,
            now: datetime | None = None) -> ApplicationPublic:
    """`now`, on a read: an application whose publicity has ended shows as issued, as every
    transition judges it, when its voucher is not written yet (a read writes at most
    SETTLE_ON_READ; the worker the rest). It had shown `publicity` while an approval or
    objection of it was refused naming `issued` (an independent review, December 2026)."""
    if response is not None:
        response.headers["Content-Language"] = "zh-CN" if language == "zh" else "en"
    a = application
    status = ApplicationStatus(a.status) if now is None else service.status_seen(a, now)
    return ApplicationPublic(
        id=a.id, programme_id=a.programme_id, enterprise_id=a.enterprise_id, status=status,
        unit=a.unit, requested_amount=a.requested_amount, approved_amount=a.approved_amount, purpose=a.purpose,
        contracts=a.contracts, eligibility=Eligibility.from_record(a.eligibility_result, language),
        status_reason=a.status_reason, submitted_at=a.submitted_at, approved_at=a.approved_at,
        publicity_ends_at=a.publicity_ends_at, issued_at=a.issued_at, voucher_id=a.voucher_id,
        decided_at=a.decided_at, updated_at=a.updated_at,
    )


async def _settle(session: AsyncSession, database: Database, actor: Actor, now: Any,
                  found: list[Application] | None = None) -> None:
    """Issue due vouchers before answering: those among `found`, or all the reader can see.
    The read snapshot is ended first so the answer sees what was written."""
    ids = None if found is None else [a.id for a in found if service.is_due(a, now)]
    if ids == []:
        return
    await session.rollback()
    await service.settle_due(database, actor, now, ids)


@router.post(
    "",
    operation_id="submit_application",
    summary="Apply to an open programme (eligibility is judged at once)",
    description="An enterprise applies for itself (`applications:write`), with a required Idempotency-Key. The "
    "application is judged at once by the programme's current eligibility rule version and ends `under_review` "
    "(its contracts reserved) or `ineligible` with every failed rule; its steps are kept with the audit events "
    "`application.submitted` and `application.under_review` or `application.ineligible`, and no budget is "
    "committed yet. Refused with `not_found` (programme), `application_window_closed`, `application_already_open` "
    "(one open application per programme), `contract_already_used`, `eligibility_rules_invalid`, "
    "`validation_failed` (e.g. above the maximum per voucher) or an Idempotency-Key conflict.",
    status_code=201,
    response_model=ApplicationPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.ApplicationWindowClosed, errors.ApplicationAlreadyOpen,
                        errors.ContractAlreadyUsed, errors.EligibilityRulesInvalid, errors.ValidationFailed,
                        *IDEMPOTENCY_ERRORS),
    dependencies=[Depends(idempotent(Scope.APPLICATIONS_WRITE, required=True))],
)
async def submit_application(
    body: ApplicationCreate, session: Session, now: Now, actor: Applicant, language: Language, response: Response
) -> ApplicationPublic:
    data = body.model_dump(mode="python")
    data["contracts"] = [{**c, **{k: c[k].isoformat() for k in ("signed_on", "starts_on", "ends_on")}}
                         for c in data["contracts"]]
    application = await service.submit(session, actor, body.programme_id, data, now)
    response.headers["Location"] = f"/v1/applications/{application.id}"
    return _public(application, language, response)


@router.post(
    "/dry-run",
    operation_id="dry_run_application",
    summary="Before applying: how the programme's eligibility rules judge the calling enterprise now; nothing is stored",
    description="An enterprise (`applications:write`) sees the verdict, rule by rule with reasons in the "
    "Accept-Language, that an application to this programme for this amount would get if submitted now: the "
    "programme's current rule version on the enterprise's own facts and remaining cap. Nothing is stored or "
    "recorded, so no Idempotency-Key is needed; the application window and the one-open-application rule are "
    "checked only on submission, and `no_related_party_contracts` is judged here with no contract (the "
    "submission judges the contracts it lists). Refused with `not_found` (programme) or `validation_failed`.",
    response_model=Eligibility,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.EligibilityRulesInvalid, errors.ValidationFailed),
)
async def dry_run_application(body: ApplicationDryRun, session: Session, now: Now, actor: Applicant,
                              language: Language, response: Response) -> Eligibility:
    verdict = await service.preview(session, actor, body.programme_id, body.requested_amount, now)
    response.headers["Content-Language"] = "zh-CN" if language == "zh" else "en"
    return Eligibility.from_record(verdict.stored(), language)


@router.get(
    "",
    operation_id="list_applications",
    summary="List applications (the review queue is status=under_review); an enterprise sees its own",
    description="Any key with `applications:read`: an enterprise sees its own applications, operators and auditors "
    "all; the review queue is `status=under_review`. Eligibility reasons follow Accept-Language. Before answering "
    "it issues the vouchers of publicity periods that have ended, as the worker would; otherwise it changes "
    "nothing. Answers `invalid_cursor` for a cursor this service did not issue.",
    response_model=Page[ApplicationPublic],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_applications(
    session: Session,
    database: Db,
    now: Now,
    actor: Reader,
    language: Language,
    page: Paging,
    response: Response,
    programme_id: Annotated[uuid.UUID | None, Query()] = None,
    enterprise_id: Annotated[uuid.UUID | None, Query()] = None,
    status: Annotated[ApplicationStatus | None, Query()] = None,
) -> Page[ApplicationPublic]:
    async def read() -> tuple[list[Application], str | None]:
        return await service.list_applications(
            session, actor, page, programme_id=programme_id, enterprise_id=enterprise_id,
            status=status.value if status else None, now=now,
        )

    await _settle(session, database, actor, now)  # before filtering: `status=issued` must find them
    rows, cursor = await read()
    response.headers["Content-Language"] = "zh-CN" if language == "zh" else "en"
    return Page(items=[_public(a, language, now=now) for a in rows], next_cursor=cursor)


@router.get(
    "/{application_id}",
    operation_id="get_application",
    summary="Read an application with its eligibility verdict (reasons in the Accept-Language)",
    description="Any key with `applications:read`, for an application it may see (an enterprise its own). Shows "
    "the eligibility verdict rule by rule, reasons in the Accept-Language; an application whose publicity has "
    "ended gets its voucher issued first, as the worker would, otherwise nothing changes. Answers `not_found` when "
    "the application does not exist or is not yours.",
    response_model=ApplicationPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_application(
    application_id: uuid.UUID, session: Session, database: Db, now: Now, actor: Reader, language: Language,
    response: Response,
) -> ApplicationPublic:
    application = await service.get_application(session, actor, application_id)
    if service.is_due(application, now):
        await _settle(session, database, actor, now, [application])
        application = await service.get_application(session, actor, application_id)
    return _public(application, language, response, now)


@router.get(
    "/{application_id}/history",
    operation_id="application_history",
    summary="Every step the application took, who took it and why",
    description="Any key with `applications:read`, for an application it may see. Lists every status change with "
    "its reason and details; an enterprise is not shown who objected or which officials acted. Issues the voucher "
    "first if publicity has ended, otherwise changes nothing. Answers `not_found` when the application does not "
    "exist or is not yours.",
    response_model=list[TransitionPublic],
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def application_history(
    application_id: uuid.UUID, session: Session, database: Db, now: Now, actor: Reader
) -> list[TransitionPublic]:
    await _settle(session, database, actor, now, [await service.get_application(session, actor, application_id)])
    staff = actor.sees_everything
    return [
        TransitionPublic(
            from_status=t.from_status, to_status=t.to_status, reason=t.reason,
            # An objector's identity and the reviewing officials are the programme office's to
            # know, not the applicant's; the applicant sees what happened and why.
            details=t.details if staff else {k: v for k, v in t.details.items() if k not in STAFF_ONLY_DETAILS},
            principal_id=t.principal_id if staff or t.principal_id == actor.principal_id else None,
            at=t.created_at,
        )
        for t in await service.history(session, actor, application_id)
    ]


@router.post(
    "/{application_id}/approve",
    operation_id="approve_application",
    summary="Approve an amount: commits budget and cap, starts publicity (or issues at once without one)",
    description="The programme office (`applications:review`), with a required Idempotency-Key, approves an "
    "application under review for at most the amount requested. The amount is committed in one ledger journal (the "
    "budget's available to committed) and reserved against the enterprise's cap; the application enters publicity "
    "(公示) or, when the programme has none, its voucher is issued at once. An application an objection returned to "
    "review still holds its first approval: approving it again keeps that commitment and moves only the difference, "
    "and once the programme is closed it may be approved again for no more than it holds. It records the audit events "
    "`application.approved` (also announced to events and webhooks), `application.publicity` and `ledger.posted`. "
    "Refused with `not_found`, `invalid_transition` (not under review), `validation_failed` (more than requested), "
    "`programme_not_open`, `exceeds_max_per_voucher`, `enterprise_cap_exceeded`, `budget_exhausted` or an "
    "Idempotency-Key conflict.",
    response_model=ApplicationPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidTransition, errors.ValidationFailed,
                        *COMMIT_ERRORS, *IDEMPOTENCY_ERRORS),
    dependencies=[Depends(idempotent(Scope.APPLICATIONS_REVIEW, required=True))],
)
async def approve_application(
    application_id: uuid.UUID, body: Approval, session: Session, now: Now, actor: Reviewer, language: Language,
    response: Response,
) -> ApplicationPublic:
    application = await service.approve(session, actor, application_id, body.amount, body.note, now)
    return _public(application, language, response)


@router.post(
    "/{application_id}/reject",
    operation_id="reject_application",
    summary="Reject an application under review, with a reason",
    description="The programme office (`applications:review`) rejects an application under review, with the reason "
    "the enterprise will read. The status becomes `rejected`, its contracts are freed and the audit event "
    "`application.rejected` is recorded. An application an objection returned to review gives back the commitment it "
    "held (the objection upheld: one ledger journal, committed back to available, and the cap freed); otherwise "
    "nothing was committed and no value moves. Refused with `not_found`, "
    "`invalid_transition` (not under review) or an Idempotency-Key conflict.",
    response_model=ApplicationPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidTransition, *IDEMPOTENCY_ERRORS),
    dependencies=[Depends(idempotent(Scope.APPLICATIONS_REVIEW))],
)
async def reject_application(
    application_id: uuid.UUID, body: Rejection, session: Session, now: Now, actor: Reviewer, language: Language,
    response: Response,
) -> ApplicationPublic:
    return _public(await service.reject(session, actor, application_id, body.reason, now), language, response)


@router.post(
    "/{application_id}/objections",
    operation_id="lodge_objection",
    summary="Lodge an objection during publicity: back to review, its commitment held",
    description="The programme office (`applications:review`), with a required Idempotency-Key, records an "
    "objection received during publicity (公示). Publicity stops and the application returns to review, with the "
    "audit event `application.under_review`; its commitment (budget and cap) is held while the office examines the "
    "objection: approving again keeps it, rejecting (the objection upheld) or a withdrawal releases it. Refused with `not_found`, `invalid_transition` (not in "
    "publicity: once it has ended the voucher is issued, and revocation is the remedy) or an Idempotency-Key "
    "conflict.",
    response_model=ApplicationPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidTransition, *IDEMPOTENCY_ERRORS),
    dependencies=[Depends(idempotent(Scope.APPLICATIONS_REVIEW, required=True))],
)
async def lodge_objection(
    application_id: uuid.UUID, body: Objection, session: Session, now: Now, actor: Reviewer, language: Language,
    response: Response,
) -> ApplicationPublic:
    application = await service.lodge_objection(session, actor, application_id, body.statement, body.objector, now)
    return _public(application, language, response)


@router.post(
    "/{application_id}/withdraw",
    operation_id="withdraw_application",
    summary="Withdraw one's own application while it is submitted or under review",
    description="The enterprise that applied (`applications:write`) takes its application back while it is "
    "submitted or under review, with an optional reason. The status becomes `withdrawn`, its contracts are freed "
    "and the audit event `application.withdrawn` is recorded. One an objection returned to review gives back the "
    "commitment it held (one ledger journal, and the cap freed); otherwise nothing is committed and no value moves. "
    "Refused with `not_found`, `invalid_transition` or an Idempotency-Key conflict.",
    response_model=ApplicationPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidTransition, *IDEMPOTENCY_ERRORS),
    dependencies=[Depends(idempotent(Scope.APPLICATIONS_WRITE))],
)
async def withdraw_application(
    application_id: uuid.UUID, session: Session, now: Now, actor: Applicant, language: Language,
    response: Response, body: Withdrawal | None = None,
) -> ApplicationPublic:
    reason = body.reason if body else None
    return _public(await service.withdraw(session, actor, application_id, reason, now), language, response)


@public_router.get(
    "/{programme_id}/publicity",
    operation_id="publicity_notice",
    summary="The public 公示 notice: approvals whose publicity runs now (no authentication)",
    description="Public: no API key, since 公示 notices are public. Lists the approvals of a programme whose "
    "publicity runs now, each with the enterprise's name, its masked USCC, the approved amount and when publicity "
    "ends; changes nothing. Answers `not_found` for an unknown or draft programme and `invalid_cursor` for a "
    "cursor this service did not issue.",
    response_model=PublicityNotice,
    responses=responses(errors.NotFound, errors.InvalidCursor),
)
async def publicity_notice(programme_id: uuid.UUID, session: Session, now: Now, page: Paging) -> PublicityNotice:
    programme, rows, cursor = await service.publicity_notice(session, programme_id, now, page)
    return PublicityNotice(
        programme_code=programme.code, programme_name=programme.name, unit=programme.unit,
        items=[
            PublicityEntry(enterprise_name=e.name, uscc_masked=mask_uscc(e.uscc),
                           approved_amount=a.approved_amount or 0,
                           publicity_ends_at=a.publicity_ends_at or a.updated_at)
            for a, e in rows
        ],
        next_cursor=cursor,
    )
