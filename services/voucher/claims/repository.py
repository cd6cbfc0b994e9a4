"""Every query on claims. An enterprise sees its own claims; operators and auditors all;
providers none (a claim is between the enterprise and the programme)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, false, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Role
from services.voucher.claims.rules import ClaimStatus
from services.voucher.db import PageRequest, paginate
from services.voucher.tables import Claim, ClaimDocument


def visible(actor: Actor) -> Select[Claim]:
    stmt = select(Claim)
    if actor.sees_everything:
        return stmt
    if actor.role is Role.ENTERPRISE and actor.enterprise_id is not None:
        return stmt.where(col(Claim.enterprise_id) == actor.enterprise_id)
    return stmt.where(false())


async def get(session: AsyncSession, actor: Actor, claim_id: uuid.UUID, *, for_update: bool = False) -> Claim | None:
    stmt = visible(actor).where(col(Claim.id) == claim_id).execution_options(populate_existing=True)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(session: AsyncSession, actor: Actor, page: PageRequest, *, status: str | None,
                    programme_id: uuid.UUID | None) -> tuple[list[Claim], str | None]:
    stmt = visible(actor)
    if status is not None:
        stmt = stmt.where(col(Claim.status) == status)
    if programme_id is not None:
        stmt = stmt.where(col(Claim.programme_id) == programme_id)
    rows, cursor = await paginate(session, stmt, col(Claim.id), page)
    return list(rows), cursor


async def live_invoice(session: AsyncSession, invoice_key: str) -> Claim | None:
    """The standing claim of an invoice (its national identity), whoever filed it."""
    stmt = select(Claim).where(col(Claim.invoice_key) == invoice_key,
                               col(Claim.status) != ClaimStatus.REJECTED.value)
    return (await session.execute(stmt)).scalars().first()


async def live_documents(session: AsyncSession, digests: list[str],
                         enterprise_id: uuid.UUID | None = None) -> list[str]:
    """Which of these documents a standing claim holds (of one enterprise's claims, if named)."""
    stmt = select(col(ClaimDocument.sha256)).where(col(ClaimDocument.sha256).in_(digests),
                                                   col(ClaimDocument.released_at).is_(None))
    if enterprise_id is not None:
        stmt = stmt.join(Claim, col(Claim.id) == col(ClaimDocument.claim_id)).where(
            col(Claim.enterprise_id) == enterprise_id)
    return list((await session.execute(stmt)).scalars().all())


async def documents_of(session: AsyncSession, claim_id: uuid.UUID) -> list[ClaimDocument]:
    stmt = select(ClaimDocument).where(col(ClaimDocument.claim_id) == claim_id)
    return list((await session.execute(stmt)).scalars().all())


async def add_all(session: AsyncSession, rows: list[Any]) -> None:
    session.add_all(rows)
    await session.flush()
