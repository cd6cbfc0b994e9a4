"""API keys: create, authenticate, rotate, revoke. Keys are shown once and stored as hashes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.apikeys import repository
from services.voucher.apikeys.cache import CachedKey, announce_change, announce_created
from services.voucher.apikeys.rules import Role, Scope, grantable, hash_key, new_key, scopes_for
from services.voucher.audit import service as audit
from services.voucher.db import PageRequest
from services.voucher.errors import (
    ApiKeyExpired,
    ApiKeyRevoked,
    Conflict,
    InvalidApiKey,
    KeyBeingReplaced,
    NotFound,
    ReplacedKeyManagesNoKeys,
    ScopeEscalation,
    TooManyLiveKeys,
    ValidationFailed,
    field_error,
)
from services.voucher.i18n import Status, msg
from services.voucher.tables import ApiKey, Enterprise, Principal, Provider


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    principal: Principal
    secret: str


def key_status(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


async def lookup(session: AsyncSession, secret_hash: str) -> CachedKey | None:
    """What authentication needs to know about the key with this hash (None: no such key)."""
    found = await repository.key_with_principal(session, secret_hash)
    if found is None:
        return None
    key, principal = found
    return CachedKey(
        key_id=key.id, prefix=key.prefix, scopes=tuple(key.scopes), expires_at=key.expires_at,
        revoked_at=key.revoked_at, principal_id=principal.id, role=principal.role,
        enterprise_id=principal.enterprise_id, provider_id=principal.provider_id,
    )


async def live_hashes(session: AsyncSession, now: datetime) -> frozenset[str]:
    """The SHA-256 of every key that works now (the failed-login throttle's list)."""
    return frozenset(await repository.live_hashes(session, now))


def actor_for(key: CachedKey | None, now: datetime) -> Actor:
    """The actor behind a looked-up key; 401 for unknown, revoked or expired keys."""
    if key is None:
        raise InvalidApiKey(msg("no such API key; check it was copied whole"))
    _refuse_ended(key.prefix, key.revoked_at, key.expires_at, now)
    return Actor(
        principal_id=key.principal_id,
        role=Role(key.role),
        key_id=key.key_id,
        scopes=frozenset(Scope(s) for s in key.scopes),
        enterprise_id=key.enterprise_id,
        provider_id=key.provider_id,
    )


def _refuse_ended(prefix: str, revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> None:
    """401 for a key revoked, or expired by `now`."""
    if revoked_at is not None:
        raise ApiKeyRevoked(msg("key {prefix} was revoked at {revoked_at}", prefix=prefix, revoked_at=revoked_at))
    if expires_at is not None and expires_at <= now:
        raise ApiKeyExpired(msg("key {prefix} expired at {expires_at}", prefix=prefix, expires_at=expires_at))


async def _principal_for(
    session: AsyncSession,
    *,
    role: Role,
    principal_id: uuid.UUID | None,
    principal_name: str | None,
    enterprise_id: uuid.UUID | None,
    provider_id: uuid.UUID | None,
    now: datetime,
) -> Principal:
    errors: list[dict[str, Any]] = []
    if role is Role.ENTERPRISE and enterprise_id is None:
        errors.append(field_error("enterprise_id", msg("an enterprise key needs enterprise_id")))
    if role is Role.PROVIDER and provider_id is None:
        errors.append(field_error("provider_id", msg("a provider key needs provider_id")))
    if role is not Role.ENTERPRISE and enterprise_id is not None:
        errors.append(field_error("enterprise_id", msg("only enterprise keys are bound to an enterprise")))
    if role is not Role.PROVIDER and provider_id is not None:
        errors.append(field_error("provider_id", msg("only provider keys are bound to a provider")))
    if errors:
        raise ValidationFailed(errors)

    if role in (Role.ENTERPRISE, Role.PROVIDER):
        tenant: Enterprise | Provider | None
        if role is Role.ENTERPRISE:
            tenant = await session.get(Enterprise, enterprise_id)
        else:
            tenant = await session.get(Provider, provider_id)
        if tenant is None:
            if role is Role.ENTERPRISE:
                raise NotFound(msg("no enterprise with id {enterprise_id}", enterprise_id=enterprise_id))
            raise NotFound(msg("no provider with id {provider_id}", provider_id=provider_id))
        principal = await repository.principal_for_tenant(
            session, enterprise_id=enterprise_id, provider_id=provider_id
        )
        if principal is None:
            principal = Principal(
                role=role.value,
                name=tenant.name,
                enterprise_id=enterprise_id,
                provider_id=provider_id,
                created_at=now,
            )
            await repository.add(session, principal)
        return principal

    if principal_id is not None:
        principal = await repository.get_principal(session, principal_id)
        if principal is None or principal.role != role.value:
            raise NotFound(msg("no {role} principal with id {principal_id}", role=role, principal_id=principal_id))
        return principal
    if not principal_name:
        raise ValidationFailed(
            [field_error("principal_name", msg("name the {role} (a person or office) this key is for", role=role))]
        )
    principal = Principal(role=role.value, name=principal_name, created_at=now)
    await repository.add(session, principal)
    return principal


def _check_grant(actor: Actor | None, scopes: frozenset[Scope] | list[str]) -> None:
    """A key hands out (by creation or rotation) only scopes it could use itself; the CLI and
    jobs (no actor) are the office's root of trust."""
    if actor is None:
        return
    excess = {Scope(s) for s in scopes} - grantable(actor.role, actor.scopes)
    if excess:
        names = sorted(s.value for s in excess)
        raise ScopeEscalation(
            msg("this key does not hold {scopes}, so it cannot give them to another key", scopes=names),
            scopes_not_held=names,
        )


async def _caller_deadline(session: AsyncSession, actor: Actor | None, now: datetime) -> datetime | None:
    """When the calling key stops working (None: never, or the CLI). A key lives no longer than
    the key that made or rotated it: a key handed out for an hour (or a rotated key in its grace
    period) cannot leave behind one that outlives it. A key that a rotation already replaced
    manages no keys at all: in its grace period a leaked key had rotated its own successor,
    revoking the owner's new key and taking one of its own (an independent review, December
    2026). The calling key is read again, as committed and held FOR SHARE: a key revoked or
    expired since its request was authenticated (a body sent slowly, a lock waited on) manages
    no keys; a leaked key had finished a rotation 80 s after its revocation (an independent
    review, December 2026)."""
    if actor is None or actor.key_id is None:
        return None
    caller = await repository.key_by_id(session, actor.key_id, for_share=True)
    if caller is None:
        return None
    _refuse_ended(caller.prefix, caller.revoked_at, caller.expires_at, now)
    successor = await repository.successor_of(session, caller.id)
    if successor is not None:
        raise ReplacedKeyManagesNoKeys(
            msg("this key ({prefix}) was rotated and only works until its grace period ends, so it may not create, "
                "rotate or revoke keys; use its successor {successor}", prefix=caller.prefix, successor=successor.prefix),
        )
    return caller.expires_at


def _no_later(expires_at: datetime | None, deadline: datetime | None) -> datetime | None:
    """The earlier of two expiries (None: never)."""
    if deadline is None:
        return expires_at
    return deadline if expires_at is None else min(expires_at, deadline)


async def issue_key(
    session: AsyncSession,
    *,
    role: Role,
    name: str,
    now: datetime,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    principal_id: uuid.UUID | None = None,
    principal_name: str | None = None,
    enterprise_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
    created_by: Actor | None = None,
    max_live_keys: int | None = None,
) -> IssuedKey:
    """A new key for a principal (found or created). Its scopes never exceed its role's; the
    principal may hold at most `max_live_keys` live keys (the API's limit; the CLI sets none)."""
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed([field_error("expires_at", msg("must be in the future"))])
    try:
        granted = scopes_for(role, scopes)
    except ValueError as exc:  # scopes_for's reason is a message for people
        raise ValidationFailed([field_error("scopes", exc.args[0])]) from exc
    _check_grant(created_by, granted)
    deadline = await _caller_deadline(session, created_by, now)
    if deadline is not None and expires_at is not None and expires_at > deadline:
        raise ValidationFailed([field_error(
            "expires_at", msg("must not be later than {deadline}, when the key creating it expires",
                              deadline=deadline))])
    expires_at = _no_later(expires_at, deadline)  # none given: the creating key's own expiry
    principal = await _principal_for(
        session,
        role=role,
        principal_id=principal_id,
        principal_name=principal_name,
        enterprise_id=enterprise_id,
        provider_id=provider_id,
        now=now,
    )
    if max_live_keys is not None:
        await _check_live_keys(session, principal.id, max_live_keys, now, adding=1)
    secret, prefix = new_key()
    key = ApiKey(
        principal_id=principal.id,
        name=name,
        prefix=prefix,
        secret_hash=hash_key(secret),
        scopes=sorted(s.value for s in granted),
        created_at=now,
        expires_at=expires_at,
        created_by_key_id=created_by.key_id if created_by else None,
    )
    await repository.add(session, key)
    await announce_created(session)  # every process's failed-login throttle learns its prefix
    await _key_event(session, "api_key.created", key, principal, None, now)
    return IssuedKey(key, principal, secret)


async def _check_live_keys(session: AsyncSession, principal_id: uuid.UUID, limit: int, now: datetime, *,
                           adding: int) -> None:
    """409 when `adding` more live keys would take the principal past `limit`. The principal's
    row is locked first, so two requests at once cannot both take the last place."""
    await repository.lock_principal(session, principal_id)
    live = await repository.live_key_count(session, principal_id, now)
    if live + adding > limit:
        raise TooManyLiveKeys(
            msg("this principal already holds {live} live keys, the most it may hold is {limit}; "
                "revoke one it no longer uses first", live=live, limit=limit),
            live_keys=live, max_live_keys=limit,
        )


async def _key_event(
    session: AsyncSession, action: str, key: ApiKey, principal: Principal, before: dict[str, Any] | None,
    now: datetime,
) -> None:
    """The key's public facts only: its secret's hash never goes into the audit trail."""
    await audit.record(
        session, action, "api_key", key.id, now=now, before=before,
        after={"principal_id": key.principal_id, "role": principal.role, "name": key.name, "prefix": key.prefix,
               "scopes": list(key.scopes), "expires_at": key.expires_at, "revoked_at": key.revoked_at,
               "revoked_reason": key.revoked_reason, "rotated_from_id": key.rotated_from_id},
        enterprise_id=principal.enterprise_id, provider_id=principal.provider_id,
    )


async def list_keys(
    session: AsyncSession, actor: Actor, page: PageRequest, principal_id: uuid.UUID | None = None,
    created_by_key_id: uuid.UUID | None = None,
) -> tuple[list[tuple[ApiKey, Principal]], str | None]:
    """Operators and auditors see every key; others only their own principal's."""
    keys, cursor = await repository.list_keys(session, actor, page, principal_id, created_by_key_id)
    principals = await repository.principals_by_ids(session, {k.principal_id for k in keys})
    return [(k, principals[k.principal_id]) for k in keys], cursor


async def get_key(
    session: AsyncSession, actor: Actor, key_id: uuid.UUID
) -> tuple[ApiKey, Principal]:
    key = await repository.get_key(session, actor, key_id, own_only=False)
    if key is None:
        raise NotFound(msg("no API key with id {key_id}", key_id=key_id))
    principal = await repository.get_principal(session, key.principal_id)
    assert principal is not None
    return key, principal


async def _key_to_change(
    session: AsyncSession, actor: Actor, key_id: uuid.UUID
) -> ApiKey:
    """The key to revoke or rotate, locked; the caller's own row is locked with it, in id order,
    as `_caller_deadline` reads it again (FOR SHARE) before the change."""
    own_only = Scope.KEYS_WRITE not in actor.scopes
    # A key that may change only its own principal's keys is told 404 before anything is
    # locked: locking first, a tenant's refused call held another principal's key row until it
    # ended (an independent review). A key's principal never changes, so the look is final.
    if own_only and await repository.get_key(session, actor, key_id, own_only=True) is None:
        raise NotFound(msg("no API key with id {key_id}", key_id=key_id))
    if actor.key_id is not None and actor.key_id != key_id:
        await repository.lock_in_id_order(session, [key_id, actor.key_id])
    key = await repository.get_key(session, actor, key_id, own_only=own_only, for_update=True)
    if key is None:
        raise NotFound(msg("no API key with id {key_id}", key_id=key_id))
    return key


async def revoke_key(
    session: AsyncSession, actor: Actor, key_id: uuid.UUID, reason: str, now: datetime
) -> tuple[ApiKey, Principal]:
    """Revocation is immediate and final. Revoking a revoked key is a no-op."""
    key = await _key_to_change(session, actor, key_id)
    if key.id != actor.key_id:  # a key may always revoke itself
        await _caller_deadline(session, actor, now)
    principal = await repository.get_principal(session, key.principal_id)
    assert principal is not None
    if key.revoked_at is None:
        key.revoked_at = now
        key.revoked_reason = reason
        await session.flush()
        await announce_change(session, key.secret_hash)
        await _key_event(session, "api_key.revoked", key, principal, {"revoked_at": None}, now)
    return key, principal


async def rotate_key(
    session: AsyncSession, actor: Actor, key_id: uuid.UUID, grace_seconds: int, now: datetime, *,
    max_live_keys: int | None = None,
) -> IssuedKey:
    """A new key with the same principal and scopes; the old one stops working after the grace
    period (at once when 0), so integrations can switch without downtime. A key that a
    rotation already replaced cannot be rotated again (rotate its successor), and the
    principal's live keys stay within `max_live_keys`."""
    old = await _key_to_change(session, actor, key_id)
    # Rotation hands the caller a working secret with the old key's scopes: the same authority
    # as creating that key (another principal's key only with keys:write, by _key_to_change).
    _check_grant(actor, old.scopes)
    if key_status(old, now) != "active":
        raise Conflict(msg("key {prefix} is {status} and cannot be rotated",
                           prefix=old.prefix, status=Status(key_status(old, now))))
    successor = await repository.successor_of(session, old.id)
    if successor is not None:
        raise KeyBeingReplaced(
            msg("key {prefix} was already rotated (its successor is {successor}) and only works until "
                "its grace period ends; rotate the successor instead", prefix=old.prefix, successor=successor.prefix),
            successor_id=str(successor.id),
        )
    deadline = await _caller_deadline(session, actor, now)
    if max_live_keys is not None:
        await _check_live_keys(session, old.principal_id, max_live_keys, now, adding=0 if grace_seconds == 0 else 1)
    principal = await repository.get_principal(session, old.principal_id)
    assert principal is not None
    secret, prefix = new_key()
    new = ApiKey(
        principal_id=old.principal_id,
        name=old.name,
        prefix=prefix,
        secret_hash=hash_key(secret),
        scopes=list(old.scopes),
        created_at=now,
        expires_at=_no_later(old.expires_at, deadline),  # no later than the rotating key's either
        rotated_from_id=old.id,
        created_by_key_id=actor.key_id,
    )
    before = {"expires_at": old.expires_at, "revoked_at": old.revoked_at}
    if grace_seconds == 0:
        old.revoked_at = now
        old.revoked_reason = "rotated"
    else:
        ends = now + timedelta(seconds=grace_seconds)
        old.expires_at = ends if old.expires_at is None else min(old.expires_at, ends)
    await repository.add(session, new)
    await announce_change(session, old.secret_hash)
    await announce_created(session)
    await _key_event(session, "api_key.rotated", old, principal, before, now)
    await _key_event(session, "api_key.created", new, principal, None, now)
    return IssuedKey(new, principal, secret)

