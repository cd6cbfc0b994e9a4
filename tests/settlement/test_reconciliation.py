"""Paying a settlement moves exactly its total from payable to paid, and reconciliation proves
that every payment in the ledger is a paid settlement's (and every paid settlement is paid)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind, transfer
from tests.conftest import ENGINE
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
            # Under the kinds a payment and its reversal are posted as (a journal of another kind
            # is reported as such).
            kind = "settlement_paid" if amount > 0 else "settlement_repaid"
            await ledger.post(session, kind=kind, now=clock(), programme_id=programme, memo="test",
                              legs=transfer(accounts[AccountKind.PROVIDER_PAYABLE],
                                            accounts[AccountKind.PROVIDER_PAID], amount, "CNY"))

    await pay_outside(1_000)
    recon = await world.reconciliation()
    assert [(d["ledger_paid"], d["settled"]) for d in recon["settlement_differences"]] == [(301_000, 300_000)]
    await pay_outside(-1_000)  # the ledger corrects by a reversing entry, never by an edit
    assert (await world.reconciliation())["is_clean"]


# -- records changed behind the service (an independent review, December 2026) --------------


#: The guards of migrations 0020 and 0022, by table.
GUARDS = {"redemption": "redemption_moves_forward", "settlement": "settlement_figures_fixed",
          "settlement_item": "settlement_item_fixed", "redemption_refund": "redemption_refund_fixed"}


async def _change(app: Any, table: Any, row_id: str, **values: Any) -> None:
    """A row changed behind the service with its guard out of the way (the table's owner can do
    that; migration 0020 refuses the database's ordinary use), to prove the reconciliation."""
    from sqlalchemy import text, update

    from services.voucher.db import table_of

    t = table_of(table)
    async with app.state.database.unit_of_work() as session:
        if ENGINE == "postgresql":
            await session.execute(text(f"ALTER TABLE {t.name} DISABLE TRIGGER {GUARDS[t.name]}"))
        else:
            await session.execute(text(f"DROP TRIGGER IF EXISTS {GUARDS[t.name]}"))
        await session.execute(update(t).where(t.c.id == uuid.UUID(row_id)).values(**values))
        if ENGINE == "postgresql":
            await session.execute(text(f"ALTER TABLE {t.name} ENABLE TRIGGER {GUARDS[t.name]}"))


async def _redeem(world: World, order: str = "PO-1", amount: int = 1_000_000) -> dict[str, Any]:
    voucher = await world.issue(10_000_000)
    redeemed = await world.post("/v1/redemptions", {
        "voucher_code": voucher["code"], "enterprise_uscc": world.enterprise["uscc"], "order_reference": order,
        "line_items": [{"category": "accelerator:domestic", "amount": amount, "accelerator": "Ascend 910B",
                        "hours_milli": 1000}]})
    assert redeemed.status_code == 201, redeemed.text
    return redeemed.json()  # type: ignore[no-any-return]


async def test_a_redemption_changed_behind_the_service_is_reported(app, client: httpx.AsyncClient, clock) -> None:
    """A review raised a captured redemption's amount tenfold with an UPDATE; settled and paid,
    the provider got 3,000,000 for a 300,000 capture, and neither verification nor the
    reconciliation said anything. Each changed amount is now reported against its journals."""
    from services.voucher.tables import Redemption

    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])
    redeemed = await _redeem(world)
    assert redeemed["captured_amount"] == 300_000
    assert (await world.reconciliation())["is_clean"]
    for change in ({"captured_amount": 3_000_000, "held_amount": 3_000_000}, {"refunded_amount": 100_000},
                   {"payee": "enterprise"}, {"status": "held"}):
        await _change(app, Redemption, redeemed["id"], **change)
        recon = await world.reconciliation()
        assert not recon["is_clean"], change
        [found] = recon["record_differences"]
        assert (found["what"], found["redemption_id"]) == ("redemption differs from its journals", redeemed["id"])
        assert (found["ledger_captured"], found["ledger_refunded"], found["ledger_held"]) == (300_000, 0, 0)
        await _change(app, Redemption, redeemed["id"], captured_amount=300_000, held_amount=300_000,
                      refunded_amount=0, payee="provider", status="captured")
        assert (await world.reconciliation())["is_clean"], change


async def _approved_settlement(world: World, clock: Any) -> str:
    await _redeem(world)
    settlement_id: str = (await _drafted_and_approved(world, clock))["id"]
    return settlement_id


