"""A clawback, or its repayment or write-off, recorded by mistake, undone (DESIGN §3 invariant 6:
the receivable stays what the rule says; docs/decisions.md "A repayment or write-off reversed")."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from services.voucher.tables import AuditEvent
from tests.redemption import test_routes as routes
from tests.redemption.test_routes import _pool, _receivable, _revoked_with_clawback
from tests.support import assert_problem, auth
from tests.world import World

world = routes.world  # the redemption tests' world (a fixture, by assignment)


async def _entries(world: World, voucher: dict[str, Any], key: str | None = None, **query: Any) -> httpx.Response:
    return await world.client.get(f"/v1/vouchers/{voucher['id']}/clawback/entries",
                                  headers=auth(key or world.operator), params=query)


async def _state(world: World, voucher: dict[str, Any]) -> dict[str, Any]:
    response = await world.client.get(f"/v1/vouchers/{voucher['id']}/clawback", headers=auth(world.operator))
    return response.json()


async def test_a_repayment_recorded_by_mistake_is_reversed_once(app, world: World) -> None:
    """The transfer bounced: the office reverses the repayment. What is owed is back, the
    repayment and its reversal both stay listed, each naming the other; the same bank
    reference may be recorded again; a second reversal is refused, as is reversing anything but
    a standing repayment or write-off of this voucher; a refusal changes nothing."""
    voucher, _ = await _revoked_with_clawback(world, 300_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    pool = await _pool(app, world)
    payment = {"amount": 100_000, "reference": "ICBC-77", "paid_on": "2026-03-02"}
    assert (await world.post(f"{base}/repayments", payment, key=world.operator)).status_code == 200
    listed = (await _entries(world, voucher)).json()
    assert [(e["kind"], e["amount"], e["reference"]) for e in listed["items"]] == [
        ("clawback_recorded", 300_000, None), ("clawback_repaid", -100_000, "ICBC-77")]
    _, repayment = listed["items"]

    body = {"entry_id": repayment["id"], "reason": "the bank returned the transfer"}
    reversed_ = await world.post(f"{base}/reversals", body, key=world.operator, idem="r1")
    assert reversed_.status_code == 200, reversed_.text
    assert (reversed_.json()["repaid"], reversed_.json()["owed"]) == (0, 300_000)
    assert (await world.post(f"{base}/reversals", body, key=world.operator, idem="r1")).json() == reversed_.json()
    assert (await _receivable(app, world), await _pool(app, world)) == (300_000, pool)
    items = (await _entries(world, voucher)).json()["items"]
    assert [(e["kind"], e["amount"]) for e in items] == [
        ("clawback_recorded", 300_000), ("clawback_repaid", -100_000), ("clawback_repayment_reversed", 100_000)]
    assert items[1]["reversed_by"] == items[2]["id"] and items[2]["reverses"] == repayment["id"]
    assert items[2]["memo"].endswith("the bank returned the transfer")

    again = await world.post(f"{base}/reversals", {**body, "reason": "again"}, key=world.operator)
    assert assert_problem(again, 409, "already_reversed")["journal_id"] == items[2]["id"]
    for entry_id in (items[2]["id"], str(uuid.uuid4())):  # a reversal, nothing
        refused = await world.post(f"{base}/reversals", {**body, "entry_id": entry_id}, key=world.operator)
        assert [e["pointer"] for e in assert_problem(refused, 422, "validation_failed")["errors"]] == ["/entry_id"]
    for key, status, code in ((world.enterprise_key, 403, "insufficient_scope"),
                              (world.provider_key, 403, "insufficient_scope"),
                              (world.auditor, 403, "insufficient_scope")):
        assert_problem(await world.post(f"{base}/reversals", body, key=key), status, code)
    assert_problem(await world.post(f"{base}/reversals", {**body, "reason": ""}, key=world.operator),
                   422, "validation_failed")
    assert_problem(await world.post(f"/v1/vouchers/{uuid.uuid4()}/clawback/reversals", body, key=world.operator),
                   404, "not_found")
    assert (await _state(world, voucher))["owed"] == 300_000  # every refusal changed nothing

    # the transfer comes in again under the same reference: recorded, as the reversed one no longer counts
    retried = await world.post(f"{base}/repayments", payment, key=world.operator)
    assert retried.status_code == 200, retried.text
    assert (retried.json()["repaid"], retried.json()["owed"]) == (100_000, 200_000)
    assert_problem(await world.post(f"{base}/repayments", payment, key=world.operator), 409,
                   "repayment_already_recorded")
    assert (await world.reconciliation())["is_clean"]


async def test_a_write_off_taken_back_is_owed_again(app, world: World) -> None:
    voucher, _ = await _revoked_with_clawback(world, 300_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    written = await world.post(f"{base}/write-offs", {"amount": 300_000, "reason": "deregistered"},
                               key=world.operator)
    assert written.json()["owed"] == 0
    entry = (await _entries(world, voucher)).json()["items"][-1]
    assert entry["kind"] == "clawback_written_off"
    undone = await world.post(f"{base}/reversals", {"entry_id": entry["id"], "reason": "it re-registered"},
                              key=world.operator)
    assert undone.status_code == 200, undone.text
    assert (undone.json()["written_off"], undone.json()["owed"]) == (0, 300_000)
    assert await _receivable(app, world) == 300_000
    assert (await world.reconciliation())["is_clean"]


async def test_a_repayment_reversed_after_a_refund_puts_back_only_what_is_still_used(app, world: World) -> None:
    """300,000 clawed back and repaid; then 200,000 of the order is refunded, so the enterprise
    overpaid 200,000. The repayment bounces: only the 100,000 still used is owed again. The
    reversal puts the 300,000 back and the refund's share, 200,000, comes off in a journal of
    its own; the pool does not move."""
    voucher, redeemed = await _revoked_with_clawback(world, 300_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    await world.post(f"{base}/repayments", {"amount": 300_000, "reference": "B-9", "paid_on": "2026-03-02"},
                     key=world.operator)
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 200_000, "reason": "x"})
    assert refund.status_code == 201, refund.text
    assert ((await _state(world, voucher))["overpaid"], await _receivable(app, world)) == (200_000, 0)
    pool = await _pool(app, world)
    repayment = next(e for e in (await _entries(world, voucher)).json()["items"] if e["kind"] == "clawback_repaid")
    undone = await world.post(f"{base}/reversals", {"entry_id": repayment["id"], "reason": "bounced"},
                              key=world.operator)
    assert undone.status_code == 200, undone.text
    state = undone.json()
    assert (state["used"], state["repaid"], state["owed"], state["overpaid"], state["recovered_by_refunds"]) == (
        100_000, 0, 100_000, 0, 200_000)
    assert (await _receivable(app, world), await _pool(app, world)) == (100_000, pool)
    items = (await _entries(world, voucher, limit=2)).json()
    assert len(items["items"]) == 2 and items["next_cursor"]
    rest = (await _entries(world, voucher, limit=2, cursor=items["next_cursor"])).json()
    assert [(e["kind"], e["amount"], e["reverses"]) for e in rest["items"]] == [
        ("clawback_repayment_reversed", 300_000, repayment["id"]),
        ("clawback_recovered_by_refunds", -200_000, repayment["id"])]
    assert rest["next_cursor"] is None
    assert [e["kind"] for e in items["items"]] == ["clawback_recorded", "clawback_repaid"]
    assert (await world.reconciliation())["is_clean"]


async def test_an_enterprise_reads_its_own_clawback_entries_only(world: World) -> None:
    voucher, _ = await _revoked_with_clawback(world, 100_000)
    own = await _entries(world, voucher, key=world.enterprise_key)
    assert [e["kind"] for e in own.json()["items"]] == ["clawback_recorded"]
    assert_problem(await _entries(world, voucher, key=world.provider_key), 403, "insufficient_scope")
    assert_problem(await _entries(world, {"id": uuid.uuid4()}), 404, "not_found")
    assert_problem(await _entries(world, voucher, cursor="nonsense"), 422, "invalid_cursor")


async def test_the_reconciliation_shows_a_repayment_undone_twice(app, world: World) -> None:
    """A second reversal of one repayment, posted behind the service: the receivable (400,000)
    matches the formula read from the sums (repaid −100,000), so the sum below nothing shows
    it, and the repayment's reversals moving it back by twice what it took off; a journal
    naming the repayment that puts it right again reconciles."""
    from datetime import UTC, datetime

    from services.voucher.ledger import service as ledger
    from services.voucher.ledger.rules import AccountKind, transfer

    voucher, _ = await _revoked_with_clawback(world, 300_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    await world.post(f"{base}/repayments", {"amount": 100_000, "reference": "B-2", "paid_on": "2026-03-02"},
                     key=world.operator)
    repayment = (await _entries(world, voucher)).json()["items"][-1]
    await world.post(f"{base}/reversals", {"entry_id": repayment["id"], "reason": "bounced"}, key=world.operator)
    receivable = await _receivable_id(app, world)
    async with app.state.database.unit_of_work() as session:
        contra = (await ledger.programme_accounts(session, uuid.UUID(world.programme["id"])))[
            AccountKind.PROGRAMME_CLAWBACK]
        await ledger.post(session, kind="clawback_repayment_reversed",
                          legs=transfer(contra, receivable, 100_000, "CNY"), now=datetime.now(UTC),
                          programme_id=uuid.UUID(world.programme["id"]), voucher_id=uuid.UUID(voucher["id"]),
                          memo=f"reversal of {repayment['id']}: twice")
    result = await world.reconciliation()
    twice = result["clawback_differences"][1]
    assert result["clawback_differences"] == [{
        "what": "clawback owed for the voucher", "voucher_id": voucher["id"], "clawed_back": 300_000,
        "used": 300_000, "repaid": -100_000, "written_off": 0, "returned": 0, "owed": 400_000, "expected": 400_000},
        {"what": "reversal does not undo its entry exactly once", "voucher_id": voucher["id"],
         "entry_id": repayment["id"], "reversals": twice["reversals"], "moved": 200_000, "entry_moved": -100_000}]
    assert len(twice["reversals"]) == 2
    async with app.state.database.unit_of_work() as session:
        await ledger.post(session, kind="clawback_repayment_reversed",
                          legs=transfer(receivable, contra, 100_000, "CNY"), now=datetime.now(UTC),
                          programme_id=uuid.UUID(world.programme["id"]), voucher_id=uuid.UUID(voucher["id"]),
                          memo=f"reversal of {repayment['id']}: put right")
    assert (await world.reconciliation())["is_clean"]


async def _receivable_id(app, world: World) -> uuid.UUID:
    from sqlalchemy import select

    from services.voucher.tables import LedgerAccount

    async with app.state.database.unit_of_work(write=False) as session:
        return (await session.execute(select(LedgerAccount.id).where(
            LedgerAccount.kind == "enterprise_receivable",
            LedgerAccount.enterprise_id == uuid.UUID(world.enterprise["id"])))).scalar_one()


def test_a_reversal_s_memo_names_its_entry_and_nothing_typed_does() -> None:
    """The link between a reversal and its entry is read back from the memo: its form is pinned
    here (old journals keep theirs), and only the service's own prefixes are read."""
    from services.voucher.vouchers.rules import (
        RECOVERY_MEMO,
        REVERSAL_MEMO,
        UNCOVER_MEMO,
        reversed_entry,
    )

    entry = uuid.UUID("0190d5d2-9b01-7c22-8a55-3f2b9c1d0e77")
    assert (REVERSAL_MEMO, RECOVERY_MEMO) == ("reversal of ", "refunds recover, on the reversal of ")
    assert UNCOVER_MEMO == "no longer covered by refunds or payments, on the reversal of "
    assert reversed_entry(f"{UNCOVER_MEMO}{entry}") == entry
    assert reversed_entry(f"reversal of {entry}: bounced") == entry
    assert reversed_entry(f"refunds recover, on the reversal of {entry}") == entry
    for memo in (None, "", f"bounced, reversal of {entry}", "reversal of nothing: x", f"reversal of{entry}"):
        assert reversed_entry(memo) is None, memo


