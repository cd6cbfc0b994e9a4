"""Journal transactions balance per unit (DESIGN invariant 1), checked before any write."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.voucher.ledger.rules import Leg, UnbalancedTransaction, check_balanced, transfer


def test_transfer_is_balanced() -> None:
    check_balanced(transfer("a", "b", 500, "CNY"))


@pytest.mark.parametrize(
    "legs",
    [
        [Leg("a", -500, "CNY"), Leg("b", 499, "CNY")],
        [Leg("a", -500, "CNY"), Leg("b", 500, "TOKEN")],  # balanced in sum, not per unit
        [Leg("a", 0, "CNY"), Leg("b", 0, "CNY")],
        [Leg("a", 1, "CNY")],
        [Leg("a", -1.0, "CNY"), Leg("b", 1.0, "CNY")],  # type: ignore[arg-type]
        [Leg("a", True, "CNY"), Leg("b", -1, "CNY")],
    ],
)
def test_unbalanced_or_malformed_is_refused(legs) -> None:
    with pytest.raises(UnbalancedTransaction):
        check_balanced(legs)


@given(st.lists(st.tuples(st.integers(1, 10**12), st.sampled_from(["CNY", "TOKEN"])), min_size=1, max_size=8))
def test_any_set_of_transfers_balances(moves) -> None:
    legs = [leg for i, (amount, unit) in enumerate(moves) for leg in transfer(f"s{i}", f"t{i}", amount, unit)]
    check_balanced(legs)
