"""Subsidy arithmetic, table-driven with hand-computed expectations (DESIGN §1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.voucher.redemption.subsidy import Item, compute, parse_tiers

HANGZHOU_RATES = {"accelerator:domestic": 3000, "accelerator:other": 2000, "storage:block": 1000}
TIER_50 = parse_tiers([{"spend_up_to": 50_000_000, "rate_bps": 5000, "categories": None}])
OPEN = {"stacking_ceiling_bps": 10_000, "already_subsidised_on_order": 0,
        "enterprise_cap_remaining": 10**12, "voucher_available": 10**12}


def run(items, tiers=(), spend=0, **limits):
    return compute(items=[Item(c, a) for c, a in items], rate_table=HANGZHOU_RATES, tiers=list(tiers),
                   spend_so_far=spend, **{**OPEN, **limits})


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([("accelerator:domestic", 1_000_000)], 300_000),  # 30 % of ¥10,000.00
        ([("accelerator:other", 1_000_000)], 200_000),  # 20 %
        ([("accelerator:domestic", 333)], 99),  # floor(99.9)
        ([("accelerator:other", 1)], 0),  # floor(0.2)
        # floor per line item, not on the sum: 99 + 66 = 165 (the sum rule would give 166)
        ([("accelerator:domestic", 333), ("accelerator:other", 333)], 165),
        ([("storage:block", 12_345)], 1_234),
    ],
)
def test_rate_per_category_floored_per_item(items, expected) -> None:
    result = run(items)
    assert result.gross_subsidy == result.subsidy == expected
    assert result.enterprise_pays == sum(a for _, a in items) - expected


def test_tier_rate_applies_below_the_threshold() -> None:
    result = run([("accelerator:other", 40_000_000)], tiers=TIER_50, spend=0)
    assert result.subsidy == 20_000_000  # 50 % while spend ≤ ¥500,000.00


def test_tier_switches_at_the_threshold_within_one_item() -> None:
    # spend so far ¥400,000.00; a ¥300,000.00 item: ¥100,000.00 at 50 %, ¥200,000.00 at 20 %
    result = run([("accelerator:other", 30_000_000)], tiers=TIER_50, spend=40_000_000)
    parts = result.items[0]["parts"]
    assert [(p["amount"], p["rate_bps"]) for p in parts] == [(10_000_000, 5000), (20_000_000, 2000)]
    assert result.subsidy == 5_000_000 + 4_000_000


def test_an_item_crossing_a_band_is_floored_once_not_per_part() -> None:
    """Spend so far 333 fen, a band to 500 at 50 %, then the table's 30 %: a 333-fen item is 167
    at 50 % (83.5) and 166 at 30 % (49.8), 133.3 in all, so 133 fen — flooring each part had
    given 83 + 49 = 132 (an independent review, December 2026). The parts show their shares of
    the item's subsidy, which add up to it."""
    tiers = parse_tiers([{"spend_up_to": 500, "rate_bps": 5000, "categories": None}])
    result = run([("accelerator:domestic", 333)], tiers=tiers, spend=333)
    (item,) = result.items
    assert result.gross_subsidy == item["subsidy"] == 133
    assert [(p["amount"], p["rate_bps"], p["rate_source"], p["subsidy"]) for p in item["parts"]] == [
        (167, 5000, "tier", 83), (166, 3000, "rate_table", 50)]


@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=0, max_value=80_000_000),
       st.sampled_from(sorted(HANGZHOU_RATES)))
