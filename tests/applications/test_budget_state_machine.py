"""A Hypothesis stateful test of a programme's budget and the enterprises' caps: random
sequences of application submit / approve (for the request, less, or more than requested) /
reject / withdraw / objection (lodged, then upheld by a rejection or dismissed by approving
again), direct and bulk issue, revoke, one-step redeem and refund, clock moves (hours, days,
to just before the next cap period's start in the programme's zone) and the end-publicity and
expiry jobs, on a small programme (small budget and cap, a day or two of publicity) with 2–3
enterprises, against an in-memory model that predicts every refusal.

After every step, against the database:

1. the programme's pool, committed and breakage accounts equal the model; what left the pool
   (committed + issued − returned) never exceeds budget_total; the ledger reconciles;
2. per enterprise and cap period: granted + committed ≤ enterprise_cap and subsidised ≤
   enterprise_cap, and the usage row equals the model. What counts towards a period follows
   docs/decisions.md ("Vouchers"): a direct issue in the period it is issued in, an
   application's voucher in the period of its approval (also when publicity ends in the next
   one), an approval again for more in a later period moves there whole; revocation and expiry
   give no cap back;
3. a refused request (409/422 domain error) changes nothing (the programme's state read before
   equals the state read after), and every application's history is a chain of moves the
   documented lifecycle has;
4. every voucher's available + held + used = face value − revoked − expired − refunds to the
   pool (DESIGN invariant 2), and its balances equal the model's.

Driven through the services with a frozen clock, as tests/ledger/test_state_machine.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule
from sqlalchemy import func, select

from services.voucher.actor import SYSTEM, Actor
from services.voucher.apikeys.rules import ROLE_SCOPES, Role
from services.voucher.applications import service as applications
from services.voucher.applications.rules import TRANSITIONS, ApplicationStatus
from services.voucher.enterprises import service as enterprises
from services.voucher.enterprises.schemas import EnterpriseCreate
from services.voucher.errors import DomainError
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind
from services.voucher.programmes import service as programmes
from services.voucher.programmes.rules import ProgrammeStatus, period_key
from services.voucher.programmes.schemas import ProgrammeCreate
from services.voucher.providers import service as providers
from services.voucher.providers.rules import ProviderStatus
from services.voucher.providers.schemas import ProviderCreate
from services.voucher.redemption import service as redemption
from services.voucher.tables import (
    Application,
    ApplicationTransition,
    AuditEvent,
    EnterprisePeriodUsage,
    LedgerTransaction,
    Voucher,
)
from services.voucher.vouchers import service as vouchers
from tests.conftest import T0
from tests.machines import DatabaseMachine, run_machine
from tests.support import enterprise_payload, programme_payload, provider_payload

RATE = 3000  # 30 %, no tiers, no stacking limit
ZONE = "Asia/Shanghai"
CAP_RULE = {"all": [{"id": "cap", "check": "requested_within_remaining_cap"}]}
S = ApplicationStatus
#: Where a run starts: early March (T0), and 10:00 on 30 December and 20:00 on 31 December in Beijing.
STARTS = (T0, datetime(2026, 12, 30, 2, 0, tzinfo=UTC), datetime(2026, 12, 31, 12, 0, tzinfo=UTC))


@dataclass
class MRedemption:
    id: uuid.UUID
    amount: int
    period: str
    refunded: int = 0


@dataclass
class MVoucher:
    id: uuid.UUID
    code: str
    ent: int
    face: int
    period: str
    expires_at: datetime
    available: int
    used: int = 0
    revoked: bool = False
    expiry_posted: bool = False
    returned: int = 0  # to the pool or breakage: revoked, expired, refunds after validity
    redemptions: list[MRedemption] = field(default_factory=list)

    def live(self, now: datetime) -> bool:
        return not self.revoked and now < self.expires_at


@dataclass
class MApp:
    id: uuid.UUID
    ent: int
    requested: int
    status: str
    approved: int | None = None
    period: str | None = None
    ends: datetime | None = None
    voucher: MVoucher | None = None


class Refused(Exception):
    """What the model predicts: the service refuses (any domain error)."""


class BudgetMachine(DatabaseMachine):
    def __init__(self) -> None:
        super().__init__()
        self.apps: list[MApp] = []
        self.vouchers: list[MVoucher] = []
        self.usage: dict[tuple[int, str], list[int]] = {}  # granted, committed, subsidised
        self.orders = 0
        self.ready = False

    def tx(self, work):  # type: ignore[no-untyped-def]
        async def go():  # type: ignore[no-untyped-def]
            async with self.db.unit_of_work() as s:
                return await work(s)
        return self.run(go())

    def teardown(self) -> None:
        self.run(self.db.dispose())
        self.loop.close()

    # -- set-up ------------------------------------------------------------------------------------

    @initialize(
        cap_period=st.sampled_from(["calendar_year", "calendar_quarter", "calendar_month", "programme"]),
        disposition=st.sampled_from(["pool", "breakage"]),
        publicity=st.sampled_from([1, 2, 2, 0]),
        validity=st.sampled_from([2, 5, 40]),
        budget=st.sampled_from([600, 1000]),
        cap=st.sampled_from([300, 400]),
        max_per_voucher=st.sampled_from([200, 250]),
        cap_rule=st.booleans(),
        n=st.sampled_from([2, 3]),
        start=st.sampled_from(STARTS),
    )
    def setup(self, cap_period: str, disposition: str, publicity: int, validity: int, budget: int, cap: int,
              max_per_voucher: int, cap_rule: bool, n: int, start: datetime) -> None:
        self.now = start
        self.budget, self.cap, self.max = budget, cap, max_per_voucher
        self.cap_period, self.disposition, self.publicity = cap_period, disposition, publicity
        self.pool, self.committed, self.breakage = budget, 0, 0
        self.cap_rule, self.validity_days = cap_rule, validity

        async def make(s):  # type: ignore[no-untyped-def]
            terms = ProgrammeCreate(**programme_payload(
                budget_total=budget, enterprise_cap=cap, max_per_voucher=max_per_voucher, tiers=[],
                stacking_ceiling_bps=10_000, rate_table={"accelerator:domestic": RATE}, cap_period=cap_period,
                cap_timezone=ZONE, publicity_days=publicity, voucher_validity_days=validity,
                expiry_disposition=disposition, eligibility_rules=CAP_RULE if cap_rule else None,
            )).model_dump()
            p = await programmes.create_programme(s, terms, self.now)
            await programmes.transition(s, SYSTEM, p.id, ProgrammeStatus.OPEN, self.now)
            ents = []
            for _ in range(n):
                ents.append(await enterprises.register(
                    s, {**EnterpriseCreate(**enterprise_payload()).model_dump(mode="json"), "founded_on": None},
                    self.now))
            prov = await providers.register(s, ProviderCreate(**provider_payload()).model_dump(mode="json"),
                                            self.now)
            await providers.change_status(s, SYSTEM, prov.id, ProviderStatus.APPROVED, "ok", self.now)
            await programmes.enrol_provider(s, SYSTEM, p.id, prov.id, self.now)
            return p.id, [(e.id, e.uscc) for e in ents], prov.id

        self.programme_id, ents, provider_id = self.tx(make)
        self.ent_ids = [e for e, _ in ents]
        self.usccs = [u for _, u in ents]
        self.ent_actors = [Actor(principal_id=uuid.uuid4(), role=Role.ENTERPRISE, key_id=None,
                                 scopes=ROLE_SCOPES[Role.ENTERPRISE], enterprise_id=e) for e in self.ent_ids]
        self.provider = Actor(principal_id=uuid.uuid4(), role=Role.PROVIDER, key_id=None,
                              scopes=ROLE_SCOPES[Role.PROVIDER], provider_id=provider_id)
        self.accounts = self.tx(lambda s: ledger.programme_accounts(s, self.programme_id))
        self.ready = True

    # -- the model's helpers -----------------------------------------------------------------------

    def period(self, at: datetime | None = None) -> str:
        return period_key(self.cap_period, ZONE, at or self.now)

    def row(self, ent: int, period: str) -> list[int]:
        return self.usage.setdefault((ent, period), [0, 0, 0])

    def taken(self, ent: int, period: str) -> int:
        granted, committed, _ = self.row(ent, period)
        return granted + committed

    def effective(self, app: MApp) -> str:
        if app.status == S.PUBLICITY and app.ends is not None and app.ends <= self.now:
            return S.ISSUED.value
        return app.status

    def open_app(self, ent: int) -> MApp | None:
        return next((a for a in self.apps if a.ent == ent and a.status in
                     (S.SUBMITTED, S.UNDER_REVIEW, S.APPROVED, S.PUBLICITY)), None)

    def issue_from_application(self, app: MApp, voucher_id: uuid.UUID, code: str) -> None:
        """The model of `_complete`: the commitment becomes a voucher in the approval's period,
        valid from the end of publicity."""
        assert app.approved is not None and app.period is not None and app.ends is not None
        row = self.row(app.ent, app.period)
        row[1] -= app.approved
        row[0] += app.approved
        self.committed -= app.approved
        v = MVoucher(voucher_id, code, app.ent, app.approved, app.period,
                     app.ends + timedelta(days=self._validity()), available=app.approved)
        self.vouchers.append(v)
        app.voucher, app.status = v, S.ISSUED.value

    def _validity(self) -> int:
        return self.validity_days

    def release(self, app: MApp) -> None:
        if app.approved is None:
            return
        assert app.period is not None
        self.row(app.ent, app.period)[1] -= app.approved
        self.committed -= app.approved
        self.pool += app.approved
        app.approved, app.period, app.ends = None, None, None

    # -- running a request -------------------------------------------------------------------------

    def attempt(self, predicted_refusal: bool, work):  # type: ignore[no-untyped-def]
        """Run `work` in a transaction. A refusal must be predicted and change nothing; a
        success must not be predicted as a refusal."""
        before = self.snapshot()
        try:
            result = self.tx(work)
        except DomainError as exc:
            assert predicted_refusal, f"refused unexpectedly: {exc.code} {exc.detail}"
            assert self.snapshot() == before, f"a refusal ({exc.code}) changed something"
            raise Refused(exc.code) from exc
        assert not predicted_refusal, "the model predicted a refusal, the service accepted"
        return result

    # -- rules: applications -----------------------------------------------------------------------

    @precondition(lambda self: self.ready)
    @rule(ent=st.integers(0, 2), amount=st.integers(1, 300), free=st.booleans())
    def submit(self, ent: int, amount: int, free: bool) -> None:
        """An enterprise applies: one with no open application when `free` and there is one."""
        ent %= len(self.ent_ids)
        if free:
            idle = [e for e in range(len(self.ent_ids)) if (a := self.open_app(e)) is None or self.effective(a) == "issued"]
            ent = idle[ent % len(idle)] if idle else ent
        earlier = self.open_app(ent)
        refused = amount > self.max or (earlier is not None and self.effective(earlier) != S.ISSUED)
        data = {"requested_amount": amount, "purpose": "fine-tuning an inspection model"}
        try:
            row = self.attempt(refused, lambda s: applications.submit(
                s, self.ent_actors[ent], self.programme_id, data, self.now))
        except Refused:
            return
        if earlier is not None:  # its publicity ended: the submission issued it first
            found = self.tx(lambda s: applications.get_application(s, SYSTEM, earlier.id))
            code = self.tx(lambda s: vouchers.get_voucher(s, SYSTEM, found.voucher_id)).code
            self.issue_from_application(earlier, found.voucher_id, code)
        eligible = not self.cap_rule or amount <= max(self.cap - self.taken(ent, self.period()), 0)
        status = S.UNDER_REVIEW.value if eligible else S.INELIGIBLE.value
        assert row.status == status, (row.status, status)
        self.apps.append(MApp(row.id, ent, amount, status))

    def _app(self, index: int, live: str, *states: str) -> MApp | None:
        """An application: with `held`, one an objection returned to review holding its approval
        (if any is in one of `states`); with `open` (or no such one), one in `states` as the model
        reads them; else (or none there) any, where most refusals come from."""
        candidates = self.apps
        opened = [a for a in self.apps if self.effective(a) in states]
        held = [a for a in opened if a.status == S.UNDER_REVIEW and a.approved is not None]
        if live == "held" and held:
            candidates = held
        elif live in ("held", "open") and opened:
            candidates = opened
        return candidates[index % len(candidates)] if candidates else None

    def approve(self, index: int, fraction: int, over: int, live: str) -> None:
        app = self._app(index, live, S.UNDER_REVIEW)
        assert app is not None
        amount = max(1, app.requested * fraction // 100) if over else app.requested + 1 + fraction
        status, held, now_period = self.effective(app), app.approved, self.period()
        refused = status != S.UNDER_REVIEW or amount > app.requested or amount > self.max
        plan: tuple[str, ...] = ()
        if not refused:
            if held is None:
                refused = self.taken(app.ent, now_period) + amount > self.cap or self.pool < amount
                plan = ("commit",)
            elif amount > held and now_period != app.period:
                refused = self.taken(app.ent, now_period) + amount > self.cap or self.pool < amount - held
                plan = ("recommit",)
            elif amount > held:
                assert app.period is not None
                refused = self.taken(app.ent, app.period) + amount - held > self.cap or self.pool < amount - held
                plan = ("more",)
            else:
                plan = ("less",)
        try:
            self.attempt(refused, lambda s: applications.approve(s, SYSTEM, app.id, amount, None, self.now))
        except Refused:
            return
        if plan == ("commit",):
            self.row(app.ent, now_period)[1] += amount
            self.pool -= amount
            self.committed += amount
            app.period = now_period
        elif plan == ("recommit",):
            assert held is not None and app.period is not None
            self.row(app.ent, app.period)[1] -= held
            self.row(app.ent, now_period)[1] += amount
            self.pool -= amount - held
            self.committed += amount - held
            app.period = now_period
        else:
            assert held is not None and app.period is not None
            self.row(app.ent, app.period)[1] += amount - held
            self.pool -= amount - held
            self.committed += amount - held
        app.approved = amount
        if self.publicity:
            app.status, app.ends = S.PUBLICITY.value, self.now + timedelta(days=self.publicity)
        else:
            app.ends = self.now
            found = self.tx(lambda s: applications.get_application(s, SYSTEM, app.id))
            code = self.tx(lambda s: vouchers.get_voucher(s, SYSTEM, found.voucher_id)).code
            self.issue_from_application(app, found.voucher_id, code)

    def reject(self, index: int, live: str) -> None:
        app = self._app(index, live, S.UNDER_REVIEW)
        assert app is not None
        try:
            self.attempt(self.effective(app) != S.UNDER_REVIEW,
                         lambda s: applications.reject(s, SYSTEM, app.id, "outside the scope", self.now))
        except Refused:
            return
        self.release(app)
        app.status = S.REJECTED.value

    def withdraw(self, index: int, live: str) -> None:
        app = self._app(index, live, S.SUBMITTED, S.UNDER_REVIEW)
        assert app is not None
        try:
            self.attempt(self.effective(app) not in (S.SUBMITTED, S.UNDER_REVIEW),
                         lambda s: applications.withdraw(s, self.ent_actors[app.ent], app.id, "postponed", self.now))
        except Refused:
            return
        self.release(app)
        app.status = S.WITHDRAWN.value

    def object_to(self, index: int, live: str) -> None:
        app = self._app(index, live, S.PUBLICITY)
        assert app is not None
        try:
            self.attempt(self.effective(app) != S.PUBLICITY, lambda s: applications.lodge_objection(
                s, SYSTEM, app.id, "the provider is a related party", "a letter", self.now))
        except Refused:
            return
        app.status, app.ends = S.UNDER_REVIEW.value, None

    @precondition(lambda self: self.ready and self.apps)
    @rule(action=st.sampled_from(["approve", "approve", "approve", "reject", "withdraw", "object"]),
          index=st.integers(0, 20), fraction=st.integers(1, 100), over=st.integers(0, 9), live=st.sampled_from(["any", "open", "held"]))
    def decide(self, action: str, index: int, fraction: int, over: int, live: str) -> None:
        """The office approves (mostly for at most the request), rejects or hears an objection;
        or the enterprise withdraws."""
        if action == "approve":
            self.approve(index, fraction, over, live)
        else:
            {"reject": self.reject, "withdraw": self.withdraw, "object": self.object_to}[action](index, live)

    # -- rules: direct issue, revoke, redeem, refund -----------------------------------------------

    def _grant(self, ent: int, amount: int, pool: int, taken: dict[tuple[int, str], int]) -> tuple[bool, int]:
        key = (ent, self.period())
        ok = amount <= self.max and taken.get(key, self.taken(*key)) + amount <= self.cap and pool >= amount
        if ok:
            taken[key] = taken.get(key, self.taken(*key)) + amount
        return ok, pool - amount if ok else pool

    def _issued(self, ent: int, v: Any) -> None:
        self.row(ent, self.period())[0] += v.face_value
        self.pool -= v.face_value
        assert v.period_key == self.period()
        self.vouchers.append(MVoucher(v.id, v.code, ent, v.face_value, v.period_key, v.expires_at,
                                      available=v.face_value))

    def issue(self, ent: int, amount: int) -> None:
        ent %= len(self.ent_ids)
        ok, _ = self._grant(ent, amount, self.pool, {})
        try:
            v = self.attempt(not ok, lambda s: vouchers.issue_voucher(
                s, programme_id=self.programme_id, enterprise_id=self.ent_ids[ent], face_value=amount, now=self.now))
        except Refused:
            return
        self._issued(ent, v)

    def issue_bulk(self, grants: list[tuple[int, int]]) -> None:
        grants = [(e % len(self.ent_ids), a) for e, a in grants]
        pool, taken, ok = self.pool, {}, True
        for ent, amount in grants:
            good, pool = self._grant(ent, amount, pool, taken)
            ok = ok and good
        body = [{"enterprise_id": self.ent_ids[e], "face_value": a} for e, a in grants]
        try:
            issued = self.attempt(not ok, lambda s: vouchers.issue_bulk(
                s, programme_id=self.programme_id, grants=body, now=self.now))
        except Refused:
            return
        for (ent, _), v in zip(grants, issued, strict=True):
            self._issued(ent, v)

    @precondition(lambda self: self.ready)
    @rule(bulk=st.booleans(), ent=st.integers(0, 2), amount=st.integers(1, 220),
          grants=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 150)), min_size=1, max_size=3))
    def grant(self, bulk: bool, ent: int, amount: int, grants: list[tuple[int, int]]) -> None:
        """The office issues directly: one voucher, or a batch (all or nothing)."""
        if bulk:
            self.issue_bulk(grants)
        else:
            self.issue(ent, amount)

    @precondition(lambda self: self.ready and self.vouchers)
    @rule(action=st.sampled_from(["redeem", "redeem", "refund", "revoke"]), index=st.integers(0, 20),
          order=st.integers(1, 1200), amount=st.integers(1, 150))
    def use(self, action: str, index: int, order: int, amount: int) -> None:
        """A provider redeems part of a voucher or refunds part of a redemption; or the office revokes."""
        if action == "redeem":
            self.redeem(index, order)
        elif action == "refund":
            if any(v.redemptions for v in self.vouchers):
                self.refund(index, amount)
        else:
            self.revoke(index)

    def _voucher(self, index: int) -> MVoucher | None:
        return self.vouchers[index % len(self.vouchers)] if self.vouchers else None

    def revoke(self, index: int) -> None:
        v = self._voucher(index)
        assert v is not None
        try:
            self.attempt(not v.live(self.now),
                         lambda s: vouchers.revoke(s, SYSTEM, v.id, "found ineligible", self.now))
        except Refused:
            return
        self.pool += v.available
        v.returned += v.available
        v.available, v.revoked = 0, True

    def redeem(self, index: int, order: int) -> None:
        v = self._voucher(index)
        assert v is not None
        period = self.period()
        room = self.cap - self.row(v.ent, period)[2]
        subsidy = min(order * RATE // 10_000, v.available, max(room, 0))
        self.orders += 1
        request = redemption.HoldRequest(
            voucher_code=v.code, enterprise_uscc=self.usccs[v.ent], order_reference=f"B-{self.orders}",
            line_items=[{"category": "accelerator:domestic", "amount": order}])
        try:
            r = self.attempt(not v.live(self.now) or subsidy == 0,
                             lambda s: redemption.redeem(s, self.provider, request, self.now))
        except Refused:
            return
        assert r.captured_amount == subsidy, (r.captured_amount, subsidy)
        v.available -= subsidy
        v.used += subsidy
        self.row(v.ent, period)[2] += subsidy
        v.redemptions.append(MRedemption(r.id, subsidy, period))

    def refund(self, index: int, amount: int) -> None:
        made = [(v, r) for v in self.vouchers for r in v.redemptions]
        v, r = made[index % len(made)]
        try:
            self.attempt(amount > r.amount - r.refunded,
                         lambda s: redemption.refund(s, self.provider, r.id, amount, "returned", self.now))
        except Refused:
            return
        r.refunded += amount
        v.used -= amount
        self.row(v.ent, r.period)[2] -= amount
        if v.live(self.now):
            v.available += amount
        else:
            v.returned += amount
            self.pool += amount

    # -- rules: time and jobs ----------------------------------------------------------------------

    @precondition(lambda self: self.ready)
    @rule(kind=st.sampled_from(["hours", "days", "next_period"]), hours=st.integers(1, 30),
          days=st.integers(1, 3), minutes=st.integers(1, 120))
    def clock(self, kind: str, hours: int, days: int, minutes: int) -> None:
        {"hours": lambda: self.hours_pass(hours), "days": lambda: self.days_pass(days),
         "next_period": lambda: self.to_next_period(minutes)}[kind]()

    @precondition(lambda self: self.ready)
    @rule(job=st.sampled_from(["end-publicity", "expire-vouchers"]))
    def run_job(self, job: str) -> None:
        (self.end_publicity_job if job == "end-publicity" else self.expiry_job)()

    def hours_pass(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    def days_pass(self, days: int) -> None:
        self.now += timedelta(days=days)

    def to_next_period(self, minutes: int) -> None:
        """To `minutes` before the next calendar month (year and quarter ends among them) in
        Beijing; then an hours' move crosses it."""
        local = self.now.astimezone(ZoneInfo(ZONE))
        first = (local.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)).replace(day=1)
        target = first.astimezone(UTC) - timedelta(minutes=minutes)
        if target > self.now:
            self.now = target

    def end_publicity_job(self) -> None:
        due = set(self.tx(lambda s: applications.due_publicity(s, self.now)))
        mine = [a for a in self.apps if self.effective(a) == S.ISSUED and a.voucher is None]
        assert {a.id for a in mine} <= due
        for app in mine:
            assert self.tx(lambda s, a=app: applications.complete_publicity(s, a.id, self.now)) == 1
            found = self.tx(lambda s, a=app: applications.get_application(s, SYSTEM, a.id))
            code = self.tx(lambda s: vouchers.get_voucher(s, SYSTEM, found.voucher_id)).code
            self.issue_from_application(app, found.voucher_id, code)

    def expiry_job(self) -> None:
        due = set(self.tx(lambda s: vouchers.due_for_expiry(s, self.now)))
        mine = [v for v in self.vouchers if not v.revoked and not v.expiry_posted and self.now >= v.expires_at]
        assert {v.id for v in mine} <= due
        for v in mine:
            assert self.tx(lambda s, v=v: vouchers.expire_by_id(s, v.id, self.now)) == 1
            v.expiry_posted = True
            if self.disposition == "pool":
                self.pool += v.available
            else:
                self.breakage += v.available
            v.returned += v.available
            v.available = 0

    # -- reading the database ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        async def read(s):  # type: ignore[no-untyped-def]
            pid = self.programme_id
            accounts = await ledger.balances(s, list(self.accounts.values()))
            usage = sorted((str(u.enterprise_id), u.period_key, u.granted, u.committed, u.subsidised,
                            u.subsidised_spend) for u in (await s.execute(
                select(EnterprisePeriodUsage).where(EnterprisePeriodUsage.programme_id == pid))).scalars())
            apps = sorted((str(a.id), a.status, a.approved_amount, a.period_key, a.version, a.publicity_ends_at,
                           str(a.voucher_id)) for a in (await s.execute(
                select(Application).where(Application.programme_id == pid))).scalars())
            rows = list((await s.execute(select(Voucher).where(Voucher.programme_id == pid))).scalars())
            views = await vouchers.views(s, rows, self.now)
            vs = sorted((str(w.voucher.id), w.voucher.status, w.voucher.version, w.balances.available,
                         w.balances.held, w.balances.used) for w in views)
            journals = (await s.execute(select(func.count()).select_from(LedgerTransaction)
                                        .where(LedgerTransaction.programme_id == pid))).scalar_one()
            events = (await s.execute(select(func.count()).select_from(AuditEvent)
                                      .where(AuditEvent.programme_id == pid))).scalar_one()
            steps = (await s.execute(select(func.count()).select_from(ApplicationTransition).join(
                Application, Application.id == ApplicationTransition.application_id).where(
                Application.programme_id == pid))).scalar_one()
            return {"accounts": {str(k): v for k, v in accounts.items()}, "usage": usage, "apps": apps,
                    "vouchers": vs, "journals": journals, "events": events, "steps": steps}

        async def go():  # type: ignore[no-untyped-def]
            async with self.db.unit_of_work(write=False) as s:
                return await read(s)
        return self.run(go())

    # -- invariants --------------------------------------------------------------------------------

    @invariant()
    def budget_caps_and_vouchers_match(self) -> None:
        if not self.ready:
            return
        recon = self.tx(ledger.reconcile)
        assert recon.is_clean, recon

        async def read():  # type: ignore[no-untyped-def]
            async with self.db.unit_of_work(write=False) as s:
                pid = self.programme_id
                bal = await ledger.balances(s, [self.accounts[k] for k in (
                    AccountKind.PROGRAMME_AVAILABLE, AccountKind.PROGRAMME_COMMITTED, AccountKind.PROGRAMME_BREAKAGE)])
                usage = list((await s.execute(select(EnterprisePeriodUsage).where(
                    EnterprisePeriodUsage.programme_id == pid))).scalars())
                apps = {a.id: a for a in (await s.execute(select(Application).where(
                    Application.programme_id == pid))).scalars()}
                steps = list((await s.execute(select(ApplicationTransition).join(
                    Application, Application.id == ApplicationTransition.application_id).where(
                    Application.programme_id == pid).order_by(ApplicationTransition.created_at,
                                                              ApplicationTransition.id))).scalars())
                rows = list((await s.execute(select(Voucher).where(Voucher.programme_id == pid))).scalars())
                return bal, usage, apps, steps, {w.voucher.id: w for w in await vouchers.views(s, rows, self.now)}

        bal, usage, apps, steps, views = self.run(read())
        # 1. the budget
        pool = bal[self.accounts[AccountKind.PROGRAMME_AVAILABLE]]
        committed = bal[self.accounts[AccountKind.PROGRAMME_COMMITTED]]
        breakage = bal[self.accounts[AccountKind.PROGRAMME_BREAKAGE]]
        assert (pool, committed, breakage) == (self.pool, self.committed, self.breakage)
        outstanding = sum(v.face - v.returned for v in self.vouchers)  # in vouchers, used or not
        from_pool = committed + sum(v.face for v in self.vouchers) - (sum(v.returned for v in self.vouchers) - breakage)
        assert 0 <= from_pool <= self.budget, (from_pool, self.budget)
        assert pool + committed + outstanding + breakage == self.budget, (pool, committed, outstanding, breakage)
        assert committed == sum(a.approved or 0 for a in self.apps if a.voucher is None and a.status in (
            S.APPROVED, S.PUBLICITY, S.UNDER_REVIEW))
        # 2. the caps
        db_usage = {(self.ent_ids.index(u.enterprise_id), u.period_key): [u.granted, u.committed, u.subsidised]
                    for u in usage if (u.granted, u.committed, u.subsidised) != (0, 0, 0)}
        model_usage = {k: v for k, v in self.usage.items() if v != [0, 0, 0]}
        assert db_usage == model_usage
        for (ent, period), (granted, held, subsidised) in db_usage.items():
            assert granted + held <= self.cap, (ent, period, granted, held, self.cap)
            assert subsidised <= self.cap
            assert granted == sum(v.face for v in self.vouchers if (v.ent, v.period) == (ent, period))
        # 3. the lifecycle
        assert set(apps) == {a.id for a in self.apps}
        for app in self.apps:
            row = apps[app.id]
            assert (row.status, row.approved_amount, row.period_key) == (app.status, app.approved, app.period), app
            assert applications.status_seen(row, self.now).value == self.effective(app)
            if app.voucher is not None:
                assert row.voucher_id == app.voucher.id
        last: dict[uuid.UUID, str] = {}
        for step in steps:
            before = last.get(step.application_id)
            assert step.from_status == before, (step.from_status, before)
            if before is not None:
                assert S(step.to_status) in TRANSITIONS[S(before)], (before, step.to_status)
            last[step.application_id] = step.to_status
        # 4. the vouchers
        assert set(views) == {v.id for v in self.vouchers}
        for v in self.vouchers:
            view = views[v.id]
            b = view.balances
            assert min(b.available, b.held, b.used) >= 0
            assert (b.available, b.held, b.used) == (v.available, 0, v.used), v
            assert b.available + b.held + b.used == v.face - v.returned, v
            assert view.voucher.face_value == v.face and view.voucher.period_key == v.period
            assert view.voucher.expires_at == v.expires_at
            expect = "revoked" if v.revoked else "expired" if self.now >= v.expires_at else None
            if expect is not None:
                assert view.status.value == expect, (view.status, v)
            else:
                assert view.status.value in ("active", "exhausted")


@pytest.mark.timeout(600)
def test_budget_state_machine(database_url: str) -> None:
    # The same sequential paths on both engines; PostgreSQL's round trips make each example
    # about 2.5 times slower, so it runs fewer (CI runs the suite on both).
    run_machine(BudgetMachine, database_url, examples=22 if database_url.startswith("sqlite") else 13, steps=35)
