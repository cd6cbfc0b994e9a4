"""The anomaly detectors as pure functions: each flags its pattern and leaves the near miss
alone, with integer arithmetic at the boundaries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.voucher.anomalies.rules import (
    AnomalyRule,
    Claimed,
    Redeemed,
    expiry_burst,
    money,
    order_splitting,
    percent,
    range_problems,
    related_party,
    shared_invoice,
    shared_parties,
    shared_reference,
    split_band,
    velocity_spike,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
E1, E2, P1, P2, G, V1, V2 = (uuid.UUID(int=i) for i in range(1, 8))
WEEK = timedelta(days=7)


def row(at: datetime, amount: int = 100_000, *, order: str | None = None, order_amount: int | None = None,
        enterprise: uuid.UUID = E1, provider: uuid.UUID = P1, voucher: uuid.UUID = V1) -> Redeemed:
    return Redeemed(
        redemption_id=uuid.uuid4(), programme_id=G, enterprise_id=enterprise, provider_id=provider,
        voucher_id=voucher, order_reference=order or f"PO-{uuid.uuid4().hex[:6]}",
        order_amount=order_amount if order_amount is not None else amount * 10 // 3, amount=amount, unit="CNY", at=at,
    )


# -- related parties ----------------------------------------------------------------------------


def test_shared_parties_pairs_each_sides_roles() -> None:
    ours = [{"role": "legal_representative", "party_id": "sha256:aaaaaaaaaaaaaaaa"},
            {"role": "shareholder", "party_id": "sha256:bbbbbbbbbbbbbbbb"}]
    theirs = [{"role": "shareholder", "party_id": "sha256:aaaaaaaaaaaaaaaa"},
              {"role": "shareholder", "party_id": "sha256:cccccccccccccccc"}]
    shared = shared_parties(ours, theirs)
    assert [(p.party_id, p.enterprise_roles, p.provider_roles) for p in shared] == [
        ("sha256:aaaaaaaaaaaaaaaa", ("legal_representative",), ("shareholder",))]
    assert shared_parties(ours, [{"role": "shareholder", "party_id": "sha256:dddddddddddddddd"}]) == ()
    assert shared_parties(None, theirs) == ()


def test_shared_parties_match_without_letter_case_and_count_one_entity_on_both_sides() -> None:
    """As the redemption path judges them: the same digest in upper case is the same party, and
    an enterprise and a provider with one USCC are one legal entity (role `self`)."""
    ours = [{"role": "legal_representative", "party_id": "sha256:9f2c1a7b3e5d8c40aa11bb22cc33dd44"}]
    theirs = [{"role": "shareholder", "party_id": "sha256:9F2C1A7B3E5D8C40AA11BB22CC33DD44"}]
    assert [(p.party_id, p.enterprise_roles, p.provider_roles) for p in shared_parties(ours, theirs)] == [
        ("sha256:9f2c1a7b3e5d8c40aa11bb22cc33dd44", ("legal_representative",), ("shareholder",))]
    uscc = "91330110MA2H0W1P48"
    assert [(p.party_id, p.enterprise_roles, p.provider_roles) for p in shared_parties(None, [], uscc, uscc)] == [
        (f"uscc:{uscc}", ("self",), ("self",))]
    assert shared_parties(None, [], uscc, "91330106MA27Y4XN2L") == ()


def test_related_party_finding_lists_every_redemption_and_explains_in_both_languages() -> None:
    shared = shared_parties([{"role": "legal_representative", "party_id": "sha256:aaaaaaaaaaaaaaaa"}],
                            [{"role": "shareholder", "party_id": "sha256:aaaaaaaaaaaaaaaa"}])
    rows = [row(T0 + timedelta(days=1), 300_000), row(T0, 150_000)]
    found = related_party(rows, shared)
    assert found is not None and found.rule is AnomalyRule.RELATED_PARTY
    assert [r.at for r in found.rows] == [T0, T0 + timedelta(days=1)]
    assert found.total_amount == 450_000 and found.enterprise_ids == [E1] and found.provider_ids == [P1]
    assert "¥4,500.00" in found.explanation("en") and "sha256:aaaaaaaaaaaaaaaa" in found.explanation("en")
    assert "legal representative" in found.explanation("en") and "CNY" not in found.explanation("en")
    assert "¥4,500.00" in found.explanation("zh") and "法定代表人" in found.explanation("zh")
    assert "元" not in found.explanation("zh") and "4500.00" not in found.explanation("zh")
    assert related_party(rows, ()) is None
    assert related_party([], shared) is None


# -- order splitting ----------------------------------------------------------------------------


def test_split_band_is_integer_and_exclusive_above() -> None:
    assert split_band(1_000_000, 1000) == (900_000, 1_000_000)
    assert split_band(999, 1000) == (900, 999)  # ceil(899.1): 899 is more than 10 % below
    assert split_band(10, 1) == (10, 10)  # a margin below one unit selects nothing


def test_three_orders_just_under_the_threshold_within_a_week_are_a_split() -> None:
    rows = [row(T0 + timedelta(days=d), order=f"PO-{d}", order_amount=a)
            for d, a in ((0, 950_000), (2, 999_999), (6, 900_000))]
    found = order_splitting(rows, threshold=1_000_000, margin_bps=1000, min_orders=3, window=WEEK)
    assert len(found) == 1
    assert found[0].figures["orders"] == 3 and found[0].figures["lower_bound"] == 900_000
    assert (found[0].window_start, found[0].window_end) == (T0, T0 + timedelta(days=6))
    assert "PO-2" in found[0].explanation("en") and "拆分" in found[0].explanation("zh")


def test_orders_at_the_threshold_too_far_below_or_spread_out_are_not_a_split() -> None:
    at_threshold = [row(T0 + timedelta(days=d), order=f"PO-{d}", order_amount=a)
                    for d, a in ((0, 950_000), (1, 1_000_000), (2, 899_999), (3, 960_000))]
    assert order_splitting(at_threshold, threshold=1_000_000, margin_bps=1000, min_orders=3, window=WEEK) == []
    spread = [row(T0 + timedelta(days=d), order=f"PO-{d}", order_amount=950_000) for d in (0, 4, 7)]
    assert order_splitting(spread, threshold=1_000_000, margin_bps=1000, min_orders=3, window=WEEK) == []
    assert len(order_splitting(spread, threshold=1_000_000, margin_bps=1000, min_orders=2, window=WEEK)) == 1


def test_one_order_on_several_vouchers_counts_once() -> None:
    rows = [row(T0, order="PO-1", order_amount=950_000, voucher=V1),
            row(T0, order="PO-1", order_amount=950_000, voucher=V2),
            row(T0 + timedelta(days=1), order="PO-2", order_amount=950_000)]
    assert order_splitting(rows, threshold=1_000_000, margin_bps=1000, min_orders=3, window=WEEK) == []
    found = order_splitting(rows, threshold=1_000_000, margin_bps=1000, min_orders=2, window=WEEK)
    assert found[0].figures["orders"] == 2 and len(found[0].rows) == 3


# -- velocity --------------------------------------------------------------------------------------


END = T0 + timedelta(days=28)


def test_a_week_over_three_times_the_earlier_average_is_a_spike() -> None:
    history = [row(END - timedelta(days=d), 100_000) for d in (10, 17, 24)]  # windows 1, 2, 3
    recent = [row(END - timedelta(days=1), 301_000)]
    found = velocity_spike(history + recent, end=END, window=WEEK, factor=3, min_windows=2)
    assert found is not None
    assert found.figures["recent_amount"] == 301_000 and found.figures["average_per_window"] == 100_000
    assert found.figures["earlier_windows"] == 3 and found.figures["active_windows"] == 3
    assert [r.amount for r in found.rows] == [301_000]
    assert "¥3,010.00" in found.explanation("en") and "¥1,000.00" in found.explanation("en")
    assert "¥3,010.00" in found.explanation("zh") and "¥1,000.00" in found.explanation("zh")
    assert "CNY" not in found.explanation("en") and "元" not in found.explanation("zh")


def test_exactly_k_times_or_too_little_history_is_not_a_spike() -> None:
    history = [row(END - timedelta(days=d), 100_000) for d in (10, 17, 24)]
    assert velocity_spike(history + [row(END - timedelta(days=1), 300_000)], end=END, window=WEEK, factor=3,
                          min_windows=2) is None
    one_window = [row(END - timedelta(days=10), 100_000), row(END - timedelta(days=1), 1_000_000)]
    assert velocity_spike(one_window, end=END, window=WEEK, factor=3, min_windows=2) is None
    assert velocity_spike(history, end=END, window=WEEK, factor=3, min_windows=2) is None  # nothing recent


def test_quiet_windows_lower_the_average() -> None:
    # Active in windows 1 and 4 only: 200,000 over 4 windows is 50,000 a week.
    history = [row(END - timedelta(days=d), 100_000) for d in (8, 30)]
    found = velocity_spike(history + [row(END - timedelta(days=2), 150_001)], end=END, window=WEEK, factor=3,
                           min_windows=2)
    assert found is not None and found.figures["earlier_windows"] == 4 and found.figures["active_windows"] == 2
    assert found.figures["average_per_window"] == 50_000


def test_window_boundaries_belong_to_the_later_window() -> None:
    start = END - WEEK
    on_boundary = [row(start, 1_000_000), row(start - WEEK, 10), row(start - 2 * WEEK, 10), row(END, 10**9)]
    found = velocity_spike(on_boundary, end=END, window=WEEK, factor=3, min_windows=2)
    assert found is not None and found.figures["recent_amount"] == 1_000_000  # END itself is outside
    assert found.figures["earlier_windows"] == 2


# -- expiry burst ------------------------------------------------------------------------------------


EXPIRY = T0 + timedelta(days=60)


def test_half_redeemed_in_the_last_three_days_is_a_burst() -> None:
    rows = [row(T0, 400_000), row(EXPIRY - timedelta(days=2), 400_000), row(EXPIRY - timedelta(hours=1), 200_000)]
    found = expiry_burst(rows, expires_at=EXPIRY, days=3, share_bps=5000, min_amount=100_000)
    assert found is not None and found.figures["burst_amount"] == 600_000
    assert found.figures["total_redeemed"] == 1_000_000 and found.figures["share_bps"] == 6000
    assert "60%" in found.explanation("en") and "60%" in found.explanation("zh")


def test_below_the_share_or_the_minimum_is_not_a_burst() -> None:
    rows = [row(T0, 500_001), row(EXPIRY - timedelta(days=1), 500_000)]
    assert expiry_burst(rows, expires_at=EXPIRY, days=3, share_bps=5000, min_amount=100_000) is None
    exactly_half = [row(T0, 500_000), row(EXPIRY - timedelta(days=1), 500_000)]
    assert expiry_burst(exactly_half, expires_at=EXPIRY, days=3, share_bps=5000, min_amount=100_000) is not None
    small = [row(EXPIRY - timedelta(days=1), 99_999)]
    assert expiry_burst(small, expires_at=EXPIRY, days=3, share_bps=5000, min_amount=100_000) is None
    early = [row(EXPIRY - timedelta(days=3, seconds=1), 500_000)]
    assert expiry_burst(early, expires_at=EXPIRY, days=3, share_bps=5000, min_amount=0) is None


# -- shared references ---------------------------------------------------------------------------------


def test_one_reference_under_two_enterprises_is_flagged_under_one_is_not() -> None:
    rows = [row(T0, order="PO-7", enterprise=E1, provider=P1), row(T0, order="PO-7", enterprise=E2, provider=P2)]
    found = shared_reference(rows)
    assert found is not None and found.enterprise_ids == sorted([E1, E2]) and found.figures["enterprises"] == 2
    assert "PO-7" in found.explanation("en") and "PO-7" in found.explanation("zh")
    assert shared_reference([row(T0, order="PO-7", provider=P1), row(T0, order="PO-7", provider=P2)]) is None


def test_one_invoice_claimed_by_two_enterprises_is_flagged() -> None:
    def claim(enterprise: uuid.UUID) -> Claimed:
        return Claimed(claim_id=uuid.uuid4(), redemption_id=uuid.uuid4(), programme_id=G, enterprise_id=enterprise,
                       provider_id=P1, voucher_id=V1, invoice_number="44031234", amount=600_000, unit="CNY",
                       status="submitted", at=T0)

    found = shared_invoice([claim(E1), claim(E2)])
    assert found is not None and found.total_amount == 1_200_000 and len(found.claims) == 2
    assert "44031234" in found.explanation("zh")
    assert shared_invoice([claim(E1), claim(E1)]) is None


def test_amounts_in_different_units_have_no_total() -> None:
    a = row(T0, order="PO-7", enterprise=E1)
    b = Redeemed(**{**a.__dict__, "redemption_id": uuid.uuid4(), "enterprise_id": E2, "unit": "GPU_HOUR"})
    found = shared_reference([a, b])
    assert found is not None and found.unit is None and found.total_amount is None
    # each row says its own unit, so a reader can show its amounts as money
    from services.voucher.anomalies.schemas import FindingPublic
    evidence = FindingPublic.of(found, "en").evidence
    assert sorted(evidence.units) == ["CNY", "GPU_HOUR"] and evidence.units == [r.unit for r in found.rows]


def test_percent_and_range() -> None:
    assert (percent(5000), percent(1250), percent(1), percent(10000)) == ("50%", "12.5%", "0.01%", "100%")
    [(name, message)] = range_problems(T0, T0)
    assert name == "until" and str(message) == "`until` must be after `since` (the range is [since, until))"
    assert range_problems(T0, T0 + timedelta(seconds=1)) == [] and range_problems(None, T0) == []


def test_money_reads_as_people_read_it_in_both_languages() -> None:
    """Amounts in explanations are written as money.format_for_people writes them: the figure
    in major units with thousands separators and every minor digit, never a raw minor-unit count."""
    assert money(123_456, "CNY") == money(123_456, "CNY", "zh") == "¥1,234.56"
    assert money(1_200_000_000, "CNY", "zh") == "¥12,000,000.00"
    assert money(5, "CNY") == "¥0.05"
    assert (money(1_200_000, "GPU_HOUR"), money(1_200_000, "GPU_HOUR", "zh")) == ("1,200.000 GPU-hours", "1,200.000 卡时")
    assert money(5_000, "TOKEN", "zh") == "5,000 个 Token"
    assert money(1234, "XYZ") == "1,234 XYZ"  # an unknown unit: the integer and its code, never a guess