def test_an_item_s_subsidy_is_the_floor_of_its_parts_at_their_rates(amount, spend, category) -> None:
    tiers = parse_tiers([{"spend_up_to": 20_000_000, "rate_bps": 7000, "categories": ["accelerator:domestic"]},
                         {"spend_up_to": 60_000_000, "rate_bps": 4333, "categories": None}])
    (item,) = run([(category, amount)], tiers=tiers, spend=spend).items
    parts = item["parts"]
    assert sum(p["amount"] for p in parts) == amount
    assert item["subsidy"] == sum(p["amount"] * p["rate_bps"] for p in parts) // 10_000 == sum(p["subsidy"] for p in parts)
    assert all(p["subsidy"] in (p["amount"] * p["rate_bps"] // 10_000, p["amount"] * p["rate_bps"] // 10_000 + 1)
               for p in parts)


def test_tier_no_longer_applies_above_the_threshold() -> None:
    result = run([("accelerator:domestic", 1_000_000)], tiers=TIER_50, spend=50_000_000)
    assert result.subsidy == 300_000


def test_tier_limited_to_its_categories() -> None:
    tiers = parse_tiers([{"spend_up_to": 50_000_000, "rate_bps": 5000, "categories": ["accelerator:domestic"]}])
    result = run([("accelerator:other", 1_000_000), ("accelerator:domestic", 1_000_000)], tiers=tiers)
    assert [i["subsidy"] for i in result.items] == [200_000, 500_000]


def test_a_stored_tier_with_no_category_applies_to_none() -> None:
    """Terms that recorded `categories: []` (refused since December 2026) are read as written:
    the tier names no category, so every item gets the table's rate."""
    tiers = parse_tiers([{"spend_up_to": 50_000_000, "rate_bps": 5000, "categories": []}])
    result = run([("accelerator:other", 1_000_000), ("accelerator:domestic", 1_000_000)], tiers=tiers)
    assert [i["subsidy"] for i in result.items] == [200_000, 300_000]


def test_items_advance_the_tier_position_by_category_then_amount() -> None:
    # the smaller line takes the band first, the larger fills the rest and goes on at table
    # rate; both are listed as they were sent
    result = run([("accelerator:other", 50_000_000), ("accelerator:other", 1_000_000)], tiers=TIER_50)
    assert [(i["amount"], i["subsidy"]) for i in result.items] == [(50_000_000, 24_700_000), (1_000_000, 500_000)]
    assert result.gross_subsidy == 25_200_000


def test_the_band_goes_to_lines_by_category_whatever_order_they_were_sent_in() -> None:
    """An independent review (December 2026): a tier for domestic accelerators, a line of each
    kind, gave 50,000 or 70,000 as the provider listed them."""
    tiers = parse_tiers([{"spend_up_to": 100_000, "rate_bps": 5000, "categories": ["accelerator:domestic"]}])
    for lines in ([("accelerator:other", 100_000), ("accelerator:domestic", 100_000)],
                  [("accelerator:domestic", 100_000), ("accelerator:other", 100_000)]):
        result = run(lines, tiers=tiers)
        assert result.gross_subsidy == 70_000  # "accelerator:domestic" first: 50 % of it, then 20 %
        assert [i["category"] for i in result.items] == [c for c, _ in lines]


@given(st.permutations([("accelerator:other", 30_000_001), ("accelerator:domestic", 333), ("storage:block", 12_345),
                        ("accelerator:domestic", 45_000_000), ("accelerator:other", 7)]),
       st.integers(min_value=0, max_value=80_000_000))
def test_an_order_s_subsidy_does_not_depend_on_the_order_of_its_lines(lines, spend) -> None:
    tiers = parse_tiers([{"spend_up_to": 20_000_000, "rate_bps": 7000, "categories": ["accelerator:domestic"]},
                         {"spend_up_to": 60_000_000, "rate_bps": 4000, "categories": None}])
    result = run(lines, tiers=tiers, spend=spend)
    reference = run(sorted(lines), tiers=tiers, spend=spend)
    assert result.gross_subsidy == reference.gross_subsidy
    assert sorted((i["category"], i["amount"], i["subsidy"]) for i in result.items) == sorted(
        (i["category"], i["amount"], i["subsidy"]) for i in reference.items)
    assert [(i["category"], i["amount"]) for i in result.items] == lines


def test_stacking_ceiling_caps_all_subsidies_on_the_order() -> None:
    # 60 % ceiling of ¥1,000.00 = ¥600.00, of which ¥500.00 already granted on the order
    result = run([("accelerator:domestic", 100_000)], tiers=parse_tiers(
        [{"spend_up_to": 10**9, "rate_bps": 9000, "categories": None}]),
        stacking_ceiling_bps=6000, already_subsidised_on_order=50_000)
    assert result.gross_subsidy == 90_000
    assert result.subsidy == 10_000
    assert result.limited_by == "stacking_ceiling"


def test_enterprise_cap_then_voucher_balance() -> None:
    result = run([("accelerator:domestic", 1_000_000)], enterprise_cap_remaining=250_000, voucher_available=100_000)
    assert [s["after"] for s in result.steps] == [300_000, 250_000, 100_000]
    assert result.subsidy == 100_000 and result.limited_by == "voucher_balance"
    capped = run([("accelerator:domestic", 1_000_000)], enterprise_cap_remaining=250_000)
    assert capped.subsidy == 250_000 and capped.limited_by == "enterprise_cap"


def test_nothing_left_anywhere_gives_zero() -> None:
    assert run([("accelerator:domestic", 1_000_000)], voucher_available=0).subsidy == 0
    assert run([("accelerator:domestic", 1_000_000)], enterprise_cap_remaining=0).subsidy == 0


@given(
    amounts=st.lists(st.integers(1, 10**11), min_size=1, max_size=6),
    spend=st.integers(0, 10**9),
    ceiling=st.integers(0, 10_000),
    already=st.integers(0, 10**11),
    cap=st.integers(0, 10**11),
    available=st.integers(0, 10**11),
)
def test_subsidy_never_exceeds_any_limit(amounts, spend, ceiling, already, cap, available) -> None:
    result = run([("accelerator:other", a) for a in amounts], tiers=TIER_50, spend=spend,
                 stacking_ceiling_bps=ceiling, already_subsidised_on_order=already,
                 enterprise_cap_remaining=cap, voucher_available=available)
    order = sum(amounts)
    assert 0 <= result.subsidy <= result.gross_subsidy
    assert result.subsidy <= available and result.subsidy <= cap
    assert result.subsidy + already <= max(already, order * ceiling // 10_000)
    # the gross subsidy never exceeds the exact value at the best rate on offer
    assert result.gross_subsidy * 10_000 <= order * 5000
    assert result.enterprise_pays == order - result.subsidy