async def _reverse(world: World, voucher: dict[str, Any], entry: dict[str, Any], reason: str) -> httpx.Response:
    return await world.post(f"/v1/vouchers/{voucher['id']}/clawback/reversals",
                            {"entry_id": entry["id"], "reason": reason}, key=world.operator)


async def test_a_clawback_entered_twice_is_reversed(app, world: World) -> None:
    """Two clerks record the same finding: 100,000 clawed back at revocation and 100,000 again.
    The second is reversed (`clawback_reversed`): the clawed-back sum and what is owed fall by
    it, and a refund of 150,000 of the 300,000 used then takes value that was never clawed back,
    so 100,000 stays owed. (Before, the office could only write the duplicate off, and the
    refund then ate the real debt: 50,000 owed; an independent review.)"""
    voucher, redeemed = await _revoked_with_clawback(world, 100_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    twice = await world.post(base, {"amount": 100_000, "reason": "the same audit finding"}, key=world.operator)
    assert twice.json()["owed"] == 200_000
    duplicate = (await _entries(world, voucher)).json()["items"][-1]
    assert duplicate["kind"] == "clawback_recorded"
    undone = await _reverse(world, voucher, duplicate, "entered twice")
    assert undone.status_code == 200, undone.text
    state = undone.json()
    assert (state["clawed_back"], state["owed"], state["room"]) == (100_000, 100_000, 200_000)
    refunded = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 150_000, "reason": "part"})
    assert refunded.status_code == 201, refunded.text
    assert ((await _state(world, voucher))["owed"], await _receivable(app, world)) == (100_000, 100_000)
    items = (await _entries(world, voucher)).json()["items"]
    assert [(e["kind"], e["amount"]) for e in items] == [
        ("clawback_recorded", 100_000), ("clawback_recorded", 100_000), ("clawback_reversed", -100_000)]
    assert items[1]["reversed_by"] == items[2]["id"] and items[2]["reverses"] == duplicate["id"]
    assert_problem(await _reverse(world, voucher, duplicate, "again"), 409, "already_reversed")
    async with app.state.database.unit_of_work(write=False) as session:
        event = (await session.execute(select(AuditEvent).where(
            AuditEvent.action == "voucher.clawback_reversed",
            AuditEvent.resource_id == uuid.UUID(voucher["id"])))).scalar_one()
    assert (event.before["clawback_owed"], event.after["clawback_owed"], event.after["entry_id"]) == (
        200_000, 100_000, duplicate["id"])
    assert (await world.reconciliation())["is_clean"]


