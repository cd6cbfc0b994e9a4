"""A redemption and the counters the caps are judged by, changed behind the service (an
independent review, December 2026): the database refuses to delete a redemption or rewrite
what it was decided on (migration 0027), and the reconciliation reports a redemption gone and
an order's or an enterprise's counter that differs from its redemptions."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from services.voucher.db import table_of
from services.voucher.tables import EnterprisePeriodUsage, OrderSubsidy, Redemption
from tests.conftest import ENGINE
from tests.support import guard_lifted
from tests.world import World, build_world

R = table_of(Redemption)
GUARDED = "a redemption is never deleted"


async def _world(app: Any, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, rate_table={"accelerator:domestic": 3000, "storage:object": 0}, tiers=[],
                             stacking_ceiling_bps=3000)


async def _refused(app: Any, statement: Any, params: dict[str, Any] | None = None) -> None:
    with pytest.raises(DBAPIError, match=GUARDED):
        async with app.state.database.unit_of_work() as session:
            await session.execute(statement, params or {})


async def test_the_database_refuses_to_delete_a_redemption_or_rewrite_its_terms(
        app, client: httpx.AsyncClient, clock) -> None:
    world = await _world(app, client)
    voucher = await world.issue(10_000_000)
    redeemed = (await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")).json()
    held = (await world.hold(voucher, 1_000_000, order="PO-2")).json()
    rid, hid = uuid.UUID(redeemed["id"]), uuid.UUID(held["id"])
    forged = [{"category": "storage:object", "amount": 1_000_000}]
    for row, values in ((rid, {"line_items": forged}), (rid, {"computation": {"subsidy": 1}}),
                        (hid, {"hold_expires_at": clock() + timedelta(days=30)}),
                        (rid, {"captured_at": clock() - timedelta(days=40)})):
        await _refused(app, update(R).where(R.c.id == row).values(**values))
    await _refused(app, delete(R).where(R.c.id == rid))
    if ENGINE == "sqlite":  # a REPLACE that meets its id deletes it without the DELETE trigger
        await _refused(app, text("INSERT OR REPLACE INTO redemption SELECT * FROM redemption WHERE id = :id"),
                       {"id": rid.hex})
    else:
        await _refused(app, text("TRUNCATE redemption CASCADE"))
    # what the service changes still changes: a capture (its instant set once), a refund, a void
    captured = await world.post(f"/v1/redemptions/{hid}/capture", {"amount": 200_000})
    assert captured.status_code == 200, captured.text
    assert (await world.post(f"/v1/redemptions/{rid}/refunds", {"amount": 100_000, "reason": "x"})).status_code == 201
    other = (await world.hold(voucher, 1_000_000, order="PO-3")).json()
    assert (await world.post(f"/v1/redemptions/{other['id']}/void", {})).status_code == 200
    assert (await world.reconciliation())["is_clean"]


@pytest.mark.ledger_tampered  # the redemption is gone for good, as the review left it
async def test_a_redemption_deleted_behind_the_service_is_reported(app, client: httpx.AsyncClient) -> None:
    world = await _world(app, client)
    voucher = await world.issue(10_000_000)
    redeemed = (await world.hold(voucher, 100_000, order="PO-1", path="/v1/redemptions")).json()
    assert redeemed["captured_amount"] == 30_000
    async with app.state.database.unit_of_work() as session, guard_lifted(session, "redemption",
                                                                         "redemption_never_deleted"):
        await session.execute(delete(R).where(R.c.id == uuid.UUID(redeemed["id"])))
    recon = await world.reconciliation()
    assert not recon["is_clean"]
    gone = [d for d in recon["record_differences"] if d["what"] == "journal names a redemption that does not exist"]
    assert [(d["redemption_id"], d["journals"]) for d in gone] == [(redeemed["id"], 1)]
    # its counters now count a redemption that is not there
    assert {d["what"] for d in recon["commitment_differences"]} == {
        "order subsidy", "enterprise cap subsidised", "enterprise tier spend"}


async def _counter(app: Any, table: Any, **values: Any) -> None:
    """The change made behind the service; a programme's money terms with its guard out of the way
    (migration 0034), as the table's owner can."""
    guarded = table_of(table).name == "programme"
    async with app.state.database.unit_of_work() as session:
        if guarded and ENGINE == "postgresql":
            await session.execute(text("ALTER TABLE programme DISABLE TRIGGER programme_terms_fixed"))
        elif guarded:
            await session.execute(text("DROP TRIGGER IF EXISTS programme_terms_fixed"))
        await session.execute(update(table_of(table)).values(**values))
        if guarded and ENGINE == "postgresql":
            await session.execute(text("ALTER TABLE programme ENABLE TRIGGER programme_terms_fixed"))


