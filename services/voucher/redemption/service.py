"""Redemption use cases (provider-facing): hold, capture, void, one-step redeem, refund, and
the hold-expiry job.

Value moves under row locks taken in one fixed order on every path —
voucher → redemption → order subsidy → enterprise period usage → programme accounts —
so concurrent requests serialise instead of deadlocking; on SQLite every writer already holds
the database's write lock from BEGIN IMMEDIATE. Amounts are decided only after the locks are
held, so two holds can never both spend the same balance.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher import metrics
from services.voucher.actor import SYSTEM, Actor
from services.voucher.audit import service as audit
from services.voucher.db import PageRequest
from services.voucher.errors import (
    CaptureExceedsHold,
    CategoryOutOfScope,
    EnterpriseCapReached,
    Forbidden,
    HoldExpired,
    HoldNotActive,
    NotFound,
    NothingToSubsidise,
    OrderAlreadySubsidised,
    OrderReferenceConflict,
    ProviderNotApproved,
    ProviderNotEnrolled,
    RedemptionNotCaptured,
    RefundExceedsCaptured,
    RelatedParty,
    VoucherExhausted,
    VoucherExpired,
    VoucherKindMismatch,
    VoucherNotYetValid,
    VoucherRevoked,
    VoucherSuspended,
    WrongPayoutMode,
)
from services.voucher.events import service as outbox
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind, Leg, transfer
from services.voucher.programmes import repository as programmes_repository
from services.voucher.programmes.rules import (
    CATEGORY_GROUPS_BY_KIND,
    PayoutMode,
    ProgrammeKind,
    category_group,
    period_key,
)
from services.voucher.providers.rules import ProviderStatus
from services.voucher.redemption import fast, repository
from services.voucher.redemption.holds import release_counters, release_hold
from services.voucher.redemption.rules import Payee, RedemptionStatus, VoidReason
from services.voucher.redemption.subsidy import Item, compute, parse_tiers
from services.voucher.tables import (
    Programme,
    Provider,
    Redemption,
    RedemptionRefund,
    Voucher,
)
from services.voucher.vouchers import repository as vouchers_repository
from services.voucher.vouchers import service as vouchers
from services.voucher.vouchers.rules import VoucherStatus, effective_status, settled_status

_KIND_ZH = {"compute": "算力券", "model": "模型券"}


@dataclass(frozen=True)
class HoldRequest:
    voucher_code: str
    enterprise_uscc: str
    order_reference: str
    line_items: list[dict[str, Any]]


_REFUSAL_BY_LIMIT = {
    "rates": (NothingToSubsidise, "the line items earn no subsidy at the programme's rates",
              "按本项目的补贴比例，这些订单明细无可补贴金额"),
    "stacking_ceiling": (OrderAlreadySubsidised, "the order is already subsidised up to the stacking ceiling",
                         "该订单的补贴已达叠加上限"),
    "enterprise_cap": (EnterpriseCapReached, "the enterprise has reached its cap for this period",
                       "该企业本期补贴已达上限"),
    "voucher_balance": (VoucherExhausted, "the voucher has no available balance", "券余额不足，已无可用金额"),
}


def _party_ids(parties: list[dict[str, Any]]) -> set[str]:
    return {p["party_id"] for p in parties or []}


async def _provider_for(session: AsyncSession, actor: Actor) -> Provider:
    if actor.provider_id is None:
        raise Forbidden("only a provider key can redeem vouchers", detail_zh="只有服务商的密钥才能核销券")
    provider = await session.get(Provider, actor.provider_id)
    assert provider is not None
    return provider


def _check_usable(voucher: Voucher, now: datetime) -> None:
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


def _check_items(programme: Programme, items: list[dict[str, Any]]) -> None:
    kind = ProgrammeKind(programme.kind)
    for index, item in enumerate(items):
        category = item["category"]
        if category_group(category) not in CATEGORY_GROUPS_BY_KIND[kind]:
            raise VoucherKindMismatch(
                f"line item {index} ({category}) is not covered by a {kind.value} voucher",
                detail_zh=f"第 {index} 项订单明细（{category}）不在{_KIND_ZH.get(kind.value, kind.value)}的适用范围内",
                line_item=index,
            )
        if category not in programme.rate_table:
            raise CategoryOutOfScope(
                f"line item {index}: {category} is not subsidised by this programme "
                f"(it covers {', '.join(sorted(programme.rate_table))})",
                detail_zh=f"第 {index} 项订单明细：{category} 不在本项目补贴范围内"
                f"（本项目补贴：{'、'.join(sorted(programme.rate_table))}）",
                line_item=index,
            )


async def _settle_voucher_status(session: AsyncSession, voucher: Voucher, now: datetime, *,
                                 after_capture: bool = False) -> None:
    settles = voucher.status in (VoucherStatus.ACTIVE.value, VoucherStatus.EXHAUSTED.value)
    if not (settles or after_capture):
        return
    b = (await vouchers.view(session, voucher, now)).balances
    if after_capture:  # use only grows on capture (whatever the voucher's status since the hold):
        # the moment to announce its 80 % / 100 % marks
        await outbox.note_use(session, voucher_id=voucher.id, programme_id=voucher.programme_id,
                              enterprise_id=voucher.enterprise_id, face_value=voucher.face_value,
                              used=b.used, unit=voucher.unit, now=now)
    if settles:
        settled = settled_status(VoucherStatus(voucher.status), b.available, b.held)
        if settled.value != voucher.status:
            before, voucher.status = voucher.status, settled.value
            voucher.status_changed_at = now
            voucher.version += 1
            await audit.record(session, f"voucher.{settled.value}", "voucher", voucher.id, now=now,
                               before={"status": before}, after={"status": voucher.status},
                               programme_id=voucher.programme_id, enterprise_id=voucher.enterprise_id,
                               voucher_id=voucher.id)


async def hold(
    session: AsyncSession, actor: Actor, request: HoldRequest, now: datetime, *,
    provider: Provider | None = None, payee: Payee = Payee.PROVIDER, ttl: timedelta | None = None,
) -> Redemption:
    return (await _hold(session, actor, request, now, provider=provider, payee=payee, ttl=ttl))[0]


async def _hold(
    session: AsyncSession, actor: Actor, request: HoldRequest, now: datetime, *,
    provider: Provider | None = None, payee: Payee = Payee.PROVIDER, ttl: timedelta | None = None,
) -> tuple[Redemption, Voucher]:
    """Reserve the subsidy for one order: computed from the programme's rates and tiers, capped
    by the stacking ceiling, the enterprise's remaining cap and the voucher's balance; the held
    amount leaves `available` at once. Every refusal moves nothing.

    Claims use the same path with the claim's `provider`, `payee` enterprise and a `ttl` that
    lasts the review."""
    provider = provider or await _provider_for(session, actor)
    if provider.status != ProviderStatus.APPROVED.value:
        raise ProviderNotApproved(f"provider is {provider.status}", current_status=provider.status,
                                  detail_zh=f"服务商当前状态为 {provider.status}，尚未通过审核或已被暂停")
    voucher, enterprise = await vouchers.voucher_and_owner(
        session, request.voucher_code, request.enterprise_uscc, for_update=True
    )
    programme = await session.get(Programme, voucher.programme_id)
    assert programme is not None
    mode = PayoutMode.PROVIDER_REDEMPTION if payee is Payee.PROVIDER else PayoutMode.ENTERPRISE_CLAIM
    if programme.mode != mode.value:
        # Never both: a purchase subsidised by the provider's redemption and the SME's claim.
        raise WrongPayoutMode(
            f"programme {programme.code} pays out by {programme.mode}; "
            + ("the enterprise files a claim instead" if payee is Payee.PROVIDER else "providers redeem instead"),
            detail_zh=f"项目 {programme.code} 的兑付方式为 {programme.mode}；"
            + ("应由企业提交补贴申领" if payee is Payee.PROVIDER else "应由服务商核销"),
            mode=programme.mode,
        )
    enrolment = await programmes_repository.enrolment(session, programme.id, provider.id)
    if enrolment is None or enrolment.withdrawn_at is not None:
        raise ProviderNotEnrolled(f"provider is not enrolled in programme {programme.code}",
                                  detail_zh=f"服务商未入驻项目 {programme.code}")
    shared = _party_ids(provider.related_parties) & _party_ids(enterprise.related_parties)
    if shared:
        raise RelatedParty(
            "the provider and the enterprise share a legal representative or shareholder; "
            "related-party purchases are not subsidised",
            detail_zh="服务商与企业存在相同的法定代表人或股东；关联方之间的采购不予补贴",
            shared_parties=sorted(shared),
        )
    _check_usable(voucher, now)
    _check_items(programme, request.line_items)

    order_amount = sum(int(i["amount"]) for i in request.line_items)
    period = period_key(programme.cap_period, programme.cap_timezone, now)
    # Holds of this voucher whose TTL has passed are void when read; their release is posted
    # now so their value is available again. Every order and usage row that release and this
    # hold touch is locked first, each kind in sorted order (the fixed lock order).
    expired = [h for h in await repository.active_holds_of_voucher(session, voucher.id) if h.hold_expires_at <= now]
    new_order = (provider.id, request.order_reference)
    order = None
    for key in sorted({(h.provider_id, h.order_reference) for h in expired} | {new_order}):
        if key == new_order:
            order = await repository.lock_order(
                session, provider_id=provider.id, order_reference=request.order_reference,
                enterprise_id=voucher.enterprise_id, unit=voucher.unit, order_amount=order_amount, now=now,
            )
        else:
            await repository.order_for(session, *key)
    usage = None
    for key in sorted({h.period_key for h in expired} | {period}):
        locked = await vouchers_repository.lock_usage(session, programme.id, voucher.enterprise_id, key)
        usage = locked if key == period else usage
    assert order is not None and usage is not None
    for held in expired:
        await release_hold(session, held, voucher, VoidReason.EXPIRED, now)
        metrics.hold_expired(session, programme_id=held.programme_id)

    if order.enterprise_id != voucher.enterprise_id or order.order_amount != order_amount or order.unit != voucher.unit:
        raise OrderReferenceConflict(
            f"order {request.order_reference} was first presented for another enterprise or amount "
            f"({order.order_amount} {order.unit}); one order reference is one order",
            detail_zh=f"订单 {request.order_reference} 已以其他企业或其他金额提交过"
            f"（{order.order_amount} {order.unit}）；一个订单号只对应一笔订单",
        )
    if await repository.live_on_order(session, voucher.id, provider.id, request.order_reference):
        raise OrderAlreadySubsidised("this voucher already subsidises this order", detail_zh="本券已补贴过该订单")
    # Other vouchers' expired holds are void too, even if the job has not posted them yet.
    stale_on_order = await repository.stale_holds_on_order(session, provider.id, request.order_reference, now)
    stale_amount, stale_spend = await repository.stale_holds_in_period(
        session, programme.id, voucher.enterprise_id, period, now
    )
    available = (await ledger.balances(session, [voucher.available_account_id]))[voucher.available_account_id]

    computation = compute(
        items=[Item(i["category"], int(i["amount"])) for i in request.line_items],
        rate_table=programme.rate_table,
        tiers=parse_tiers(programme.tiers),
        spend_so_far=usage.subsidised_spend - stale_spend,
        stacking_ceiling_bps=programme.stacking_ceiling_bps,
        already_subsidised_on_order=order.subsidised - stale_on_order,
        enterprise_cap_remaining=programme.enterprise_cap - (usage.subsidised - stale_amount),
        voucher_available=available,
    )
    if computation.subsidy == 0:
        error, detail, detail_zh = _REFUSAL_BY_LIMIT[computation.limited_by]
        raise error(detail, detail_zh=detail_zh, computation=computation.as_dict())

    redemption = Redemption(
        voucher_id=voucher.id,
        programme_id=programme.id,
        enterprise_id=voucher.enterprise_id,
        provider_id=provider.id,
        order_reference=request.order_reference,
        order_amount=order_amount,
        unit=voucher.unit,
        line_items=request.line_items,
        computation={**computation.as_dict(), "period": period,
                     "enterprise_cap": programme.enterprise_cap,
                     "subsidised_this_period_before": usage.subsidised},
        status=RedemptionStatus.HELD.value,
        held_amount=computation.subsidy,
        period_key=period,
        hold_expires_at=now + (ttl or timedelta(seconds=programme.hold_ttl_seconds)),
        created_at=now,
        payee=payee.value,
    )
    await repository.add(session, redemption)
    await ledger.post(
        session,
        kind="hold_placed",
        legs=transfer(voucher.available_account_id, voucher.held_account_id, computation.subsidy, voucher.unit),
        now=now, programme_id=programme.id, voucher_id=voucher.id, redemption_id=redemption.id,
        memo=f"hold for order {request.order_reference}",
    )
    order.subsidised += computation.subsidy
    usage.subsidised += computation.subsidy
    usage.subsidised_spend += order_amount
    await session.flush()
    await audit.record(
        session, "hold.placed", "redemption", redemption.id, now=now,
        after={**audit.fields(redemption, "status order_reference order_amount held_amount hold_expires_at payee "
                                          "period_key"),
               "subsidy": computation.subsidy, "limited_by": computation.limited_by},
        programme_id=programme.id, enterprise_id=voucher.enterprise_id, provider_id=provider.id,
        voucher_id=voucher.id,
    )
    return redemption, voucher


async def _locked(session: AsyncSession, actor: Actor, redemption_id: uuid.UUID) -> tuple[Voucher, Redemption]:
    """Voucher, then redemption, locked in the fixed order (the id is read first, unlocked)."""
    found = await repository.get(session, actor, redemption_id)
    if found is None:
        raise NotFound(f"no redemption with id {redemption_id}", detail_zh=f"没有 ID 为 {redemption_id} 的用券记录")
    voucher = await vouchers_repository.get_by_id(session, found.voucher_id, for_update=True)
    redemption = await repository.get(session, actor, redemption_id, for_update=True)
    assert voucher is not None and redemption is not None
    return voucher, redemption


def _check_held(redemption: Redemption, now: datetime) -> None:
    if redemption.status != RedemptionStatus.HELD.value:
        raise HoldNotActive(f"the hold is {redemption.status}", current_status=redemption.status,
                            detail_zh=f"该笔冻结当前状态为 {redemption.status}")
    if now >= redemption.hold_expires_at:
        raise HoldExpired(
            f"the hold expired at {redemption.hold_expires_at.isoformat()} and is void",
            detail_zh=f"该笔冻结已于 {redemption.hold_expires_at.isoformat()} 到期，已作废",
            hold_expires_at=redemption.hold_expires_at.isoformat(),
        )


async def capture(
    session: AsyncSession, actor: Actor, redemption_id: uuid.UUID, amount: int | None, now: datetime
) -> Redemption:
    """Capture up to the held amount; the rest is released to the voucher. A hold resolves once."""
    voucher, redemption = await _locked(session, actor, redemption_id)
    _check_held(redemption, now)
    if effective_status(VoucherStatus(voucher.status), voucher.expires_at, now) is VoucherStatus.EXPIRED:
        raise VoucherExpired("the voucher expired; its holds are void", detail_zh="券已过期，其冻结金额均已作废")
    amount = redemption.held_amount if amount is None else amount
    if amount > redemption.held_amount:
        raise CaptureExceedsHold(
            f"capture {amount} exceeds the held {redemption.held_amount}", held_amount=redemption.held_amount,
            detail_zh=f"核销金额 {amount} 超过冻结金额 {redemption.held_amount}",
        )
    await _capture(session, voucher, redemption, amount, now)
    return redemption


async def _capture(session: AsyncSession, voucher: Voucher, redemption: Redemption, amount: int, now: datetime) -> None:
    programme_accounts = await ledger.programme_accounts(session, voucher.programme_id)
    if redemption.payee == Payee.ENTERPRISE.value:
        payable = (await ledger.ensure_enterprise_accounts(
            session, redemption.enterprise_id, voucher.programme_id, voucher.unit, now,
            [AccountKind.ENTERPRISE_PAYABLE, AccountKind.ENTERPRISE_PAID],
        ))[AccountKind.ENTERPRISE_PAYABLE]
    else:
        payable = (await ledger.ensure_provider_accounts(
            session, redemption.provider_id, voucher.programme_id, voucher.unit, now
        ))[AccountKind.PROVIDER_PAYABLE]
    unit, rest = voucher.unit, redemption.held_amount - amount
    legs: list[Leg] = [
        *transfer(voucher.held_account_id, voucher.used_account_id, amount, unit),
        *transfer(programme_accounts[AccountKind.PROGRAMME_SPENT], payable, amount, unit),
    ]
    if rest:
        legs += transfer(voucher.held_account_id, voucher.available_account_id, rest, unit)
    await ledger.post(
        session, kind="hold_captured", legs=legs, now=now, programme_id=voucher.programme_id,
        voucher_id=voucher.id, redemption_id=redemption.id,
        memo=f"captured {amount} of {redemption.held_amount} for order {redemption.order_reference}",
    )
    if rest:
        await release_counters(session, redemption, rest, spend=0)
    redemption.status = RedemptionStatus.CAPTURED.value
    redemption.captured_amount = amount
    redemption.captured_at = now
    metrics.redemption_captured(session, programme_id=voucher.programme_id, kind=voucher.kind, unit=unit, amount=amount)
    await audit.record(
        session, "redemption.captured", "redemption", redemption.id, now=now,
        before={"status": RedemptionStatus.HELD.value, "held_amount": redemption.held_amount},
        after={"status": redemption.status, "captured_amount": amount, "released": rest},
        programme_id=voucher.programme_id, enterprise_id=redemption.enterprise_id,
        provider_id=redemption.provider_id, voucher_id=voucher.id,
    )
    await _settle_voucher_status(session, voucher, now, after_capture=True)
    await session.flush()


async def void(session: AsyncSession, actor: Actor, redemption_id: uuid.UUID, now: datetime) -> Redemption:
    """Release the whole hold. Voiding a hold whose TTL has passed records it as expired."""
    voucher, redemption = await _locked(session, actor, redemption_id)
    if redemption.status != RedemptionStatus.HELD.value:
        raise HoldNotActive(f"the hold is {redemption.status}", current_status=redemption.status,
                            detail_zh=f"该笔冻结当前状态为 {redemption.status}")
    reason = VoidReason.EXPIRED if now >= redemption.hold_expires_at else VoidReason.PROVIDER
    await release_hold(session, redemption, voucher, reason, now)
    if reason is VoidReason.EXPIRED:
        metrics.hold_expired(session, programme_id=redemption.programme_id)
    await _settle_voucher_status(session, voucher, now)
    await session.flush()
    return redemption


async def redeem(session: AsyncSession, actor: Actor, request: HoldRequest, now: datetime) -> Redemption:
    """One step: hold and capture the whole subsidy at once (providers that bill after use).
    On PostgreSQL the common case takes the few-statement path (fast.py), which hands every
    other case back to this one."""
    if fast.enabled(session):
        done = await fast.redeem(session, actor, request, now)
        if done is not None:
            return done
    redemption, voucher = await _hold(session, actor, request, now)  # the voucher stays locked
    await _capture(session, voucher, redemption, redemption.held_amount, now)
    return redemption


async def refund(
    session: AsyncSession, actor: Actor, redemption_id: uuid.UUID, amount: int, reason: str, now: datetime
) -> RedemptionRefund:
    """Give back part or all of a captured subsidy: to the voucher while it is valid, else to
    the programme's pool. The provider's payable drops by the same amount."""
    voucher, redemption = await _locked(session, actor, redemption_id)
    if redemption.status not in (RedemptionStatus.CAPTURED.value, RedemptionStatus.REFUNDED.value):
        raise RedemptionNotCaptured(f"the redemption is {redemption.status}", current_status=redemption.status,
                                    detail_zh=f"该用券记录当前状态为 {redemption.status}，尚未核销")
    remaining = redemption.captured_amount - redemption.refunded_amount
    if amount > remaining:
        raise RefundExceedsCaptured(f"at most {remaining} can still be refunded", refundable=remaining,
                                    detail_zh=f"最多还可退款 {remaining}")
    status = effective_status(VoucherStatus(voucher.status), voucher.expires_at, now)
    to_voucher = status in (VoucherStatus.ACTIVE, VoucherStatus.EXHAUSTED, VoucherStatus.SUSPENDED)
    # Order and usage rows before any programme account: the fixed lock order.
    await release_counters(session, redemption, amount, spend=0)
    programme_accounts = await ledger.programme_accounts(session, voucher.programme_id)
    provider_accounts = await ledger.ensure_provider_accounts(
        session, redemption.provider_id, voucher.programme_id, voucher.unit, now
    )
    target = voucher.available_account_id if to_voucher else programme_accounts[AccountKind.PROGRAMME_AVAILABLE]
    unit = voucher.unit
    legs = [
        *transfer(voucher.used_account_id, target, amount, unit),
        *transfer(provider_accounts[AccountKind.PROVIDER_PAYABLE], programme_accounts[AccountKind.PROGRAMME_SPENT],
                  amount, unit),
    ]
    if status is VoucherStatus.REVOKED:
        # Used value the enterprise was asked to pay back (a clawback) and that the provider now
        # refunds is recovered once, not twice: the receivable shrinks by what comes back.
        receivable = (await ledger.ensure_enterprise_accounts(
            session, voucher.enterprise_id, voucher.programme_id, unit, now, [AccountKind.ENTERPRISE_RECEIVABLE],
        ))[AccountKind.ENTERPRISE_RECEIVABLE]
        owed = (await ledger.balances(session, [receivable], lock=True))[receivable]
        if owed:
            legs += transfer(receivable, programme_accounts[AccountKind.PROGRAMME_CLAWBACK], min(owed, amount), unit)
    await ledger.post(
        session, kind="refund", legs=legs, now=now, programme_id=voucher.programme_id, voucher_id=voucher.id,
        redemption_id=redemption.id, memo=f"refund to {'voucher' if to_voucher else 'programme pool'}: {reason}",
    )
    row = RedemptionRefund(
        redemption_id=redemption.id, amount=amount, reason=reason,
        destination="voucher" if to_voucher else "pool", created_at=now,
    )
    await repository.add(session, row)
    before = {"status": redemption.status, "refunded_amount": redemption.refunded_amount}
    redemption.refunded_amount += amount
    if redemption.refunded_amount == redemption.captured_amount:
        redemption.status = RedemptionStatus.REFUNDED.value
    await audit.record(
        session, "refund.created", "redemption", redemption.id, now=now, before=before,
        after={"status": redemption.status, "refunded_amount": redemption.refunded_amount, "refund_id": row.id,
               "amount": amount, "destination": row.destination, "reason": reason},
        programme_id=voucher.programme_id, enterprise_id=redemption.enterprise_id,
        provider_id=redemption.provider_id, voucher_id=voucher.id,
    )
    await _settle_voucher_status(session, voucher, now)
    await session.flush()
    return row


async def get_redemption(session: AsyncSession, actor: Actor, redemption_id: uuid.UUID) -> Redemption:
    found = await repository.get(session, actor, redemption_id)
    if found is None:
        raise NotFound(f"no redemption with id {redemption_id}", detail_zh=f"没有 ID 为 {redemption_id} 的用券记录")
    return found


async def list_redemptions(
    session: AsyncSession,
    actor: Actor,
    page: PageRequest,
    *,
    voucher_id: uuid.UUID | None = None,
    status: str | None = None,
    order_reference: str | None = None,
) -> tuple[list[Redemption], str | None]:
    rows, cursor = await repository.list_page(
        session, actor, page, voucher_id=voucher_id, status=status, order_reference=order_reference
    )
    return list(rows), cursor


async def refunds_of(session: AsyncSession, redemption_id: uuid.UUID) -> list[RedemptionRefund]:
    return await repository.refunds_of(session, redemption_id)


def effective_redemption_status(redemption: Redemption, now: datetime) -> tuple[str, str | None]:
    """A hold past its TTL reads as voided (reason `expired`) even before the job posts it."""
    if redemption.status == RedemptionStatus.HELD.value and now >= redemption.hold_expires_at:
        return RedemptionStatus.VOIDED.value, VoidReason.EXPIRED.value
    return redemption.status, redemption.void_reason


async def due_holds(session: AsyncSession, now: datetime, limit: int = 500) -> list[uuid.UUID]:
    """Holds past their TTL whose release has not been posted yet."""
    return await repository.expired_hold_ids(session, now, limit)


async def expire_hold(session: AsyncSession, redemption_id: uuid.UUID, now: datetime) -> int:
    """Post the release of one expired hold (1), or nothing if it was resolved meanwhile (0)."""
    from services.voucher.actor import SYSTEM

    voucher, redemption = await _locked(session, SYSTEM, redemption_id)
    if redemption.status != RedemptionStatus.HELD.value or redemption.hold_expires_at > now:
        return 0
    await release_hold(session, redemption, voucher, VoidReason.EXPIRED, now)
    metrics.hold_expired(session, programme_id=redemption.programme_id)
    await _settle_voucher_status(session, voucher, now)
    return 1


async def expire_holds(session: AsyncSession, now: datetime, limit: int = 500) -> int:
    """Release expired holds in one transaction (tests, small batches); the job runner gives
    each hold its own transaction instead (services/voucher/jobs.py)."""
    return sum([await expire_hold(session, i, now) for i in await due_holds(session, now, limit)])


async def capture_claim(session: AsyncSession, redemption_id: uuid.UUID, amount: int, now: datetime) -> Redemption:
    """Capture a claim's hold (the programme office approved it): like a provider's capture,
    payable to the enterprise. A hold the voucher's expiry or revocation voided cannot be."""
    voucher, redemption = await _locked(session, SYSTEM, redemption_id)
    _check_held(redemption, now)
    if effective_status(VoucherStatus(voucher.status), voucher.expires_at, now) is VoucherStatus.EXPIRED:
        raise VoucherExpired("the voucher expired; its holds are void, and the claim can no longer be approved",
                             detail_zh="券已过期，其冻结金额均已作废，该补贴申领不能再获批准")
    if amount > redemption.held_amount:
        raise CaptureExceedsHold(
            f"approval {amount} exceeds the held {redemption.held_amount}", held_amount=redemption.held_amount,
            detail_zh=f"批准金额 {amount} 超过冻结金额 {redemption.held_amount}",
        )
    await _capture(session, voucher, redemption, amount, now)
    return redemption


async def void_claim(session: AsyncSession, redemption_id: uuid.UUID, now: datetime) -> Redemption:
    """Release a rejected claim's hold, exactly what it held."""
    voucher, redemption = await _locked(session, SYSTEM, redemption_id)
    if redemption.status == RedemptionStatus.HELD.value:
        await release_hold(session, redemption, voucher, VoidReason.CLAIM_REJECTED, now)
        await _settle_voucher_status(session, voucher, now)
        await session.flush()
    return redemption
