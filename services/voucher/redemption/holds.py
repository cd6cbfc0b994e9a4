"""Releasing a hold: the one operation that voids, expires and revocation all share.

Kept below both the voucher and the redemption services so either can call it. The caller
holds the locks on the voucher and on the redemption (in that order); this locks the order
and the usage row after them, the fixed order every path follows:
voucher → redemption → order subsidy → enterprise period usage → programme accounts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.audit import service as audit
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import transfer
from services.voucher.redemption import repository
from services.voucher.redemption.rules import RedemptionStatus, VoidReason
from services.voucher.tables import Redemption, Voucher
from services.voucher.vouchers import repository as vouchers_repository

LEDGER_KIND = {
    VoidReason.PROVIDER: "hold_voided",
    VoidReason.EXPIRED: "hold_expired",
    VoidReason.VOUCHER_REVOKED: "hold_voided_voucher_revoked",
    VoidReason.VOUCHER_EXPIRED: "hold_voided_voucher_expired",
    VoidReason.CLAIM_REJECTED: "claim_rejected",
}


async def release_hold(
    session: AsyncSession, redemption: Redemption, voucher: Voucher, reason: VoidReason, now: datetime
) -> None:
    """Return the whole held amount to the voucher and undo the hold's counters."""
    assert redemption.status == RedemptionStatus.HELD.value
    amount = redemption.held_amount
    await ledger.post(
        session,
        kind=LEDGER_KIND[reason],
        legs=transfer(voucher.held_account_id, voucher.available_account_id, amount, voucher.unit),
        now=now,
        programme_id=voucher.programme_id,
        voucher_id=voucher.id,
        redemption_id=redemption.id,
        memo=f"hold released ({reason.value})",
    )
    await release_counters(session, redemption, amount, spend=redemption.order_amount)
    redemption.status = RedemptionStatus.VOIDED.value
    redemption.voided_at = now
    redemption.void_reason = reason.value
    await session.flush()
    await audit.record(
        session, "hold.expired" if reason is VoidReason.EXPIRED else "hold.voided", "redemption", redemption.id,
        now=now, before={"status": RedemptionStatus.HELD.value},
        after={"status": redemption.status, "void_reason": reason.value, "released": amount},
        programme_id=voucher.programme_id, enterprise_id=redemption.enterprise_id,
        provider_id=redemption.provider_id, voucher_id=voucher.id,
    )


async def release_counters(session: AsyncSession, redemption: Redemption, amount: int, *, spend: int) -> None:
    """Take `amount` of subsidy (and `spend` of order spend) back off the order and the period."""
    order = await repository.order_for(session, redemption.provider_id, redemption.order_reference)
    order.subsidised -= amount
    usage = await vouchers_repository.lock_usage(
        session, redemption.programme_id, redemption.enterprise_id, redemption.period_key
    )
    usage.subsidised -= amount
    usage.subsidised_spend -= spend
    await session.flush()


async def release_holds(
    session: AsyncSession, holds: list[Redemption], voucher: Voucher, reason: VoidReason, now: datetime
) -> None:
    """Release several locked holds of one locked voucher. Their orders and usage rows are locked
    first, each kind in sorted order, so two releases never wait on each other in a cycle."""
    await lock_counter_rows(session, voucher, holds)
    for hold in holds:
        await release_hold(session, hold, voucher, reason, now)


async def lock_counter_rows(session: AsyncSession, voucher: Voucher, holds: list[Redemption]) -> None:
    for provider_id, order_reference in sorted({(h.provider_id, h.order_reference) for h in holds}):
        await repository.order_for(session, provider_id, order_reference)
    for period in sorted({h.period_key for h in holds}):
        await vouchers_repository.lock_usage(session, voucher.programme_id, voucher.enterprise_id, period)
