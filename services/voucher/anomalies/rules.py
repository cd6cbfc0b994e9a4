"""Anomaly detectors for auditors. Pure: stdlib only (and money.py, i18n.py).

A detector reads plain rows — redemptions that carry value (captured net of refunds, or held
while the hold lives) or claims — and returns findings: the rows that triggered it, the
figures it compared, and an explanation in English and zh-CN. Amounts are integers in the
unit's minor unit (written for people as money.format_for_people does: ¥1,234.56 in both
languages); ratios are compared by cross-multiplication, never by division.

    related_party     the enterprise and the provider share a legal representative or shareholder
    order_splitting   ≥ N orders of one pair, each just under a threshold, within a window
    velocity_spike    a pair's latest window > K × its average window before
    expiry_burst      a voucher used up in its last days: ≥ P % of all it redeemed, ≥ a minimum
    shared_reference  one order reference (or invoice) under two or more enterprises
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from services.voucher.i18n import Message, instants_zone, render_instant
from services.voucher.money import BPS_DENOMINATOR, MAX_AMOUNT, format_for_people, percent
from services.voucher.redemption.rules import parties_of
from services.voucher.windows import range_problem


class AnomalyRule(StrEnum):
    RELATED_PARTY = "related_party"
    ORDER_SPLITTING = "order_splitting"
    VELOCITY_SPIKE = "velocity_spike"
    EXPIRY_BURST = "expiry_burst"
    SHARED_REFERENCE = "shared_reference"


RULE_ORDER = {rule: index for index, rule in enumerate(AnomalyRule)}


@dataclass(frozen=True)
class Thresholds:
    """Every detector's parameters, with the defaults a report uses when none are given."""

    split_min_orders: int = 3
    split_margin_bps: int = 1000
    #: None: each programme's max_per_voucher.
    split_threshold: int | None = None
    split_window_days: int = 7
    velocity_window_days: int = 7
    velocity_factor: int = 3
    velocity_min_windows: int = 2
    expiry_days: int = 3
    expiry_share_bps: int = 5000
    expiry_min_amount: int = 100_000


#: (lowest, highest) accepted value of each threshold; routes validate against these.
BOUNDS: dict[str, tuple[int, int]] = {
    "split_min_orders": (2, 1000),
    "split_margin_bps": (1, 5000),
    "split_threshold": (1, MAX_AMOUNT),
    "split_window_days": (1, 366),
    "velocity_window_days": (1, 366),
    "velocity_factor": (1, 1000),
    "velocity_min_windows": (1, 520),
    "expiry_days": (1, 366),
    "expiry_share_bps": (1, BPS_DENOMINATOR),
    "expiry_min_amount": (0, MAX_AMOUNT),
}
DEFAULT_LIMIT = 500
MAX_LIMIT = 5000


@dataclass(frozen=True)
class Redeemed:
    """A redemption that carries value now; `amount` is that value (captured − refunded, or
    the live hold), `at` is when the redemption was made."""

    redemption_id: uuid.UUID
    programme_id: uuid.UUID
    enterprise_id: uuid.UUID
    provider_id: uuid.UUID
    voucher_id: uuid.UUID
    order_reference: str
    order_amount: int
    amount: int
    unit: str
    at: datetime


@dataclass(frozen=True)
class Claimed:
    """A claim that stands (not rejected); `amount` is its subsidy (approved, else held)."""

    claim_id: uuid.UUID
    redemption_id: uuid.UUID
    programme_id: uuid.UUID
    enterprise_id: uuid.UUID
    provider_id: uuid.UUID
    voucher_id: uuid.UUID
    invoice_number: str
    amount: int
    unit: str
    status: str
    at: datetime
    #: What claims' invoices are compared by (O read as 0, I and L as 1); the number when not given.
    invoice_key: str = ""


#: The figures of a finding that are amounts in the minor unit of its `unit` (the rest are
#: counts, days, factors, and shares in basis points, named `*_bps`): what a page formats as money.
AMOUNT_FIGURES = frozenset({"threshold", "lower_bound", "order_total", "recent_amount", "average_per_window",
                            "earlier_total", "burst_amount", "total_redeemed", "min_amount"})


