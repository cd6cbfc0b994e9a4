"""Which changes are announced, to whom, and when a voucher's use crosses a mark. Pure."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    APPLICATION_APPROVED = "application.approved"
    VOUCHER_ISSUED = "voucher.issued"
    VOUCHER_EXPIRING = "voucher.expiring"
    VOUCHER_BALANCE_LOW = "voucher.balance_low"
    HOLD_EXPIRED = "hold.expired"
    REDEMPTION_CAPTURED = "redemption.captured"
    REFUND_CREATED = "refund.created"
    CLAIM_APPROVED = "claim.approved"
    SETTLEMENT_CREATED = "settlement.created"
    SETTLEMENT_SUBMITTED = "settlement.submitted"
    SETTLEMENT_PAID = "settlement.paid"
    SETTLEMENT_CANCELLED = "settlement.cancelled"


#: Audit actions that are announced as they are (the event names the change it reports).
ANNOUNCED_ACTIONS: frozenset[str] = frozenset({
    EventType.APPLICATION_APPROVED, EventType.VOUCHER_ISSUED, EventType.HOLD_EXPIRED,
    EventType.REDEMPTION_CAPTURED, EventType.REFUND_CREATED, EventType.CLAIM_APPROVED,
    EventType.SETTLEMENT_CREATED, EventType.SETTLEMENT_SUBMITTED, EventType.SETTLEMENT_PAID,
    # A provider that confirmed a statement is told when the office cancels it (an independent
    # review, December 2026): its captures are then to be settled again.
    EventType.SETTLEMENT_CANCELLED,
})

#: A voucher announces when its use (captured, net of refunds) first reaches each of these
#: fractions of its face value, in basis points: 80 % and 100 %.
BALANCE_MARKS_BP: tuple[int, ...] = (8000, 10000)


def marks_reached(face_value: int, used: int) -> list[int]:
    """The marks `used` has reached (integer arithmetic: no rounding question)."""
    if face_value <= 0:
        return []
    return [mark for mark in BALANCE_MARKS_BP if used * 10000 >= face_value * mark]


def balance_low_key(voucher_id: object, mark_bp: int) -> str:
    """Once per voucher and mark, ever: a refund that lowers use does not re-arm it."""
    return f"voucher.balance_low:{voucher_id}:{mark_bp}"


def expiring_key(voucher_id: object) -> str:
    return f"voucher.expiring:{voucher_id}"
