"""Every query on principals and API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.db import PageRequest, paginate
from services.voucher.tables import ApiKey, Principal


async def key_with_principal(
    session: AsyncSession, secret_hash: str
) -> tuple[ApiKey, Principal] | None:
    stmt = (
        select(ApiKey, Principal)
        .join(Principal, col(Principal.id) == col(ApiKey.principal_id))
        .where(col(ApiKey.secret_hash) == secret_hash)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


def _visible_keys(actor: Actor) -> Select[ApiKey]:
    """Staff keys that may read or manage all keys see them all; every other key, including a
    staff key narrowed to keys:self, sees only its own principal's."""
    stmt = select(ApiKey)
    sees_all_keys = actor.sees_everything and bool({Scope.KEYS_READ, Scope.KEYS_WRITE} & actor.scopes)
    if not sees_all_keys:
        stmt = stmt.where(col(ApiKey.principal_id) == actor.principal_id)
    return stmt


async def get_key(
    session: AsyncSession, actor: Actor, key_id: uuid.UUID, *, own_only: bool, for_update: bool = False
) -> ApiKey | None:
    stmt = _visible_keys(actor).where(col(ApiKey.id) == key_id)
    if own_only:
        stmt = stmt.where(col(ApiKey.principal_id) == actor.principal_id)
    if for_update:  # refresh an object the session read before the lock: decide on the locked row
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_keys(
    session: AsyncSession, actor: Actor, page: PageRequest, principal_id: uuid.UUID | None,
    created_by_key_id: uuid.UUID | None = None,
) -> tuple[Any, str | None]:
    stmt = _visible_keys(actor)
    if principal_id is not None:
        stmt = stmt.where(col(ApiKey.principal_id) == principal_id)
    if created_by_key_id is not None:
        stmt = stmt.where(col(ApiKey.created_by_key_id) == created_by_key_id)
    return await paginate(session, stmt, col(ApiKey.id), page)


async def get_principal(session: AsyncSession, principal_id: uuid.UUID) -> Principal | None:
    return await session.get(Principal, principal_id)


async def principal_for_tenant(
    session: AsyncSession, *, enterprise_id: uuid.UUID | None, provider_id: uuid.UUID | None
) -> Principal | None:
    stmt = select(Principal)
    if enterprise_id is not None:
        stmt = stmt.where(col(Principal.enterprise_id) == enterprise_id)
    else:
        stmt = stmt.where(col(Principal.provider_id) == provider_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def principals_by_ids(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, Principal]:
    if not ids:
        return {}
    rows = (await session.execute(select(Principal).where(col(Principal.id).in_(ids)))).scalars()
    return {p.id: p for p in rows}


async def add(session: AsyncSession, *rows: Any) -> None:
    session.add_all(rows)
    await session.flush()


async def active_demo_keys(
    session: AsyncSession, name: str, *, staff_ids: list[uuid.UUID], enterprise_id: uuid.UUID, provider_id: uuid.UUID
) -> list[ApiKey]:
    """The live keys called `name` of the demo's principals: its office and audit bureau (by
    id), its enterprise and its provider."""
    stmt = select(ApiKey).join(Principal, col(Principal.id) == col(ApiKey.principal_id)).where(
        col(ApiKey.name) == name, col(ApiKey.revoked_at).is_(None),
        or_(col(Principal.id).in_(staff_ids), col(Principal.enterprise_id) == enterprise_id,
            col(Principal.provider_id) == provider_id))
    return list((await session.execute(stmt)).scalars())


async def lock_principal(session: AsyncSession, principal_id: uuid.UUID) -> None:
    """Serialise what is counted per principal before one more is added: its live keys, and its
    webhook endpoints (webhooks/service.py)."""
    # FOR NO KEY UPDATE: the principal's writes, whose idempotency records' foreign key takes FOR
    # KEY SHARE on the row, do not wait on a key's creation.
    stmt = select(col(Principal.id)).where(col(Principal.id) == principal_id).with_for_update(key_share=True)
    await session.execute(stmt)


async def live_key_count(session: AsyncSession, principal_id: uuid.UUID, now: datetime) -> int:
    stmt = select(func.count()).select_from(ApiKey).where(
        col(ApiKey.principal_id) == principal_id, col(ApiKey.revoked_at).is_(None),
        or_(col(ApiKey.expires_at).is_(None), col(ApiKey.expires_at) > now))
    return int((await session.execute(stmt)).scalar_one())


async def key_by_id(session: AsyncSession, key_id: uuid.UUID, *, for_share: bool = False) -> ApiKey | None:
    """`for_share`: read as committed now and held FOR SHARE to the commit (PostgreSQL), so a
    revocation (FOR UPDATE) waits for this transaction or this one sees it."""
    if not for_share:
        return await session.get(ApiKey, key_id)
    stmt = select(ApiKey).where(col(ApiKey.id) == key_id).with_for_update(read=True) \
        .execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalars().first()


async def lock_in_id_order(session: AsyncSession, key_ids: list[uuid.UUID]) -> None:
    """Lock these keys' rows (FOR UPDATE, PostgreSQL) in id order: a key changing another takes
    both rows so, whichever of the two calls, and two keys revoking or rotating each other at
    once wait instead of deadlocking (an independent review, December 2026)."""
    stmt = select(col(ApiKey.id)).where(col(ApiKey.id).in_(key_ids)).order_by(col(ApiKey.id)).with_for_update()
    await session.execute(stmt)


async def successor_of(session: AsyncSession, key_id: uuid.UUID) -> ApiKey | None:
    """The key a rotation of `key_id` made, if any."""
    stmt = select(ApiKey).where(col(ApiKey.rotated_from_id) == key_id).limit(1)
    return (await session.execute(stmt)).scalars().first()


async def live_hashes(session: AsyncSession, now: datetime) -> list[str]:
    stmt = select(col(ApiKey.secret_hash)).where(col(ApiKey.revoked_at).is_(None),
                                            or_(col(ApiKey.expires_at).is_(None), col(ApiKey.expires_at) > now))
    return list((await session.execute(stmt)).scalars())
