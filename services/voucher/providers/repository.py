"""Every query on providers. A provider key's queries are narrowed to its own row here."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, false, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Role
from services.voucher.db import PageRequest, paginate
from services.voucher.programmes.rules import ProgrammeStatus
from services.voucher.tables import Programme, ProgrammeEnrolment, Provider


def visible(actor: Actor) -> Select[Provider]:
    stmt = select(Provider)
    if actor.sees_everything:
        return stmt
    if actor.role is Role.PROVIDER and actor.provider_id is not None:
        return stmt.where(col(Provider.id) == actor.provider_id)
    return stmt.where(false())


async def get(
    session: AsyncSession, actor: Actor, provider_id: uuid.UUID, *, for_update: bool = False
) -> Provider | None:
    stmt = visible(actor).where(col(Provider.id) == provider_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def uscc_taken(session: AsyncSession, uscc: str) -> bool:
    stmt = select(col(Provider.id)).where(col(Provider.uscc) == uscc)
    return (await session.execute(stmt)).first() is not None


async def list_page(
    session: AsyncSession, actor: Actor, page: PageRequest, *, status: str | None
) -> tuple[list[Provider], str | None]:
    stmt = visible(actor)
    if status is not None:
        stmt = stmt.where(col(Provider.status) == status)
    rows, cursor = await paginate(session, stmt, col(Provider.id), page)
    return list(rows), cursor


async def add(session: AsyncSession, row: Provider) -> None:
    session.add(row)
    await session.flush()


async def enrolled_programmes_of_kinds_not(
    session: AsyncSession, provider_id: uuid.UUID, kinds: list[str]
) -> list[tuple[uuid.UUID, str, str]]:
    """(id, code, kind) of the programmes not archived that the provider is enrolled in and whose
    kind is not among `kinds`."""
    rows = await session.execute(
        select(col(Programme.id), col(Programme.code), col(Programme.kind))
        .join(ProgrammeEnrolment, col(ProgrammeEnrolment.programme_id) == col(Programme.id))
        .where(col(ProgrammeEnrolment.provider_id) == provider_id, col(ProgrammeEnrolment.withdrawn_at).is_(None),
               col(Programme.status) != ProgrammeStatus.ARCHIVED.value, col(Programme.kind).not_in(kinds))
        .order_by(col(Programme.code))
    )
    return [(r[0], r[1], r[2]) for r in rows]
