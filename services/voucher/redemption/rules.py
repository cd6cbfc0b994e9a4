"""Redemption rules: the hold's status machine and every decision of the value engine — who may
redeem what, how much a hold gets, what a capture, void or refund moves. Pure: the engine
(service.py) reads the locked state into the plain records below, calls these, and writes what
they decided. (Subsidy arithmetic: subsidy.py.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.voucher.errors import (
    CaptureExceedsHold,
    CategoryOutOfScope,
    EnterpriseCapReached,
    HoldExpired,
    HoldNotActive,
    NothingToSubsidise,
    OrderAlreadySubsidised,
    OrderReferenceConflict,
    ProviderNotApproved,
    ProviderNotEnrolled,
    RedemptionNotCaptured,
    RefundExceedsCaptured,
    RelatedParty,
    SubsidyBelowExpected,
    VoucherExhausted,
    VoucherExpired,
    VoucherKindMismatch,
    VoucherNotYetValid,
    VoucherRevoked,
    VoucherSuspended,
    WrongPayoutMode,
)
from services.voucher.programmes.rules import (
    CATEGORY_GROUPS_BY_KIND,
    PayoutMode,
    ProgrammeKind,
    category_group,
)
from services.voucher.providers.rules import ProviderStatus
from services.voucher.redemption.subsidy import Computation, Item, compute, parse_tiers
from services.voucher.vouchers.rules import VoucherStatus, effective_status


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


#: The ledger journal kind of each way a hold is released.
RELEASE_JOURNAL = {
    VoidReason.PROVIDER: "hold_voided",
    VoidReason.EXPIRED: "hold_expired",
    VoidReason.VOUCHER_REVOKED: "hold_voided_voucher_revoked",
    VoidReason.VOUCHER_EXPIRED: "hold_voided_voucher_expired",
    VoidReason.CLAIM_REJECTED: "claim_rejected",
}

_KIND_ZH = {"compute": "算力券", "model": "模型券"}


# -- what the engine reads, under its locks -------------------------------------------------


@dataclass(frozen=True)
class VoucherState:
    """A voucher as locked for a value move, with its materialised balances (which only ever
    move under the voucher's lock, so they are current)."""

    id: uuid.UUID
    code: str
    programme_id: uuid.UUID
    enterprise_id: uuid.UUID
    kind: str
    unit: str
    face_value: int
    status: str
    status_reason: str | None
    valid_from: datetime
    expires_at: datetime
    available_account_id: uuid.UUID
    held_account_id: uuid.UUID
    used_account_id: uuid.UUID
    available: int
    held: int
    used: int


@dataclass(frozen=True)
class Terms:
    """The programme's terms a redemption is judged by (frozen once the programme opens)."""

    id: uuid.UUID
    code: str
    kind: str
    mode: str
    rate_table: dict[str, int]
    tiers: list[dict[str, Any]]
    stacking_ceiling_bps: int
    enterprise_cap: int
    cap_period: str
    cap_timezone: str
    hold_ttl_seconds: int


@dataclass(frozen=True)
class Parties:
    """Who is on each side of a hold, read after the voucher's lock (so current)."""

    enterprise_uscc: str
    enterprise_related: list[dict[str, Any]]
    provider_status: str | None
    provider_related: list[dict[str, Any]]
    is_enrolled: bool


@dataclass(frozen=True)
class Hold:
    """A redemption row (a hold, a capture, a void: one record through its life)."""

    id: uuid.UUID
    voucher_id: uuid.UUID
    programme_id: uuid.UUID
    enterprise_id: uuid.UUID
    provider_id: uuid.UUID
    order_reference: str
    order_amount: int
    unit: str
    status: str
    held_amount: int
    captured_amount: int
    refunded_amount: int
    period_key: str
    hold_expires_at: datetime
    payee: str


@dataclass(frozen=True)
class Order:
    id: uuid.UUID
    enterprise_id: uuid.UUID
    unit: str
    order_amount: int
    subsidised: int


@dataclass(frozen=True)
class Usage:
    id: uuid.UUID
    period_key: str
    subsidised: int
    subsidised_spend: int


@dataclass(frozen=True)
class Stale:
    """Subsidy and spend still counted by holds whose TTL has passed but whose release has not
    been posted (void when read, so never counted against a new hold)."""

    on_order: int
    in_period: int
    spend_in_period: int


# -- checks, in the order a hold meets them -----------------------------------------------------


def check_provider(status: str | None) -> None:
    if status != ProviderStatus.APPROVED.value:
        raise ProviderNotApproved(f"provider is {status}", current_status=status,
                                  detail_zh=f"服务商当前状态为 {status}，尚未通过审核或已被暂停")


def check_mode(terms: Terms, payee: Payee) -> None:
    """Never both: a purchase subsidised by the provider's redemption and the SME's claim."""
    mode = PayoutMode.PROVIDER_REDEMPTION if payee is Payee.PROVIDER else PayoutMode.ENTERPRISE_CLAIM
    if terms.mode != mode.value:
        raise WrongPayoutMode(
            f"programme {terms.code} pays out by {terms.mode}; "
            + ("the enterprise files a claim instead" if payee is Payee.PROVIDER else "providers redeem instead"),
            detail_zh=f"项目 {terms.code} 的兑付方式为 {terms.mode}；"
            + ("应由企业提交补贴申领" if payee is Payee.PROVIDER else "应由服务商核销"),
            mode=terms.mode,
        )


def _party_ids(parties: list[dict[str, Any]] | None) -> set[str]:
    return {p["party_id"] for p in parties or []}


def check_parties(terms: Terms, parties: Parties) -> None:
    if not parties.is_enrolled:
        raise ProviderNotEnrolled(f"provider is not enrolled in programme {terms.code}",
                                  detail_zh=f"服务商未入驻项目 {terms.code}")
    shared = _party_ids(parties.provider_related) & _party_ids(parties.enterprise_related)
    if shared:
        raise RelatedParty(
            "the provider and the enterprise share a legal representative or shareholder; "
            "related-party purchases are not subsidised",
            detail_zh="服务商与企业存在相同的法定代表人或股东；关联方之间的采购不予补贴",
            shared_parties=sorted(shared),
        )


def check_usable(voucher: VoucherState, now: datetime) -> None:
    if now < voucher.valid_from:
        raise VoucherNotYetValid(f"valid from {voucher.valid_from.isoformat()}", valid_from=voucher.valid_from.isoformat(),
                                 detail_zh=f"券自 {voucher.valid_from.isoformat()} 起生效")
    status = effective_status(VoucherStatus(voucher.status), voucher.expires_at, now)
    if status is VoucherStatus.EXPIRED:
        raise VoucherExpired(f"expired at {voucher.expires_at.isoformat()}", expires_at=voucher.expires_at.isoformat(),
                             detail_zh=f"券已于 {voucher.expires_at.isoformat()} 过期")
    if status is VoucherStatus.SUSPENDED:
        raise VoucherSuspended(voucher.status_reason or "suspended by the programme office",
                               detail_zh="券已被项目管理方暂停使用"
                               + (f"，原因：{voucher.status_reason}" if voucher.status_reason else ""))
    if status is VoucherStatus.REVOKED:
        raise VoucherRevoked(voucher.status_reason or "revoked by the programme office",
                             detail_zh="券已被项目管理方撤销"
                             + (f"，原因：{voucher.status_reason}" if voucher.status_reason else ""))


def check_items(terms: Terms, items: list[dict[str, Any]]) -> None:
    kind = ProgrammeKind(terms.kind)
    for index, item in enumerate(items):
        category = item["category"]
        if category_group(category) not in CATEGORY_GROUPS_BY_KIND[kind]:
            raise VoucherKindMismatch(
                f"line item {index} ({category}) is not covered by a {kind.value} voucher",
                detail_zh=f"第 {index} 项订单明细（{category}）不在{_KIND_ZH.get(kind.value, kind.value)}的适用范围内",
                line_item=index,
            )
        if category not in terms.rate_table:
            raise CategoryOutOfScope(
                f"line item {index}: {category} is not subsidised by this programme "
                f"(it covers {', '.join(sorted(terms.rate_table))})",
                detail_zh=f"第 {index} 项订单明细：{category} 不在本项目补贴范围内"
                f"（本项目补贴：{'、'.join(sorted(terms.rate_table))}）",
                line_item=index,
            )


def check_order(order: Order, *, order_reference: str, enterprise_id: uuid.UUID, order_amount: int, unit: str,
                has_live_redemption: bool) -> None:
    """One order reference is one order; a voucher subsidises an order once."""
    if order.enterprise_id != enterprise_id or order.order_amount != order_amount or order.unit != unit:
        raise OrderReferenceConflict(
            f"order {order_reference} was first presented for another enterprise or amount "
            f"({order.order_amount} {order.unit}); one order reference is one order",
            detail_zh=f"订单 {order_reference} 已以其他企业或其他金额提交过"
            f"（{order.order_amount} {order.unit}）；一个订单号只对应一笔订单",
        )
    if has_live_redemption:
        raise OrderAlreadySubsidised("this voucher already subsidises this order", detail_zh="本券已补贴过该订单")


_REFUSAL_BY_LIMIT = {
    "rates": (NothingToSubsidise, "the line items earn no subsidy at the programme's rates",
              "按本项目的补贴比例，这些订单明细无可补贴金额"),
    "stacking_ceiling": (OrderAlreadySubsidised, "the order is already subsidised up to the stacking ceiling",
                         "该订单的补贴已达叠加上限"),
    "enterprise_cap": (EnterpriseCapReached, "the enterprise has reached its cap for this period",
                       "该企业本期补贴已达上限"),
    "voucher_balance": (VoucherExhausted, "the voucher has no available balance", "券余额不足，已无可用金额"),
}


def hold_subsidy(
    terms: Terms, items: list[dict[str, Any]], *, order: Order, usage: Usage, stale: Stale, available: int,
    expected: int | None = None,
) -> Computation:
    """The subsidy a new hold gets, step by step (subsidy.py): from the programme's rates and
    tiers, capped by the stacking ceiling, the enterprise's remaining cap and the voucher's
    available balance — every figure net of holds that are void when read. Nothing to grant
    is a refusal naming the limit that bound. With an `expected` subsidy (the provider quoted
    one) exactly that is granted, or, when the limits leave less, the hold is refused."""
    computation = compute(
        items=[Item(i["category"], int(i["amount"])) for i in items],
        rate_table=terms.rate_table,
        tiers=parse_tiers(terms.tiers),
        spend_so_far=usage.subsidised_spend - stale.spend_in_period,
        stacking_ceiling_bps=terms.stacking_ceiling_bps,
        already_subsidised_on_order=order.subsidised - stale.on_order,
        enterprise_cap_remaining=terms.enterprise_cap - (usage.subsidised - stale.in_period),
        voucher_available=available,
        subsidy_so_far=usage.subsidised - stale.in_period,
        expected_subsidy=expected,
    )
    if expected is not None and computation.subsidy < expected:
        bound = computation.limited_by
        raise SubsidyBelowExpected(
            f"the expected subsidy is {expected} but only {computation.subsidy} would be granted (minor units "
            f"of the voucher's unit; limited by {bound}); nothing was held",
            detail_zh=f"期望补贴为 {expected}，但按规则只能给予 {computation.subsidy}（受 {bound} 限制）；未做任何冻结",
            expected_subsidy=expected, subsidy=computation.subsidy, limited_by=bound,
            computation=computation.as_dict(),
        )
    if computation.subsidy == 0:
        error, detail, detail_zh = _REFUSAL_BY_LIMIT[computation.limited_by]
        raise error(detail, detail_zh=detail_zh, computation=computation.as_dict())
    return computation


# -- a hold's later life ---------------------------------------------------------------------


def is_void_when_read(hold: Hold, now: datetime) -> bool:
    return hold.status == RedemptionStatus.HELD.value and now >= hold.hold_expires_at


def effective_redemption_status(status: str, void_reason: str | None, hold_expires_at: datetime,
                                now: datetime) -> tuple[str, str | None]:
    """A hold past its TTL reads as voided (reason `expired`) even before its release is posted."""
    if status == RedemptionStatus.HELD.value and now >= hold_expires_at:
        return RedemptionStatus.VOIDED.value, VoidReason.EXPIRED.value
    return status, void_reason


def check_held(hold: Hold, now: datetime) -> None:
    if hold.status != RedemptionStatus.HELD.value:
        raise HoldNotActive(f"the hold is {hold.status}", current_status=hold.status,
                            detail_zh=f"该笔冻结当前状态为 {hold.status}")
    if now >= hold.hold_expires_at:
        raise HoldExpired(
            f"the hold expired at {hold.hold_expires_at.isoformat()} and is void",
            detail_zh=f"该笔冻结已于 {hold.hold_expires_at.isoformat()} 到期，已作废",
            hold_expires_at=hold.hold_expires_at.isoformat(),
        )


def capture_amount(hold: Hold, voucher: VoucherState, requested: int | None, now: datetime, *,
                   approval: bool = False) -> int:
    """How much a capture takes: at most what is held (the rest is released); never from a
    voucher that has expired (its holds are void)."""
    check_held(hold, now)
    if effective_status(VoucherStatus(voucher.status), voucher.expires_at, now) is VoucherStatus.EXPIRED:
        if approval:
            raise VoucherExpired("the voucher expired; its holds are void, and the claim can no longer be approved",
                                 detail_zh="券已过期，其冻结金额均已作废，该补贴申领不能再获批准")
        raise VoucherExpired("the voucher expired; its holds are void", detail_zh="券已过期，其冻结金额均已作废")
    amount = hold.held_amount if requested is None else requested
    if amount > hold.held_amount:
        what, what_zh = ("approval", "批准金额") if approval else ("capture", "核销金额")
        raise CaptureExceedsHold(
            f"{what} {amount} exceeds the held {hold.held_amount}", held_amount=hold.held_amount,
            detail_zh=f"{what_zh} {amount} 超过冻结金额 {hold.held_amount}",
        )
    return amount


def void_reason(hold: Hold, now: datetime) -> VoidReason:
    """Voiding a hold whose TTL has passed records it as expired."""
    if hold.status != RedemptionStatus.HELD.value:
        raise HoldNotActive(f"the hold is {hold.status}", current_status=hold.status,
                            detail_zh=f"该笔冻结当前状态为 {hold.status}")
    return release_reason(hold, VoidReason.PROVIDER, now)


def release_reason(hold: Hold, reason: VoidReason, now: datetime) -> VoidReason:
    """A hold past its TTL has been void since it expired (reads said so): whatever releases it
    later records that, not its own reason."""
    return VoidReason.EXPIRED if now >= hold.hold_expires_at else reason


def voided_at(hold: Hold, reason: VoidReason, now: datetime) -> datetime:
    """When a released hold became void: its expiry if it expired, else now."""
    return min(now, hold.hold_expires_at) if reason is VoidReason.EXPIRED else now


def check_refund(hold: Hold, amount: int) -> None:
    if hold.status not in (RedemptionStatus.CAPTURED.value, RedemptionStatus.REFUNDED.value):
        raise RedemptionNotCaptured(f"the redemption is {hold.status}", current_status=hold.status,
                                    detail_zh=f"该用券记录当前状态为 {hold.status}，尚未核销")
    remaining = hold.captured_amount - hold.refunded_amount
    if amount > remaining:
        raise RefundExceedsCaptured(f"at most {remaining} can still be refunded", refundable=remaining,
                                    detail_zh=f"最多还可退款 {remaining}")


def refund_goes_to_voucher(voucher: VoucherState, now: datetime) -> bool:
    """A refund returns value to the voucher while it can still be used (suspended counts),
    else to the programme's pool."""
    status = effective_status(VoucherStatus(voucher.status), voucher.expires_at, now)
    return status in (VoucherStatus.ACTIVE, VoucherStatus.EXHAUSTED, VoucherStatus.SUSPENDED)