async def test_a_settlement_changed_behind_the_service_is_not_paid(app, client: httpx.AsyncClient, clock) -> None:
    """The same review raised an approved settlement's total to 9,000,000 and it was paid as it
    stood. Paying reads the lines as the captures and refunds they name; a total or a line that
    differs is refused with `records_differ`, nothing moves, and the reconciliation says what."""
    from services.voucher.tables import Settlement, SettlementItem

    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])
    settlement_id = await _approved_settlement(world, clock)
    pay = {"reference": "ICBC-1", "paid_on": "2026-03-03"}
    await _change(app, Settlement, settlement_id, captured_total=9_000_000, total=9_000_000)
    refused = await client.post(f"/v1/settlements/{settlement_id}/pay", json=pay,
                                headers=auth(world.operator, **fresh_key()))
    problem = refused.json()
    assert (refused.status_code, problem["code"], problem["expected_total"]) == (409, "records_differ", 300_000)
    recon = await world.reconciliation()
    assert [d["what"] for d in recon["record_differences"]] == ["settlement totals differ from its lines"]
    assert recon["settlement_differences"] == []  # nothing was paid
    # The line changed with the totals, so that they agree with each other: still not what was captured.
    from sqlalchemy import select

    async with app.state.database.unit_of_work() as session:
        [line_id] = (await session.execute(select(SettlementItem.id).where(
            SettlementItem.settlement_id == uuid.UUID(settlement_id)))).scalars().all()
    lines = [{"id": str(line_id)}]
    await _change(app, SettlementItem, lines[0]["id"], amount=9_000_000)
    refused = await client.post(f"/v1/settlements/{settlement_id}/pay", json=pay,
                                headers=auth(world.operator, **fresh_key()))
    assert (refused.status_code, refused.json()["code"]) == (409, "records_differ")
    recon = await world.reconciliation()
    assert [d["what"] for d in recon["record_differences"]] == ["settlement line differs from its capture or refund"]
    await _change(app, SettlementItem, lines[0]["id"], amount=300_000)
    await _change(app, Settlement, settlement_id, captured_total=300_000, total=300_000)
    paid = await client.post(f"/v1/settlements/{settlement_id}/pay", json=pay,
                             headers=auth(world.operator, **fresh_key()))
    assert (paid.status_code, paid.json()["total"]) == (200, 300_000)
    assert (await world.reconciliation())["is_clean"]


async def test_the_database_refuses_to_change_what_money_is_paid_from(app, client: httpx.AsyncClient, clock) -> None:
    """The review's UPDATEs, made as the service's own role: refused by the database (migration
    0020), the rows as they were. What the service itself writes still goes through (captures,
    refunds, releases: the whole suite)."""
    from sqlalchemy import update
    from sqlalchemy.exc import DBAPIError

    from services.voucher.db import table_of
    from services.voucher.tables import Redemption, Settlement, SettlementItem

    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])
    settlement_id = await _approved_settlement(world, clock)
    async with app.state.database.unit_of_work() as session:
        from sqlalchemy import select

        item_id, redemption_id = (await session.execute(select(SettlementItem.id, SettlementItem.redemption_id).where(
            SettlementItem.settlement_id == uuid.UUID(settlement_id)))).one()
    attempts = [
        (Redemption, redemption_id, {"captured_amount": 3_000_000, "held_amount": 3_000_000}, "redemption"),
        (Redemption, redemption_id, {"captured_amount": 3_000_000}, "redemption"),
        (Redemption, redemption_id, {"refunded_amount": 400_000}, "redemption"),  # above what was captured
        (Redemption, redemption_id, {"provider_id": uuid.uuid4()}, "redemption"),
        (Redemption, redemption_id, {"payee": "enterprise"}, "redemption"),
        (Redemption, redemption_id, {"status": "held"}, "redemption"),
        (Settlement, uuid.UUID(settlement_id), {"captured_total": 9_000_000, "total": 9_000_000}, "settlement"),
        (Settlement, uuid.UUID(settlement_id), {"line_count": 2}, "settlement"),
        (SettlementItem, item_id, {"amount": 9_000_000}, "settlement item"),
        (SettlementItem, item_id, {"redemption_id": uuid.uuid4()}, "settlement item"),
    ]
    for table, row_id, values, named in attempts:
        t = table_of(table)
        with pytest.raises(DBAPIError, match=f"a {named}.* never change"):
            async with app.state.database.unit_of_work() as session:
                await session.execute(update(t).where(t.c.id == row_id).values(**values))
    assert (await world.reconciliation())["is_clean"]
    paid = await client.post(f"/v1/settlements/{settlement_id}/pay", json={"reference": "ICBC-1", "paid_on": "2026-03-03"},
                             headers=auth(world.operator, **fresh_key()))
    assert (paid.status_code, paid.json()["total"]) == (200, 300_000)


