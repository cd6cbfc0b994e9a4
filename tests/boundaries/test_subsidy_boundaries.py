"""Mutation-testing review: boundaries of the subsidy arithmetic that no other test pins down."""

from __future__ import annotations

from services.voucher.redemption.subsidy import Item, compute, parse_tiers

RATES = {"accelerator:domestic": 3000}
TIER_50 = parse_tiers([{"spend_up_to": 50_000_000, "rate_bps": 5000, "categories": None}])
OPEN = {"stacking_ceiling_bps": 10_000, "already_subsidised_on_order": 0,
        "enterprise_cap_remaining": 10**12, "voucher_available": 10**12}


def test_spend_exactly_at_a_tier_boundary_gets_no_empty_tier_part() -> None:
    """Spend before the order equal to the tier's `spend_up_to`: the tier is used up, so the
    explanation shows only the rate-table part (no zero-amount tier part)."""
    result = compute(items=[Item("accelerator:domestic", 1_000_000)], rate_table=RATES, tiers=TIER_50,
                     spend_so_far=50_000_000, **OPEN)
    assert result.subsidy == 300_000
    assert result.items[0]["parts"] == [
        {"amount": 1_000_000, "rate_bps": 3000, "rate_source": "rate_table", "subsidy": 300_000}]
