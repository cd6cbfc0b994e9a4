"""Programmes over HTTP: operators configure, everyone authenticated reads (drafts: staff only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.http.auth import require
from services.voucher.http.conditional import check_if_match, etag
from services.voucher.http.deps import Now, Session
from services.voucher.http.idempotency import idempotent
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.programmes import service
from services.voucher.programmes.rules import ProgrammeKind, ProgrammeStatus
from services.voucher.programmes.schemas import (
    EnrolmentPublic,
    ProgrammeCreate,
    ProgrammePublic,
    ProgrammeUpdate,
    Transition,
)
from services.voucher.providers import service as providers
from services.voucher.tables import Programme, ProgrammeEnrolment

router = APIRouter(prefix="/v1/programmes", tags=["programmes"])
Reader = Annotated[Actor, Depends(require(Scope.PROGRAMMES_READ))]
Writer = Annotated[Actor, Depends(require(Scope.PROGRAMMES_WRITE))]


def _public(programme: Programme, response: Response | None = None) -> ProgrammePublic:
    if response is not None:
        response.headers["ETag"] = etag(programme.version)
    return ProgrammePublic.model_validate(programme, from_attributes=True)


def _enrolment(row: ProgrammeEnrolment, provider_name: str) -> EnrolmentPublic:
    return EnrolmentPublic(
        programme_id=row.programme_id,
        provider_id=row.provider_id,
        provider_name=provider_name,
        enrolled_at=row.enrolled_at,
        withdrawn_at=row.withdrawn_at,
        is_active=row.withdrawn_at is None,
    )


@router.post(
    "",
    operation_id="create_programme",
    summary="Create a programme (in draft)",
    description="The programme office (`programmes:write`) creates a programme in `draft` with complete terms: "
    "kind, unit, budget, rate table, caps, windows, validity, publicity and eligibility rules. It stores the "
    "programme and its eligibility rule version 1 and records the audit event `programme.created`; no budget moves "
    "until it opens. Refused with `already_exists` (the code is taken), `validation_failed` (inconsistent terms) "
    "or an Idempotency-Key conflict.",
    status_code=201,
    response_model=ProgrammePublic,
    responses=responses(*AUTH_ERRORS, errors.AlreadyExists, errors.ValidationFailed,
                        errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress),
    dependencies=[Depends(idempotent(Scope.PROGRAMMES_WRITE))],
)
async def create_programme(
    body: ProgrammeCreate, session: Session, now: Now, actor: Writer, response: Response
) -> ProgrammePublic:
    programme = await service.create_programme(session, body.model_dump(mode="python"), now)
    response.headers["Location"] = f"/v1/programmes/{programme.id}"
    return _public(programme, response)


@router.get(
    "",
    operation_id="list_programmes",
    summary="List programmes, newest last",
    description="Any key with `programmes:read`; enterprises and providers see no drafts. Filter by status or "
    "kind, oldest first. Changes nothing. Answers `invalid_cursor` for a cursor this service did not issue.",
    response_model=Page[ProgrammePublic],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_programmes(
    session: Session,
    actor: Reader,
    page: Paging,
    status: Annotated[ProgrammeStatus | None, Query()] = None,
    kind: Annotated[ProgrammeKind | None, Query()] = None,
) -> Page[ProgrammePublic]:
    rows, cursor = await service.list_programmes(
        session, actor, page, status=status.value if status else None, kind=kind.value if kind else None
    )
    return Page(items=[_public(p) for p in rows], next_cursor=cursor)


@router.get(
    "/{programme_id}",
    operation_id="get_programme",
    summary="Read a programme; its ETag is the version to send as If-Match",
    description="Any key with `programmes:read` (drafts: operators and auditors only). The `ETag` header is the "
    "version to send as `If-Match` when changing it; changes nothing. Answers `not_found` for an unknown programme "
    "or a draft you may not see.",
    response_model=ProgrammePublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_programme(
    programme_id: uuid.UUID, session: Session, actor: Reader, response: Response
) -> ProgrammePublic:
    return _public(await service.get_programme(session, actor, programme_id), response)


@router.patch(
    "/{programme_id}",
    operation_id="update_programme",
    summary="Change a programme's fields (If-Match required; money terms frozen once open)",
    description="The programme office (`programmes:write`) changes some fields, sending the ETag it read as "
    "`If-Match`. Money terms freeze once the programme opens; new `eligibility_rules` publish a new rule version, "
    "while applications keep the version they were judged by. Records the audit event `programme.updated`; no "
    "value moves. Refused with `not_found`, `terms_frozen`, `validation_failed`, `provider_kind_mismatch` (a "
    "draft's new kind that an enrolled provider does not offer), `precondition_failed` (changed "
    "since you read it) or `precondition_required` (no If-Match).",
    response_model=ProgrammePublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.TermsFrozen, errors.ValidationFailed,
                        errors.ProviderKindMismatch, errors.PreconditionFailed, errors.PreconditionRequired),
)
async def update_programme(
    programme_id: uuid.UUID,
    body: ProgrammeUpdate,
    session: Session,
    now: Now,
    actor: Writer,
    response: Response,
    if_match: Annotated[str | None, Header(description="The ETag you read.")] = None,
) -> ProgrammePublic:
    programme = await service.update_programme(
        session,
        actor,
        programme_id,
        body.model_dump(mode="python", exclude_unset=True),
        check_version=lambda version: check_if_match(if_match, version),
        now=now,
    )
    return _public(programme, response)


def _transition_route(target: ProgrammeStatus, verb: str, summary: str, description: str) -> None:
    async def handler(
        programme_id: uuid.UUID,
        session: Session,
        now: Now,
        actor: Writer,
        response: Response,
        body: Transition | None = None,
    ) -> ProgrammePublic:
        programme = await service.transition(session, actor, programme_id, target, now,
                                             reason=body.reason if body is not None else None)
        return _public(programme, response)

    router.add_api_route(
        f"/{{programme_id}}/{verb}",
        handler,
        methods=["POST"],
        operation_id=f"{verb}_programme",
        summary=summary,
        description=description,
        response_model=ProgrammePublic,
        responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidTransition),
        dependencies=[Depends(idempotent(Scope.PROGRAMMES_WRITE))],
    )


_transition_route(ProgrammeStatus.OPEN, "open", "Open a draft programme (its money terms freeze)",
                  "The programme office (`programmes:write`) opens a draft programme: applications and issuance "
                  "can start and its money terms freeze. The programme's ledger accounts are opened and its whole "
                  "budget moves from funding to available in one journal, with the audit events `programme.open` "
                  "and `ledger.posted`; a `reason` given is kept in the first. Refused with `not_found`, `invalid_transition` (not a draft) or an "
                  "Idempotency-Key conflict.")
_transition_route(ProgrammeStatus.CLOSED, "close", "Close an open programme",
                  "The programme office (`programmes:write`) closes an open programme: no new applications or "
                  "direct issuance, while approvals still in publicity are honoured. Records the audit event "
                  "`programme.closed`, with the `reason` given; no value moves. Refused with `not_found`, `invalid_transition` (not open) "
                  "or an Idempotency-Key conflict.")
_transition_route(ProgrammeStatus.ARCHIVED, "archive", "Archive a closed programme",
                  "The programme office (`programmes:write`) archives a closed programme once it is a closed book: "
                  "every application decided and every approved voucher issued, every voucher expired or revoked, "
                  "and every capture and claim paid (no provider or enterprise payable left). Records the audit "
                  "event `programme.archived`, with the `reason` given; no value moves. Refused with `not_found`, `invalid_transition` (not "
                  "closed; applications still open or budget still committed, with `open_applications` and "
                  "`committed`; vouchers still live or payables unsettled, with `live_vouchers` and `unpaid`; or "
                  "settlements not paid or cancelled, claims not paid or rejected, or captures and refunds in no settlement, "
                  "with `open_settlements`, `open_claims`, `unsettled_captures` and `unsettled_refunds`) "
                  "or an Idempotency-Key conflict.")


@router.get(
    "/{programme_id}/enrolments",
    operation_id="list_enrolments",
    summary="List the providers enrolled in a programme",
    description="Any key with `programmes:read`, for a programme it may see; withdrawn enrolments are hidden "
    "unless `active_only=false`. Changes nothing. Answers `not_found` for a programme you cannot see and "
    "`invalid_cursor` for a cursor this service did not issue.",
    response_model=Page[EnrolmentPublic],
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidCursor),
)
async def list_enrolments(
    programme_id: uuid.UUID,
    session: Session,
    actor: Reader,
    page: Paging,
    active_only: Annotated[bool, Query(description="Hide withdrawn enrolments.")] = True,
) -> Page[EnrolmentPublic]:
    rows, cursor = await service.list_enrolments(session, actor, programme_id, page, active_only=active_only)
    return Page(items=[_enrolment(r, name) for r, name in rows], next_cursor=cursor)


@router.put(
    "/{programme_id}/enrolments/{provider_id}",
    operation_id="enrol_provider",
    summary="Enrol a provider in a programme (idempotent: enrolling twice changes nothing)",
    description="The programme office (`programmes:write`) enrols a provider in a draft or open programme: 201 "
    "when newly enrolled (or again after a withdrawal), with the audit event `programme.provider_enrolled`; 200 "
    "when it already was, changing nothing. Refused with `not_found` (programme or provider), `enrolment_closed` "
    "(the programme is closed or archived) or `provider_kind_mismatch` (the provider does not offer the "
    "programme's kind).",
    response_model=EnrolmentPublic,
    responses={
        201: {"description": "Newly enrolled", "model": EnrolmentPublic},
        **responses(*AUTH_ERRORS, errors.NotFound, errors.EnrolmentClosed, errors.ProviderKindMismatch),
    },
)
async def enrol_provider(
    programme_id: uuid.UUID,
    provider_id: uuid.UUID,
    session: Session,
    now: Now,
    actor: Writer,
    response: Response,
) -> EnrolmentPublic:
    enrolment, created = await service.enrol_provider(session, actor, programme_id, provider_id, now)
    response.status_code = 201 if created else 200
    provider = await providers.get_provider(session, actor, provider_id)
    return _enrolment(enrolment, provider.name)


@router.delete(
    "/{programme_id}/enrolments/{provider_id}",
    operation_id="withdraw_provider",
    summary="Withdraw a provider from a programme (the enrolment stays as history)",
    description="The programme office (`programmes:write`) ends a provider's enrolment: it can no longer hold or "
    "redeem the programme's vouchers, and the enrolment stays as history. Records the audit event "
    "`programme.provider_withdrawn`; no value moves. Answers `not_found` for an unknown programme or a provider "
    "not enrolled in it, and `enrolment_closed` for an archived programme.",
    response_model=EnrolmentPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.EnrolmentClosed),
)
async def withdraw_provider(
    programme_id: uuid.UUID, provider_id: uuid.UUID, session: Session, now: Now, actor: Writer
) -> EnrolmentPublic:
    enrolment = await service.withdraw_provider(session, actor, programme_id, provider_id, now)
    provider = await providers.get_provider(session, actor, provider_id)
    return _enrolment(enrolment, provider.name)
