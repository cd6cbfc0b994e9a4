"""The pure rules of rules.py that no route test pins down case by case."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.voucher.errors import ValidationFailed
from services.voucher.redemption.rules import (
    CLAWBACK_OVERPAYMENT_RETURNED,
    CLAWBACK_RECORDED,
    CLAWBACK_REPAID,
    CLAWBACK_WRITTEN_OFF,
    Clawback,
    Hold,
    check_refund,
    clawback_forgivable,
    clawback_overpaid,
    clawback_overpayment_return,
    clawback_owed,
    clawback_recording,
    clawback_recovered,
    clawback_refunded,
    clawback_reversal,
    clawback_reversible,
    clawback_room,
)


def _owed(clawed_back: int, used: int) -> Clawback:
    """A clawback with nothing repaid or written off, as its ledger leaves it."""
    return Clawback(clawed_back=clawed_back, owed=min(clawed_back, used))


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
    assert clawback_recovered(_owed(clawed_back, used), used, refunded) == recovered
    assert clawed_back - recovered <= used - refunded


@pytest.mark.parametrize(
    ("clawback", "used", "refunded", "recovered", "overpaid"),
    [
        # 300,000 clawed back, 100,000 repaid: a refund of 150,000 leaves 150,000 used, of which
        # 50,000 is still owed (the programme has 100,000 from the enterprise, 150,000 from the provider)
        (Clawback(300_000, repaid=100_000, owed=200_000), 300_000, 150_000, 150_000, 0),
        # all of it repaid, then the order refunded in full: nothing to recover, and the
        # enterprise paid back value the provider also returned
        (Clawback(300_000, repaid=300_000), 300_000, 300_000, 0, 300_000),
        # written off, then refunded: the refund comes off the write-off, and nothing was repaid
        (Clawback(300_000, written_off=300_000), 300_000, 300_000, 0, 0),
        # half repaid, half written off, refunded: the refund comes off the write-off before the repayment
        (Clawback(300_000, repaid=150_000, written_off=150_000), 300_000, 100_000, 0, 0),
        (Clawback(300_000, repaid=150_000, written_off=150_000), 300_000, 200_000, 0, 50_000),
    ],
)
def test_a_refund_after_a_repayment_or_write_off_recovers_only_what_is_still_owed(
        clawback: Clawback, used: int, refunded: int, recovered: int, overpaid: int) -> None:
    assert clawback_recovered(clawback, used, refunded) == recovered
    after = replace(clawback, owed=clawback.owed - recovered)
    assert clawback_owed(after, used - refunded) == after.owed
    assert clawback_overpaid(after, used - refunded) == overpaid


@pytest.mark.parametrize("amount", [0, -1])
def test_a_refund_of_nothing_is_refused_before_anything_is_read(amount: int) -> None:
    """The API's schema refuses it; a caller inside the service (a claim's rejection) gets a
    422 for the amount too, not an unbalanced journal."""
    hold = Hold(id=uuid.uuid4(), voucher_id=uuid.uuid4(), programme_id=uuid.uuid4(), enterprise_id=uuid.uuid4(),
                provider_id=uuid.uuid4(), order_reference="PO-1", order_amount=1_000, unit="CNY", status="captured",
                held_amount=0, captured_amount=300, refunded_amount=0, period_key="2026",
                hold_expires_at=datetime(2026, 3, 2, tzinfo=UTC), payee="provider")
    with pytest.raises(ValidationFailed):
        check_refund(hold, amount)


def test_a_return_of_an_overpayment_is_asked_back_once_the_repayment_is_reversed() -> None:
    """300,000 clawed back and repaid, then 200,000 of the order refunded: the enterprise
    overpaid 200,000 and the office returns it. Nothing is owed, and the return's journal is
    recovered in full by the refund. The repayment then bounces: the enterprise owes the 100,000
    still used and the 200,000 it was returned. A return undone instead puts the overpayment
    back. Never more than is overpaid."""
    repaid = Clawback(300_000, repaid=300_000, owed=0)
    assert clawback_overpaid(repaid, 100_000) == 200_000
    returned, recovered = clawback_overpayment_return(repaid, 100_000, 200_000)
    assert (returned, recovered) == (Clawback(300_000, repaid=300_000, owed=0, returned=200_000), 200_000)
    assert (clawback_overpaid(returned, 100_000), clawback_owed(returned, 100_000)) == (0, 0)
    assert clawback_reversal(returned, 100_000, CLAWBACK_REPAID, 300_000) == (
        Clawback(300_000, repaid=0, owed=300_000, returned=200_000), 0)
    assert clawback_reversal(returned, 100_000, CLAWBACK_OVERPAYMENT_RETURNED, 200_000) == (repaid, -200_000)
    bounced = Clawback(300_000, repaid=0, owed=300_000, returned=200_000)  # the return undone after the bounce
    assert clawback_reversal(bounced, 100_000, CLAWBACK_OVERPAYMENT_RETURNED, 200_000) == (
        Clawback(300_000, owed=100_000), 0)
    for amount in (0, 200_001):
        with pytest.raises(ValueError):
            clawback_overpayment_return(repaid, 100_000, amount)


def test_a_write_off_refunds_overtook_does_not_forgive_money_returned() -> None:
    """300,000 clawed back: 200,000 repaid, 100,000 written off; the order refunded in full (the
    write-off's value came back through the provider, and the repayment is overpaid); the office
    returns the 200,000; the repayment bounces. The enterprise paid nothing and was paid
    200,000: it owes 200,000, not 100,000 (an independent review), and a write-off cannot
    forgive it (only clawed-back value still used is forgivable)."""
    c = Clawback(300_000, repaid=200_000, written_off=100_000, owed=0)
    assert clawback_overpaid(c, 0) == 200_000
    returned, _ = clawback_overpayment_return(c, 0, 200_000)
    bounced, recovered = clawback_reversal(returned, 0, CLAWBACK_REPAID, 200_000)
    assert (bounced.owed, recovered, clawback_forgivable(bounced, 0)) == (200_000, 0, 0)
    # Not refunded: the write-off stands against the clawed-back value, the rest is owed.
    kept = Clawback(300_000, repaid=200_000, written_off=100_000, owed=0)
    assert clawback_reversal(kept, 300_000, CLAWBACK_REPAID, 200_000)[0].owed == 200_000
    assert clawback_forgivable(Clawback(300_000, written_off=100_000, owed=250_000, returned=50_000), 300_000) == 200_000


def test_a_reversal_after_a_refund_puts_back_only_what_the_value_still_used_leaves_owed() -> None:
    """300,000 clawed back and repaid, then 200,000 of the order refunded (the enterprise
    overpaid 200,000): the repayment bounces. Only the 100,000 still used is owed again; the
    refund recovers the other 200,000 of the 300,000 put back."""
    repaid = Clawback(300_000, repaid=300_000, owed=0)
    undone, recovered = clawback_reversal(repaid, 100_000, CLAWBACK_REPAID, 300_000)
    assert (undone, recovered) == (Clawback(300_000, repaid=0, owed=100_000), 200_000)
    written_off = Clawback(300_000, written_off=300_000, owed=0)  # nothing refunded: all of it back
    assert clawback_reversal(written_off, 300_000, CLAWBACK_WRITTEN_OFF, 300_000) == (
        Clawback(300_000, owed=300_000), 0)
    with pytest.raises(ValueError):  # more than was recorded
        clawback_reversal(repaid, 300_000, CLAWBACK_WRITTEN_OFF, 1)
    for kind in (CLAWBACK_RECORDED, CLAWBACK_OVERPAYMENT_RETURNED):  # not undone while a write-off stands
        with pytest.raises(ValueError):
            clawback_reversal(Clawback(300_000, written_off=1, owed=299_999, returned=1), 300_000, kind, 1)
    with pytest.raises(ValueError):  # a refund is not an office's entry
        clawback_reversal(repaid, 300_000, "refund", 1)


def test_value_repaid_or_written_off_is_not_clawed_back_again() -> None:
    assert clawback_room(Clawback(100_000, repaid=60_000, written_off=40_000), 300_000) == 200_000
    assert clawback_room(Clawback(100_000, owed=50_000), 50_000) == 0  # refunds took the used value below it


_steps = st.lists(st.tuples(st.sampled_from(["refund", "clawback", "repay", "write_off", "return", "reverse"]),
                            st.integers(min_value=0, max_value=1_000)), max_size=12)


@given(used=st.integers(min_value=0, max_value=1_000), steps=_steps)
# A return, then the repayment it came from reversed; and a return reversed after that.
@example(used=300, steps=[("clawback", 300), ("repay", 300), ("refund", 200), ("return", 200), ("reverse", 0)])
@example(used=300, steps=[("clawback", 300), ("repay", 300), ("refund", 200), ("return", 150), ("reverse", 0),
                          ("reverse", 0), ("return", 50)])
# A write-off that refunds then overtook, a return, and the repayment reversed (a review's case).
@example(used=300, steps=[("clawback", 300), ("repay", 200), ("write_off", 100), ("refund", 300), ("return", 200),
                          ("reverse", 0), ("write_off", 200)])
# A clawback entered twice and written off as a workaround: its reversal refused until the
# write-off's; a mistyped clawback partly repaid, reversed, and the right one recorded (the
# payment covers it); a duplicate paid twice, reversed, and the overpayment returned.
@example(used=300, steps=[("clawback", 100), ("clawback", 100), ("write_off", 100), ("reverse", 1),
                          ("reverse", 2), ("reverse", 1), ("refund", 150)])
@example(used=1000, steps=[("clawback", 1000), ("repay", 100), ("reverse", 0), ("clawback", 100), ("refund", 990)])
@example(used=300, steps=[("clawback", 100), ("clawback", 100), ("repay", 200), ("reverse", 1), ("return", 100)])
# A second review's: a clawback repaid and reversed, the overpayment returned, a real one written
# off, the return reversed, another recorded (the write-off had covered it as if paid).
@example(used=300, steps=[("clawback", 100), ("repay", 100), ("reverse", 0), ("return", 100), ("clawback", 100),
                          ("write_off", 100), ("reverse", 1), ("clawback", 100)])
# A review's walk: a return, a clawback reversed, the return reversed, a clawback recorded.
@example(used=3, steps=[("clawback", 2), ("repay", 1), ("repay", 1), ("refund", 2), ("return", 1), ("reverse", 1),
                        ("reverse", 0), ("reverse", 1), ("clawback", 1)])
def test_the_ledger_step_by_step_agrees_with_the_reconciliation(used: int, steps: list[tuple[str, int]]) -> None:
    """Any sequence of clawbacks, refunds, repayments and write-offs, each allowed as the service
    allows it: the receivable the ledger's steps leave (`clawback_recovered` at each refund) is
    what the reconciliation expects from the totals (`clawback_owed`), and both agree with a
    model that keeps the used value in two buckets — clawed back and not — a refund emptying
    the second first, and what is owed being the clawed-back bucket less what was repaid or
    written off. The programme never gets back, from refunds and repayments together, more
    than was used, but for what the enterprise overpaid. A reversal undoes one standing
    clawback, repayment or write-off in full: the ledger moves its amount back and what refunds
    made while it stood recover (`clawback_reversal`), which leaves what the totals expect; a
    clawback or a return not while a write-off stands (`clawback_reversible`), and what the enterprise paid
    beyond what is left covers a clawback recorded later (`clawback_recording`). The
    office returns at most what was overpaid, which leaves nothing owed; a return may be reversed
    too, and a repayment reversed after a return asks the returned money back."""
    c = Clawback()
    not_clawed, clawed = used, 0  # the model's buckets of the value still used
    returned = 0  # value refunds gave back to the programme
    standing: list[tuple[str, int]] = []  # clawbacks, repayments, write-offs and returns not reversed
    for step, wanted in steps:
        still_used = not_clawed + clawed
        if step == "reverse":
            if not standing:
                continue
            kind, amount = standing[wanted % len(standing)]
            if not clawback_reversible(c, kind):
                with pytest.raises(ValueError):  # the service refuses it: the write-off is reversed first
                    clawback_reversal(c, not_clawed + clawed, kind, amount)
                continue
            standing.remove((kind, amount))
            undone, recovered = clawback_reversal(c, not_clawed + clawed, kind, amount)
            sums = {CLAWBACK_RECORDED: (c.clawed_back - amount, c.repaid, c.written_off, c.returned),
                    CLAWBACK_REPAID: (c.clawed_back, c.repaid - amount, c.written_off, c.returned),
                    CLAWBACK_WRITTEN_OFF: (c.clawed_back, c.repaid, c.written_off - amount, c.returned),
                    CLAWBACK_OVERPAYMENT_RETURNED: (c.clawed_back, c.repaid, c.written_off, c.returned - amount)}[kind]
            assert (undone.clawed_back, undone.repaid, undone.written_off, undone.returned) == sums
            # the reversal's own journal: a clawback and a return had put their amount on
            moved = -amount if kind in (CLAWBACK_RECORDED, CLAWBACK_OVERPAYMENT_RETURNED) else amount
            assert 0 <= recovered <= amount if moved > 0 else -amount <= recovered <= 0
            c = replace(undone, owed=c.owed + moved - recovered)  # what its two journals post
            if kind == CLAWBACK_RECORDED:  # the model's clawed-back bucket is what the clawback still takes
                clawed = min(c.clawed_back, not_clawed + clawed)
                not_clawed = still_used - clawed
        elif step == "return":
            amount = min(wanted, clawback_overpaid(c, not_clawed + clawed))
            if not amount:
                continue
            after, recovered = clawback_overpayment_return(c, not_clawed + clawed, amount)
            assert (after.returned, recovered, after.owed, c.owed) == (c.returned + amount, amount, 0, 0)
            c = replace(after, owed=c.owed + amount - recovered)  # what its two journals post
            standing.append((CLAWBACK_OVERPAYMENT_RETURNED, amount))
        elif step == "refund":
            refunded = min(wanted, not_clawed + clawed)
            c = replace(c, owed=c.owed - clawback_recovered(c, not_clawed + clawed, refunded))
            first = min(refunded, not_clawed)
            not_clawed, clawed, returned = not_clawed - first, clawed - (refunded - first), returned + refunded
        elif step == "clawback":
            amount = min(wanted, clawback_room(c, not_clawed + clawed))
            if not amount:
                continue
            assert amount <= not_clawed  # only value not clawed back yet is asked for
            recorded, covered = clawback_recording(c, not_clawed + clawed, amount)
            # Payments cover part of it only beyond what is clawed back, after a clawback was reversed.
            assert 0 <= covered <= min(amount, max(0, c.repaid - c.returned - c.clawed_back))
            c = replace(recorded, owed=c.owed + amount - covered)  # what its two journals post
            not_clawed, clawed = not_clawed - amount, clawed + amount
            standing.append((CLAWBACK_RECORDED, amount))
        else:
            # A write-off forgives clawed-back value only, not money returned and owed back.
            amount = min(wanted, c.owed if step == "repay" else clawback_forgivable(c, not_clawed + clawed))
            c = replace(c, owed=c.owed - amount, **({"repaid": c.repaid + amount} if step == "repay"
                                                    else {"written_off": c.written_off + amount}))
            if amount:
                standing.append((CLAWBACK_REPAID if step == "repay" else CLAWBACK_WRITTEN_OFF, amount))
        still_used = not_clawed + clawed
        net_paid = c.repaid - c.returned
        assert c.owed == clawback_owed(c, still_used) == (
            max(0, clawed - max(0, net_paid) - c.written_off) + max(0, -net_paid))
        # Money the office returned beyond what stands paid is owed back, whatever was written off.
        assert c.owed >= max(0, -net_paid)
        assert clawback_refunded(c, still_used) == c.clawed_back - clawed
        # Owed is at most the clawed-back value still used, and the money the office returned
        # to the enterprise beyond what it still counts as repaid (a repayment reversed since).
        assert 0 <= c.owed <= clawed + max(0, c.returned - c.repaid)
        assert min(c.clawed_back, c.repaid, c.written_off, c.returned) >= 0
        # What the programme got back, net of what the office returned, never passes the used
        # value but for what the enterprise overpaid and was not returned yet.
        assert returned + c.repaid - c.returned - clawback_overpaid(c, still_used) <= used
