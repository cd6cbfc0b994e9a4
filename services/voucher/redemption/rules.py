"""Redemption rules: the hold's status machine. Pure. (Subsidy arithmetic: subsidy.py.)"""

from __future__ import annotations

from enum import StrEnum


class RedemptionStatus(StrEnum):
    HELD = "held"
    CAPTURED = "captured"
    VOIDED = "voided"
    REFUNDED = "refunded"  # every captured unit refunded; partial refunds stay `captured`


class VoidReason(StrEnum):
    PROVIDER = "provider"
    EXPIRED = "expired"  # the hold's TTL passed
    VOUCHER_REVOKED = "voucher_revoked"
    VOUCHER_EXPIRED = "voucher_expired"
    CLAIM_REJECTED = "claim_rejected"


class Payee(StrEnum):
    """Who the programme pays for a capture: the provider (it deducted the subsidy from the
    SME's bill) or the enterprise (it paid in full and claimed; `enterprise_claim` mode)."""

    PROVIDER = "provider"
    ENTERPRISE = "enterprise"