async def test_a_reversed_clawback_gives_back_what_refunds_had_recovered_of_it(app, world: World) -> None:
    """300,000 clawed back, then 200,000 of the order refunded (recovering 200,000 of it): the
    clawback, recorded by mistake, is reversed. Nothing is owed: the reversal takes 300,000 off
    and a second journal puts back the 200,000 the refund had taken off (it recovers nothing of
    a clawback that is gone); the pool does not move."""
    voucher, redeemed = await _revoked_with_clawback(world, 300_000)
    refunded = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 200_000, "reason": "x"})
    assert refunded.status_code == 201, refunded.text
    assert (await _state(world, voucher))["owed"] == 100_000
    pool = await _pool(app, world)
    recorded = (await _entries(world, voucher)).json()["items"][0]
    undone = await _reverse(world, voucher, recorded, "the wrong enterprise's finding")
    assert undone.status_code == 200, undone.text
    state = undone.json()
    assert (state["clawed_back"], state["owed"], state["recovered_by_refunds"], state["room"]) == (0, 0, 0, 100_000)
    assert (await _receivable(app, world), await _pool(app, world)) == (0, pool)
    items = (await _entries(world, voucher)).json()["items"]
    assert [(e["kind"], e["amount"], e["reverses"]) for e in items[-2:]] == [
        ("clawback_reversed", -300_000, recorded["id"]), ("clawback_recovered_by_refunds", 200_000, recorded["id"])]
    assert (await world.reconciliation())["is_clean"]