async def test_counters_reset_behind_the_service_are_reported(app, client: httpx.AsyncClient) -> None:
    """The review reset an order's subsidy, and a second voucher then subsidised the order past
    the stacking ceiling; it reset the enterprise's usage, which gives its cap and tier back.
    Each shows as a difference from the redemptions, and goes once put back."""
    world = await _world(app, client)
    voucher = await world.issue(10_000_000)
    await world.hold(voucher, 100_000, order="PO-1", path="/v1/redemptions")
    held = (await world.hold(voucher, 200_000, order="PO-2")).json()
    assert held["held_amount"] == 60_000

    def found(recon: dict[str, Any]) -> list[tuple[str, int, int]]:
        return sorted((d["what"], d["recorded"], d["expected"]) for d in recon["commitment_differences"])

    await _counter(app, OrderSubsidy, subsidised=0)
    assert found(await world.reconciliation()) == [("order subsidy", 0, 30_000), ("order subsidy", 0, 60_000)]
    await _counter(app, OrderSubsidy, subsidised=OrderSubsidy.order_amount * 3 // 10)  # type: ignore[operator]
    assert (await world.reconciliation())["is_clean"]
    await _counter(app, EnterprisePeriodUsage, subsidised=0, subsidised_spend=0)
    assert found(await world.reconciliation()) == [("enterprise cap subsidised", 0, 90_000),
                                                   ("enterprise tier spend", 0, 300_000)]
    await _counter(app, EnterprisePeriodUsage, subsidised=90_000, subsidised_spend=300_000)
    assert (await world.reconciliation())["is_clean"]


async def test_a_cap_passed_with_every_counter_right_is_reported(app, client: httpx.AsyncClient) -> None:
    """The counters matched their rows, so a cap passed with every counter right — a path that
    moves value without the usage row's lock, a cap changed behind the service — had shown
    clean (an independent review, December 2026). Here the cap is lowered behind the service
    below what was granted, then below what was captured; a hold is not counted either way."""
    from services.voucher.tables import Programme

    world = await _world(app, client)
    voucher = await world.issue(1_000_000)
    await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")  # 300,000 captured
    assert (await world.hold(voucher, 500_000, order="PO-2")).status_code == 201  # 150,000 held

    def found(recon: dict[str, Any]) -> list[tuple[str, int, int]]:
        return sorted((d["what"], d["recorded"], d["expected"]) for d in recon["commitment_differences"])

    was = world.programme["enterprise_cap"]
    await _counter(app, Programme, enterprise_cap=400_000)
    assert found(await world.reconciliation()) == [("enterprise cap passed by value granted and committed",
                                                    1_000_000, 400_000)]
    await _counter(app, Programme, enterprise_cap=299_999)
    assert found(await world.reconciliation()) == [
        ("enterprise cap passed by subsidy captured", 300_000, 299_999),
        ("enterprise cap passed by value granted and committed", 1_000_000, 299_999)]
    await _counter(app, Programme, enterprise_cap=was)
    assert (await world.reconciliation())["is_clean"]


async def test_a_refund_taken_from_another_payable_is_reported(app, client: httpx.AsyncClient) -> None:
    """A refund's journal takes the amount back from the payee's payable. Moved to another
    account (the balances moved with it) it still balanced, the voucher's used value and the
    refund rows still agreed, and the reconciliation was clean while the provider's payable
    stayed overstated (an independent review, December 2026). Both accounts' balances are their
    postings' sums (not materialised), so only the posting moves."""
    from services.voucher.tables import LedgerAccount, LedgerPosting, LedgerTransaction

    world = await _world(app, client)
    voucher = await world.issue(10_000_000)
    redeemed = (await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")).json()
    refunded = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 100_000, "reason": "returned"})
    assert refunded.status_code == 201, refunded.text
    P, T, A = table_of(LedgerPosting), table_of(LedgerTransaction), table_of(LedgerAccount)
    trigger = "ledger_posting_append_only" if ENGINE == "postgresql" else "ledger_posting_no_update"
    async with app.state.database.unit_of_work() as session, guard_lifted(session, "ledger_posting", trigger):
        posting, account = (await session.execute(
            select(P.c.id, P.c.account_id).join(T, T.c.id == P.c.transaction_id)
            .join(A, A.c.id == P.c.account_id)
            .where(T.c.redemption_id == uuid.UUID(redeemed["id"]), T.c.kind == "refund",
                   A.c.kind == "provider_payable"))).one()
        other = (await session.execute(select(A.c.id).where(A.c.kind == "programme_spent"))).scalar_one()
        await session.execute(update(P).where(P.c.id == posting).values(account_id=other))
    recon = await world.reconciliation()
    found = [(d["what"], d["ledger_payable_refunded"], d["refunded_amount"]) for d in recon["record_differences"]
             if d.get("redemption_id") == redeemed["id"]]
    assert found == [("redemption differs from its journals", 0, 100_000)], recon
    async with app.state.database.unit_of_work() as session, guard_lifted(session, "ledger_posting", trigger):
        await session.execute(update(P).where(P.c.id == posting).values(account_id=account))
    assert (await world.reconciliation())["is_clean"]


