"""Paying a settlement moves exactly its total from payable to paid, and reconciliation proves
that every payment in the ledger is a paid settlement's (and every paid settlement is paid)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind, transfer
from tests.support import auth, fresh_key
from tests.world import World, build_world


async def _paid_settlement(world: World, clock: Any) -> dict[str, Any]:
    voucher = await world.issue(10_000_000)
    redeemed = await world.post("/v1/redemptions", {
        "voucher_code": voucher["code"], "enterprise_uscc": world.enterprise["uscc"], "order_reference": "PO-1",
        "line_items": [{"category": "accelerator:domestic", "amount": 1_000_000, "accelerator": "Ascend 910B",
                        "hours_milli": 1000}]})
    assert redeemed.status_code == 201, redeemed.text
    clock.advance(days=1)
    client, operator = world.client, world.operator
    created = await client.post("/v1/settlements", json={
        "provider_id": world.provider["id"], "programme_id": world.programme["id"],
        "period_start": "2026-03-02", "period_end": "2026-03-02"}, headers=auth(operator, **fresh_key()))
    assert created.status_code == 201, created.text
    path = f"/v1/settlements/{created.json()['id']}"
    for step, key, body in (("submit", world.provider_key, None), ("approve", operator, None),
                            ("pay", operator, {"reference": "ICBC-1", "paid_on": "2026-03-03"})):
        moved = await client.post(f"{path}/{step}", json=body, headers=auth(key, **fresh_key()))
        assert moved.status_code == 200, (step, moved.text)
    return moved.json()  # type: ignore[no-any-return]


async def test_payment_without_a_settlement_is_reported(app, client: httpx.AsyncClient, clock) -> None:
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])
    paid = await _paid_settlement(world, clock)
    assert paid["status"] == "paid" and paid["total"] == 300_000
    assert (await world.reconciliation())["is_clean"]

    provider, programme = uuid.UUID(world.provider["id"]), uuid.UUID(world.programme["id"])

    async def pay_outside(amount: int) -> None:
        async with app.state.database.unit_of_work() as session:
            accounts = await ledger.ensure_provider_accounts(session, provider, programme, "CNY", clock())
            await ledger.post(session, kind="manual", now=clock(), programme_id=programme, memo="test",
                              legs=transfer(accounts[AccountKind.PROVIDER_PAYABLE],
                                            accounts[AccountKind.PROVIDER_PAID], amount, "CNY"))

    await pay_outside(1_000)
    recon = await world.reconciliation()
    assert [(d["ledger_paid"], d["settled"]) for d in recon["settlement_differences"]] == [(301_000, 300_000)]
    await pay_outside(-1_000)  # the ledger corrects by a reversing entry, never by an edit
    assert (await world.reconciliation())["is_clean"]