@dataclass(frozen=True)
class SharedParty:
    party_id: str
    enterprise_roles: tuple[str, ...]
    provider_roles: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    rule: AnomalyRule
    rows: tuple[Redeemed, ...]
    explanation_en: str
    explanation_zh: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    figures: dict[str, int] = field(default_factory=dict)
    shared_parties: tuple[SharedParty, ...] = ()
    claims: tuple[Claimed, ...] = ()

    def explanation(self, language: str) -> str:
        return self.explanation_zh if language.lower().startswith("zh") else self.explanation_en

    def _items(self) -> tuple[Redeemed | Claimed, ...]:
        """The rows and the claims the finding is about."""
        return (*self.rows, *self.claims)

    def _ids(self, name: str) -> list[uuid.UUID]:
        return sorted({getattr(r, name) for r in self._items()})

    @property
    def programme_ids(self) -> list[uuid.UUID]:
        return self._ids("programme_id")

    @property
    def enterprise_ids(self) -> list[uuid.UUID]:
        return self._ids("enterprise_id")

    @property
    def provider_ids(self) -> list[uuid.UUID]:
        return self._ids("provider_id")

    @property
    def voucher_ids(self) -> list[uuid.UUID]:
        return self._ids("voucher_id")

    @property
    def unit(self) -> str | None:
        units = {r.unit for r in self._items()}
        return units.pop() if len(units) == 1 else None

    @property
    def total_amount(self) -> int | None:
        """The sum of the rows' amounts; None when they are in different units."""
        if self.unit is None:
            return None
        return sum(r.amount for r in self._items())

    def sort_key(self) -> tuple[int, datetime, str]:
        times = [r.at for r in self._items()]
        first = min(times) if times else datetime.min.replace(tzinfo=UTC)
        enterprises = self.enterprise_ids
        return RULE_ORDER[self.rule], first, str(enterprises[0]) if enterprises else ""


# -- wording ---------------------------------------------------------------------------------

_ROLE_EN = {"legal_representative": "legal representative", "shareholder": "shareholder", "self": "own USCC"}
_ROLE_ZH = {"legal_representative": "法定代表人", "shareholder": "股东", "self": "自身统一社会信用代码"}


def money(amount: int, unit: str, language: str = "en") -> str:
    """An amount in minor units as people read it, in "en" or "zh": ¥1,234.56 (both languages),
    1,200.000 GPU-hours / 1,200.000 卡时, 5,000 tokens (money.format_for_people)."""
    return format_for_people(amount, unit, language)


def when(at: datetime, language: str = "en") -> str:
    """An instant where the programme is, with its offset (i18n.render_instant): these
    sentences had written UTC wall-clock times, a voucher expiring at 07:00 on 1 April in
    Beijing read as expiring on 31 March (an independent review, December 2026)."""
    return render_instant(at, language)


def _day(at: datetime) -> str:
    """The day an instant falls on where the programme is."""
    return at.astimezone(instants_zone()).strftime("%Y-%m-%d")


# -- 1. related parties ---------------------------------------------------------------------


def shared_parties(
    enterprise_parties: Iterable[dict[str, object]] | None, provider_parties: Iterable[dict[str, object]] | None,
    enterprise_uscc: str | None = None, provider_uscc: str | None = None,
) -> tuple[SharedParty, ...]:
    """The legal representatives and shareholders both sides name, with each side's roles, as
    the redemption path judges them (`redemption.rules.parties_of`): ids compared without regard
    to letter case, and each side's own USCC a party of its own (role `self`), so one legal
    entity registered as both enterprise and provider shows too."""

    def roles(parties: Iterable[dict[str, object]] | None, uscc: str | None) -> dict[str, tuple[str, set[str]]]:
        out: dict[str, tuple[str, set[str]]] = {}
        for key, written, role in parties_of(parties, uscc):
            out.setdefault(key, (written, set()))[1].add(role)
        return out

    ours, theirs = roles(enterprise_parties, enterprise_uscc), roles(provider_parties, provider_uscc)
    return tuple(
        SharedParty(ours[k][0], tuple(sorted(ours[k][1])), tuple(sorted(theirs[k][1])))
        for k in sorted(ours.keys() & theirs.keys())
    )


