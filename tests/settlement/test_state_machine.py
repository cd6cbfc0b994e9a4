"""A Hypothesis stateful test of settlement: random sequences of redeem / hold + capture /
refund / clock moves (hours, days, across month ends, around midnight's five-minute wait) and
settlement creation (a random run of past days or the previous month), provider confirm and
dispute, office resolve / approve / pay / cancel, against a simple in-memory model.

The model predicts every settlement's lines (each unsettled capture in the period; each refund
made before the period's end whose capture is then in a live settlement, this one included)
and which moves are refused. After every step, against the database:

1. no capture and no refund is a line of two live (not cancelled) settlements, and a
   cancelled settlement's lines are released, a live one's not;
2. every settlement's totals equal the sum of its lines (captured, refunded, total, count);
3. for every redemption, its live lines add up to (its captured amount if its capture is in a
   live settlement, else 0) − its refunds in live settlements, each line its capture's or
   refund's amount; a refund line whose capture is in no live settlement exists only where
   docs/decisions.md allows it (its capture's settlement cancelled after the refund was taken:
   "their settlement is not paid, or was cancelled");
4. at teardown, every ended period is settled and everything paid: what the provider was paid
   equals what was captured minus what was refunded, to the fen, each capture and refund in
   exactly one live settlement;
5. the ledger reconciles (its paid account equals the paid settlements' totals).

A refused move (409/422) is a no-op: the state read before it equals the state read after.
Driven through the services, not HTTP, with a frozen clock, as tests/ledger/test_state_machine.py.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    consumes,
    invariant,
    multiple,
    rule,
)
from sqlalchemy import select

from services.voucher.actor import SYSTEM, Actor
from services.voucher.apikeys.rules import ROLE_SCOPES, Role
from services.voucher.errors import (
    DomainError,
    NothingToSettle,
    SettlementExists,
)
from services.voucher.ledger import service as ledger
from services.voucher.redemption import service as redemption
from services.voucher.settlement import service as settlement
from services.voucher.settlement.rules import (
    MAX_PERIOD_DAYS,
    PERIOD_ZONE,
    SETTLE_AFTER,
    period_bounds,
    previous_month,
)
from services.voucher.settlement.service import REPAYMENT_CONFIRM_DAYS
from services.voucher.tables import (
    LedgerAccount,
    Redemption,
    RedemptionRefund,
    Settlement,
    SettlementItem,
)
from services.voucher.vouchers import service as vouchers
from tests.machines import DatabaseMachine, redeemable_programme, run_machine

RATE = 3000  # 30 %, no tiers: a subsidy is order × 3000 // 10000
ZONE = ZoneInfo(PERIOD_ZONE)
LIVE = ("draft", "submitted", "disputed", "approved", "paid")


@dataclass
class MRedemption:
    id: uuid.UUID
    captured: int = 0
    captured_at: datetime | None = None
    held: int = 0
    hold_expires_at: datetime | None = None
    state: str = "held"  # held | captured | gone
    refunds: list[MRefund] = field(default_factory=list)

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds)


@dataclass
class MRefund:
    id: uuid.UUID
    redemption: MRedemption
    amount: int
    created_at: datetime


@dataclass
class MSettlement:
    id: uuid.UUID
    start: date
    end: date
    created_at: datetime
    status: str = "draft"
    # (kind, redemption id, refund id or None, amount)
    lines: list[tuple[str, uuid.UUID, uuid.UUID | None, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(a for *_, a in self.lines)

    @property
    def live(self) -> bool:
        return self.status != "cancelled"


def today_of(now: datetime) -> date:
    return now.astimezone(ZONE).date()


class SettlementMachine(DatabaseMachine):
    holds = Bundle("holds")
    captured = Bundle("captured")
    settlements = Bundle("settlements")

    def __init__(self) -> None:
        super().__init__()
        self.redemptions: dict[uuid.UUID, MRedemption] = {}
        self.all_settlements: list[MSettlement] = []
        self.orders = 0
        self.checked = True  # the last thing that happened was a passing check (teardown drains then)
        self.run(self._setup())

    async def _setup(self) -> None:
        async with self.db.unit_of_work() as s:
            p, e, prov = await redeemable_programme(
                s, self.now, tiers=[], stacking_ceiling_bps=10_000, enterprise_cap=10**12, budget_total=10**13,
                max_per_voucher=10**12, rate_table={"accelerator:domestic": RATE}, voucher_validity_days=3650)
            v = await vouchers.issue_voucher(s, programme_id=p.id, enterprise_id=e.id, face_value=10**11,
                                             now=self.now)
        self.programme_id, self.provider_id, self.uscc, self.voucher_code = p.id, prov.id, e.uscc, v.code
        self.provider = Actor(principal_id=uuid.uuid4(), role=Role.PROVIDER, key_id=None,
                              scopes=ROLE_SCOPES[Role.PROVIDER], provider_id=prov.id)
        self.operator = SYSTEM

    async def _tx(self, work):  # type: ignore[no-untyped-def]
        async with self.db.unit_of_work() as s:
            return await work(s)

    def tx(self, work):  # type: ignore[no-untyped-def]
        return self.run(self._tx(work))

    # -- reading the database -------------------------------------------------------------------

    async def _read_state(self) -> dict[str, Any]:
        async with self.db.unit_of_work(write=False) as s:
            rows = (await s.execute(select(Settlement).where(Settlement.provider_id == self.provider_id)
                                    .order_by(Settlement.id))).scalars().all()
            settlements = {r.id: (r.status, r.captured_total, r.refunded_total, r.total, r.line_count,
                                  r.period_start, r.period_end) for r in rows}
            items = [(i.settlement_id, i.kind, i.redemption_id, i.refund_id, i.amount, i.released_at)
                     for i in (await s.execute(select(SettlementItem).join(Settlement).where(
                         Settlement.provider_id == self.provider_id).order_by(SettlementItem.id))).scalars().all()]
            reds = {r.id: (r.status, r.captured_amount, r.refunded_amount, r.captured_at)
                    for r in (await s.execute(select(Redemption).where(
                        Redemption.provider_id == self.provider_id))).scalars().all()}
            refunds = {r.id: (r.redemption_id, r.amount)
                       for r in (await s.execute(select(RedemptionRefund).where(
                           RedemptionRefund.provider_id == self.provider_id))).scalars().all()}
            paid = (await s.execute(select(LedgerAccount.balance).where(
                LedgerAccount.provider_id == self.provider_id, LedgerAccount.kind == "provider_paid",
                LedgerAccount.programme_id == self.programme_id))).scalar_one_or_none()
        return {"settlements": settlements, "items": items, "redemptions": reds, "refunds": refunds,
                "paid": int(paid or 0)}

    def state(self) -> dict[str, Any]:
        return self.run(self._read_state())

    def refused(self, work, expect_refusal: bool, what: str):  # type: ignore[no-untyped-def]
        """Run a settlement move; a refusal must be predicted and change nothing."""
        before = self.state()
        try:
            result = self.tx(work)
        except DomainError as exc:
            assert expect_refusal, f"{what} refused unexpectedly: {exc.code} {exc}"
            assert self.state() == before, f"{what}: a refusal ({exc.code}) changed the state"
            return exc
        assert not expect_refusal, f"{what} succeeded where the model expected a refusal"
        return result

    # -- model helpers --------------------------------------------------------------------------

    def live_capture(self, rid: uuid.UUID) -> MSettlement | None:
        return next((s for s in self.all_settlements if s.live and any(
            k == "capture" and r == rid for k, r, _, _ in s.lines)), None)

    def live_refund(self, fid: uuid.UUID) -> MSettlement | None:
        return next((s for s in self.all_settlements if s.live and any(
            k == "refund" and f == fid for k, _, f, _ in s.lines)), None)

    def paid_total(self) -> int:
        return sum(s.total for s in self.all_settlements if s.status == "paid")

    def predict_lines(self, start: date, end: date) -> list[tuple[str, uuid.UUID, uuid.UUID | None, int]]:
        starts_at, ends_at = period_bounds(start, end)
        captures = [("capture", r.id, None, r.captured) for r in self.redemptions.values()
                    if r.captured > 0 and r.captured_at is not None and starts_at <= r.captured_at < ends_at
                    and self.live_capture(r.id) is None]
        mine = {rid for _, rid, _, _ in captures}
        refunds = [("refund", r.redemption.id, r.id, -r.amount)
                   for red in self.redemptions.values() for r in red.refunds
                   if r.created_at < ends_at and self.live_refund(r.id) is None
                   and (red.id in mine or self.live_capture(red.id) is not None)]
        return captures + refunds

    # -- redemptions ----------------------------------------------------------------------------

    def _request(self, order_amount: int) -> redemption.HoldRequest:
        self.orders += 1
        return redemption.HoldRequest(
            voucher_code=self.voucher_code, enterprise_uscc=self.uscc, order_reference=f"O-{self.orders}",
            line_items=[{"category": "accelerator:domestic", "amount": order_amount}],
        )

    @rule(target=captured, order_amount=st.integers(4, 10_000_000))
    def redeem(self, order_amount: int) -> MRedemption:
        request = self._request(order_amount)
        r = self.tx(lambda s: redemption.redeem(s, self.provider, request, self.now))
        assert r.captured_amount == order_amount * RATE // 10_000
        model = MRedemption(r.id, captured=r.captured_amount, captured_at=self.now, state="captured")
        self.redemptions[r.id] = model
        return model

    @rule(target=holds, order_amount=st.integers(4, 10_000_000))
    def hold(self, order_amount: int) -> MRedemption:
        request = self._request(order_amount)
        r = self.tx(lambda s: redemption.hold(s, self.provider, request, self.now))
        assert r.held_amount == order_amount * RATE // 10_000
        model = MRedemption(r.id, held=r.held_amount, hold_expires_at=r.hold_expires_at)
        self.redemptions[r.id] = model
        return model

    @rule(target=captured, h=consumes(holds), percent=st.integers(1, 100))
    def capture(self, h: MRedemption, percent: int) -> MRedemption:
        amount = max(1, h.held * percent // 100)
        try:
            self.tx(lambda s: redemption.capture(s, self.provider, h.id, amount, self.now))
        except DomainError as exc:
            assert h.hold_expires_at is not None and self.now >= h.hold_expires_at, exc.code
            h.state = "gone"
            return h
        assert h.hold_expires_at is not None and self.now < h.hold_expires_at
        h.state, h.captured, h.captured_at = "captured", amount, self.now
        return h

    @rule(r=captured, percent=st.integers(1, 100))
    def refund(self, r: MRedemption, percent: int) -> None:
        self._refund(r, max(1, r.captured * percent // 100))

    @rule(r=captured)
    def refund_the_rest(self, r: MRedemption) -> None:
        if r.captured > r.refunded:  # the API refuses 0 (RefundCreate: amount >= 1); the service assumes it
            self._refund(r, r.captured - r.refunded)

    def _refund(self, r: MRedemption, amount: int) -> None:
        left = r.captured - r.refunded
        try:
            f = self.tx(lambda s: redemption.refund(s, self.provider, r.id, amount, "test", self.now))
        except DomainError as exc:
            assert r.state != "captured" or amount > left or left == 0, exc.code
            return
        assert r.state == "captured" and 0 < amount <= left
        r.refunds.append(MRefund(f.id, r, amount, self.now))

    # -- the clock ------------------------------------------------------------------------------

    @rule(hours=st.integers(1, 30))
    def hours_pass(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(days=st.integers(1, 20))
    def days_pass(self, days: int) -> None:
        self.now += timedelta(days=days)

    @rule(minutes=st.sampled_from([-1, 1, 4, 5, 6]), month_end=st.booleans())
    def to_midnight(self, minutes: int, month_end: bool) -> None:
        """Just before or after the next midnight (or the next month's first), in Beijing time."""
        day = today_of(self.now) + timedelta(days=1)
        if month_end:
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        target = datetime.combine(day, time(), ZONE).astimezone(UTC) + timedelta(minutes=minutes)
        if target > self.now:
            self.now = target

    # -- settlements ----------------------------------------------------------------------------

    @rule(target=settlements, r=captured, before=st.integers(0, 3), after=st.integers(0, 6))
    def settle_around(self, r: MRedemption, before: int, after: int) -> MSettlement | MultipleResults[MSettlement]:
        """A period around a capture's day (or the day of its last refund), cut at yesterday when
        it would not be over yet (so mostly one that can be settled)."""
        at = r.refunds[-1].created_at if r.refunds and after % 2 else r.captured_at or self.now
        today = today_of(self.now)
        end = min(today_of(at) + timedelta(days=after), today - timedelta(days=1))
        start = min(today_of(at), end) - timedelta(days=before)
        return self.create(previous=False, back=(today - end).days, length=(end - start).days + 1)

    @rule(target=settlements, previous=st.booleans(), back=st.integers(0, 60), length=st.integers(1, 45))
    def create(self, previous: bool, back: int, length: int) -> MSettlement | MultipleResults[MSettlement]:
        today = today_of(self.now)
        if previous:
            start, end = previous_month(self.now)
        else:
            end = today - timedelta(days=back)
            start = end - timedelta(days=length - 1)
        _, ends_at = period_bounds(start, end)
        lines = self.predict_lines(start, end)
        exists = any(s.live and (s.start, s.end) == (start, end) for s in self.all_settlements)
        refuse = end >= today or self.now < ends_at + SETTLE_AFTER or exists or not lines
        got = self.refused(lambda s: settlement.create(
            s, self.operator, provider_id=self.provider_id, programme_id=self.programme_id,
            period_start=start, period_end=end, now=self.now), refuse, f"create {start}..{end}")
        if isinstance(got, DomainError):
            if end < today and self.now >= ends_at + SETTLE_AFTER:
                assert isinstance(got, SettlementExists if exists else NothingToSettle), got.code
            return multiple()  # nothing for the settlement rules to draw
        model = MSettlement(got.id, start, end, self.now, lines=lines)
        self.all_settlements.append(model)
        return model

    def _move(self, s: MSettlement, work, allowed: bool, target: str, what: str) -> None:  # type: ignore[no-untyped-def]
        got = self.refused(work, not allowed, f"{what} of a {s.status} settlement (total {s.total})")
        if not isinstance(got, DomainError):
            assert got.status == target, (got.status, target)
            s.status = target

    def submit(self, s: MSettlement) -> None:
        self._move(s, lambda x: settlement.submit(x, self.provider, s.id, None, self.now),
                   s.status == "draft", "submitted", "confirm")

    @rule(s=settlements)
    def dispute(self, s: MSettlement) -> None:
        self._move(s, lambda x: settlement.dispute(x, self.provider, s.id, "wrong", self.now),
                   s.status in ("draft", "submitted"), "disputed", "dispute")

    def resolve(self, s: MSettlement) -> None:
        self._move(s, lambda x: settlement.resolve(x, self.operator, s.id, "stands", self.now),
                   s.status == "disputed", "submitted", "resolve")

    def approve(self, s: MSettlement) -> None:
        deemed = s.status == "draft" and s.total <= 0 and self.now >= s.created_at + timedelta(
            days=REPAYMENT_CONFIRM_DAYS)
        self._move(s, lambda x: settlement.approve(x, self.operator, s.id, None, self.now),
                   s.status == "submitted" or deemed, "approved", "approve")

    def _payable(self, s: MSettlement) -> bool:
        if s.status != "approved":
            return False
        if s.total >= 0:
            return True
        refunded = {rid for k, rid, _, _ in s.lines if k == "refund"}
        for rid in refunded:
            holder = self.live_capture(rid)
            if holder is None or (holder is not s and holder.status != "paid"):
                return False
        return self.paid_total() >= -s.total

    def pay(self, s: MSettlement) -> None:
        self._move(s, lambda x: settlement.pay(x, self.operator, s.id, reference="BANK-1",
                                               paid_on=today_of(self.now), now=self.now),
                   self._payable(s), "paid", "pay")
        if s.status == "paid":
            recon = self.tx(ledger.reconcile)  # the provider's paid account moved: the books still balance
            assert recon.is_clean, recon

    @rule(s=settlements)
    def cancel(self, s: MSettlement) -> None:
        self._move(s, lambda x: settlement.cancel(x, self.operator, s.id, "redo", self.now),
                   s.status in ("draft", "submitted"), "cancelled", "cancel")

    @rule(s=settlements)
    def progress(self, s: MSettlement) -> None:
        """The next move on the way to paid: the provider confirms, the office resolves a dispute,
        approves (a repayment the provider left alone for 15 days too), or pays."""
        if s.status == "draft" and s.total <= 0 and self.now >= s.created_at + timedelta(days=REPAYMENT_CONFIRM_DAYS):
            self.approve(s)
            return
        {"draft": self.submit, "disputed": self.resolve, "submitted": self.approve, "approved": self.pay,
         }.get(s.status, self.pay)(s)

    @rule(s=settlements, move=st.sampled_from(["submit", "resolve", "approve", "pay"]))
    def any_move(self, s: MSettlement, move: str) -> None:
        """A move whatever the status: refused (and a no-op) unless the model allows it."""
        getattr(self, move)(s)

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def settlements_hold_together(self) -> None:
        self.checked = False
        self.check(self.state())
        self.checked = True

    def check(self, st_: dict[str, Any]) -> None:
        rows, items = st_["settlements"], st_["items"]
        # The database agrees with the model, settlement by settlement, line by line.
        assert set(rows) == {s.id for s in self.all_settlements}
        for s in self.all_settlements:
            status, cap, ref, total, count, start, end = rows[s.id]
            assert (status, start, end) == (s.status, s.start, s.end), s
            mine = sorted((k, r, f, a) for sid, k, r, f, a, _ in items if sid == s.id)
            assert sorted(map(str, mine)) == sorted(map(str, s.lines)), (s, mine)
            # 2. totals are the sum of the lines
            assert cap == sum(a for *_, a in mine if a > 0), s
            assert ref == -sum(a for *_, a in mine if a < 0), s
            assert total == sum(a for *_, a in mine) and count == len(mine), s
        # 1. one live settlement per capture and per refund; released iff cancelled
        live_keys: list[tuple[str, Any]] = []
        for sid, kind, rid, fid, _, released in items:
            assert (released is not None) == (rows[sid][0] == "cancelled"), (sid, kind, rid, released)
            if released is None:
                live_keys.append(("capture", rid) if kind == "capture" else ("refund", fid))
        assert len(live_keys) == len(set(live_keys)), "a capture or refund in two live settlements"
        # 3. per redemption: live lines = captured (if its capture is live) − live refunds
        reds, refunds = st_["redemptions"], st_["refunds"]
        for rid, (_, captured_amount, _, _) in reds.items():
            lines = [(k, f, a) for sid, k, r, f, a, rel in items if r == rid and rel is None]
            capture_live = any(k == "capture" for k, _, _ in lines)
            for k, f, a in lines:
                assert a == (captured_amount if k == "capture" else -refunds[f][1]), (rid, k, a)
            live_refunds = sum(refunds[f][1] for k, f, _ in lines if k == "refund")
            assert sum(a for _, _, a in lines) == (captured_amount if capture_live else 0) - live_refunds
            if not capture_live and live_refunds:
                # Allowed only when the capture had been in a settlement since cancelled.
                assert any(r == rid and k == "capture" and rel is not None
                           for _, k, r, _, _, rel in items), f"refund of {rid} settled before its capture"
        # The redemptions as the model has them.
        for m in self.redemptions.values():
            _, captured_amount, refunded_amount, captured_at = reds[m.id]
            assert (captured_amount, refunded_amount) == (m.captured, m.refunded), m
        # The provider was paid the paid settlements' totals, never below zero.
        assert st_["paid"] == self.paid_total() >= 0

    # -- the drain at the end -------------------------------------------------------------------

    def drain(self) -> None:
        """Every ended period settled and everything paid: paid == captured − refunded."""
        self.now = datetime.combine(today_of(self.now) + timedelta(days=1), time(0, 10), ZONE).astimezone(UTC)
        yesterday = today_of(self.now) - timedelta(days=1)
        for _ in range(6):
            first = min((r.captured_at for r in self.redemptions.values() if r.captured_at), default=None)
            if first is not None:
                day = min(today_of(first), *(s.start for s in self.all_settlements)) if self.all_settlements \
                    else today_of(first)
                while day <= yesterday:
                    end = min(yesterday, day + timedelta(days=MAX_PERIOD_DAYS - 1))
                    for start in (day, day - timedelta(days=1)):
                        if self.predict_lines(start, end) and not any(
                                s.live and (s.start, s.end) == (start, end) for s in self.all_settlements):
                            self.create(previous=False, back=(today_of(self.now) - end).days,
                                        length=(end - start).days + 1)
                            break
                    day = end + timedelta(days=1)
            self.check(self.state())
            open_ = [s for s in self.all_settlements if s.status not in ("paid", "cancelled")]
            if not open_ and not self.predict_lines(date(2000, 1, 1), yesterday):
                break
            for s in sorted(open_, key=lambda s: s.total < 0):
                for _ in range(4):
                    {"draft": self.submit, "disputed": self.resolve, "submitted": self.approve,
                     "approved": self.pay}.get(s.status, lambda s: None)(s)
            self.check(self.state())
        captured = sum(r.captured for r in self.redemptions.values())
        refunded = sum(r.refunded for r in self.redemptions.values())
        assert all(s.status in ("paid", "cancelled") for s in self.all_settlements), self.all_settlements
        final = self.state()
        recon = self.tx(ledger.reconcile)
        assert recon.is_clean, recon
        assert final["paid"] == self.paid_total() == captured - refunded, (final["paid"], captured, refunded)
        live = [(k, r, f) for sid, k, r, f, _, rel in final["items"] if rel is None]
        assert sorted(map(str, live)) == sorted(map(str, set(live)))
        assert {r for k, r, _ in live if k == "capture"} == {r.id for r in self.redemptions.values() if r.captured}
        assert {f for k, _, f in live if k == "refund"} == {
            f.id for r in self.redemptions.values() for f in r.refunds}

    def teardown(self) -> None:
        try:
            if self.checked and sys.exc_info()[0] is None:  # not on the way out of a failure
                self.drain()
        finally:
            self.run(self.db.dispose())
            self.loop.close()


@pytest.mark.timeout(600)
def test_settlement_state_machine(database_url: str) -> None:
    run_machine(SettlementMachine, database_url, examples=30, steps=40)