async def test_a_mistyped_clawback_partly_repaid_is_reversed_and_the_payment_covers_the_right_one(
        app, world: World) -> None:
    """300,000 typed for 30,000, and the enterprise paid the 30,000. The clawback is reversed:
    nothing is clawed back, so the 30,000 paid is overpaid (a journal puts back what it had
    covered). The right clawback is recorded: the payment covers it (a journal takes it off
    again), so nothing is owed or overpaid, and every step is in the ledger."""
    voucher, _ = await _revoked_with_clawback(world, 300_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    paid = await world.post(f"{base}/repayments", {"amount": 30_000, "reference": "ICBC-5", "paid_on": "2026-03-02"},
                            key=world.operator)
    assert paid.json()["owed"] == 270_000
    recorded, _ = (await _entries(world, voucher)).json()["items"]
    undone = await _reverse(world, voucher, recorded, "mistyped")
    assert undone.status_code == 200, undone.text
    assert (undone.json()["clawed_back"], undone.json()["owed"], undone.json()["overpaid"]) == (0, 0, 30_000)
    assert await _receivable(app, world) == 0
    right = await world.post(base, {"amount": 30_000, "reason": "the audit's figure"}, key=world.operator,
                             idem="right")
    assert right.status_code == 200, right.text
    state = right.json()
    assert (state["clawed_back"], state["repaid"], state["owed"], state["overpaid"]) == (30_000, 30_000, 0, 0)
    items = (await _entries(world, voucher)).json()["items"]
    assert [(e["kind"], e["amount"]) for e in items] == [
        ("clawback_recorded", 300_000), ("clawback_repaid", -30_000), ("clawback_reversed", -300_000),
        ("clawback_recovered_by_refunds", 30_000), ("clawback_recorded", 30_000),
        ("clawback_recovered_by_refunds", -30_000)]
    assert items[3]["reverses"] == recorded["id"] and items[5]["reverses"] == items[4]["id"]
    assert items[5]["memo"] == f"covered by what the enterprise paid, on the clawback {items[4]['id']}"
    async with app.state.database.unit_of_work(write=False) as session:
        event = (await session.execute(select(AuditEvent).where(
            AuditEvent.action == "voucher.clawback_recorded", AuditEvent.resource_id == uuid.UUID(voucher["id"]))
        )).scalar_one()
    assert (event.after["amount"], event.after["covered_by_payments"], event.after["clawback_owed"]) == (
        30_000, 30_000, 0)
    assert await _receivable(app, world) == 0
    assert (await world.reconciliation())["is_clean"]


async def test_a_duplicate_the_enterprise_paid_twice_is_reversed_and_the_overpayment_returned(
        app, world: World) -> None:
    """100,000 clawed back and entered again; the enterprise pays both demands. The duplicate
    is reversed with both repayments standing: 100,000 is overpaid, and the office returns it
    (a review found this stuck: the repayment had to be reversed first, and the transfer
    could then not be recorded again, being more than was owed)."""
    voucher, _ = await _revoked_with_clawback(world, 100_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    assert (await world.post(base, {"amount": 100_000, "reason": "same finding"}, key=world.operator)).json()[
        "owed"] == 200_000
    for reference in ("ICBC-1", "ICBC-2"):
        paid = await world.post(f"{base}/repayments", {"amount": 100_000, "reference": reference,
                                                       "paid_on": "2026-03-02"}, key=world.operator)
        assert paid.status_code == 200, paid.text
    duplicate = (await _entries(world, voucher)).json()["items"][1]
    assert duplicate["kind"] == "clawback_recorded"
    undone = (await _reverse(world, voucher, duplicate, "entered twice")).json()
    assert (undone["clawed_back"], undone["repaid"], undone["owed"], undone["overpaid"]) == (
        100_000, 200_000, 0, 100_000)
    returned = await world.post(f"{base}/overpayment-returns", {"amount": 100_000, "reference": "OUT-1",
                                                                 "paid_on": "2026-03-02"}, key=world.operator)
    assert returned.status_code == 200, returned.text
    assert (returned.json()["overpaid"], returned.json()["owed"]) == (0, 0)
    assert await _receivable(app, world) == 0
    assert (await world.reconciliation())["is_clean"]


async def test_a_duplicate_written_off_is_reversed_only_once_the_write_off_is(app, world: World) -> None:
    """The office had written the duplicate off (its only tool before): reversing the duplicate
    while the write-off stands would let the write-off forgive the real 100,000 (a review), so
    it is refused, naming the write-off, and changes nothing. With the write-off reversed, the
    duplicate is; 100,000 is owed."""
    voucher, _ = await _revoked_with_clawback(world, 100_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    await world.post(base, {"amount": 100_000, "reason": "same finding"}, key=world.operator)
    await world.post(f"{base}/write-offs", {"amount": 100_000, "reason": "duplicate entry"}, key=world.operator)
    _, duplicate, write_off = (await _entries(world, voucher)).json()["items"]
    refused = assert_problem(await _reverse(world, voucher, duplicate, "entered twice"), 422, "validation_failed")
    assert [e["pointer"] for e in refused["errors"]] == ["/entry_id"]
    assert refused["errors"][0]["message"].startswith(
        "the office wrote off ¥1,000.00 of this voucher's clawback: reverse the write-off first"), refused
    assert (await _state(world, voucher))["owed"] == 100_000 and await _receivable(app, world) == 100_000
    assert (await _reverse(world, voucher, write_off, "it was the duplicate")).json()["owed"] == 200_000
    state = (await _reverse(world, voucher, duplicate, "entered twice")).json()
    assert (state["clawed_back"], state["written_off"], state["owed"]) == (100_000, 0, 100_000)
    assert await _receivable(app, world) == 100_000
    assert (await world.reconciliation())["is_clean"]


async def test_the_reconciliation_shows_a_reversal_for_another_amount_or_of_another_kind(app, world: World) -> None:
    """Posted behind the service: half a repayment's reversal (the receivable, 250,000, still
    matches the rule read from the sums: repaid 50,000), and a repayment's reversal naming the
    clawback. Neither shows in the sums; both show as reversals that do not undo their entry.
    Journals naming each put them right: the repayment reversed in full, the other netted to
    nothing."""
    from datetime import UTC, datetime

    from services.voucher.ledger import service as ledger
    from services.voucher.ledger.rules import AccountKind, transfer

    voucher, _ = await _revoked_with_clawback(world, 300_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    await world.post(f"{base}/repayments", {"amount": 100_000, "reference": "B-3", "paid_on": "2026-03-02"},
                     key=world.operator)
    recorded, repayment = (await _entries(world, voucher)).json()["items"]
    receivable = await _receivable_id(app, world)
    programme = uuid.UUID(world.programme["id"])

    async def behind(amount: int, entry: dict[str, Any], words: str) -> None:
        """A repayment's reversal posted behind the service, naming `entry`: `amount` onto the
        receivable (off it when negative)."""
        async with app.state.database.unit_of_work() as session:
            contra = (await ledger.programme_accounts(session, programme))[AccountKind.PROGRAMME_CLAWBACK]
            legs = transfer(contra, receivable, amount, "CNY") if amount > 0 else transfer(
                receivable, contra, -amount, "CNY")
            await ledger.post(session, kind="clawback_repayment_reversed", legs=legs, now=datetime.now(UTC),
                              programme_id=programme, voucher_id=uuid.UUID(voucher["id"]),
                              memo=f"reversal of {entry['id']}: {words}")

    await behind(50_000, repayment, "half")
    await behind(1, recorded, "wrong kind")
    differences = (await world.reconciliation())["clawback_differences"]
    assert sorted((d["what"], d["entry_id"], d["moved"], d["entry_moved"]) for d in differences
                  if d["what"] != "clawback owed for the voucher") == sorted([
        ("reversal does not undo its entry exactly once", repayment["id"], 50_000, -100_000),
        ("reversal does not undo its entry exactly once", recorded["id"], 1, 300_000)])
    owed = [d for d in differences if d["what"] == "clawback owed for the voucher"]
    assert owed == [], owed  # the sums alone: the receivable is what the rule says
    await behind(50_000, repayment, "the other half")
    await behind(-1, recorded, "put right")
    assert (await world.reconciliation())["is_clean"]