def related_party(rows: Sequence[Redeemed], shared: Sequence[SharedParty]) -> Finding | None:
    """Redemptions between parties that are related now: the redemption path refuses related
    parties, so these passed before the relation was recorded."""
    if not rows or not shared:
        return None
    rows = sorted(rows, key=lambda r: (r.at, r.redemption_id))
    unit = rows[0].unit
    total = sum(r.amount for r in rows)
    en_parties = "; ".join(
        f"{p.party_id} (the enterprise's {'/'.join(_ROLE_EN.get(r, r) for r in p.enterprise_roles)}, "
        f"the provider's {'/'.join(_ROLE_EN.get(r, r) for r in p.provider_roles)})" for p in shared
    )
    zh_parties = "；".join(
        f"{p.party_id}（企业的{'、'.join(_ROLE_ZH.get(r, r) for r in p.enterprise_roles)}，"
        f"服务商的{'、'.join(_ROLE_ZH.get(r, r) for r in p.provider_roles)}）" for p in shared
    )
    n = len(rows)
    return Finding(
        rule=AnomalyRule.RELATED_PARTY, rows=tuple(rows), shared_parties=tuple(shared),
        window_start=rows[0].at, window_end=rows[-1].at,
        figures={"redemptions": n, "shared_parties": len(shared)},
        explanation_en=(
            f"The enterprise and the provider share {len(shared)} related part{'y' if len(shared) == 1 else 'ies'}: "
            f"{en_parties}. {n} redemption{'' if n == 1 else 's'} between them, made from {when(rows[0].at)} to "
            f"{when(rows[-1].at)}, carry {money(total, unit)} of subsidy. Related-party purchases are not "
            "subsidised; these passed because the relation was recorded after they were made."
        ),
        explanation_zh=(
            f"企业与服务商存在{len(shared)}个共同关联方：{zh_parties}。双方之间于{when(rows[0].at, 'zh')}至"
            f"{when(rows[-1].at, 'zh')}发生的{n}笔核销共计补贴{money(total, unit, 'zh')}。关联交易不予补贴；"
            "这些核销发生时关联关系尚未登记，因此未被拦截。"
        ),
    )


# -- 2. order splitting ----------------------------------------------------------------------


def split_band(threshold: int, margin_bps: int) -> tuple[int, int]:
    """[lowest, threshold): the amounts within `margin_bps` below the threshold."""
    return threshold - threshold * margin_bps // BPS_DENOMINATOR, threshold


def order_splitting(
    rows: Iterable[Redeemed], *, threshold: int, margin_bps: int, min_orders: int, window: timedelta,
    threshold_is_programme_max: bool = False,
) -> list[Finding]:
    """Rows of ONE enterprise–provider pair in one programme. Distinct orders whose amount is
    just under the threshold are grouped when ≥ `min_orders` of them fall within `window` of
    the first; each group is one finding."""
    low, high = split_band(threshold, margin_bps)
    orders: dict[str, list[Redeemed]] = {}
    for row in rows:
        if low <= row.order_amount < high:
            orders.setdefault(row.order_reference, []).append(row)
    ordered = sorted(orders.values(), key=lambda rs: (min(r.at for r in rs), rs[0].order_reference))
    starts = [min(r.at for r in rs) for rs in ordered]
    findings = []
    i = 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and starts[j] - starts[i] < window:
            j += 1
        if j - i >= min_orders:
            findings.append(_split_finding(ordered[i:j], starts[i], starts[j - 1], low=low, threshold=threshold,
                                           margin_bps=margin_bps, window=window,
                                           is_programme_max=threshold_is_programme_max))
            i = j
        else:
            i += 1
    return findings


def _split_finding(
    orders: list[list[Redeemed]], first: datetime, last: datetime, *, low: int, threshold: int, margin_bps: int,
    window: timedelta, is_programme_max: bool,
) -> Finding:
    rows = tuple(sorted((r for rs in orders for r in rs), key=lambda r: (r.at, r.redemption_id)))
    unit = rows[0].unit
    amounts_en = ", ".join(f"{rs[0].order_reference} {money(rs[0].order_amount, unit)}" for rs in orders)
    amounts_zh = "，".join(f"{rs[0].order_reference} {money(rs[0].order_amount, unit, 'zh')}" for rs in orders)
    what_en = "the programme's maximum per voucher" if is_programme_max else "the threshold"
    what_zh = "项目单券上限" if is_programme_max else "阈值"
    n, days = len(orders), window.days
    return Finding(
        rule=AnomalyRule.ORDER_SPLITTING, rows=rows, window_start=first, window_end=last,
        figures={"orders": n, "threshold": threshold, "lower_bound": low, "margin_bps": margin_bps,
                 "window_days": days, "order_total": sum(rs[0].order_amount for rs in orders)},
        explanation_en=(
            f"{n} orders of this enterprise with this provider, placed within {days} day{'' if days == 1 else 's'} "
            f"({when(first)} to {when(last)}), are each just under {what_en} of {money(threshold, unit)} "
            f"(between {money(low, unit)} and it, i.e. within {percent(margin_bps)} below): {amounts_en}. "
            "One purchase split into orders that each stay under a limit looks like this."
        ),
        explanation_zh=(
            f"该企业在该服务商处于{days}天内（{when(first, 'zh')}至{when(last, 'zh')}）下了{n}笔订单，每笔金额均略低于"
            f"{what_zh}{money(threshold, unit, 'zh')}（介于{money(low, unit, 'zh')}与该值之间，即低于其"
            f"{percent(margin_bps)}以内）：{amounts_zh}。这符合将一笔采购拆分为多笔以规避限额的特征。"
        ),
    )


