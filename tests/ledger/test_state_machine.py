"""A Hypothesis stateful test: random sequences of issue / hold / capture / void / refund /
expire / revoke against a simple in-memory model. After every step: the ledger reconciles
(postings sum to zero, materialised balances equal their postings, nothing constrained is
negative), every voucher's available / held / used match the model, and no hold resolves twice.

It drives the services directly (not HTTP) so that hundreds of steps stay fast; the HTTP layer
has its own tests, and the concurrency tests race a real server.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, consumes, invariant, rule

from services.voucher.actor import SYSTEM, Actor
from services.voucher.apikeys.rules import ROLE_SCOPES, Role
from services.voucher.db import Database
from services.voucher.errors import DomainError
from services.voucher.ledger import service as ledger
from services.voucher.redemption import service as redemption
from services.voucher.vouchers import service as vouchers
from tests.machines import DatabaseMachine, redeemable_programme, run_machine

RATE = 3000  # 30 %, no tiers, no stacking limit, a cap larger than any voucher


@dataclass
class ModelVoucher:
    id: uuid.UUID
    code: str
    available: int
    held: int = 0
    used: int = 0
    valid: bool = True  # not revoked, not expired


@dataclass
class ModelHold:
    id: uuid.UUID
    voucher: ModelVoucher
    amount: int
    state: str = "held"
    captured: int = 0
    refunded: int = 0
    resolutions: int = 0


@dataclass
class Scenario:
    loop: asyncio.AbstractEventLoop
    db: Database
    programme_id: uuid.UUID
    enterprise_id: uuid.UUID
    uscc: str
    provider: Actor
    vouchers: list[ModelVoucher] = field(default_factory=list)


class LedgerMachine(DatabaseMachine):
    vouchers = Bundle("vouchers")
    holds = Bundle("holds")
    captured = Bundle("captured")

    def __init__(self) -> None:
        super().__init__()
        self.all_vouchers: list[ModelVoucher] = []
        self.all_holds: list[ModelHold] = []
        self.orders = 0
        self.run(self._setup())

    async def _setup(self) -> None:
        async with self.db.unit_of_work() as s:
            p, e, prov = await redeemable_programme(
                s, self.now, tiers=[], stacking_ceiling_bps=10_000, enterprise_cap=10**12, budget_total=10**13,
                max_per_voucher=10**12, rate_table={"accelerator:domestic": RATE}, voucher_validity_days=30)
        self.programme_id, self.enterprise_id, self.uscc = p.id, e.id, e.uscc
        self.provider = Actor(principal_id=uuid.uuid4(), role=Role.PROVIDER, key_id=None,
                              scopes=ROLE_SCOPES[Role.PROVIDER], provider_id=prov.id)

    def teardown(self) -> None:
        self.run(self.db.dispose())
        self.loop.close()

    async def _tx(self, work):  # type: ignore[no-untyped-def]
        async with self.db.unit_of_work() as s:
            return await work(s)

    # -- rules -------------------------------------------------------------------------------

    @rule(target=vouchers, face=st.integers(1, 5_000_000))
    def issue(self, face: int) -> ModelVoucher:
        v = self.run(self._tx(lambda s: vouchers.issue_voucher(
            s, programme_id=self.programme_id, enterprise_id=self.enterprise_id, face_value=face, now=self.now)))
        model = ModelVoucher(v.id, v.code, available=face)
        self.all_vouchers.append(model)
        return model

    @rule(target=holds, voucher=vouchers, order_amount=st.integers(1, 20_000_000))
    def hold(self, voucher: ModelVoucher, order_amount: int) -> ModelHold:
        self.orders += 1
        request = redemption.HoldRequest(
            voucher_code=voucher.code, enterprise_uscc=self.uscc, order_reference=f"O-{self.orders}",
            line_items=[{"category": "accelerator:domestic", "amount": order_amount}],
        )
        expected = min(order_amount * RATE // 10_000, voucher.available) if voucher.valid else 0
        try:
            r = self.run(self._tx(lambda s: redemption.hold(s, self.provider, request, self.now)))
        except DomainError as exc:
            assert expected == 0, (exc.code, expected)
            return ModelHold(uuid.uuid4(), voucher, 0, state="refused")
        assert r.held_amount == expected
        voucher.available -= expected
        voucher.held += expected
        model = ModelHold(r.id, voucher, expected)
        self.all_holds.append(model)
        return model

    @rule(target=captured, h=consumes(holds), fraction=st.integers(1, 100))
    def capture(self, h: ModelHold, fraction: int) -> ModelHold:
        amount = max(1, h.amount * fraction // 100)
        try:
            self.run(self._tx(lambda s: redemption.capture(s, self.provider, h.id, amount, self.now)))
        except DomainError as exc:
            assert h.state != "held" or not h.voucher.valid, exc.code
            return h
        assert h.state == "held", "a hold resolved twice"
        h.state, h.captured, h.resolutions = "captured", amount, h.resolutions + 1
        h.voucher.held -= h.amount
        h.voucher.used += amount
        h.voucher.available += h.amount - amount
        return h

    @rule(h=consumes(holds))
    def void(self, h: ModelHold) -> None:
        try:
            self.run(self._tx(lambda s: redemption.void(s, self.provider, h.id, self.now)))
        except DomainError:
            assert h.state != "held"
            return
        assert h.state == "held", "a hold resolved twice"
        h.state, h.resolutions = "voided", h.resolutions + 1
        h.voucher.held -= h.amount
        h.voucher.available += h.amount

    @rule(h=captured, amount=st.integers(1, 2_000_000))
    def refund(self, h: ModelHold, amount: int) -> None:
        try:
            self.run(self._tx(lambda s: redemption.refund(s, self.provider, h.id, amount, "test", self.now)))
        except DomainError:
            assert h.state != "captured" or amount > h.captured - h.refunded
            return
        assert amount <= h.captured - h.refunded
        h.refunded += amount
        h.voucher.used -= amount
        if h.voucher.valid:
            h.voucher.available += amount

    @rule()
    def hold_ttl_passes(self) -> None:
        self.now += timedelta(seconds=1801)
        self.run(self._tx(lambda s: redemption.expire_holds(s, self.now)))
        for h in self.all_holds:
            if h.state == "held":
                h.state, h.resolutions = "expired", h.resolutions + 1
                h.voucher.held -= h.amount
                h.voucher.available += h.amount

    @rule(voucher=vouchers)
    def revoke(self, voucher: ModelVoucher) -> None:
        try:
            self.run(self._tx(lambda s: vouchers.revoke(s, SYSTEM, voucher.id, "test", self.now)))
        except DomainError:
            assert not voucher.valid
            return
        assert voucher.valid
        self._release_holds_of(voucher, "voided")
        voucher.available = 0
        voucher.valid = False

    @rule()
    def vouchers_expire(self) -> None:
        self.now += timedelta(days=31)
        self.run(self._tx(lambda s: vouchers.expire_due(s, self.now)))
        for v in self.all_vouchers:
            if v.valid:
                self._release_holds_of(v, "expired")
                v.available = 0
                v.valid = False

    def _release_holds_of(self, voucher: ModelVoucher, state: str) -> None:
        for h in self.all_holds:
            if h.voucher is voucher and h.state == "held":
                h.state, h.resolutions = state, h.resolutions + 1
                voucher.held -= h.amount
                voucher.available += h.amount

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def books_balance_and_match_the_model(self) -> None:
        recon = self.run(self._tx(ledger.reconcile))
        assert recon.is_clean, recon
        if not self.all_vouchers:
            return

        async def read():  # type: ignore[no-untyped-def]
            async with self.db.unit_of_work(write=False) as s:
                rows = [await vouchers.get_voucher(s, SYSTEM, v.id) for v in self.all_vouchers]
                return await vouchers.views(s, rows, self.now)

        for model, view in zip(self.all_vouchers, self.run(read()), strict=True):
            b = view.balances
            assert (b.available, b.held, b.used) == (model.available, model.held, model.used), model
            assert min(b.available, b.held, b.used) >= 0
        assert all(h.resolutions <= 1 for h in self.all_holds)


@pytest.mark.timeout(600)
def test_ledger_state_machine(database_url: str) -> None:
    # Fewer examples on PostgreSQL, where each costs about twice SQLite's (CI's budget, December 2026).
    run_machine(LedgerMachine, database_url, examples=15 if database_url.startswith("sqlite") else 10, steps=25)
