"""Every query on applications, their history and contract references. Tenant isolation
lives here: an enterprise sees its own applications, operators and auditors all, providers none."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Select, and_, false, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Role
from services.voucher.applications.rules import OPEN, ApplicationStatus
from services.voucher.db import PageRequest, encode_cursor, paginate
from services.voucher.tables import (
    Application,
    ApplicationTransition,
    ContractReference,
    Enterprise,
)


def visible(actor: Actor) -> Select[Application]:
    stmt = select(Application)
    if actor.sees_everything:
        return stmt
    if actor.role is Role.ENTERPRISE and actor.enterprise_id is not None:
        return stmt.where(col(Application.enterprise_id) == actor.enterprise_id)
    return stmt.where(false())


async def get(
    session: AsyncSession, actor: Actor, application_id: uuid.UUID, *, for_update: bool = False
) -> Application | None:
    stmt = (
        visible(actor).where(col(Application.id) == application_id).execution_options(populate_existing=True)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(
    session: AsyncSession,
    actor: Actor,
    page: PageRequest,
    *,
    programme_id: uuid.UUID | None,
    enterprise_id: uuid.UUID | None,
    status: str | None,
    now: datetime,
) -> tuple[list[Application], str | None]:
    stmt = visible(actor)
    if programme_id is not None:
        stmt = stmt.where(col(Application.programme_id) == programme_id)
    if enterprise_id is not None:
        stmt = stmt.where(col(Application.enterprise_id) == enterprise_id)
    if status is not None:
        # By the status a reader sees: a publicity that has ended is issued, written yet or not
        # (a read issues at most SETTLE_ON_READ of them; the worker the rest).
        publicity = col(Application.status) == ApplicationStatus.PUBLICITY.value
        ends = col(Application.publicity_ends_at)
        if status == ApplicationStatus.ISSUED.value:
            stmt = stmt.where(or_(col(Application.status) == status, and_(publicity, ends <= now)))
        elif status == ApplicationStatus.PUBLICITY.value:
            stmt = stmt.where(publicity, or_(ends.is_(None), ends > now))
        else:
            stmt = stmt.where(col(Application.status) == status)
    stmt = stmt.execution_options(populate_existing=True)
    rows, cursor = await paginate(session, stmt, col(Application.id), page)
    return list(rows), cursor


async def open_application(
    session: AsyncSession, programme_id: uuid.UUID, enterprise_id: uuid.UUID
) -> Application | None:
    stmt = select(Application).where(
        col(Application.programme_id) == programme_id,
        col(Application.enterprise_id) == enterprise_id,
        col(Application.status).in_([s.value for s in OPEN]),
    )
    return (await session.execute(stmt)).scalars().first()


async def live_contract(session: AsyncSession, provider_id: uuid.UUID, number: str) -> ContractReference | None:
    stmt = select(ContractReference).where(
        col(ContractReference.provider_id) == provider_id,
        col(ContractReference.number) == number,
        col(ContractReference.released_at).is_(None),
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def take_contract(session: AsyncSession, reference_id: uuid.UUID, claim_id: uuid.UUID) -> bool:
    """A claim takes over its voucher's application's live contract reference, if no claim has
    it yet; whether it did."""
    stmt = (update(ContractReference)
            .where(col(ContractReference.id) == reference_id, col(ContractReference.claim_id).is_(None),
                   col(ContractReference.released_at).is_(None))
            .values(claim_id=claim_id)
            .execution_options(synchronize_session="fetch"))
    result = await session.execute(stmt)
    return cast(CursorResult[Any], result).rowcount == 1  # an UPDATE's result is a CursorResult


async def contracts_of(session: AsyncSession, application_id: uuid.UUID) -> list[ContractReference]:
    stmt = select(ContractReference).where(
        col(ContractReference.application_id) == application_id,
        col(ContractReference.released_at).is_(None),
    )
    return list((await session.execute(stmt)).scalars().all())


async def add(session: AsyncSession, row: Any) -> None:
    session.add(row)
    await session.flush()


async def history(session: AsyncSession, application_id: uuid.UUID) -> list[ApplicationTransition]:
    stmt = (
        select(ApplicationTransition)
        .where(col(ApplicationTransition.application_id) == application_id)
        .order_by(col(ApplicationTransition.id))
    )
    return list((await session.execute(stmt)).scalars().all())


async def due_publicity(
    session: AsyncSession, now: datetime, limit: int, actor: Actor | None = None
) -> list[uuid.UUID]:
    """Applications whose publicity has ended but whose voucher is not written yet (of those
    `actor` may see, when given)."""
    stmt = (
        (visible(actor).with_only_columns(col(Application.id)) if actor is not None
         else select(col(Application.id)))
        .where(
            col(Application.status) == ApplicationStatus.PUBLICITY.value,
            col(Application.publicity_ends_at) <= now,
        )
        .order_by(col(Application.publicity_ends_at))
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars().all())


async def publicity_page(
    session: AsyncSession, programme_id: uuid.UUID, now: datetime, page: PageRequest
) -> tuple[list[tuple[Application, Enterprise]], str | None]:
    """Applications whose 公示 is running now, with their enterprise."""
    stmt = (
        select(Application, Enterprise)
        .join(Enterprise, col(Enterprise.id) == col(Application.enterprise_id))
        .where(
            col(Application.programme_id) == programme_id,
            col(Application.status) == ApplicationStatus.PUBLICITY.value,
            col(Application.publicity_ends_at) > now,
        )
    )
    if page.after is not None:
        stmt = stmt.where(col(Application.id) > page.after)
    rows = (await session.execute(stmt.order_by(col(Application.id)).limit(page.limit + 1))).all()
    pairs = [(a, e) for a, e in rows]
    if len(pairs) > page.limit:
        pairs = pairs[: page.limit]
        return pairs, encode_cursor(pairs[-1][0].id)
    return pairs, None


async def contracts_of_claim(session: AsyncSession, claim_id: uuid.UUID) -> list[ContractReference]:
    stmt = select(ContractReference).where(
        col(ContractReference.claim_id) == claim_id,
        col(ContractReference.released_at).is_(None),
    )
    return list((await session.execute(stmt)).scalars().all())
