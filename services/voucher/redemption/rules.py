"""Redemption rules: the hold's status machine and every decision of the value engine — who may
redeem what, how much a hold gets, what a capture, void or refund moves. Pure: the engine
(service.py) reads the locked state into the plain records below, calls these, and writes what
they decided. (Subsidy arithmetic: subsidy.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
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
    PeriodSpendLimitReached,
    ProviderNotApproved,
    ProviderNotEnrolled,
    RedemptionNotCaptured,
    RefundExceedsCaptured,
    RelatedParty,
    SubsidyBelowExpected,
    ValidationFailed,
    VoucherExhausted,
    VoucherExpired,
    VoucherKindMismatch,
    VoucherNotYetValid,
    VoucherRevoked,
    VoucherSuspended,
    WrongPayoutMode,
    field_error,
)
from services.voucher.i18n import Amount, Message, Status, msg
from services.voucher.money import MAX_PERIOD_SPEND, percent
from services.voucher.programmes.rules import (
    CATEGORY_GROUPS_BY_KIND,
    PayoutMode,
    ProgrammeKind,
    category_group,
)
from services.voucher.providers.rules import ProviderStatus
from services.voucher.redemption.subsidy import (
    Computation,
    Item,
    compute,
    for_provider,
    parse_tiers,
)
from services.voucher.uscc import is_valid as uscc_is_valid
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
#: The journals that capture a redemption (one-step, and a hold's capture): its value moves to
#: the voucher's used account and to its payee's payable (what reconciliation and payment read).
CAPTURE_JOURNALS = ("redeemed", "hold_captured")
#: The journal of a refund: the refunded subsidy back from used and from the payee's payable.
REFUND_JOURNAL = "refund"

RELEASE_JOURNAL = {
    VoidReason.PROVIDER: "hold_voided",
    VoidReason.EXPIRED: "hold_expired",
    VoidReason.VOUCHER_REVOKED: "hold_voided_voucher_revoked",
    VoidReason.VOUCHER_EXPIRED: "hold_voided_voucher_expired",
    VoidReason.CLAIM_REJECTED: "claim_rejected",
}

#: What a voucher of each kind is called, for people.
_VOUCHER_OF_KIND: dict[ProgrammeKind, Message] = {
    ProgrammeKind.COMPUTE: msg("compute voucher"),
    ProgrammeKind.MODEL: msg("model voucher"),
}


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
    provider_uscc: str | None = None


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
    void_reason: str | None = None

    @property
    def pays_provider(self) -> bool:
        """Whether the provider is the payee (not a claim's redemption, which is the
        enterprise's: the provider is neither told of it nor settled for it)."""
        return self.payee == Payee.PROVIDER.value


@dataclass(slots=True)
class RedemptionRecord:
    """A whole redemption row as the value engine writes or answers it: every column of the
    `redemption` table (tests/redemption/test_engine_record.py holds them equal), without an
    ORM instance, whose construction and attribute bookkeeping cost about 4 % of a redeem's
    CPU for an object nothing loads back or flushes."""

    id: uuid.UUID
    voucher_id: uuid.UUID
    programme_id: uuid.UUID
    enterprise_id: uuid.UUID
    provider_id: uuid.UUID
    order_reference: str
    order_amount: int
    unit: str
    line_items: list[dict[str, Any]]
    computation: dict[str, Any]
    status: str
    held_amount: int
    captured_amount: int
    refunded_amount: int
    period_key: str
    hold_expires_at: datetime
    created_at: datetime
    captured_at: datetime | None
    voided_at: datetime | None
    void_reason: str | None
    payee: str


@dataclass(frozen=True)
class Order:
    id: uuid.UUID
    enterprise_id: uuid.UUID
    unit: str
    order_amount: int
    subsidised: int
    #: The latest instant an operation that moved `subsidised` was decided at (`judged_at`).
    decided_at: datetime | None = None


@dataclass(frozen=True)
class Usage:
    id: uuid.UUID
    period_key: str
    subsidised: int
    subsidised_spend: int
    #: The latest instant an operation that moved these totals was decided at (`judged_at`).
    decided_at: datetime | None = None


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
        raise ProviderNotApproved(msg("provider is {status}", status=Status(str(status))), current_status=status)


def check_mode(terms: Terms, payee: Payee) -> None:
    """Never both: a purchase subsidised by the provider's redemption and the SME's claim."""
    mode = PayoutMode.PROVIDER_REDEMPTION if payee is Payee.PROVIDER else PayoutMode.ENTERPRISE_CLAIM
    if terms.mode != mode.value:
        if payee is Payee.PROVIDER:
            detail = msg("programme {programme} pays out by {mode}; the enterprise files a claim instead",
                         programme=terms.code, mode=Status(terms.mode))
        else:
            detail = msg("programme {programme} pays out by {mode}; providers redeem instead",
                         programme=terms.code, mode=Status(terms.mode))
        raise WrongPayoutMode(detail, mode=terms.mode)


def parties_of(parties: Iterable[Mapping[str, object]] | None, uscc: str | None) -> list[tuple[str, str, str]]:
    """Who a side is and who stands behind it, as (key, party id as written, role): each related
    party, and the side's own USCC as the party `uscc:<USCC>` with role `self` (the same legal
    entity registered as both enterprise and provider is the closest relation there is). Keys
    compare ids without regard to letter case (a hex digest names the same party either way).
    The redemption path and the `related_party` anomaly report both judge by it."""
    listed = [(p.get("party_id"), p.get("role", "")) for p in parties or ()]
    own = [(f"uscc:{uscc}", "self")] if uscc else []
    return [(_party_key(party_id), party_id, str(role)) for party_id, role in [*listed, *own]
            if isinstance(party_id, str) and party_id]


def _party_key(party_id: str) -> str:
    """A company is keyed by its USCC however it was written: `uscc:<USCC>`, or the USCC alone
    (the natural way to record a company shareholder, which had not been matched with the
    other side's own USCC: a parent's purchase for its subsidiary was subsidised; an
    independent review, December 2026)."""
    if uscc_is_valid(party_id.upper()):
        return f"uscc:{party_id}".casefold()
    return party_id.casefold()


def party_ids(parties: list[dict[str, Any]] | None, uscc: str | None) -> dict[str, str]:
    """`parties_of` as {key: party id as written}."""
    return {key: written for key, written, _ in parties_of(parties, uscc)}


def check_enrolled(terms: Terms, parties: Parties) -> None:
    """First of the programme's refusals: a provider outside the programme learns nothing of its
    terms (its payout mode, its parties) from the ones after."""
    if not parties.is_enrolled:
        raise not_enrolled(terms.code)


def not_enrolled(programme_code: str) -> ProviderNotEnrolled:
    return ProviderNotEnrolled(msg("provider is not enrolled in programme {programme}", programme=programme_code))


def check_parties(parties: Parties) -> None:
    ours = party_ids(parties.enterprise_related, parties.enterprise_uscc)
    shared = sorted(ours[k] for k in ours.keys() & party_ids(parties.provider_related, parties.provider_uscc).keys())
    if shared:
        raise RelatedParty(
            msg("the provider and the enterprise share a legal representative or shareholder; "
                "related-party purchases are not subsidised")
            if f"uscc:{parties.enterprise_uscc}" not in shared else
            msg("the provider is the enterprise itself (the same USCC {uscc}); purchases from oneself are not "
                "subsidised", uscc=parties.enterprise_uscc),
            shared_parties=shared,
        )


def check_usable(voucher: VoucherState, now: datetime, *, to_provider: bool = True) -> None:
    """A provider is told that the office suspended or revoked the voucher, not the office's reason:
    that is the enterprise's and the office's (an independent review, December 2026)."""
    reason = None if to_provider else voucher.status_reason
    if now < voucher.valid_from:
        raise VoucherNotYetValid(msg("valid from {valid_from}", valid_from=voucher.valid_from),
                                 valid_from=voucher.valid_from.isoformat())
    status = effective_status(VoucherStatus(voucher.status), voucher.expires_at, now)
    if status is VoucherStatus.EXPIRED:
        raise VoucherExpired(msg("expired at {expires_at}", expires_at=voucher.expires_at),
                             expires_at=voucher.expires_at.isoformat())
    if status is VoucherStatus.SUSPENDED:
        raise VoucherSuspended(
            msg("suspended by the programme office: {reason}", reason=reason) if reason
            else msg("suspended by the programme office"))
    if status is VoucherStatus.REVOKED:
        raise VoucherRevoked(
            msg("revoked by the programme office: {reason}", reason=reason) if reason
            else msg("revoked by the programme office"))


def check_items(terms: Terms, items: list[dict[str, Any]]) -> None:
    kind = ProgrammeKind(terms.kind)
    for index, item in enumerate(items):
        category = item["category"]
        if category_group(category) not in CATEGORY_GROUPS_BY_KIND[kind]:
            raise VoucherKindMismatch(
                msg("line item {number} ({category}) is not covered by a {voucher}",
                    number=index + 1, category=category, voucher=_VOUCHER_OF_KIND[kind]),
                line_item=index,
            )
        if category not in terms.rate_table:
            raise CategoryOutOfScope(
                msg("line item {number}: {category} is not subsidised by this programme (it covers {categories})",
                    number=index + 1, category=category, categories=sorted(terms.rate_table)),
                line_item=index,
            )


def check_order(order: Order, *, order_reference: str, enterprise_id: uuid.UUID, order_amount: int, unit: str,
                has_live_redemption: bool) -> None:
    """One order reference is one order; a voucher subsidises an order once."""
    if order.enterprise_id != enterprise_id or order.order_amount != order_amount or order.unit != unit:
        raise OrderReferenceConflict(
            msg("order {order_reference} was first presented for another enterprise or amount "
                "({order_amount}); one order reference is one order",
                order_reference=order_reference, order_amount=Amount(order.order_amount, order.unit)),
        )
    if has_live_redemption:
        raise OrderAlreadySubsidised(msg("this voucher already subsidises this order"))


#: What each step of the computation is called in a sentence (the `limited_by` codes stay in
#: the problem's extension members).
_LIMIT_NAMES: dict[str, Message] = {
    "rates": msg("the programme's rates"),
    "stacking_ceiling": msg("the stacking ceiling"),
    "enterprise_cap": msg("the enterprise's cap for the period"),
    "voucher_balance": msg("the voucher's available balance"),
    "expected_subsidy": msg("the expected subsidy"),
}

_REFUSAL_BY_LIMIT = {
    "rates": (NothingToSubsidise, msg("the line items earn no subsidy at the programme's rates")),
    "stacking_ceiling": (OrderAlreadySubsidised, None),  # its detail gives the figures (hold_subsidy)
    "enterprise_cap": (EnterpriseCapReached, msg("the enterprise has reached its cap for this period")),
    "voucher_balance": (VoucherExhausted, msg("the voucher has no available balance")),
}


def hold_subsidy(
    terms: Terms, items: list[dict[str, Any]], *, order: Order, usage: Usage, stale: Stale, available: int,
    unit: str, expected: int | None = None, to_provider: bool = True, released_spend: int = 0,
) -> Computation:
    """The subsidy a new hold gets, step by step (subsidy.py): from the programme's rates and
    tiers, capped by the stacking ceiling, the enterprise's remaining cap and the voucher's
    available balance — every figure net of holds that are void when read. Nothing to grant
    is a refusal naming the limit that bound. With an `expected` subsidy (the provider quoted
    one) exactly that is granted, or, when the limits leave less, the hold is refused. `unit`:
    the voucher's, which every amount here is in. A refusal shows the computation as the
    provider sees it (`subsidy.for_provider`) unless `to_provider` is false (a claim: the
    enterprise's own figures). `released_spend`: the spend of this period's expired holds that the
    same operation releases (its counter is lowered by as much as this hold raises it)."""
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
    if usage.subsidised_spend - released_spend + computation.order_amount > MAX_PERIOD_SPEND:
        raise PeriodSpendLimitReached(
            msg("the enterprise's orders this period would sum to more than {limit}, the most the service "
                "counts; nothing was held", limit=Amount(MAX_PERIOD_SPEND, unit)),
            max_period_spend=MAX_PERIOD_SPEND)
    shown = for_provider if to_provider else dict
    if expected is not None and computation.subsidy < expected:
        bound = computation.limited_by
        raise SubsidyBelowExpected(
            msg("the expected subsidy is {expected_subsidy} but only {subsidy} would be granted "
                "(limited by {limited_by}); nothing was held",
                expected_subsidy=Amount(expected, unit), subsidy=Amount(computation.subsidy, unit),
                limited_by=_LIMIT_NAMES.get(bound or "", bound)),
            expected_subsidy=expected, subsidy=computation.subsidy, limited_by=bound,
            computation=shown(computation.as_dict()),
        )
    if computation.subsidy == 0:
        error, detail = _REFUSAL_BY_LIMIT[computation.limited_by]
        if computation.limited_by == "stacking_ceiling":
            ceiling = computation.steps[0]
            detail = msg("the order has already been subsidised {already}, its stacking ceiling of {ceiling} "
                         "({rate} of the order)", already=Amount(ceiling["already_subsidised_on_order"], unit),
                         ceiling=Amount(ceiling["ceiling_amount"], unit), rate=percent(ceiling["ceiling_bps"]))
        raise error(detail, computation=shown(computation.as_dict()))
    return computation


# -- a hold's later life ---------------------------------------------------------------------


#: The reasons a hold is void without anyone voiding it (`lapse`): its release is announced as
#: `hold.expired`, whichever came first.
LAPSES = frozenset({VoidReason.EXPIRED, VoidReason.VOUCHER_EXPIRED})


def lapse(hold_expires_at: datetime, voucher_expires_at: datetime | None) -> tuple[VoidReason, datetime]:
    """When a hold becomes void without anyone voiding it, and why: when its TTL passes, or when
    its voucher expires if that comes first (DESIGN §2: an expiring voucher's holds are voided
    first). From that instant every read shows it void and every release records it so, whether
    or not a job has posted it yet."""
    if voucher_expires_at is not None and voucher_expires_at < hold_expires_at:
        return VoidReason.VOUCHER_EXPIRED, voucher_expires_at
    return VoidReason.EXPIRED, hold_expires_at


def effective_redemption_status(status: str, void_reason: str | None, voided_at: datetime | None,
                                hold_expires_at: datetime, voucher_expires_at: datetime | None,
                                now: datetime) -> tuple[str, str | None, datetime | None]:
    """Status, void reason and void instant as reads show them: a hold that has lapsed (`lapse`)
    reads as voided since it lapsed, even before its release is posted."""
    if status == RedemptionStatus.HELD.value:
        reason, at = lapse(hold_expires_at, voucher_expires_at)
        if now >= at:
            return RedemptionStatus.VOIDED.value, reason.value, at
    return status, void_reason, voided_at


def judged_at(now: datetime, *counters: Order | Usage | None) -> datetime:
    """The instant a capture or a void judges its hold's expiry at: its own, or — if later — the
    instant of the last operation that moved the hold's order or period totals. That operation
    committed before this one took those rows' locks, and may have counted this very hold as void
    when it was past its TTL (taking the room it left on the order or under the cap); this
    operation's own instant may be earlier (read before it waited on the locks, or on a machine
    whose clock is behind). Judged no earlier, the hold cannot be captured after its room was
    given away, and a void records it as expired."""
    return max([now, *(c.decided_at for c in counters if c is not None and c.decided_at is not None)])


def capture_amount(hold: Hold, voucher: VoucherState, requested: int | None, now: datetime, *,
                   approval: bool = False) -> int:
    """How much a capture takes: at most what is held (the rest is released); never from a hold
    that has lapsed, by its TTL or by its voucher's expiry, whichever came first. A hold its
    voucher's revocation voided says so (one the provider voided before is `hold_not_active`)."""
    if hold.status != RedemptionStatus.HELD.value:
        if hold.void_reason == VoidReason.VOUCHER_REVOKED.value:
            detail = msg("the voucher was revoked; its holds are void") if not approval else msg(
                "the voucher was revoked; its holds are void, and the claim can no longer be approved")
            raise VoucherRevoked(detail, current_status=hold.status)
        raise HoldNotActive(msg("the hold is {status}", status=Status(hold.status)), current_status=hold.status)
    lapsed, at = lapse(hold.hold_expires_at, voucher.expires_at)
    if now >= at and lapsed is VoidReason.EXPIRED:
        raise HoldExpired(
            msg("the hold expired at {hold_expires_at} and is void", hold_expires_at=hold.hold_expires_at),
            hold_expires_at=hold.hold_expires_at.isoformat(),
        )
    if now >= at or effective_status(VoucherStatus(voucher.status), voucher.expires_at, now) is VoucherStatus.EXPIRED:
        if approval:
            raise VoucherExpired(msg("the voucher expired; its holds are void, and the claim can no longer be approved"))
        raise VoucherExpired(msg("the voucher expired; its holds are void"))
    amount = hold.held_amount if requested is None else requested
    if amount > hold.held_amount:
        held = Amount(hold.held_amount, hold.unit)
        if approval:  # the office's own figure, on the claim it reviewed: a field of its request
            raise ValidationFailed([field_error("amount", msg("at most the {held} held", held=held), "exceeds_hold")])
        raise CaptureExceedsHold(msg("capture {amount} exceeds the held {held_amount}",
                                     amount=Amount(amount, hold.unit), held_amount=held),
                                 held_amount=hold.held_amount)
    return amount


def void_reason(hold: Hold, voucher_expires_at: datetime, now: datetime) -> VoidReason:
    """Voiding a hold that has lapsed records why it lapsed (its TTL, or its voucher's expiry)."""
    if hold.status != RedemptionStatus.HELD.value:
        raise HoldNotActive(msg("the hold is {status}", status=Status(hold.status)), current_status=hold.status)
    return release_reason(hold, VoidReason.PROVIDER, voucher_expires_at, now)


def release_reason(hold: Hold, reason: VoidReason, voucher_expires_at: datetime, now: datetime) -> VoidReason:
    """A hold that has lapsed (`lapse`) has been void since then (reads said so): whatever
    releases it later records that, not its own reason."""
    lapsed, at = lapse(hold.hold_expires_at, voucher_expires_at)
    return lapsed if now >= at else reason


def voided_at(hold: Hold, reason: VoidReason, voucher_expires_at: datetime, now: datetime) -> datetime:
    """When a released hold became void: when it lapsed, if that is why (judged, perhaps, at a
    later operation's instant than `now`: `judged_at`), else now."""
    lapsed, at = lapse(hold.hold_expires_at, voucher_expires_at)
    return at if reason is lapsed else now


def check_refund(hold: Hold, amount: int) -> None:
    if amount < 1:  # the API's schema refuses it first; a caller inside the service gets the same answer
        raise ValidationFailed([field_error("amount", msg("a refund gives back at least {least}",
                                                          least=Amount(1, hold.unit)))])
    if hold.status not in (RedemptionStatus.CAPTURED.value, RedemptionStatus.REFUNDED.value):
        raise RedemptionNotCaptured(msg("the redemption is {status}", status=Status(hold.status)), current_status=hold.status)
    remaining = hold.captured_amount - hold.refunded_amount
    if amount > remaining:
        raise RefundExceedsCaptured(msg("at most {refundable} can still be refunded",
                                        refundable=Amount(remaining, hold.unit)), refundable=remaining)


#: The journals that post to an enterprise's receivable for one voucher, besides refunds'
#: recoveries: the clawback recorded (at revocation or later) and the two ways it is settled.
CLAWBACK_RECORDED, CLAWBACK_REPAID, CLAWBACK_WRITTEN_OFF = "clawback_recorded", "clawback_repaid", "clawback_written_off"
#: A repayment or write-off recorded by mistake, undone in full (it counts against the repaid or
#: written-off sum), and what refunds made while it stood recover once it is undone.
CLAWBACK_REPAYMENT_REVERSED = "clawback_repayment_reversed"
CLAWBACK_WRITE_OFF_REVERSED = "clawback_write_off_reversed"
CLAWBACK_RECOVERED_BY_REFUNDS = "clawback_recovered_by_refunds"
#: What the enterprise overpaid (`clawback_overpaid`), paid back to it by the office, and such a
#: return recorded by mistake, undone (it counts against the returned sum).
CLAWBACK_OVERPAYMENT_RETURNED = "clawback_overpayment_returned"
CLAWBACK_OVERPAYMENT_RETURN_REVERSED = "clawback_overpayment_return_reversed"
#: A clawback recorded by mistake (entered twice, a mistyped amount), undone (it counts against
#: the clawed-back sum).
CLAWBACK_REVERSED = "clawback_reversed"
#: Which reversal undoes which entry of the office's.
CLAWBACK_REVERSALS = {CLAWBACK_RECORDED: CLAWBACK_REVERSED, CLAWBACK_REPAID: CLAWBACK_REPAYMENT_REVERSED,
                      CLAWBACK_WRITTEN_OFF: CLAWBACK_WRITE_OFF_REVERSED,
                      CLAWBACK_OVERPAYMENT_RETURNED: CLAWBACK_OVERPAYMENT_RETURN_REVERSED}


@dataclass(frozen=True, slots=True)
class Clawback:
    """One voucher's clawback as its journals on the enterprise's receivable record it: the used
    value clawed back, what the enterprise repaid and what the office wrote off of it, what is
    owed now (the sum of every posting: refunds' recoveries lower it too), and what the office
    returned to the enterprise of what it overpaid."""

    clawed_back: int = 0
    repaid: int = 0
    written_off: int = 0
    owed: int = 0
    returned: int = 0

    @property
    def net_paid(self) -> int:
        """What the enterprise repaid less what the office returned to it (below 0 once a
        repayment whose overpayment was returned is reversed)."""
        return self.repaid - self.returned


def clawback_owed(clawback: Clawback, used: int) -> int:
    """What the enterprise owes back for a voucher while `used` is still used on it.

    A clawback asks back part of the value used on this voucher, so the clawed-back value still
    owed never exceeds what is still used on it: a refund takes value that was not clawed back
    first, and only what takes the used value below the clawback comes off it (the programme
    gets that value back from the provider). What the enterprise paid, net of what the office
    returned to it of an overpayment, and what the office wrote off come off that, unless
    reversed (`clawback_reversal`): `max(0, min(clawed back, used) - net paid - written off)`.

    Money the office returned beyond what the enterprise still counts as having paid (it was
    returned an overpayment, then the repayment bounced and was reversed) is owed on top, and a
    write-off does not forgive it: a write-off forgives clawed-back value, and one that refunds
    have since overtaken (the value it forgave came back through the provider) had otherwise
    cancelled money the office paid out (an independent review, December 2026)."""
    return clawback_forgivable(clawback, used) + max(0, -clawback.net_paid)


def clawback_forgivable(clawback: Clawback, used: int) -> int:
    """The part of what is owed that is clawed-back value still used, which a write-off may
    forgive: `clawback_owed` less money the office returned and is owed back."""
    return max(0, min(clawback.clawed_back, used) - max(0, clawback.net_paid) - clawback.written_off)


def clawback_recovered(clawback: Clawback, used: int, refunded: int) -> int:
    """What a refund of `refunded` on an ended voucher recovers of the clawback recorded against
    it, its used value being `used` before the refund: what is owed now less what
    `clawback_owed` leaves after it."""
    return max(0, clawback.owed - clawback_owed(clawback, max(0, used - refunded)))


def clawback_refunded(clawback: Clawback, used: int) -> int:
    """Clawed-back value that refunds returned to the programme through the provider: what of
    the clawback the value still used no longer covers."""
    return clawback.clawed_back - min(clawback.clawed_back, used)


def clawback_recording(clawback: Clawback, used: int, amount: int) -> tuple[Clawback, int]:
    """Claw back `amount` more of the used value (at most `clawback_room`): the clawback with it
    counted, and what of it is covered already — what the enterprise paid beyond the value
    clawed back, once a clawback it paid was reversed (entered twice, mistyped). The entry puts
    the amount on the receivable and a second journal takes the covered part off, so what is
    owed is what `clawback_owed` says: a mistyped clawback the enterprise paid part of is
    reversed and the right one recorded, and the payment counts against it."""
    if not 0 < amount <= clawback_room(clawback, used):
        raise ValueError("a clawback takes at most the used value not clawed back yet")
    after = replace(clawback, clawed_back=clawback.clawed_back + amount)
    owed = clawback_owed(after, used)
    return replace(after, owed=owed), amount - (owed - clawback.owed)


def clawback_reversible(clawback: Clawback, kind: str) -> bool:
    """Whether an entry of `kind` may be undone now. A clawback, or a return of an
    overpayment, not while a write-off of the voucher's clawback stands: a write-off forgives
    clawed-back value, and undoing either leaves less clawed back than is paid and written off
    (a clawback) or more paid (a return) — the write-off would then silently forgive the real
    debt, or a clawback recorded later (a second review found a return reversed after a
    write-off had forgiven the next clawback as "covered by what the enterprise paid"). So the
    write-off is reversed first, and written off again if the office still means it. What the
    enterprise paid may stand above what is left: it overpaid (`clawback_overpaid`), and the
    office returns it or a later clawback counts it (`clawback_recording`)."""
    return not (kind in (CLAWBACK_RECORDED, CLAWBACK_OVERPAYMENT_RETURNED) and clawback.written_off)


def clawback_room(clawback: Clawback, used: int) -> int:
    """How much more used value may be clawed back: what is used and not clawed back yet. Value
    repaid or written off was clawed back, so it is not asked for again."""
    return max(0, used - clawback.clawed_back)


def clawback_overpaid(clawback: Clawback, used: int) -> int:
    """What the enterprise repaid beyond the clawed-back value still used on the voucher: a
    refund of the order after the repayment returned the same value to the programme through
    the provider, or a clawback it paid was reversed (recorded by mistake). (A refund comes off
    what is owed first, then off the write-off, and only then off the repayment.) What the
    office returned of it (`clawback_overpayment_return`) is overpaid no more."""
    return max(0, clawback.net_paid - min(clawback.clawed_back, used))


def clawback_overpayment_return(clawback: Clawback, used: int, amount: int) -> tuple[Clawback, int]:
    """The office pays `amount` of what the enterprise overpaid (`clawback_overpaid`) back to it:
    the clawback with the return counted, and what of it refunds recover.

    The enterprise's net repayment falls by the amount, so its journal puts the amount on the
    receivable, as undoing that much of the repayment would; but the value was returned to the
    programme by the provider (the refunds that made the overpayment), so a second journal takes
    the same amount off: nothing is owed before or after. Recorded, the return is what makes a
    later reversal of the repayment right: the enterprise then owes back what it was returned,
    on top of the clawed-back value still used."""
    if not 0 < amount <= clawback_overpaid(clawback, used):
        raise ValueError("a return pays back at most what was overpaid")
    after = replace(clawback, returned=clawback.returned + amount)
    owed = clawback_owed(after, used)
    return replace(after, owed=owed), amount - (owed - clawback.owed)


def clawback_reversal(clawback: Clawback, used: int, kind: str, amount: int) -> tuple[Clawback, int]:
    """Undo a clawback, repayment, write-off or overpayment return of `amount`, recorded by mistake: the
    clawback with it gone, and what the reversal's second journal takes off the receivable
    (negative: puts back on it) so that it stays at `clawback_owed`.

    A refund of the order after a repayment recovered nothing (nothing was owed), and the
    enterprise had paid beyond the clawed-back value still used (`clawback_overpaid`). With the
    repayment undone, the enterprise owes only that value again, not the whole amount: the
    receivable rises by the amount and falls by the rest, the refunds' recovery. A return undone
    is the mirror: its reversal takes the amount off, and what the return's own recovery had
    taken off goes back on, but for what the return is still owed (after a reversed repayment).
    A clawback undone takes its amount off, and what refunds or payments had covered of it goes
    back on, but for what they still cover of the clawed-back value left (`clawback_reversible`
    says when an entry may be undone)."""
    moved = amount  # what the reversal's own journal puts on the receivable
    if not clawback_reversible(clawback, kind):
        raise ValueError("a clawback or a return is not undone while a write-off stands")
    if kind == CLAWBACK_RECORDED:
        undone, moved = replace(clawback, clawed_back=clawback.clawed_back - amount), -amount
    elif kind == CLAWBACK_REPAID:
        undone = replace(clawback, repaid=clawback.repaid - amount)
    elif kind == CLAWBACK_WRITTEN_OFF:
        undone = replace(clawback, written_off=clawback.written_off - amount)
    elif kind == CLAWBACK_OVERPAYMENT_RETURNED:
        undone, moved = replace(clawback, returned=clawback.returned - amount), -amount
    else:
        raise ValueError(f"only a clawback, a repayment, a write-off or an overpayment return is reversed, not {kind!r}")
    if min(undone.clawed_back, undone.repaid, undone.written_off, undone.returned) < 0:
        raise ValueError("a reversal undoes more than was recorded")
    owed = clawback_owed(undone, used)
    recovered = moved - (owed - clawback.owed)
    return replace(undone, owed=owed), recovered


def refund_goes_to_voucher(voucher: VoucherState, now: datetime) -> bool:
    """A refund returns value to the voucher while it can still be used (suspended counts),
    else to the programme's pool."""
    status = effective_status(VoucherStatus(voucher.status), voucher.expires_at, now)
    return status in (VoucherStatus.ACTIVE, VoucherStatus.EXHAUSTED, VoucherStatus.SUSPENDED)