async def _drafted_and_approved(world: World, clock: Any) -> dict[str, Any]:
    clock.advance(days=1)
    created = await world.client.post("/v1/settlements", json={
        "provider_id": world.provider["id"], "programme_id": world.programme["id"],
        "period_start": "2026-03-02", "period_end": "2026-03-02"}, headers=auth(world.operator, **fresh_key()))
    assert created.status_code == 201, created.text
    for step, key in (("submit", world.provider_key), ("approve", world.operator)):
        moved = await world.client.post(f"/v1/settlements/{created.json()['id']}/{step}",
                                        headers=auth(key, **fresh_key()))
        assert moved.status_code == 200, moved.text
    return created.json()  # type: ignore[no-any-return]


async def _pay(world: World, settlement_id: str) -> httpx.Response:
    return await world.client.post(f"/v1/settlements/{settlement_id}/pay",
                                   json={"reference": "ICBC-1", "paid_on": "2026-03-03"},
                                   headers=auth(world.operator, **fresh_key()))


async def test_a_capture_changed_before_its_settlement_is_drafted_is_not_paid(
        app, client: httpx.AsyncClient, clock) -> None:
    """A review of the first check raised a capture tenfold (guards out of the way) before the
    settlement was drafted: the lines then agreed with the row, and 3,000,000 was paid for a
    300,000 capture. Paying reads each capture as its journals moved it too."""
    from services.voucher.tables import Redemption

    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])
    redeemed = await _redeem(world)
    await _change(app, Redemption, redeemed["id"], captured_amount=3_000_000, held_amount=3_000_000)
    created = await _drafted_and_approved(world, clock)
    assert created["total"] == 3_000_000
    refused = await _pay(world, created["id"])
    assert (refused.status_code, refused.json()["code"], refused.json()["expected_total"]) == (
        409, "records_differ", 0)
    # An approved settlement is only ever paid: the rows are put back as the journals say (the
    # reconciliation lists each), and then it is paid what was captured.
    from services.voucher.tables import Settlement, SettlementItem

    await _change(app, Redemption, redeemed["id"], captured_amount=300_000, held_amount=300_000)
    assert (await _pay(world, created["id"])).status_code == 409  # its line still says 3,000,000
    listed = (await world.reconciliation())["record_differences"]
    assert [(d["what"], d["amount"], d["recorded"]) for d in listed] == [
        ("settlement line differs from its capture or refund", 3_000_000, 300_000)]
    from sqlalchemy import select

    async with app.state.database.unit_of_work() as session:
        line_id = (await session.execute(select(SettlementItem.id).where(
            SettlementItem.settlement_id == uuid.UUID(created["id"])))).scalar_one()
    await _change(app, SettlementItem, str(line_id), amount=300_000)
    await _change(app, Settlement, created["id"], captured_total=300_000, total=300_000)
    paid = await _pay(world, created["id"])
    assert (paid.status_code, paid.json()["total"]) == (200, 300_000)
    assert (await world.reconciliation())["is_clean"]


async def test_another_providers_capture_moved_into_a_settlement_is_not_paid(
        app, client: httpx.AsyncClient, clock) -> None:
    """A line pointed at another provider's capture, the totals raised to match: paying reads
    each line's redemption as the settlement's provider's and programme's, or counts it for
    nothing."""
    from services.voucher.tables import Settlement, SettlementItem
    from tests.support import create, make_key, provider_payload

    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])
    other = await create(client, world.operator, "/v1/providers", provider_payload())
    assert (await client.post(f"/v1/providers/{other['id']}/approve", json={"reason": "ok"},
                              headers=auth(world.operator))).status_code == 200
    assert (await client.put(f"/v1/programmes/{world.programme['id']}/enrolments/{other['id']}",
                             headers=auth(world.operator))).status_code == 201
    other_key = await make_key(app, "provider", provider_id=uuid.UUID(other["id"]))
    await _redeem(world, "PO-MINE", 1_000_000)
    voucher = await world.issue(10_000_000)
    theirs = (await world.post("/v1/redemptions", {
        "voucher_code": voucher["code"], "enterprise_uscc": world.enterprise["uscc"], "order_reference": "PO-THEIRS",
        "line_items": [{"category": "accelerator:domestic", "amount": 5_000_000, "accelerator": "Ascend 910B",
                        "hours_milli": 1000}]}, key=other_key)).json()
    created = await _drafted_and_approved(world, clock)
    from sqlalchemy import select

    async with app.state.database.unit_of_work() as session:
        line_id, mine_id = (await session.execute(select(SettlementItem.id, SettlementItem.redemption_id).where(
            SettlementItem.settlement_id == uuid.UUID(created["id"])))).one()
    await _change(app, SettlementItem, str(line_id), redemption_id=uuid.UUID(theirs["id"]),
                  amount=theirs["captured_amount"])
    await _change(app, Settlement, created["id"], captured_total=theirs["captured_amount"],
                  total=theirs["captured_amount"])
    refused = await _pay(world, created["id"])
    assert (refused.status_code, refused.json()["code"]) == (409, "records_differ")
    await _change(app, SettlementItem, str(line_id), redemption_id=mine_id, amount=300_000)
    await _change(app, Settlement, created["id"], captured_total=300_000, total=300_000)
    assert (await _pay(world, created["id"])).status_code == 200


