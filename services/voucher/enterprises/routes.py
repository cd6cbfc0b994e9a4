"""Enterprises over HTTP: operators register and edit; an enterprise reads only itself."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.enterprises import service
from services.voucher.enterprises.schemas import (
    EnterpriseCreate,
    EnterprisePublic,
    EnterpriseUpdate,
)
from services.voucher.http.auth import require
from services.voucher.http.conditional import check_if_match, etag
from services.voucher.http.deps import Now, Session
from services.voucher.http.idempotency import idempotent
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.tables import Enterprise

router = APIRouter(prefix="/v1/enterprises", tags=["enterprises"])
Reader = Annotated[Actor, Depends(require(Scope.ENTERPRISES_READ))]
Writer = Annotated[Actor, Depends(require(Scope.ENTERPRISES_WRITE))]


def _public(enterprise: Enterprise, response: Response | None = None) -> EnterprisePublic:
    if response is not None:
        response.headers["ETag"] = etag(enterprise.version)
    return EnterprisePublic.model_validate(enterprise, from_attributes=True)


def _columns(body: EnterpriseCreate | EnterpriseUpdate, *, exclude_unset: bool = False) -> dict[str, Any]:
    """JSON-ready values for the JSON columns, but a real date for the one DATE column."""
    data = body.model_dump(mode="json", exclude_unset=exclude_unset)
    if "founded_on" in data:
        data["founded_on"] = body.founded_on
    return data


@router.post(
    "",
    operation_id="register_enterprise",
    summary="Register an enterprise (USCC check character verified)",
    description="The programme office (`enterprises:write`) registers an SME: its USCC (check character verified "
    "per GB 32100-2015), region, size, certifications, blacklist records and related parties. Stores it and "
    "records the audit event `enterprise.registered`; the `ETag` header is its version. Refused with "
    "`already_exists` (the USCC is registered), `validation_failed` (e.g. a wrong check character, naming the "
    "right one) or an Idempotency-Key conflict.",
    status_code=201,
    response_model=EnterprisePublic,
    responses=responses(*AUTH_ERRORS, errors.AlreadyExists, errors.ValidationFailed,
                        errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress),
    dependencies=[Depends(idempotent(Scope.ENTERPRISES_WRITE))],
)
async def register_enterprise(
    body: EnterpriseCreate, session: Session, now: Now, actor: Writer, response: Response
) -> EnterprisePublic:
    enterprise = await service.register(session, _columns(body), now)
    response.headers["Location"] = f"/v1/enterprises/{enterprise.id}"
    return _public(enterprise, response)


@router.get(
    "",
    operation_id="list_enterprises",
    summary="List enterprises (an enterprise key sees only itself)",
    description="Any key with `enterprises:read`: an enterprise key sees only itself, operators and auditors all; "
    "filter by region code or USCC. Changes nothing. Answers `invalid_cursor` for a cursor this service did not "
    "issue.",
    response_model=Page[EnterprisePublic],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_enterprises(
    session: Session,
    actor: Reader,
    page: Paging,
    region_code: Annotated[str | None, Query(pattern=r"^[0-9]{6}$")] = None,
    uscc: Annotated[str | None, Query(max_length=18)] = None,
) -> Page[EnterprisePublic]:
    rows, cursor = await service.list_enterprises(
        session, actor, page, region_code=region_code, uscc=uscc.upper() if uscc else None
    )
    return Page(items=[_public(e) for e in rows], next_cursor=cursor)


@router.get(
    "/{enterprise_id}",
    operation_id="get_enterprise",
    summary="Read an enterprise",
    description="Any key with `enterprises:read` (an enterprise only itself). The `ETag` header is the version to "
    "send as `If-Match` when changing it; changes nothing. Answers `not_found` when the enterprise does not exist "
    "or is not you.",
    response_model=EnterprisePublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_enterprise(
    enterprise_id: uuid.UUID, session: Session, actor: Reader, response: Response
) -> EnterprisePublic:
    return _public(await service.get_enterprise(session, actor, enterprise_id), response)


@router.patch(
    "/{enterprise_id}",
    operation_id="update_enterprise",
    summary="Change an enterprise's facts (If-Match required)",
    description="The programme office (`enterprises:write`) changes an enterprise's facts, sending the ETag it "
    "read as `If-Match`; later eligibility judgements use the new facts, applications already judged keep their "
    "verdict. Records the audit event `enterprise.updated`. Refused with `not_found`, `precondition_failed` "
    "(changed since you read it) or `precondition_required` (no If-Match).",
    response_model=EnterprisePublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.PreconditionFailed,
                        errors.PreconditionRequired),
)
async def update_enterprise(
    enterprise_id: uuid.UUID,
    body: EnterpriseUpdate,
    session: Session,
    now: Now,
    actor: Writer,
    response: Response,
    if_match: Annotated[str | None, Header(description="The ETag you read.")] = None,
) -> EnterprisePublic:
    enterprise = await service.update(
        session,
        actor,
        enterprise_id,
        _columns(body, exclude_unset=True),
        check_version=lambda version: check_if_match(if_match, version),
        now=now,
    )
    return _public(enterprise, response)
