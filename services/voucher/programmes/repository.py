"""Every query on programmes and enrolments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.voucher.actor import Actor
from services.voucher.applications.rules import OPEN as OPEN_APPLICATION
from services.voucher.claims.rules import ClaimStatus
from services.voucher.db import PageRequest, paginate
from services.voucher.programmes.rules import ProgrammeStatus
from services.voucher.redemption.rules import Payee
from services.voucher.settlement.rules import ItemKind, SettlementStatus
from services.voucher.tables import (
    Application,
    Claim,
    EligibilityRuleVersion,
    Programme,
    ProgrammeEnrolment,
    Provider,
    Redemption,
    RedemptionRefund,
    Settlement,
    SettlementItem,
    Voucher,
)
from services.voucher.vouchers.rules import VoucherStatus


def _visible(actor: Actor) -> Select[Programme]:
    """Drafts are the programme office's work in progress: only operators and auditors see them."""
    stmt = select(Programme)
    if not actor.sees_everything:
        stmt = stmt.where(col(Programme.status) != ProgrammeStatus.DRAFT.value)
    return stmt


async def get(
    session: AsyncSession, actor: Actor, programme_id: uuid.UUID, *, for_update: bool = False,
    for_share: bool = False,
) -> Programme | None:
    stmt = _visible(actor).where(col(Programme.id) == programme_id)
    if for_update or for_share:
        stmt = stmt.with_for_update(read=not for_update).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def code_taken(session: AsyncSession, code: str) -> bool:
    stmt = select(col(Programme.id)).where(col(Programme.code) == code)
    return (await session.execute(stmt)).first() is not None


async def list_page(
    session: AsyncSession,
    actor: Actor,
    page: PageRequest,
    *,
    status: str | None,
    kind: str | None,
) -> tuple[Any, str | None]:
    stmt = _visible(actor)
    if status is not None:
        stmt = stmt.where(col(Programme.status) == status)
    if kind is not None:
        stmt = stmt.where(col(Programme.kind) == kind)
    return await paginate(session, stmt, col(Programme.id), page)


async def add(session: AsyncSession, row: Any) -> None:
    session.add(row)
    await session.flush()


