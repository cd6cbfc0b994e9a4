"""Repayments and write-offs of a clawback racing each other and refunds, through a real server
(on PostgreSQL too when VOUCHER_TEST_POSTGRES_URL is set): what is owed never goes below nothing
or is taken off twice, one bank payment is recorded once, no 500 and no deadlock, and the
reconciliation agrees with the receivable afterwards."""

from __future__ import annotations

import uuid
from typing import Any

from tests.settlement import test_races as races
from tests.settlement.test_races import codes, storm, today
from tests.support import auth
from tests.world import World

# The live server and its world, as the settlement races run them (fixtures by assignment).
clock, world, server = races.clock, races.world, races.server
pytestmark = races.pytestmark


async def revoked_with_clawback(world: World, order: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A voucher that redeemed 300,000 on one order, revoked with all of it clawed back."""
    voucher = await world.issue(1_000_000)
    redeemed = await world.hold(voucher, 1_000_000, order=order, path="/v1/redemptions")
    assert redeemed.status_code == 201 and redeemed.json()["captured_amount"] == 300_000, redeemed.text
    revoked = await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "fraud", "clawback": 300_000},
                               key=world.operator)
    assert revoked.status_code == 200, revoked.text
    return voucher, redeemed.json()


def repayment(world: World, voucher: dict[str, Any], amount: int, reference: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    return (f"/v1/vouchers/{voucher['id']}/clawback/repayments",
            {"amount": amount, "reference": reference, "paid_on": today()},
            auth(world.operator, **{"Idempotency-Key": str(uuid.uuid4())}))


async def clawback(world: World, voucher: dict[str, Any]) -> dict[str, Any]:
    answer = await world.client.get(f"/v1/vouchers/{voucher['id']}/clawback", headers=auth(world.operator))
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_parallel_repayments_never_take_off_more_than_is_owed(world: World, server) -> None:
    voucher, _ = await revoked_with_clawback(world, "PO-r1")
    answers = await storm(server, [repayment(world, voucher, 100_000, f"ICBC-{i}") for i in range(races.PARALLEL)])
    assert codes(answers) == {(200, None): 3, (422, "validation_failed"): races.PARALLEL - 3}, codes(answers)
    state = await clawback(world, voucher)
    assert (state["repaid"], state["owed"]) == (300_000, 0)
    assert (await world.reconciliation())["is_clean"]


async def test_one_bank_payment_typed_in_at_once_is_recorded_once(world: World, server) -> None:
    voucher, _ = await revoked_with_clawback(world, "PO-r2")
    answers = await storm(server, [repayment(world, voucher, 10_000, "ICBC-SAME") for _ in range(races.PARALLEL)])
    assert codes(answers) == {(200, None): 1, (409, "repayment_already_recorded"): races.PARALLEL - 1}, codes(answers)
    state = await clawback(world, voucher)
    assert (state["repaid"], state["owed"]) == (10_000, 290_000)
    assert (await world.reconciliation())["is_clean"]


async def test_repayments_write_offs_and_refunds_of_one_enterprise_race_cleanly(world: World, server) -> None:
    """Two revoked vouchers of one enterprise share its receivable: repayments and write-offs on
    one, refunds of the other's order and of its own, all at once. Every answer is a success or
    a refusal (never a 500 or a deadlock), and the receivable is what the rule says."""
    a, on_a = await revoked_with_clawback(world, "PO-ra")
    b, on_b = await revoked_with_clawback(world, "PO-rb")
    refund_headers = auth(world.provider_key, **{"Idempotency-Key": str(uuid.uuid4())})
    requests = [repayment(world, a, 50_000, f"B-{i}") for i in range(3)]
    requests += [(f"/v1/vouchers/{a['id']}/clawback/write-offs", {"amount": 40_000, "reason": f"w{i}"},
                  auth(world.operator, **{"Idempotency-Key": str(uuid.uuid4())})) for i in range(2)]
    requests += [(f"/v1/redemptions/{on_b['id']}/refunds", {"amount": 50_000, "reason": f"r{i}"},
                  {**refund_headers, "Idempotency-Key": str(uuid.uuid4())}) for i in range(3)]
    requests += [(f"/v1/redemptions/{on_a['id']}/refunds", {"amount": 20_000, "reason": f"s{i}"},
                  {**refund_headers, "Idempotency-Key": str(uuid.uuid4())}) for i in range(2)]
    answers = await storm(server, requests)
    # Everything fits, in whatever order it lands: 150,000 repaid and 80,000 written off of a's
    # 300,000, whose own refunds of 40,000 leave 260,000 used (30,000 still owed); b's refunds of
    # 150,000 take its used value, and its clawback, to 150,000.
    assert codes(answers) == {(200, None): 5, (201, None): 5}, codes(answers)
    state_a, state_b = await clawback(world, a), await clawback(world, b)
    assert (state_a["used"], state_a["repaid"], state_a["written_off"], state_a["owed"]) == (260_000, 150_000,
                                                                                            80_000, 30_000)
    assert (state_b["used"], state_b["recovered_by_refunds"], state_b["owed"]) == (150_000, 150_000, 150_000)
    assert (await world.reconciliation())["is_clean"]


async def test_one_repayment_reversed_at_once_is_undone_once(world: World, server) -> None:
    """Ten clerks reverse the same bounced repayment at once, each under its own Idempotency-Key,
    while refunds of the order land: the repayment is undone once (nine 409), never twice, and
    what is owed is what the rule says for whatever order they landed in."""
    voucher, redeemed = await revoked_with_clawback(world, "PO-rv")
    path, body, headers = repayment(world, voucher, 300_000, "ICBC-BOUNCED")
    answer = await world.client.post(path, json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    entries = await world.client.get(f"/v1/vouchers/{voucher['id']}/clawback/entries", headers=auth(world.operator))
    repaid = entries.json()["items"][-1]
    requests = [(f"/v1/vouchers/{voucher['id']}/clawback/reversals", {"entry_id": repaid["id"], "reason": f"c{i}"},
                 auth(world.operator, **{"Idempotency-Key": str(uuid.uuid4())})) for i in range(races.PARALLEL)]
    requests += [(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 50_000, "reason": f"r{i}"},
                  auth(world.provider_key, **{"Idempotency-Key": str(uuid.uuid4())})) for i in range(2)]
    answers = await storm(server, requests)
    assert codes(answers) == {(200, None): 1, (409, "already_reversed"): races.PARALLEL - 1, (201, None): 2}, codes(
        answers)
    state = await clawback(world, voucher)  # 200,000 still used, all of it clawed back and owed again
    assert (state["used"], state["repaid"], state["owed"], state["overpaid"]) == (200_000, 0, 200_000, 0)
    assert (await world.reconciliation())["is_clean"]


async def test_parallel_returns_of_an_overpayment_never_return_more_than_was_overpaid(world: World, server) -> None:
    """Repaid in full, then 200,000 of the order refunded: ten returns of 50,000 at once, under
    different bank references, return four (200,000) and refuse the rest; nothing is owed and
    the receivable reconciles."""
    voucher, redeemed = await revoked_with_clawback(world, "PO-o1")
    repaid = await world.post(*repayment(world, voucher, 300_000, "ICBC-O1")[:2], key=world.operator)
    assert repaid.status_code == 200, repaid.text
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 200_000, "reason": "x"})
    assert refund.status_code == 201, refund.text
    answers = await storm(server, [
        (f"/v1/vouchers/{voucher['id']}/clawback/overpayment-returns",
         {"amount": 50_000, "reference": f"BOC-{i}", "paid_on": today()},
         auth(world.operator, **{"Idempotency-Key": str(uuid.uuid4())})) for i in range(races.PARALLEL)])
    assert codes(answers) == {(200, None): 4, (422, "validation_failed"): races.PARALLEL - 4}, codes(answers)
    state = await clawback(world, voucher)
    assert (state["overpaid"], state["overpayment_returned"], state["owed"]) == (0, 200_000, 0)
    assert (await world.reconciliation())["is_clean"]