@pytest.mark.skipif(ENGINE != "postgresql", reason="statement_timeout is PostgreSQL's")
async def test_the_reconciliation_may_run_past_a_requests_statement_limit(app) -> None:
    """It reads the whole ledger (about 10 s per million redemptions here): under the requests'
    60 s statement limit it would have failed for good past some five million (an independent
    review). Its own transaction lifts the limit; the connection goes back to the pool with it."""
    from sqlalchemy import text

    from services.voucher.ledger import service as ledger

    database = app.state.database
    async with database.session(write=False) as session:
        await ledger.reconcile(session)
        assert (await session.execute(text("SHOW statement_timeout"))).scalar() == "30min"
        await session.rollback()
        assert (await session.execute(text("SHOW statement_timeout"))).scalar() == "1min"


async def test_a_refund_keeps_its_redemptions_provider_and_programme(app, client: httpx.AsyncClient, clock) -> None:
    """The settlement job reads a pair's refunds by the refund's own provider and programme
    (migration 0022): a copy that drifted from the redemption's would let a refund the provider
    must repay go unseen. The database refuses one that is not the redemption's, and any change
    of a refund once made; with the guard out of the way, the reconciliation says which."""
    from sqlalchemy import delete, insert, select, text, update
    from sqlalchemy.exc import DBAPIError

    from services.voucher.db import table_of
    from services.voucher.ids import uuid7
    from services.voucher.tables import RedemptionRefund

    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])
    redeemed = await _redeem(world)
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 100_000, "reason": "x"})
    assert refund.status_code == 201, refund.text
    rr = table_of(RedemptionRefund)
    async with app.state.database.unit_of_work() as session:
        [row] = (await session.execute(select(rr).where(rr.c.redemption_id == uuid.UUID(redeemed["id"])))).all()
    assert (str(row.provider_id), str(row.programme_id)) == (world.provider["id"], world.programme["id"])
    other = uuid.uuid4()
    copy = {**row._mapping, "id": uuid7(), "amount": 1}
    for values in ({**copy, "provider_id": other}, {**copy, "programme_id": other}):
        with pytest.raises(DBAPIError, match="a refund's provider and programme are its redemption's"):
            async with app.state.database.unit_of_work() as session:
                await session.execute(insert(rr).values(**values))
    for change in ({"amount": 1}, {"provider_id": other}, {"programme_id": other}, {"destination": "pool"},
                   {"redemption_id": uuid.uuid4()}):
        with pytest.raises(DBAPIError, match="a refund never changes"):
            async with app.state.database.unit_of_work() as session:
                await session.execute(update(rr).where(rr.c.id == row.id).values(**change))
    if ENGINE == "sqlite":  # a replace would delete the refund past the update guard
        with pytest.raises(DBAPIError, match="a refund never changes"):
            async with app.state.database.unit_of_work() as session:
                await session.execute(insert(rr).prefix_with("OR REPLACE").values(**{**row._mapping, "amount": 1}))
    # nor is it deleted (migration 0029): the next settlement would have paid for value refunded
    for statement in [delete(rr).where(rr.c.id == row.id)] + ([text("TRUNCATE redemption_refund CASCADE")]
                                                                if ENGINE == "postgresql" else []):
        with pytest.raises(DBAPIError, match="a refund is never deleted"):
            async with app.state.database.unit_of_work() as session:
                await session.execute(statement)
    assert (await world.reconciliation())["is_clean"]
    await _change(app, RedemptionRefund, str(row.id), provider_id=other)
    recon = await world.reconciliation()
    [found] = recon["record_differences"]
    assert (found["what"], found["refund_id"], found["provider_id"], found["redemption_provider_id"]) == (
        "refund's provider or programme differs from its redemption's", str(row.id), str(other),
        world.provider["id"])
    await _change(app, RedemptionRefund, str(row.id), provider_id=row.provider_id)
    assert (await world.reconciliation())["is_clean"]
