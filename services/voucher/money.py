"""Amounts, units and THE rounding rule. Pure: integers only, no float, no Decimal.

Every amount is an integer count of its unit's minor unit: CNY in fen (1/100 yuan),
GPU_HOUR in thousandths of an hour, TOKEN in whole tokens. Rates are integer basis points
(10000 = 100 %). The one rounding rule is floor: a subsidy never exceeds its exact value.
"""

from __future__ import annotations

import re
from enum import StrEnum

BPS_DENOMINATOR = 10_000
#: Amounts live in BIGINT columns; keep every value and every intermediate product below this.
MAX_AMOUNT = 10**15  # 10 trillion yuan in fen: far beyond any programme, far below 2**63
#: The most an enterprise's orders in one cap period may sum to (the tiers' position). Each order
#: is at most MAX_AMOUNT, but their running sum is not bounded by one: 9,224 orders of MAX_AMOUNT
#: overflowed the BIGINT counter (PostgreSQL refused every later hold as `unstorable_value`; SQLite
#: would have turned the sum into a float). 2**62 leaves the counter half its range.
MAX_PERIOD_SPEND = 2**62


class Unit(StrEnum):
    CNY = "CNY"
    GPU_HOUR = "GPU_HOUR"
    TOKEN = "TOKEN"  # noqa: S105 - a unit of account, not a secret


#: Decimal places between the unit and its minor unit.
MINOR_EXPONENT: dict[Unit, int] = {Unit.CNY: 2, Unit.GPU_HOUR: 3, Unit.TOKEN: 0}
MINOR_NAME: dict[Unit, str] = {Unit.CNY: "fen", Unit.GPU_HOUR: "milli-GPU-hour", Unit.TOKEN: "token"}
#: What "minor unit" means for each unit, for the people reading a description of an amount.
MINOR_UNITS = "CNY: fen, 1/100 yuan; GPU_HOUR: thousandths of a GPU-hour; TOKEN: tokens"


def check_amount(value: int, *, allow_zero: bool = True) -> int:
    """An amount is a non-negative int (bool is refused) no larger than MAX_AMOUNT."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("amounts are integers in the unit's minor unit")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError("amount must be positive" if not allow_zero else "amount must not be negative")
    if value > MAX_AMOUNT:
        raise ValueError(f"amount exceeds the maximum of {MAX_AMOUNT}")
    return value


def check_bps(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("rates are integer basis points")
    if not 0 <= value <= BPS_DENOMINATOR:
        raise ValueError("a rate is between 0 and 10000 basis points")
    return value


def apply_rate(amount: int, rate_bps: int) -> int:
    """floor(amount × rate / 10000): the rounding rule for every subsidy computation."""
    check_amount(amount)
    check_bps(rate_bps)
    return amount * rate_bps // BPS_DENOMINATOR


def format_major(amount: int, unit: Unit) -> str:
    """The amount in whole units as text with every minor digit, e.g. 123456 fen -> '1234.56'."""
    exponent = MINOR_EXPONENT[unit]
    sign = "-" if amount < 0 else ""
    whole, minor = divmod(abs(amount), 10**exponent)
    return f"{sign}{whole}.{minor:0{exponent}d}" if exponent else f"{sign}{whole}"


#: How a person reads each unit after the figure; CNY is written with the ¥ sign in front instead.
_UNIT_WORDS: dict[Unit, dict[str, str]] = {
    Unit.GPU_HOUR: {"en": "GPU-hours", "zh": "卡时"},
    Unit.TOKEN: {"en": "tokens", "zh": "个 Token"},
}


def format_for_people(amount: int, unit: Unit | str, language: str = "en") -> str:
    """An amount in minor units as a person reads it, in "en" or "zh": 1200000000 CNY ->
    '¥12,000,000.00', 1200000 GPU_HOUR -> '1,200.000 GPU-hours' ('1,200.000 卡时'),
    5000 TOKEN -> '5,000 tokens'. Every minor digit is kept: nothing is rounded away. An unknown
    unit prints the integer and the unit code, so no figure is ever shown with the wrong unit."""
    try:
        known = Unit(unit)
    except ValueError:
        return f"{amount:,} {unit}"
    exponent = MINOR_EXPONENT[known]
    sign = "-" if amount < 0 else ""
    whole, minor = divmod(abs(amount), 10**exponent)
    figure = f"{whole:,}.{minor:0{exponent}d}" if exponent else f"{whole:,}"
    if known is Unit.CNY:
        return f"{sign}¥{figure}"
    return f"{sign}{figure} {_UNIT_WORDS[known]['zh' if language == 'zh' else 'en']}"


def typed_example(unit: Unit | str) -> str:
    """How a person types twelve thousand of `unit` in a form (what `parse_major` reads), with
    every minor digit the unit has: '12,000.00' for CNY, '12,000.000' for GPU_HOUR, '12,000'
    for TOKEN; the CNY figure for a unit not known."""
    try:
        exponent = MINOR_EXPONENT[Unit(unit)]
    except ValueError:
        exponent = MINOR_EXPONENT[Unit.CNY]
    return "12,000" + ("." + "0" * exponent if exponent else "")


def percent(bps: int) -> str:
    """Basis points as a percentage, e.g. 1250 → '12.5%', 5000 → '50%'."""
    whole, rest = divmod(bps, 100)
    return f"{whole}%" if rest == 0 else f"{whole}.{rest:02d}".rstrip("0") + "%"


#: The whole part of a typed amount: plain digits, or groups of three after a first group that
#: does not start with 0 ("0,500" is half of something written with a decimal comma), each
#: after one separator (a comma, a space or a no-break space).
_WHOLE = re.compile(r"[0-9]+|[1-9][0-9]{0,2}(?:[, \u00a0][0-9]{3})+")


def parse_major(text: str, unit: Unit | str) -> int:
    """An amount a person typed in major units ("1,234.56", "¥1234.5", "12 000") as an integer
    in minor units; ValueError for anything else: no sign, at most the unit's decimals (a typed
    amount is never rounded), at most MAX_AMOUNT."""
    known = Unit(unit)
    exponent = MINOR_EXPONENT[known]
    cleaned = text.strip()
    if known is Unit.CNY:
        cleaned = cleaned.removeprefix("¥").removeprefix("￥").lstrip()
    whole, dot, minor = cleaned.partition(".")
    # A separator only between groups of three: "12,50" is a decimal comma (12.50 where it is
    # written so), not 1,250; it is refused rather than read a hundred times too large.
    if not _WHOLE.fullmatch(whole) or (dot and (not minor.isascii() or not minor.isdigit())):
        raise ValueError("not an amount")
    whole = whole.replace(",", "").replace(" ", "").replace("\u00a0", "")
    if len(minor) > exponent:
        raise ValueError("too many decimals")
    value: int = int(whole) * 10**exponent + (int(minor.ljust(exponent, "0")) if exponent else 0)
    if value > MAX_AMOUNT:
        raise ValueError("amount exceeds the maximum")
    return value
