"""Vouchers over HTTP: operators issue and manage; enterprises read their own; providers look
one up by code and USCC to quote a subsidy."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.applications import service as applications
from services.voucher.db import Database
from services.voucher.http.auth import require
from services.voucher.http.deps import Now, Session, get_database
from services.voucher.http.idempotency import idempotent
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.programmes import repository as programmes_repository
from services.voucher.vouchers import service
from services.voucher.vouchers.rules import VoucherStatus
from services.voucher.vouchers.schemas import (
    Balances,
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
    status: Annotated[VoucherStatus | None, Query(description="Stored status (expiry not yet posted reads active here).")] = None,
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
    response_model=VoucherPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_voucher(voucher_id: uuid.UUID, session: Session, now: Now, actor: Reader) -> VoucherPublic:
    return _public(await service.read_voucher(session, actor, voucher_id, now))


@router.get(
    "/{voucher_id}/history",
    operation_id="get_voucher_history",
    summary="The voucher's ledger postings, oldest first",
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
            raise errors.InvalidCursor("the cursor is not one this service issued",
                                      detail_zh="该游标不是本服务签发的")
        after = int(cursor)
    rows = await service.history(session, voucher, after=after, limit=limit + 1)
    names = {voucher.available_account_id: "available", voucher.held_account_id: "held",
             voucher.used_account_id: "used"}
    items = [{**r, "account": names[r["account_id"]]} for r in rows[:limit]]
    return PostingPage(items=items, next_cursor=str(rows[limit - 1]["id"]) if len(rows) > limit else None)  # type: ignore[arg-type]


def _status_route(verb: str, summary: str, call: object) -> None:
    async def handler(
        voucher_id: uuid.UUID, body: StatusChange, session: Session, now: Now, actor: Writer
    ) -> VoucherPublic:
        voucher = await call(session, actor, voucher_id, body.reason, now)  # type: ignore[operator]
        return _public(await service.view(session, voucher, now))

    router.add_api_route(
        f"/{{voucher_id}}/{verb}", handler, methods=["POST"], operation_id=f"{verb}_voucher", summary=summary,
        response_model=VoucherPublic, responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidTransition),
        dependencies=[Depends(idempotent(Scope.VOUCHERS_WRITE, required=True))],
    )


_status_route("suspend", "Suspend a voucher: no new holds until it is resumed", service.suspend)
_status_route("resume", "Resume a suspended voucher", service.resume)


@router.post(
    "/{voucher_id}/revoke",
    operation_id="revoke_voucher",
    summary="Revoke a voucher: holds voided, unused value back to the pool, clawback recorded",
    response_model=VoucherPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidTransition, errors.ValidationFailed),
    dependencies=[Depends(idempotent(Scope.VOUCHERS_WRITE, required=True))],
)
async def revoke_voucher(voucher_id: uuid.UUID, body: Revocation, session: Session, now: Now, actor: Writer) -> VoucherPublic:
    voucher = await service.revoke(session, actor, voucher_id, body.reason, now, clawback=body.clawback)
    return _public(await service.view(session, voucher, now))


@router.post(
    "/lookup",
    operation_id="lookup_voucher",
    summary="Provider: look a voucher up by code and the enterprise's USCC to quote a subsidy",
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
            raise errors.NotFound("no voucher with this code for this enterprise",
                                  detail_zh="该企业名下没有此券码对应的券")
    view = await service.view(session, voucher, now)
    return VoucherQuote(
        code=voucher.code, kind=voucher.kind, unit=voucher.unit, status=view.status,
        available=view.balances.available if view.status is VoucherStatus.ACTIVE else 0,
        valid_from=voucher.valid_from, expires_at=voucher.expires_at,
    )
