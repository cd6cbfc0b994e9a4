"""Repayment statements racing each other, a positive payment, refunds and settlement creations,
through a real server (on PostgreSQL too when VOUCHER_TEST_POSTGRES_URL is set): no 500, no
deadlock, the provider's paid account never below zero, the books reconciled. Written by an
independent review of the repayment change (December 2026)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select, update

from services.voucher.tables import LedgerAccount, Redemption, RedemptionRefund
from tests.settlement import test_races as races
from tests.settlement.test_races import SHANGHAI, codes, storm, today, yesterday
from tests.support import auth, guard_lifted
from tests.world import World

# The live server and its world, as the settlement races run them (fixtures by assignment).
clock, world, server = races.clock, races.world, races.server


def noon(day: Any) -> datetime:
    return datetime.combine(day, time(12), SHANGHAI).astimezone(UTC)


async def settle(world: World, day: Any) -> dict[str, Any]:
    created = await world.post("/v1/settlements", {
        "provider_id": world.provider["id"], "programme_id": world.programme["id"],
        "period_start": day.isoformat(), "period_end": day.isoformat()}, key=world.operator)
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


async def approve(world: World, sid: str) -> None:
    assert (await world.post(f"/v1/settlements/{sid}/submit", {})).status_code == 200
    assert (await world.post(f"/v1/settlements/{sid}/approve", {}, key=world.operator)).status_code == 200


async def pay(world: World, sid: str) -> None:
    done = await world.post(f"/v1/settlements/{sid}/pay", {"reference": "ICBC-P", "paid_on": today()},
                            key=world.operator)
    assert done.status_code == 200, done.text


async def paid_balance(app, world: World) -> int:
    async with app.state.database.unit_of_work(write=False) as session:
        return int((await session.execute(select(LedgerAccount.balance).where(
            LedgerAccount.provider_id == uuid.UUID(world.provider["id"]),
            LedgerAccount.kind == "provider_paid"))).scalar_one())


async def scenario(app, world: World, *, pay_second: bool) -> tuple[list[str], str]:
    """Two captures of 1,500,000 (days -4 and -3) in two settlements, the first paid (the second
    too with `pay_second`); each refunded in full (days -2 and -1), each refund in a repayment
    statement of -1,500,000, approved; a capture of 300,000 (yesterday) in an approved positive
    settlement. Returns ([repayment ids], positive id)."""
    d = yesterday()
    voucher = await world.issue(100_000_000)
    ids = []
    for i in range(2):
        response = await world.hold(voucher, 5_000_000, order=f"PO-{i}", path="/v1/redemptions")
        assert response.status_code == 201, response.text
        rid = uuid.UUID(response.json()["id"])
        ids.append(rid)
        async with app.state.database.unit_of_work() as session, guard_lifted(session, "redemption",
                                                                                 "redemption_terms_fixed"):
            await session.execute(update(Redemption).where(Redemption.id == rid)
                                  .values(captured_at=noon(d - timedelta(days=4 - i))))
        s = await settle(world, d - timedelta(days=4 - i))
        assert s["total"] == 1_500_000
        await approve(world, s["id"])
        if i == 0 or pay_second:
            await pay(world, s["id"])
    for i, rid in enumerate(ids):
        r = await world.post(f"/v1/redemptions/{rid}/refunds", {"amount": 1_500_000, "reason": "x"})
        assert r.status_code == 201, r.text
        async with app.state.database.unit_of_work() as session:
            await session.execute(update(RedemptionRefund).where(RedemptionRefund.redemption_id == rid)  # type: ignore[arg-type]
                                  .values(created_at=noon(d - timedelta(days=2 - i))))
    repayments = []
    for i in range(2):
        s = await settle(world, d - timedelta(days=2 - i))
        assert s["total"] == -1_500_000, s
        await approve(world, s["id"])
        repayments.append(s["id"])
    response = await world.hold(voucher, 1_000_000, order="PO-late", path="/v1/redemptions")
    assert response.status_code == 201, response.text
    async with app.state.database.unit_of_work() as session, guard_lifted(session, "redemption",
                                                                             "redemption_terms_fixed"):
        await session.execute(update(Redemption).where(Redemption.id == uuid.UUID(response.json()["id"]))
                              .values(captured_at=noon(d)))
    positive = await settle(world, d)
    assert positive["total"] == 300_000
    await approve(world, positive["id"])
    return repayments, positive["id"]


def pay_request(sid: str, operator: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    return (f"/v1/settlements/{sid}/pay", {"reference": "ICBC-R", "paid_on": today()},
            auth(operator, **{"Idempotency-Key": str(uuid.uuid4())}))


async def test_two_repayments_and_a_payment_race(app, world: World, server) -> None:
    repayments, positive = await scenario(app, world, pay_second=True)
    requests = [pay_request(sid, world.operator) for sid in repayments * 3 + [positive] * 3]
    responses = await storm(server, requests)
    assert all(r.status_code < 500 for r in responses), codes(responses)
    assert all(r.status_code in (200, 409) for r in responses), codes(responses)
    # 3,000,000 paid: both repayments of 1,500,000 fit; the positive one adds 300,000.
    assert await paid_balance(app, world) >= 0
    assert (await world.reconciliation())["is_clean"]


async def test_two_repayments_exceeding_what_was_paid_race(app, world: World, server) -> None:
    """Paid 1,500,000 (the second capture's settlement is not paid): two repayments of
    1,500,000 each race; the one whose capture was paid is recorded, the other refused (409),
    never a 500."""
    repayments, _ = await scenario(app, world, pay_second=False)
    requests = [pay_request(sid, world.operator) for sid in repayments * 5]
    responses = await storm(server, requests)
    assert all(r.status_code in (200, 409) for r in responses), codes(responses)
    assert [r.status_code for r in responses].count(200) == 1, codes(responses)
    assert await paid_balance(app, world) == 0
    assert (await world.reconciliation())["is_clean"]


async def test_repayments_payments_refunds_and_creations_race(app, world: World, server) -> None:
    repayments, positive = await scenario(app, world, pay_second=True)
    late = [r for r in (await world.client.get("/v1/redemptions", headers=auth(world.operator))).json()["items"]
            if r["order_reference"] == "PO-late"][0]
    d = yesterday()
    requests = [pay_request(sid, world.operator) for sid in repayments + [positive]]
    for i in range(4):
        requests.append((f"/v1/redemptions/{late['id']}/refunds", {"amount": 10_000, "reason": f"r{i}"},
                         auth(world.provider_key, **{"Idempotency-Key": str(uuid.uuid4())})))
    for k in range(5, 8):
        day = d - timedelta(days=k)
        requests.append(("/v1/settlements", {"provider_id": world.provider["id"], "programme_id": world.programme["id"],
                                             "period_start": day.isoformat(), "period_end": (d - timedelta(days=1)).isoformat()},
                         auth(world.operator, **{"Idempotency-Key": str(uuid.uuid4())})))
    responses = await storm(server, requests)
    assert all(r.status_code < 500 for r in responses), codes(responses)
    assert (await world.reconciliation())["is_clean"]


async def test_a_repayment_that_loses_the_race_is_told_why(app, world: World, server) -> None:
    """The loser of two racing repayments had met the paid account's CHECK and been answered
    409 `conflict`, "a duplicate or a reference that no longer exists": the account is locked
    before the check now, and a refusal says why."""
    repayments, _ = await scenario(app, world, pay_second=False)
    responses = await storm(server, [pay_request(sid, world.operator) for sid in repayments * 5])
    refused = {r.json()["code"] for r in responses if r.status_code != 200}
    assert refused <= {"invalid_transition", "concurrent_update"}, codes(responses)