async def enrolment(
    session: AsyncSession, programme_id: uuid.UUID, provider_id: uuid.UUID, *, for_update: bool = False
) -> ProgrammeEnrolment | None:
    stmt = select(ProgrammeEnrolment).where(
        col(ProgrammeEnrolment.programme_id) == programme_id,
        col(ProgrammeEnrolment.provider_id) == provider_id,
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def enrolments_page(
    session: AsyncSession, programme_id: uuid.UUID, page: PageRequest, *, active_only: bool
) -> tuple[list[tuple[ProgrammeEnrolment, str]], str | None]:
    stmt = select(ProgrammeEnrolment).where(col(ProgrammeEnrolment.programme_id) == programme_id)
    if active_only:
        stmt = stmt.where(col(ProgrammeEnrolment.withdrawn_at).is_(None))
    rows, cursor = await paginate(session, stmt, col(ProgrammeEnrolment.id), page)
    names = dict(
        (
            await session.execute(
                select(col(Provider.id), col(Provider.name))
                .where(col(Provider.id).in_({r.provider_id for r in rows}))
            )
        ).all()
    )
    return [(r, names[r.provider_id]) for r in rows], cursor


async def rule_versions_page(
    session: AsyncSession, programme_id: uuid.UUID, page: PageRequest
) -> tuple[list[EligibilityRuleVersion], str | None]:
    stmt = select(EligibilityRuleVersion).where(col(EligibilityRuleVersion.programme_id) == programme_id)
    rows, cursor = await paginate(session, stmt, col(EligibilityRuleVersion.id), page)
    return list(rows), cursor


async def rule_version(
    session: AsyncSession, programme_id: uuid.UUID, version: int
) -> EligibilityRuleVersion | None:
    stmt = select(EligibilityRuleVersion).where(
        col(EligibilityRuleVersion.programme_id) == programme_id,
        col(EligibilityRuleVersion.version) == version,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def open_applications(session: AsyncSession, programme_id: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(Application).where(
        col(Application.programme_id) == programme_id,
        col(Application.status).in_([s.value for s in OPEN_APPLICATION]),
    )
    return int((await session.execute(stmt)).scalar_one())


async def live_vouchers(session: AsyncSession, programme_id: uuid.UUID, now: datetime) -> tuple[int, int]:
    """Vouchers of the programme neither expired nor revoked: value can still move on them (an
    exhausted voucher gets value back from a refund while it is valid); and how many of them
    are past their validity, their expiry not yet posted by the worker."""
    ended = [VoucherStatus.EXPIRED.value, VoucherStatus.REVOKED.value]
    stmt = select(func.count(), func.count().filter(col(Voucher.expires_at) <= now)).select_from(Voucher).where(
        col(Voucher.programme_id) == programme_id, col(Voucher.status).not_in(ended))
    live, due = (await session.execute(stmt)).one()
    return int(live), int(due)


async def open_settlements(session: AsyncSession, programme_id: uuid.UUID) -> int:
    """Settlements of the programme not yet paid or cancelled: an approved one can still be paid,
    whatever its lines' refunds have done to the payable balance since."""
    ended = [SettlementStatus.PAID.value, SettlementStatus.CANCELLED.value]
    stmt = select(func.count()).select_from(Settlement).where(
        col(Settlement.programme_id) == programme_id, col(Settlement.status).not_in(ended))
    return int((await session.execute(stmt)).scalar_one())


async def open_claims(session: AsyncSession, programme_id: uuid.UUID) -> int:
    """Claims of the programme not yet paid or rejected."""
    ended = [ClaimStatus.PAID.value, ClaimStatus.REJECTED.value]
    stmt = select(func.count()).select_from(Claim).where(
        col(Claim.programme_id) == programme_id, col(Claim.status).not_in(ended))
    return int((await session.execute(stmt)).scalar_one())


async def unsettled(session: AsyncSession, programme_id: uuid.UUID) -> tuple[int, int]:
    """The programme's captures and refunds owed to or by providers that no settlement (other
    than a cancelled one) holds: (captures, refunds)."""
    live_item = select(col(SettlementItem.id)).where(col(SettlementItem.released_at).is_(None))
    captures = select(func.count()).select_from(Redemption).where(
        col(Redemption.programme_id) == programme_id, col(Redemption.payee) == Payee.PROVIDER.value,
        col(Redemption.captured_amount) > 0,
        ~live_item.where(col(SettlementItem.redemption_id) == col(Redemption.id),
                         col(SettlementItem.kind) == ItemKind.CAPTURE.value).exists())
    refunds = select(func.count()).select_from(RedemptionRefund).join(
        Redemption, col(Redemption.id) == col(RedemptionRefund.redemption_id)).where(
        col(Redemption.programme_id) == programme_id, col(Redemption.payee) == Payee.PROVIDER.value,
        ~live_item.where(col(SettlementItem.refund_id) == col(RedemptionRefund.id)).exists())
    return (int((await session.execute(captures)).scalar_one()), int((await session.execute(refunds)).scalar_one()))


async def hold_provider(session: AsyncSession, provider_id: uuid.UUID) -> None:
    """A shared lock on the provider's row (PostgreSQL), to the commit."""
    await session.execute(select(col(Provider.id)).where(col(Provider.id) == provider_id).with_for_update(read=True))


async def enrolled_providers_lacking(
    session: AsyncSession, programme_id: uuid.UUID, kind: str
) -> list[tuple[uuid.UUID, str]]:
    """(id, name) of the providers enrolled in the programme (not withdrawn) that do not offer
    `kind`; every enrolled provider's row is held shared to the commit."""
    rows = (await session.execute(
        select(Provider)
        .join(ProgrammeEnrolment, col(ProgrammeEnrolment.provider_id) == col(Provider.id))
        .where(col(ProgrammeEnrolment.programme_id) == programme_id, col(ProgrammeEnrolment.withdrawn_at).is_(None))
        .order_by(col(Provider.id))
        .with_for_update(read=True, of=Provider)
    )).scalars().all()
    return [(p.id, p.name) for p in rows if kind not in p.kinds]
