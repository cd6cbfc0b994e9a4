"""Releasing a hold: the one operation that voids, expires and revocation all share.

Kept below both the voucher and the redemption services so either can call it. The caller
holds the locks on the voucher and on the redemption (in that order); this locks the order
and the usage row after them, the fixed order every path follows:
voucher → redemption → order subsidy → enterprise period usage → programme accounts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

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