async def test_a_posting_in_another_unit_than_its_account_s_is_reported(app, client: httpx.AsyncClient) -> None:
    """A journal balances per unit: a redeem's postings to the programme's spent account and the
    payee's payable, both turned to "USD", still balanced in CNY and in USD, and no check read a
    posting's unit against its account's. Both accounts' balances are their postings' sums."""
    from services.voucher.tables import LedgerAccount, LedgerPosting, LedgerTransaction

    world = await _world(app, client)
    voucher = await world.issue(10_000_000)
    redeemed = (await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")).json()
    P, T, A = table_of(LedgerPosting), table_of(LedgerTransaction), table_of(LedgerAccount)
    trigger = "ledger_posting_append_only" if ENGINE == "postgresql" else "ledger_posting_no_update"
    async with app.state.database.unit_of_work() as session, guard_lifted(session, "ledger_posting", trigger):
        moved = (await session.execute(
            select(P.c.id, T.c.id.label("transaction_id")).join(T, T.c.id == P.c.transaction_id)
            .join(A, A.c.id == P.c.account_id)
            .where(T.c.redemption_id == uuid.UUID(redeemed["id"]),
                   A.c.kind.in_(("programme_spent", "provider_payable"))))).all()
        assert len(moved) == 2
        await session.execute(update(P).where(P.c.id.in_([m.id for m in moved])).values(unit="USD"))
    recon = await world.reconciliation()
    assert recon["unbalanced_transactions"] == [] and not recon["is_clean"]
    found = [(d["what"], d["transaction_id"], d["unit"], d["account_unit"]) for d in recon["record_differences"]]
    assert found == [("posting's unit differs from its account's", str(moved[0].transaction_id), "USD", "CNY")] * 2, recon
    async with app.state.database.unit_of_work() as session, guard_lifted(session, "ledger_posting", trigger):
        await session.execute(update(P).where(P.c.id.in_([m.id for m in moved])).values(unit="CNY"))
    assert (await world.reconciliation())["is_clean"]
