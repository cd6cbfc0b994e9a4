"""Enterprise registry use cases."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.audit import service as audit
from services.voucher.db import PageRequest
from services.voucher.enterprises import repository
from services.voucher.errors import AlreadyExists, NotFound
from services.voucher.i18n import msg
from services.voucher.tables import Enterprise


async def register(session: AsyncSession, data: dict[str, Any], now: datetime) -> Enterprise:
    """One record per USCC: registering the same code twice is refused."""
    if await repository.uscc_taken(session, data["uscc"]):
        raise AlreadyExists(msg("an enterprise with USCC {uscc} is already registered", uscc=data["uscc"]))
    enterprise = Enterprise(**data, created_at=now, updated_at=now)
    await repository.add(session, enterprise)
    await audit.record(session, "enterprise.registered", "enterprise", enterprise.id, now=now, after=_public(enterprise),
                       enterprise_id=enterprise.id)
    return enterprise


def _public(enterprise: Enterprise) -> dict[str, Any]:
    return {k: v for k, v in enterprise.model_dump().items() if k not in ("id", "created_at", "updated_at", "version")}


async def get_enterprise(
    session: AsyncSession, actor: Actor, enterprise_id: uuid.UUID, *, for_update: bool = False
) -> Enterprise:
    """404 both when it does not exist and when it is someone else's: existence never leaks."""
    enterprise = await repository.get(session, actor, enterprise_id, for_update=for_update)
    if enterprise is None:
        raise NotFound(msg("no enterprise with id {enterprise_id}", enterprise_id=enterprise_id))
    return enterprise


async def list_enterprises(
    session: AsyncSession,
    actor: Actor,
    page: PageRequest,
    *,
    region_code: str | None = None,
    uscc: str | None = None,
) -> tuple[list[Enterprise], str | None]:
    rows, cursor = await repository.list_page(session, actor, page, region_code=region_code, uscc=uscc)
    return list(rows), cursor


async def update(
    session: AsyncSession,
    actor: Actor,
    enterprise_id: uuid.UUID,
    changes: dict[str, Any],
    *,
    check_version: Callable[[int], None],
    now: datetime,
) -> Enterprise:
    """Partial update under a row lock after the caller's ETag check."""
    enterprise = await get_enterprise(session, actor, enterprise_id, for_update=True)
    check_version(enterprise.version)
    changed = {k: v for k, v in changes.items() if getattr(enterprise, k) != v}
    before = {k: getattr(enterprise, k) for k in changed}
    if changed:
        for field, value in changed.items():
            setattr(enterprise, field, value)
        enterprise.version += 1
        enterprise.updated_at = now
        await session.flush()
        await audit.record(session, "enterprise.updated", "enterprise", enterprise.id, now=now, before=before, after=changed,
                           enterprise_id=enterprise.id)
    return enterprise
