"""Every query on enterprises. Tenant isolation lives here: an enterprise key's queries are
always narrowed to its own row, so no route can forget it."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, false, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Role
from services.voucher.db import PageRequest, paginate
from services.voucher.tables import Enterprise


def visible(actor: Actor) -> Select[Enterprise]:
    stmt = select(Enterprise)
    if actor.sees_everything:
        return stmt
    if actor.role is Role.ENTERPRISE and actor.enterprise_id is not None:
        return stmt.where(col(Enterprise.id) == actor.enterprise_id)
    return stmt.where(false())


async def get(
    session: AsyncSession, actor: Actor, enterprise_id: uuid.UUID, *, for_update: bool = False
) -> Enterprise | None:
    stmt = visible(actor).where(col(Enterprise.id) == enterprise_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def uscc_taken(session: AsyncSession, uscc: str) -> bool:
    stmt = select(col(Enterprise.id)).where(col(Enterprise.uscc) == uscc)
    return (await session.execute(stmt)).first() is not None


async def list_page(
    session: AsyncSession,
    actor: Actor,
    page: PageRequest,
    *,
    region_code: str | None,
    uscc: str | None,
) -> tuple[Any, str | None]:
    stmt = visible(actor)
    if region_code is not None:
        stmt = stmt.where(col(Enterprise.region_code) == region_code)
    if uscc is not None:
        stmt = stmt.where(col(Enterprise.uscc) == uscc)
    return await paginate(session, stmt, col(Enterprise.id), page)


async def add(session: AsyncSession, row: Enterprise) -> None:
    session.add(row)
    await session.flush()
