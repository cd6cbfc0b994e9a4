"""Integer money: THE rounding rule (floor), the amount and rate guards, and display."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.voucher.money import (
    BPS_DENOMINATOR,
    MAX_AMOUNT,
    Unit,
    apply_rate,
    check_amount,
    check_bps,
    format_major,
)


@pytest.mark.parametrize(
    ("amount", "rate", "expected"),
    [
        (333, 3000, 99),  # 99.9 fen -> 99: the subsidy never rounds up
        (100, 3000, 30),  # exact
        (1, 9999, 0),  # 0.9999 fen -> 0
        (9999, 1, 0),  # 0.9999 fen -> 0
        (10_000, 1, 1),
        (123_456_789, 2000, 24_691_357),  # 24,691,357.8 -> 24,691,357
        (50_000_000, 5000, 25_000_000),
        (0, 3000, 0),
        (777, 0, 0),
        (777, 10_000, 777),  # 100 % is the whole amount
        (MAX_AMOUNT, 10_000, MAX_AMOUNT),
        (MAX_AMOUNT, 3333, 333_300_000_000_000),
    ],
)
def test_apply_rate_floors(amount: int, rate: int, expected: int) -> None:
    assert apply_rate(amount, rate) == expected


@given(amount=st.integers(0, MAX_AMOUNT), rate=st.integers(0, BPS_DENOMINATOR))
def test_apply_rate_is_the_floor_of_the_exact_value(amount: int, rate: int) -> None:
    subsidy = apply_rate(amount, rate)
    assert isinstance(subsidy, int) and not isinstance(subsidy, bool)
    assert subsidy * BPS_DENOMINATOR <= amount * rate < (subsidy + 1) * BPS_DENOMINATOR
    assert 0 <= subsidy <= amount


@given(
    a=st.integers(0, MAX_AMOUNT // 2),
    b=st.integers(0, MAX_AMOUNT // 2),
    rate=st.integers(0, BPS_DENOMINATOR),
)
def test_splitting_an_order_never_gains_subsidy(a: int, b: int, rate: int) -> None:
    # Flooring per line item: two items together never get less than each floored separately,
    # and at most one minor unit more (the two lost fractions can add up to one).
    together = apply_rate(a + b, rate)
    apart = apply_rate(a, rate) + apply_rate(b, rate)
    assert apart <= together <= apart + 1


@given(amount=st.integers(0, MAX_AMOUNT), low=st.integers(0, 10_000), high=st.integers(0, 10_000))
def test_a_higher_rate_never_gives_less(amount: int, low: int, high: int) -> None:
    low, high = min(low, high), max(low, high)
    assert apply_rate(amount, low) <= apply_rate(amount, high)


@pytest.mark.parametrize("amount", [100.0, 0.5, Decimal("100"), "100", None, True, False])
def test_apply_rate_refuses_non_integer_amounts(amount: object) -> None:
    with pytest.raises(TypeError):
        apply_rate(amount, 3000)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [3000.0, 0.3, Decimal("3000"), "3000", None, True, False])
def test_apply_rate_refuses_non_integer_rates(rate: object) -> None:
    with pytest.raises(TypeError):
        apply_rate(1000, rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", [-1, -MAX_AMOUNT, MAX_AMOUNT + 1, 2**63])
def test_apply_rate_refuses_amounts_out_of_range(amount: int) -> None:
    with pytest.raises(ValueError):
        apply_rate(amount, 3000)


@pytest.mark.parametrize("rate", [-1, 10_001, 1_000_000])
def test_apply_rate_refuses_rates_out_of_range(rate: int) -> None:
    with pytest.raises(ValueError):
        apply_rate(1000, rate)


def test_check_amount_bounds() -> None:
    assert check_amount(0) == 0
    assert check_amount(MAX_AMOUNT) == MAX_AMOUNT
    assert check_amount(1, allow_zero=False) == 1
    with pytest.raises(ValueError, match="positive"):
        check_amount(0, allow_zero=False)
    with pytest.raises(ValueError, match="negative"):
        check_amount(-1)
    with pytest.raises(ValueError, match="maximum"):
        check_amount(MAX_AMOUNT + 1)
    assert MAX_AMOUNT < 2**63  # every amount fits the BIGINT columns


def test_check_bps_bounds() -> None:
    assert check_bps(0) == 0
    assert check_bps(10_000) == 10_000
    with pytest.raises(ValueError):
        check_bps(10_001)
    with pytest.raises(TypeError):
        check_bps(True)


@pytest.mark.parametrize(
    ("amount", "unit", "text"),
    [
        (123_456, Unit.CNY, "1234.56"),
        (5, Unit.CNY, "0.05"),
        (50, Unit.CNY, "0.50"),
        (100, Unit.CNY, "1.00"),
        (0, Unit.CNY, "0.00"),
        (-5, Unit.CNY, "-0.05"),
        (-123_456, Unit.CNY, "-1234.56"),
        (25_000_000_000, Unit.CNY, "250000000.00"),
        (1, Unit.GPU_HOUR, "0.001"),
        (1_500, Unit.GPU_HOUR, "1.500"),
        (1_000_000, Unit.GPU_HOUR, "1000.000"),
        (-2_500, Unit.GPU_HOUR, "-2.500"),
        (-7, Unit.GPU_HOUR, "-0.007"),
        (0, Unit.TOKEN, "0"),
        (42, Unit.TOKEN, "42"),
        (-42, Unit.TOKEN, "-42"),
        (1_000_000, Unit.TOKEN, "1000000"),
    ],
)
def test_format_major(amount: int, unit: Unit, text: str) -> None:
    assert format_major(amount, unit) == text


@given(amount=st.integers(-MAX_AMOUNT, MAX_AMOUNT), unit=st.sampled_from(list(Unit)))
def test_format_major_round_trips(amount: int, unit: Unit) -> None:
    text = format_major(amount, unit)
    assert int(text.replace(".", "")) == amount
    decimals = len(text.split(".")[1]) if "." in text else 0
    assert decimals == {Unit.CNY: 2, Unit.GPU_HOUR: 3, Unit.TOKEN: 0}[unit]
    assert text.startswith("-") == (amount < 0)


def test_an_amount_a_person_types_is_read_exactly_or_refused() -> None:
    from services.voucher.money import MAX_AMOUNT, parse_major

    assert parse_major("1,234.56", "CNY") == 123_456
    assert parse_major(" ¥12 ", "CNY") == 1_200
    assert parse_major("￥0.5", "CNY") == 50
    assert parse_major("1.5", "GPU_HOUR") == 1_500
    assert parse_major("1,000", "TOKEN") == 1_000
    assert parse_major("12 000", "CNY") == 1_200_000 and parse_major("1\u00a0234\u00a0567", "TOKEN") == 1_234_567
    assert parse_major("¥ 1,234,567.5", "CNY") == 123_456_750 and parse_major("1234567", "TOKEN") == 1_234_567
    for typed, unit in (("12.345", "CNY"), ("-1", "CNY"), ("1e3", "CNY"), ("", "CNY"), (".", "CNY"), ("1.", "CNY"),
                        ("１２", "CNY"), ("1.5", "TOKEN"), ("¥1", "GPU_HOUR"), (str(MAX_AMOUNT), "CNY"),
                        # a decimal comma is not a thousands separator: "12,50" was read as ¥1,250.00
                        ("12,50", "CNY"), ("1,2345", "CNY"), ("1,234,56", "CNY"), (",123", "CNY"),
                        ("1,,234", "CNY"), ("1 2", "TOKEN"), ("12,5", "GPU_HOUR"), ("1.234,56", "CNY"),
                        # nor is a first group of 0: "0,500" GPU-hours had been read as 500, not a half
                        ("0,500", "GPU_HOUR"), ("0,250", "CNY"), ("00,750", "GPU_HOUR"), ("0 500", "TOKEN")):
        with pytest.raises(ValueError):
            parse_major(typed, unit)


def test_the_typed_example_of_each_unit_reads_back_as_twelve_thousand_of_it() -> None:
    from services.voucher.money import MINOR_EXPONENT, Unit, parse_major, typed_example

    for unit in Unit:
        assert parse_major(typed_example(unit), unit) == 12_000 * 10 ** MINOR_EXPONENT[unit]
    assert typed_example("CNY") == "12,000.00"
    assert typed_example("TOKEN") == "12,000"
    assert typed_example("GPU_HOUR") == "12,000.000"
    assert typed_example("XYZ") == "12,000.00"
