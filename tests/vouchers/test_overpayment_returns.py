"""What an enterprise overpaid on a clawback, returned by the office and recorded (DESIGN §3
invariant 6: the receivable stays what the rule says; docs/decisions.md "What the enterprise
overpaid is returned, and recorded").

The enterprise repaid a clawback, then a refund of the order returned the same value to the
programme through the provider: it overpaid. The office pays that back; recorded, the return is
what makes a later reversal of the repayment ask the returned money back too."""

from __future__ import annotations

import uuid
from typing import Any

from tests.redemption import test_routes as routes
from tests.redemption.test_routes import _pool, _receivable, _revoked_with_clawback
from tests.support import assert_problem
from tests.vouchers.test_clawback_reversals import _entries, _receivable_id, _state
from tests.world import World

world = routes.world  # the redemption tests' world (a fixture, by assignment)


async def _overpaid(world: World, amount: int) -> tuple[dict[str, Any], str]:
    """A voucher whose 300,000 used value was clawed back and repaid in full, then `amount` of
    its order refunded: the enterprise overpaid `amount`."""
    voucher, redeemed = await _revoked_with_clawback(world, 300_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    repaid = await world.post(f"{base}/repayments", {"amount": 300_000, "reference": "ICBC-9", "paid_on": "2026-03-02"},
                              key=world.operator)
    assert repaid.status_code == 200, repaid.text
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": amount, "reason": "cancelled"})
    assert refund.status_code == 201, refund.text
    assert (await _state(world, voucher))["overpaid"] == amount
    return voucher, base


async def test_an_overpayment_is_returned_at_most_once(app, world: World) -> None:
    """The office returns part of the overpayment: overpaid falls, nothing is owed before or after,
    the receivable and the pool do not move; the return and what the refund recovered of it are
    listed, each naming the return. More than is overpaid, a day out of range, the same bank
    payment twice, and a voucher that overpaid nothing are refused, and a refusal changes
    nothing; the stored answer replays."""
    voucher, base = await _overpaid(world, 200_000)
    pool = await _pool(app, world)
    body = {"amount": 150_000, "reference": "BOC-20260303-1", "paid_on": "2026-03-02"}
    returned = await world.post(f"{base}/overpayment-returns", body, key=world.operator, idem="o1")
    assert returned.status_code == 200, returned.text
    state = returned.json()
    assert (state["repaid"], state["overpaid"], state["overpayment_returned"], state["owed"]) == (
        300_000, 50_000, 150_000, 0)
    assert (await world.post(f"{base}/overpayment-returns", body, key=world.operator, idem="o1")).json() == state
    assert (await _receivable(app, world), await _pool(app, world)) == (0, pool)
    items = (await _entries(world, voucher)).json()["items"]
    assert [(e["kind"], e["amount"], e["reference"]) for e in items] == [
        ("clawback_recorded", 300_000, None), ("clawback_repaid", -300_000, "ICBC-9"),
        ("clawback_overpayment_returned", 150_000, "BOC-20260303-1"), ("clawback_recovered_by_refunds", -150_000, None)]
    assert items[-1]["reverses"] == items[-2]["id"]  # the refunds' part names its return
    assert items[-2]["reference"] == "BOC-20260303-1" and items[-1]["memo"].endswith(items[-2]["id"])

    for typed in ("boc-20260303-1", "ＢＯＣ－２０２６０３０３－１", " BOC-20260303-1 "):  # the same payment, retyped
        again = await world.post(f"{base}/overpayment-returns", {**body, "amount": 1, "reference": typed},
                                 key=world.operator)
        assert assert_problem(again, 409, "overpayment_return_already_recorded")["journal_id"] == items[-2]["id"]
    for wrong, pointer in (({"amount": 50_001}, "/amount"), ({"paid_on": "2099-01-01"}, "/paid_on"),
                           ({"paid_on": "2020-01-01"}, "/paid_on"), ({"amount": 0}, "/amount"),
                           ({"reference": ""}, "/reference")):
        refused = await world.post(f"{base}/overpayment-returns", {**body, "amount": 1, "reference": "BOC-2", **wrong},
                                   key=world.operator)
        assert [e["pointer"] for e in assert_problem(refused, 422, "validation_failed")["errors"]] == [pointer]
    for key in (world.enterprise_key, world.provider_key, world.auditor):
        assert_problem(await world.post(f"{base}/overpayment-returns", body, key=key), 403, "insufficient_scope")
    assert_problem(await world.post(f"/v1/vouchers/{uuid.uuid4()}/clawback/overpayment-returns", body,
                                    key=world.operator), 404, "not_found")
    assert (await _state(world, voucher))["overpaid"] == 50_000  # every refusal changed nothing

    rest = await world.post(f"{base}/overpayment-returns", {**body, "amount": 50_000, "reference": "BOC-2"},
                            key=world.operator)
    assert (rest.json()["overpaid"], rest.json()["overpayment_returned"]) == (0, 200_000)
    nothing = await world.post(f"{base}/overpayment-returns", {**body, "amount": 1, "reference": "BOC-3"},
                               key=world.operator)
    problem = assert_problem(nothing, 422, "validation_failed")
    assert problem["errors"][0]["message"] == "the enterprise overpaid nothing for this voucher"
    assert (await world.reconciliation())["is_clean"]


async def test_a_repayment_reversed_after_a_return_asks_the_returned_money_back(app, world: World) -> None:
    """300,000 repaid, 200,000 refunded, 200,000 returned to the enterprise; then the repayment
    bounces. The enterprise never paid, yet was paid 200,000: it owes the 100,000 still used and
    the 200,000 it was returned. Without the return on record the service would say 100,000."""
    voucher, base = await _overpaid(world, 200_000)
    await world.post(f"{base}/overpayment-returns", {"amount": 200_000, "reference": "BOC-1", "paid_on": "2026-03-02"},
                     key=world.operator)
    repayment = next(e for e in (await _entries(world, voucher)).json()["items"] if e["kind"] == "clawback_repaid")
    undone = await world.post(f"{base}/reversals", {"entry_id": repayment["id"], "reason": "bounced"},
                              key=world.operator)
    assert undone.status_code == 200, undone.text
    state = undone.json()
    assert (state["used"], state["repaid"], state["overpayment_returned"], state["owed"], state["overpaid"]) == (
        100_000, 0, 200_000, 300_000, 0)
    assert await _receivable(app, world) == 300_000
    assert (await world.reconciliation())["is_clean"]
    paid = await world.post(f"{base}/repayments", {"amount": 300_000, "reference": "ICBC-10", "paid_on": "2026-03-02"},
                            key=world.operator)
    assert (paid.json()["owed"], paid.json()["overpaid"]) == (0, 0)
    assert (await world.reconciliation())["is_clean"]


async def test_a_return_recorded_by_mistake_is_reversed(app, world: World) -> None:
    """A return undone: overpaid is back, the receivable does not move (the reversal takes the
    amount off, and what the return's recovery had taken off goes back on), each names the
    return, and its bank reference may be recorded again. After a reversed repayment, undoing
    the return lowers what is owed by the amount, in one journal."""
    voucher, base = await _overpaid(world, 200_000)
    body = {"amount": 200_000, "reference": "BOC-1", "paid_on": "2026-03-02"}
    await world.post(f"{base}/overpayment-returns", body, key=world.operator)
    entries = (await _entries(world, voucher)).json()["items"]
    returned = next(e for e in entries if e["kind"] == "clawback_overpayment_returned")
    undone = await world.post(f"{base}/reversals", {"entry_id": returned["id"], "reason": "sent to another firm"},
                              key=world.operator)
    assert undone.status_code == 200, undone.text
    assert (undone.json()["overpaid"], undone.json()["overpayment_returned"], undone.json()["owed"]) == (
        200_000, 0, 0)
    assert await _receivable(app, world) == 0
    after = (await _entries(world, voucher)).json()["items"]
    assert [(e["kind"], e["amount"], e["reverses"]) for e in after[-2:]] == [
        ("clawback_overpayment_return_reversed", -200_000, returned["id"]),
        ("clawback_recovered_by_refunds", 200_000, returned["id"])]
    assert next(e for e in after if e["id"] == returned["id"])["reversed_by"] == after[-2]["id"]
    assert_problem(await world.post(f"{base}/reversals", {"entry_id": returned["id"], "reason": "again"},
                                    key=world.operator), 409, "already_reversed")
    assert (await world.reconciliation())["is_clean"]

    again = await world.post(f"{base}/overpayment-returns", body, key=world.operator)  # the same transfer, recorded
    assert again.status_code == 200, again.text
    repayment = next(e for e in after if e["kind"] == "clawback_repaid")
    bounced = await world.post(f"{base}/reversals", {"entry_id": repayment["id"], "reason": "bounced"},
                               key=world.operator)
    assert bounced.json()["owed"] == 300_000
    second = next(e for e in (await _entries(world, voucher)).json()["items"]
                  if e["kind"] == "clawback_overpayment_returned" and e["reversed_by"] is None)
    journals = len((await _entries(world, voucher)).json()["items"])
    taken_back = await world.post(f"{base}/reversals", {"entry_id": second["id"], "reason": "never sent"},
                                  key=world.operator)
    assert (taken_back.json()["owed"], taken_back.json()["overpayment_returned"]) == (100_000, 0)
    items = (await _entries(world, voucher)).json()["items"]
    assert [(e["kind"], e["amount"]) for e in items[journals:]] == [("clawback_overpayment_return_reversed", -200_000)]
    assert await _receivable(app, world) == 100_000
    assert (await world.reconciliation())["is_clean"]


async def test_the_reconciliation_shows_a_return_undone_twice(app, world: World) -> None:
    """A return's reversal posted behind the service with no return to undo: the receivable
    matches the formula read from the sums, so only the returned sum below nothing shows it,
    and the reversal that names no entry; another that nets it to nothing puts it right."""
    from datetime import UTC, datetime

    from services.voucher.ledger import service as ledger
    from services.voucher.ledger.rules import AccountKind, transfer

    voucher, _ = await _revoked_with_clawback(world, 300_000)
    receivable = await _receivable_id(app, world)
    async with app.state.database.unit_of_work() as session:
        contra = (await ledger.programme_accounts(session, uuid.UUID(world.programme["id"])))[
            AccountKind.PROGRAMME_CLAWBACK]
        await ledger.post(session, kind="clawback_overpayment_return_reversed",
                          legs=transfer(receivable, contra, 100_000, "CNY"), now=datetime.now(UTC),
                          programme_id=uuid.UUID(world.programme["id"]), voucher_id=uuid.UUID(voucher["id"]),
                          memo="reversal of nothing")
    result = await world.reconciliation()
    stray = result["clawback_differences"][1]
    assert result["clawback_differences"] == [{
        "what": "clawback owed for the voucher", "voucher_id": voucher["id"], "clawed_back": 300_000,
        "used": 300_000, "repaid": 0, "written_off": 0, "returned": -100_000, "owed": 200_000, "expected": 200_000},
        {"what": "reversal names no entry", "voucher_id": voucher["id"], "entry_id": None,
         "reversals": stray["reversals"], "moved": -100_000, "entry_moved": None}]
    async with app.state.database.unit_of_work() as session:
        await ledger.post(session, kind="clawback_overpayment_return_reversed",
                          legs=transfer(contra, receivable, 100_000, "CNY"), now=datetime.now(UTC),
                          programme_id=uuid.UUID(world.programme["id"]), voucher_id=uuid.UUID(voucher["id"]),
                          memo="put right")
    assert (await world.reconciliation())["is_clean"]


def test_a_return_s_memos_name_its_reference_and_the_return() -> None:
    """The return's reference and its recovery's link are read back from the memos: their forms
    are pinned here (old journals keep theirs)."""
    from services.voucher.vouchers.rules import RETURN_MEMO, RETURN_RECOVERY_MEMO, reversed_entry

    assert (RETURN_MEMO, RETURN_RECOVERY_MEMO) == ("overpayment returned to the enterprise, reference ",
                                                   "refunds recover, on the overpayment return ")
    entry = uuid.uuid4()
    assert reversed_entry(f"{RETURN_RECOVERY_MEMO}{entry}") == entry  # the return it is part of


async def test_a_write_off_the_refund_overtook_forgives_none_of_the_money_returned(app, world: World) -> None:
    """200,000 repaid and 100,000 written off of a 300,000 clawback; the order refunded in full
    (the written-off value came back through the provider); the 200,000 overpaid returned; then
    the repayment bounces. The enterprise paid nothing and was paid 200,000: it owes 200,000,
    not 100,000 (an independent review), and the office cannot write that off — it is repaid."""
    voucher, redeemed = await _revoked_with_clawback(world, 300_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    for path, body in (("repayments", {"amount": 200_000, "reference": "ICBC-1", "paid_on": "2026-03-02"}),
                       ("write-offs", {"amount": 100_000, "reason": "hardship"})):
        assert (await world.post(f"{base}/{path}", body, key=world.operator)).status_code == 200
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 300_000, "reason": "x"})
    assert refund.status_code == 201, refund.text
    assert (await _state(world, voucher))["overpaid"] == 200_000
    returned = await world.post(f"{base}/overpayment-returns",
                                {"amount": 200_000, "reference": "BOC-1", "paid_on": "2026-03-02"}, key=world.operator)
    assert returned.status_code == 200, returned.text
    repayment = next(e for e in (await _entries(world, voucher)).json()["items"] if e["kind"] == "clawback_repaid")
    bounced = await world.post(f"{base}/reversals", {"entry_id": repayment["id"], "reason": "bounced"},
                               key=world.operator)
    assert bounced.status_code == 200, bounced.text
    assert (bounced.json()["owed"], bounced.json()["forgivable"], await _receivable(app, world)) == (
        200_000, 0, 200_000)
    refused = await world.post(f"{base}/write-offs", {"amount": 1, "reason": "cannot collect"}, key=world.operator)
    problem = assert_problem(refused, 422, "validation_failed")
    assert problem["errors"][0]["message"].startswith("at most the clawed-back value still owed, ")
    assert (await world.reconciliation())["is_clean"]
    paid = await world.post(f"{base}/repayments", {"amount": 200_000, "reference": "ICBC-2", "paid_on": "2026-03-02"},
                            key=world.operator)
    assert paid.json()["owed"] == 0
    assert (await world.reconciliation())["is_clean"]
