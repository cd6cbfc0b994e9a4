"""API keys over HTTP. Creation and rotation take no Idempotency-Key: their answer holds a
secret, and secrets are never stored, so there is nothing safe to replay."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys import service
from services.voucher.apikeys.rules import Role, Scope
from services.voucher.apikeys.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    ApiKeyRevoke,
    ApiKeyRotate,
    Me,
)
from services.voucher.http.auth import current_actor, require
from services.voucher.http.deps import Now, Session, get_settings
from services.voucher.http.pagination import Page, Paging
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.i18n import msg
from services.voucher.settings import Settings
from services.voucher.tables import ApiKey, Principal

router = APIRouter(prefix="/v1", tags=["api keys"])


def _public(key: ApiKey, principal: Principal, now: datetime) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        role=Role(principal.role),
        principal_id=principal.id,
        principal_name=principal.name,
        enterprise_id=principal.enterprise_id,
        provider_id=principal.provider_id,
        scopes=list(key.scopes),
        status=service.key_status(key, now),
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        revoked_reason=key.revoked_reason,
        rotated_from_id=key.rotated_from_id,
        created_by_key_id=key.created_by_key_id,
    )


def _created(issued: service.IssuedKey, now: datetime, response: Response) -> ApiKeyCreated:
    """The new key with its secret, shown this once: no cache may keep the answer (nor its
    replay: Cache-Control is replayed with an Idempotency-Key's answer)."""
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreated(**_public(issued.key, issued.principal, now).model_dump(), key=issued.secret)


@router.get(
    "/me",
    operation_id="get_me",
    summary="Who am I: the principal, role and scopes of the calling key",
    description="Any valid API key. Answers the key's principal, role, scopes and tenant (enterprise or provider), "
    "whether the service runs in sandbox mode, and the time its rules use; changes nothing. Answers "
    "`unauthenticated` for a missing, unknown, expired or revoked key.",
    response_model=Me,
    responses=responses(errors.Unauthenticated),
)
async def get_me(actor: Annotated[Actor, Depends(current_actor)], now: Now,
                 settings: Annotated[Settings, Depends(get_settings)]) -> Me:
    return Me(
        principal_id=actor.principal_id,
        role=actor.role,
        key_id=actor.key_id,
        scopes=sorted(s.value for s in actor.scopes),
        enterprise_id=actor.enterprise_id,
        provider_id=actor.provider_id,
        sandbox=settings.sandbox,
        now=now,
    )


@router.post(
    "/api-keys",
    operation_id="create_api_key",
    summary="Create an API key for an enterprise, provider, auditor or operator",
    description="The programme office (`keys:write`) creates a key for an operator, auditor, enterprise or "
    "provider principal, new or existing, with all its role's scopes or a subset. The secret is in this answer "
    "only (only its hash is stored); records the audit event `api_key.created`. Refused with `scope_escalation` "
    "(scopes the calling key may not grant), `replaced_key_manages_no_keys` (the calling key was rotated), "
    "`not_found` (principal, enterprise or provider), `too_many_live_keys`, or `validation_failed` (e.g. a scope "
    "the role cannot hold, an expiry in the past or later than the calling key's). A key made by a key that "
    "expires expires no later than it (by default, at the same instant).",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=responses(*AUTH_ERRORS, errors.ScopeEscalation, errors.ReplacedKeyManagesNoKeys, errors.NotFound,
                        errors.ValidationFailed, errors.TooManyLiveKeys),
)
async def create_api_key(
    body: ApiKeyCreate,
    session: Session,
    now: Now,
    actor: Annotated[Actor, Depends(require(Scope.KEYS_WRITE))],
    settings: Annotated[Settings, Depends(get_settings)],
    response: Response,
) -> ApiKeyCreated:
    issued = await service.issue_key(
        session,
        role=body.role,
        name=body.name,
        now=now,
        scopes=[s.value for s in body.scopes] if body.scopes is not None else None,
        expires_at=body.expires_at,
        principal_id=body.principal_id,
        principal_name=body.principal_name,
        enterprise_id=body.enterprise_id,
        provider_id=body.provider_id,
        created_by=actor,
        max_live_keys=settings.max_live_keys_per_principal,
    )
    return _created(issued, now, response)


@router.get(
    "/api-keys",
    operation_id="list_api_keys",
    summary="List API keys (operators and auditors: all; others: their own)",
    description="Keys with `keys:read` (operators, auditors) list every key; keys with `keys:self` (enterprises, "
    "providers) their own principal's. Never shows a secret; changes nothing. Answers `invalid_cursor` for a "
    "cursor this service did not issue.",
    response_model=Page[ApiKeyPublic],
    responses=responses(*AUTH_ERRORS, errors.InvalidCursor),
)
async def list_api_keys(
    session: Session,
    now: Now,
    actor: Annotated[Actor, Depends(current_actor)],  # before the page: a caller without a key learns nothing
    page: Paging,
    principal_id: Annotated[uuid.UUID | None, Query(description="Only this principal's keys.")] = None,
    created_by_key_id: Annotated[uuid.UUID | None, Query(
        description="Only the keys this key created or rotated (revoking a key does not revoke them).")] = None,
) -> Page[ApiKeyPublic]:
    if Scope.KEYS_READ not in actor.scopes and Scope.KEYS_SELF not in actor.scopes:
        raise errors.InsufficientScope(msg("listing keys needs keys:read or keys:self"))
    rows, cursor = await service.list_keys(session, actor, page, principal_id, created_by_key_id)
    return Page(items=[_public(k, p, now) for k, p in rows], next_cursor=cursor)


@router.get(
    "/api-keys/{key_id}",
    operation_id="get_api_key",
    summary="Read one API key (never its secret)",
    description="Any key: operators and auditors read any key, others only their own principal's. Never shows the "
    "secret; changes nothing. Answers `not_found` when the key does not exist or is not yours.",
    response_model=ApiKeyPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_api_key(
    key_id: uuid.UUID,
    session: Session,
    now: Now,
    actor: Annotated[Actor, Depends(current_actor)],
) -> ApiKeyPublic:
    key, principal = await service.get_key(session, actor, key_id)
    return _public(key, principal, now)


@router.post(
    "/api-keys/{key_id}/revoke",
    operation_id="revoke_api_key",
    summary="Revoke an API key at once (operators: any key; others: their own)",
    description="A key with `keys:write` (operators) revokes any key, one with `keys:self` its own principal's. "
    "The key stops working at once, in every process, and the audit event `api_key.revoked` is recorded; revoking "
    "a revoked key changes nothing. Answers `not_found` when the key does not exist or is not yours, and "
    "`replaced_key_manages_no_keys` when the calling key was rotated (in its grace period it may revoke only "
    "itself).",
    response_model=ApiKeyPublic,
    responses=responses(*AUTH_ERRORS, errors.ReplacedKeyManagesNoKeys, errors.NotFound),
)
async def revoke_api_key(
    key_id: uuid.UUID,
    body: ApiKeyRevoke,
    session: Session,
    now: Now,
    actor: Annotated[Actor, Depends(current_actor)],
) -> ApiKeyPublic:
    _need_key_management(actor)
    key, principal = await service.revoke_key(session, actor, key_id, body.reason, now)
    return _public(key, principal, now)


@router.post(
    "/api-keys/{key_id}/rotate",
    operation_id="rotate_api_key",
    summary="Replace an API key with a new one; the old one stops after a grace period",
    description="A key with `keys:write` rotates any key, one with `keys:self` its own principal's. A successor "
    "with the same principal, name and scopes is created, its secret shown in this answer only, and the old key "
    "keeps working for `grace_seconds` (0: it stops at once); audit events `api_key.rotated` and "
    "`api_key.created`. The successor expires when the old key did, and never later than the calling key. "
    "Refused with `scope_escalation`, `not_found`, `conflict` (the key is expired or revoked), "
    "`key_being_replaced` (already rotated: rotate its successor), `replaced_key_manages_no_keys` (the calling "
    "key was itself rotated) or `too_many_live_keys`.",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=responses(*AUTH_ERRORS, errors.ScopeEscalation, errors.ReplacedKeyManagesNoKeys, errors.NotFound,
                        errors.Conflict, errors.KeyBeingReplaced, errors.TooManyLiveKeys),
)
async def rotate_api_key(
    key_id: uuid.UUID,
    body: ApiKeyRotate,
    session: Session,
    now: Now,
    actor: Annotated[Actor, Depends(current_actor)],
    response: Response,
    settings: Annotated[Settings, Depends(get_settings)],
) -> ApiKeyCreated:
    _need_key_management(actor)
    issued = await service.rotate_key(session, actor, key_id, body.grace_seconds, now,
                                      max_live_keys=settings.max_live_keys_per_principal)
    response.headers["Location"] = f"/v1/api-keys/{issued.key.id}"
    return _created(issued, now, response)


def _need_key_management(actor: Actor) -> None:
    if Scope.KEYS_WRITE not in actor.scopes and Scope.KEYS_SELF not in actor.scopes:
        raise errors.InsufficientScope(msg("managing keys needs keys:write or keys:self"))
