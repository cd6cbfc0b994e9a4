"""The subsidy computation, step by step. Pure: integers only, one rounding rule (floor).

    subsidy = Σ over line items of floor(amount × rate / 10000)

where an item's rate is its category's rate from the programme's rate table, or a tier's rate
for the part of the item that falls within that tier's band of the enterprise's subsidised
spend this period (an item that crosses a band boundary is split there; the item is floored once).
An order's items take the bands in order of category code, then amount, whatever order they
were sent in.
The gross subsidy is then capped, in this order, by

1. the stacking ceiling: all subsidies on one order ≤ floor(order amount × ceiling / 10000),
2. the enterprise's remaining cap for the period,
3. the voucher's available balance,
4. the expected subsidy, when the provider quoted one (it is granted exactly, or refused when
   the steps before leave less),

and the SME pays the rest. Every step is returned so the answer can be explained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.voucher.money import BPS_DENOMINATOR, apply_rate, check_amount, check_bps


@dataclass(frozen=True)
class Item:
    category: str
    amount: int


@dataclass(frozen=True)
class Tier:
    spend_up_to: int
    rate_bps: int
    categories: frozenset[str] | None  # None: every category

    def applies_to(self, category: str) -> bool:
        return self.categories is None or category in self.categories


@dataclass
class Computation:
    items: list[dict[str, Any]] = field(default_factory=list)
    order_amount: int = 0
    gross_subsidy: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)
    subsidy: int = 0
    #: Which limit decided the result: "rates", "stacking_ceiling", "enterprise_cap", "voucher_balance",
    #: "expected_subsidy".
    limited_by: str = "rates"
    enterprise_pays: int = 0
    #: The enterprise's subsidised spend in the period before this order: where the tiers start.
    spend_before: int = 0
    #: The subsidy it was granted in the period before this order: what the cap step subtracts.
    subsidy_before: int = 0
    #: The subsidy the provider quoted, if it did.
    expected_subsidy: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "order_amount": self.order_amount,
            "items": self.items,
            "gross_subsidy": self.gross_subsidy,
            "steps": self.steps,
            "subsidy": self.subsidy,
            "limited_by": self.limited_by,
            "enterprise_pays": self.enterprise_pays,
            "spend_this_period_before": self.spend_before,
            "subsidy_this_period_before": self.subsidy_before,
            **({"expected_subsidy": self.expected_subsidy} if self.expected_subsidy is not None else {}),
        }


#: The figures of a computation that sum the enterprise's orders with every provider this period
#: (`subsidised_this_period_before`: the first name of the second, on redemptions made before it
#: was renamed). A provider is shown a computation without them (`for_provider`).
ENTERPRISE_FIGURES = ("spend_this_period_before", "subsidy_this_period_before", "subsidised_this_period_before")


def for_provider(computation: Mapping[str, Any]) -> dict[str, Any]:
    """A computation as a provider sees it: without the enterprise's spend and subsidy this period
    before the order, and without what its cap's step would show — its room, and the amount
    after it, which an order larger than the room makes the room (an independent review read the
    room off a quote of a 10^12 order, limited by the voucher's balance); the step after it
    shows no `before`, which is that amount again. Both sum the enterprise's orders with other
    providers. The subsidy, each item's rates and parts, the stacking ceiling and the voucher's
    room stay: the provider's own order's, and the balance `vouchers/lookup` answers. What the
    subsidy itself implies stays implied (docs/decisions.md)."""
    shown = {k: v for k, v in computation.items() if k not in ENTERPRISE_FIGURES}
    steps = computation.get("steps")
    if isinstance(steps, list):
        seen: list[dict[str, Any]] = []
        for step in steps:
            if step.get("limit") == "enterprise_cap":
                seen.append({"limit": "enterprise_cap"})
            elif seen and seen[-1] == {"limit": "enterprise_cap"}:
                seen.append({k: v for k, v in step.items() if k != "before"})
            else:
                seen.append(step)
        shown["steps"] = seen
    return shown


def parse_tiers(raw: Sequence[Mapping[str, Any]]) -> list[Tier]:
    tiers = [
        Tier(
            spend_up_to=int(t["spend_up_to"]),
            rate_bps=int(t["rate_bps"]),
            # null: every category; a list: those (an empty one, which new terms refuse: none)
            categories=frozenset(t["categories"]) if t.get("categories") is not None else None,
        )
        for t in raw
    ]
    return sorted(tiers, key=lambda t: t.spend_up_to)


def item_subsidy(
    item: Item, table_rate: int, tiers: Sequence[Tier], spend_before: int
) -> tuple[int, list[dict[str, Any]]]:
    """The subsidy on one item whose spend starts at `spend_before`, with its parts: the item's
    subsidy is floored once, floor(Σ part × its rate / 10000), as DESIGN's Σ over line items of
    floor(item × rate / 10000) has it. Each part shows its share, the floor of the running sum
    less the floor before it, so the parts add up to the item's subsidy; flooring each part on
    its own had given one fen less for each band an item crossed (an independent review,
    December 2026)."""
    parts: list[dict[str, Any]] = []
    position, remaining = spend_before, item.amount
    for tier in (t for t in tiers if t.applies_to(item.category)):
        if remaining == 0:
            break
        if position >= tier.spend_up_to:
            continue
        portion = min(remaining, tier.spend_up_to - position)
        parts.append({"amount": portion, "rate_bps": tier.rate_bps, "rate_source": "tier",
                      "tier_spend_up_to": tier.spend_up_to})
        position += portion
        remaining -= portion
    if remaining:
        parts.append({"amount": remaining, "rate_bps": table_rate, "rate_source": "rate_table"})
    exact, granted = 0, 0  # Σ portion × rate so far (in 1/10000 of a minor unit), and its floor
    for part in parts:
        exact += check_amount(part["amount"]) * check_bps(part["rate_bps"])
        part["subsidy"] = exact // BPS_DENOMINATOR - granted
        granted += part["subsidy"]
    return granted, parts


def compute(
    *,
    items: Sequence[Item],
    rate_table: Mapping[str, int],
    tiers: Sequence[Tier],
    spend_so_far: int,
    stacking_ceiling_bps: int,
    already_subsidised_on_order: int,
    enterprise_cap_remaining: int,
    voucher_available: int,
    subsidy_so_far: int = 0,
    expected_subsidy: int | None = None,
) -> Computation:
    """Every category must be in `rate_table` (the caller refuses out-of-scope items first).
    `subsidy_so_far` is shown, not used (the cap's room already counts it)."""
    result = Computation(order_amount=sum(i.amount for i in items), spend_before=spend_so_far,
                         subsidy_before=subsidy_so_far, expected_subsidy=expected_subsidy)
    # The order's lines take the tiers' bands by category code, then amount — never in the order
    # they were sent, which whoever writes them chooses: one purchase had been subsidised 50,000
    # or 70,000 as its two lines were listed (an independent review, December 2026). Lines alike
    # in both are interchangeable, so the subsidy is a function of the order's lines alone. They
    # are listed as they were given (exports pair them with the request's lines by position).
    listed: list[dict[str, Any]] = [{} for _ in items]
    position = spend_so_far
    for index in sorted(range(len(items)), key=lambda i: (items[i].category, items[i].amount)):
        item = items[index]
        subsidy, parts = item_subsidy(item, rate_table[item.category], tiers, position)
        position += item.amount
        listed[index] = {"category": item.category, "amount": item.amount, "parts": parts, "subsidy": subsidy}
        result.gross_subsidy += subsidy
    result.items = listed

    ceiling_total = apply_rate(result.order_amount, stacking_ceiling_bps)
    limits = [
        ("stacking_ceiling", max(0, ceiling_total - already_subsidised_on_order),
         {"ceiling_bps": stacking_ceiling_bps, "ceiling_amount": ceiling_total,
          "already_subsidised_on_order": already_subsidised_on_order}),
        ("enterprise_cap", max(0, enterprise_cap_remaining), {}),
        ("voucher_balance", max(0, voucher_available), {}),
    ]
    if expected_subsidy is not None:
        limits.append(("expected_subsidy", expected_subsidy, {}))
    current = result.gross_subsidy
    for name, limit, detail in limits:
        after = min(current, limit)
        result.steps.append({"limit": name, "room": limit, **detail, "before": current, "after": after})
        if after < current:
            result.limited_by = name
        current = after
    result.subsidy = current
    result.enterprise_pays = result.order_amount - current
    return result
