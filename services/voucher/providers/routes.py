"""Providers over HTTP: operators register, approve and suspend; a provider reads only itself."""

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
from services.voucher.providers import service
from services.voucher.providers.rules import ProviderStatus
from services.voucher.providers.schemas import (
    ProviderCreate,
    ProviderPublic,
    ProviderUpdate,
    StatusChange,
)
from services.voucher.tables import Provider

router = APIRouter(prefix="/v1/providers", tags=["providers"])
Reader = Annotated[Actor, Depends(require(Scope.PROVIDERS_READ))]
Writer = Annotated[Actor, Depends(require(Scope.PROVIDERS_WRITE))]


def _public(provider: Provider, response: Response | None = None) -> ProviderPublic:
    if response is not None:
        response.headers["ETag"] = etag(provider.version)
    return ProviderPublic.model_validate(provider, from_attributes=True)


@router.post(
    "",
    operation_id="register_provider",
    summary="Register a compute or model provider (starts pending)",
    description="The programme office (`providers:write`) registers a compute or model provider with its USCC, the "
    "kinds it offers and its details; it starts `pending` and redeems nothing until approved and enrolled. Records "
    "the audit event `provider.registered`. Refused with `already_exists` (the USCC is registered), "
    "`validation_failed` or an Idempotency-Key conflict.",
    status_code=201,
    response_model=ProviderPublic,
    responses=responses(*AUTH_ERRORS, errors.AlreadyExists, errors.ValidationFailed,
                        errors.IdempotencyKeyReused, errors.IdempotencyRequestInProgress),
    dependencies=[Depends(idempotent(Scope.PROVIDERS_WRITE))],
)
async def register_provider(
    body: ProviderCreate, session: Session, now: Now, actor: Writer, response: Response
) -> ProviderPublic:
    provider = await service.register(session, body.model_dump(mode="json"), now)
    response.headers["Location"] = f"/v1/providers/{provider.id}"
    return _public(provider, response)


@router.get(
    "",
    operation_id="list_providers",
    summary="List providers (a provider key sees only itself)",
    description="Any key with `providers:read`: a provider key sees only itself, operators and auditors all; "
    "filter by status. Changes nothing. Answers `invalid_cursor` for a cursor this service did not issue.",
    response_model=Page[ProviderPublic],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_providers(
    session: Session,
    actor: Reader,
    page: Paging,
    status: Annotated[ProviderStatus | None, Query()] = None,
) -> Page[ProviderPublic]:
    rows, cursor = await service.list_providers(
        session, actor, page, status=status.value if status else None
    )
    return Page(items=[_public(p) for p in rows], next_cursor=cursor)


@router.get(
    "/{provider_id}",
    operation_id="get_provider",
    summary="Read a provider",
    description="Any key with `providers:read` (a provider only itself). The `ETag` header is the version to send "
    "as `If-Match` when changing it; changes nothing. Answers `not_found` when the provider does not exist or is "
    "not you.",
    response_model=ProviderPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_provider(
    provider_id: uuid.UUID, session: Session, actor: Reader, response: Response
) -> ProviderPublic:
    return _public(await service.get_provider(session, actor, provider_id), response)


@router.patch(
    "/{provider_id}",
    operation_id="update_provider",
    summary="Change a provider's details (If-Match required)",
    description="The programme office (`providers:write`) changes a provider's name, kinds, settlement account, "
    "webhook URL or related parties, sending the ETag it read as `If-Match`; its status changes only through "
    "approve and suspend. Records the audit event `provider.updated`. Refused with `not_found`, "
    "`provider_kind_mismatch` (a kind dropped that a programme it is enrolled in needs: `programme_ids`), "
    "`validation_failed`, `precondition_failed` (changed since you read it) or `precondition_required` (no If-Match).",
    response_model=ProviderPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound, errors.ProviderKindMismatch, errors.PreconditionFailed,
                        errors.PreconditionRequired),
)
async def update_provider(
    provider_id: uuid.UUID,
    body: ProviderUpdate,
    session: Session,
    now: Now,
    actor: Writer,
    response: Response,
    if_match: Annotated[str | None, Header(description="The ETag you read.")] = None,
) -> ProviderPublic:
    provider = await service.update(
        session,
        actor,
        provider_id,
        body.model_dump(mode="json", exclude_unset=True),
        check_version=lambda version: check_if_match(if_match, version),
        now=now,
    )
    return _public(provider, response)


def _status_route(target: ProviderStatus, verb: str, summary: str, description: str) -> None:
    async def handler(
        provider_id: uuid.UUID,
        body: StatusChange,
        session: Session,
        now: Now,
        actor: Writer,
        response: Response,
    ) -> ProviderPublic:
        provider = await service.change_status(session, actor, provider_id, target, body.reason, now)
        return _public(provider, response)

    router.add_api_route(
        f"/{{provider_id}}/{verb}",
        handler,
        methods=["POST"],
        operation_id=f"{verb}_provider",
        summary=summary,
        description=description,
        response_model=ProviderPublic,
        responses=responses(*AUTH_ERRORS, errors.NotFound, errors.InvalidTransition),
        dependencies=[Depends(idempotent(Scope.PROVIDERS_WRITE))],
    )


_status_route(ProviderStatus.APPROVED, "approve", "Approve a pending or suspended provider",
              "The programme office (`providers:write`) approves a pending or suspended provider, with a reason: "
              "it may then redeem the vouchers of the programmes it is enrolled in. Records the audit event "
              "`provider.approved`. Refused with `not_found`, `invalid_transition` (already approved) or an "
              "Idempotency-Key conflict.")
_status_route(ProviderStatus.SUSPENDED, "suspend", "Suspend an approved provider",
              "The programme office (`providers:write`) suspends an approved provider, with a reason: its new "
              "holds and redemptions are refused (`provider_not_approved`) until it is approved again. Records the "
              "audit event `provider.suspended`. Refused with `not_found`, `invalid_transition` (not approved) or "
              "an Idempotency-Key conflict.")