# -- 3. velocity spike -----------------------------------------------------------------------


def velocity_spike(
    rows: Iterable[Redeemed], *, end: datetime, window: timedelta, factor: int, min_windows: int
) -> Finding | None:
    """Rows of ONE pair in one programme. The window [end − window, end) is compared with the
    pair's earlier windows (aligned to `end`, from its first activity): flagged when
    recent > factor × earlier_total / earlier_windows and ≥ `min_windows` earlier windows saw
    activity."""
    start = end - window
    recent: list[Redeemed] = []
    earlier: dict[int, int] = {}
    first: datetime | None = None
    for row in rows:
        if row.at >= end:
            continue
        if row.at >= start:
            recent.append(row)
            continue
        index = -((row.at - start) // window)  # 1 = [start − window, start), the one just before
        earlier[index] = earlier.get(index, 0) + row.amount
        first = row.at if first is None or row.at < first else first
    if not recent or len(earlier) < min_windows or first is None:
        return None
    recent_amount = sum(r.amount for r in recent)
    earlier_windows = max(earlier)
    earlier_total = sum(earlier.values())
    if recent_amount * earlier_windows <= factor * earlier_total:
        return None
    recent.sort(key=lambda r: (r.at, r.redemption_id))
    unit, days = recent[0].unit, window.days
    average = earlier_total // earlier_windows
    history_start = start - earlier_windows * window
    return Finding(
        rule=AnomalyRule.VELOCITY_SPIKE, rows=tuple(recent), window_start=start, window_end=end,
        figures={"recent_amount": recent_amount, "average_per_window": average, "earlier_total": earlier_total,
                 "earlier_windows": earlier_windows, "active_windows": len(earlier), "factor": factor,
                 "window_days": days},
        explanation_en=(
            f"In the {days} day{'' if days == 1 else 's'} from {when(start)} to {when(end)} this enterprise and "
            f"provider redeemed {money(recent_amount, unit)} in {len(recent)} redemption{'' if len(recent) == 1 else 's'}, "
            f"more than {factor} times their average of {money(average, unit)} per {days}-day window before "
            f"({money(earlier_total, unit)} over {earlier_windows} windows since {_day(history_start)}, "
            f"{len(earlier)} of them with redemptions)."
        ),
        explanation_zh=(
            f"{when(start, 'zh')}至{when(end, 'zh')}的{days}天内，该企业与该服务商之间核销{len(recent)}笔，共"
            f"{money(recent_amount, unit, 'zh')}，超过其此前每{days}天平均值{money(average, unit, 'zh')}的{factor}倍"
            f"（自{_day(history_start)}起{earlier_windows}个周期共{money(earlier_total, unit, 'zh')}，"
            f"其中{len(earlier)}个周期有核销）。"
        ),
    )


# -- 4. expiry burst -------------------------------------------------------------------------


def expiry_burst(
    rows: Iterable[Redeemed], *, expires_at: datetime, days: int, share_bps: int, min_amount: int,
    since: datetime | None = None,
) -> Finding | None:
    """Rows of ONE voucher, from its first. Flagged when what it redeemed in its last `days`
    before expiry (and from `since`, the report's start) is ≥ `share_bps` of everything it
    redeemed, and at least `min_amount` (and not nothing). The total is the voucher's, not the
    report's: with `since`, a voucher used steadily all year had been flagged at about 100 %
    for its last three days (an independent review, December 2026)."""
    start = expires_at - timedelta(days=days)
    burst: list[Redeemed] = []
    total = 0
    for row in rows:
        total += row.amount
        if start <= row.at < expires_at and (since is None or row.at >= since):
            burst.append(row)
    amount = sum(r.amount for r in burst)
    if amount <= 0 or amount < min_amount or amount * BPS_DENOMINATOR < share_bps * total:
        return None
    burst.sort(key=lambda r: (r.at, r.redemption_id))
    unit = burst[0].unit
    share = amount * BPS_DENOMINATOR // total
    return Finding(
        rule=AnomalyRule.EXPIRY_BURST, rows=tuple(burst), window_start=start, window_end=expires_at,
        figures={"burst_amount": amount, "total_redeemed": total, "share_bps": share,
                 "threshold_share_bps": share_bps, "min_amount": min_amount, "days": days},
        explanation_en=(
            f"{money(amount, unit)} of the {money(total, unit)} this voucher redeemed ({percent(share)}) was "
            f"redeemed in the last {days} day{'' if days == 1 else 's'} before it expires at {when(expires_at)}, "
            f"in {len(burst)} redemption{'' if len(burst) == 1 else 's'} (flagged from {percent(share_bps)} and "
            f"{money(min_amount, unit)}): value used up in a rush before expiry."
        ),
        explanation_zh=(
            f"该券累计核销{money(total, unit, 'zh')}，其中{money(amount, unit, 'zh')}（{percent(share)}）发生在"
            f"{when(expires_at, 'zh')}到期前的最后{days}天内，共{len(burst)}笔（阈值：{percent(share_bps)}且不低于"
            f"{money(min_amount, unit, 'zh')}），属到期前突击使用。"
        ),
    )


# -- 5. one reference under several enterprises ------------------------------------------------


def shared_reference(rows: Sequence[Redeemed]) -> Finding | None:
    """Redemptions under one order reference (as grouped by the caller) belonging to two or
    more enterprises: one order should be one buyer's."""
    enterprises = {r.enterprise_id for r in rows}
    if len(enterprises) < 2:
        return None
    rows = sorted(rows, key=lambda r: (r.at, r.redemption_id))
    reference = rows[0].order_reference
    providers = {r.provider_id for r in rows}
    return Finding(
        rule=AnomalyRule.SHARED_REFERENCE, rows=tuple(rows), window_start=rows[0].at, window_end=rows[-1].at,
        figures={"enterprises": len(enterprises), "providers": len(providers), "redemptions": len(rows)},
        explanation_en=(
            f"Order reference {reference} was redeemed under {len(enterprises)} different enterprises "
            f"({len(rows)} redemptions, {len(providers)} provider{'' if len(providers) == 1 else 's'}): one order "
            "belongs to one buyer, so the same order may have been subsidised more than once."
        ),
        explanation_zh=(
            f"订单号{reference}出现在{len(enterprises)}家不同企业的核销中（{len(rows)}笔核销，涉及"
            f"{len(providers)}家服务商）；一笔订单只应属于一个买方，同一订单可能被重复补贴。"
        ),
    )


def shared_invoice(claims: Sequence[Claimed]) -> Finding | None:
    """Standing claims on one invoice number from two or more enterprises."""
    enterprises = {c.enterprise_id for c in claims}
    if len(enterprises) < 2:
        return None
    claims = sorted(claims, key=lambda c: (c.at, c.claim_id))
    number = claims[0].invoice_number
    providers = {c.provider_id for c in claims}
    return Finding(
        rule=AnomalyRule.SHARED_REFERENCE, rows=(), claims=tuple(claims),
        window_start=claims[0].at, window_end=claims[-1].at,
        figures={"enterprises": len(enterprises), "providers": len(providers), "claims": len(claims)},
        explanation_en=(
            f"Invoice {number} is claimed by {len(enterprises)} different enterprises ({len(claims)} claims): "
            "an invoice is issued to one buyer, so the same purchase may have been subsidised more than once."
        ),
        explanation_zh=(
            f"发票号{number}被{len(enterprises)}家不同企业申领补贴（共{len(claims)}笔申领）；一张发票只开给一个买方，"
            "同一笔采购可能被重复补贴。"
        ),
    )


# -- the request -----------------------------------------------------------------------------


def range_problems(since: datetime | None, until: datetime | None) -> list[tuple[str, Message]]:
    """(query parameter, message) for a time range that cannot be reported on."""
    problem = range_problem(since, until)
    return [] if problem is None else [("until", problem)]
