"""The pure rules of rules.py that no route test pins down case by case."""

import pytest

from services.voucher.redemption.rules import clawback_recovered


@pytest.mark.parametrize(
    ("clawed_back", "used", "refunded", "recovered"),
    [
        (300_000, 300_000, 200_000, 200_000),  # all used value was clawed back: the refund recovers its own amount
        (300_000, 600_000, 300_000, 0),  # the refund leaves as much used as was clawed back
        (300_000, 600_000, 400_000, 100_000),  # ... or takes 100,000 below it
        (300_000, 300_000, 300_000, 300_000),  # nothing used any more: nothing owed
        (0, 300_000, 300_000, 0),  # nothing clawed back from this voucher
        (100_000, 500_000, 500_000, 100_000),  # never more than was clawed back
    ],
)
def test_a_clawback_never_exceeds_the_value_still_used(clawed_back: int, used: int, refunded: int,
                                                       recovered: int) -> None:
    assert clawback_recovered(clawed_back, used, refunded) == recovered
    assert clawed_back - recovered <= used - refunded
