"""Enterprise claims (`enterprise_claim` programmes) over HTTP: the whole lifecycle, the
one-claim-per-invoice/document/contract rules, rejection releasing exactly the hold, and the
claim's value kept apart from provider settlement."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest

from services.voucher.events import service as events
from tests.support import (
    assert_problem,
    auth,
    create,
    enterprise_payload,
    fresh_key,
    make_key,
    provider_payload,
)
from tests.world import World, build_world


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000},
                             tiers=[])


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def claim_body(world: World, voucher: dict[str, Any], *, invoice: str = "44031234", code: str | None = "3300231130",
               contract: str = "SZ-2026-118", amount: int = 2_000_000, document: str = "invoice-1") -> dict[str, Any]:
    """An older VAT invoice (code + 8-digit number) unless `code` is None (a fully digital one)."""
    return {
        "voucher_id": voucher["id"], "provider_id": world.provider["id"], "contract_number": contract,
        "invoice_number": invoice, **({"invoice_code": code} if code is not None else {}),
        "invoice_date": "2026-03-01", "amount_paid": amount,
        "line_items": [{"category": "accelerator:domestic", "amount": amount, "accelerator": "Ascend 910B",
                        "hours_milli": 150_000}],
        "documents": [{"file_name": f"{document}.pdf", "media_type": "application/pdf", "size": 1024,
                       "sha256": _digest(document)}],
    }


async def _file(world: World, body: dict[str, Any]) -> httpx.Response:
    return await world.client.post("/v1/claims", json=body, headers=auth(world.enterprise_key, **fresh_key()))


async def _step(world: World, claim: dict[str, Any], action: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return await world.client.post(f"/v1/claims/{claim['id']}/{action}", json=body,
                                   headers=auth(world.operator, **fresh_key()))


async def test_full_lifecycle_pays_the_enterprise(world: World) -> None:
    voucher = await world.issue(10_000_000)
    filed = await _file(world, claim_body(world, voucher))
    assert filed.status_code == 201, filed.text
    claim = filed.json()
    assert (claim["status"], claim["subsidy"]) == ("submitted", 600_000)
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 9_400_000, "held": 600_000, "used": 0}
    assert (await _step(world, claim, "review")).json()["status"] == "under_review"
    approved = await _step(world, claim, "approve", {"amount": 500_000, "note": "one line not eligible"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["approved_amount"]) == ("approved", 500_000)
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 9_500_000, "held": 0, "used": 500_000}
    paid = await _step(world, claim, "pay", {"reference": "ICBC-1", "paid_on": "2026-03-02"})
    assert paid.status_code == 200, paid.text
    assert (paid.json()["status"], paid.json()["payment_reference"]) == ("paid", "ICBC-1")
    for action, body in (("approve", None), ("reject", {"reason": "x"}), ("review", None),
                         ("pay", {"reference": "again", "paid_on": "2026-03-02"})):
        problem = assert_problem(await _step(world, claim, action, body), 409, "invalid_transition")
        assert problem["current_status"] == "paid"
    assert (await world.reconciliation())["is_clean"]


async def test_rejection_releases_exactly_the_hold_and_frees_the_invoice(world: World) -> None:
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    assert_problem(await _step(world, claim, "approve"), 409, "invalid_transition")  # review first
    await _step(world, claim, "review")
    rejected = await _step(world, claim, "reject", {"reason": "invoice does not match the contract"})
    assert rejected.json()["status"] == "rejected"
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 10_000_000, "held": 0, "used": 0}
    again = await _file(world, claim_body(world, voucher))
    assert again.status_code == 201, again.text
    assert (await world.reconciliation())["is_clean"]


async def test_an_invoice_a_document_or_a_contract_is_claimed_once(app, world: World) -> None:
    voucher = await world.issue(10_000_000)
    assert (await _file(world, claim_body(world, voucher))).status_code == 201
    before = await world.voucher(voucher["id"])
    # The same invoice (typed differently), from another enterprise of the programme too.
    assert_problem(await _file(world, claim_body(world, voucher, invoice=" 4403 1234", contract="C-2",
                                                 document="d-2")), 409, "invoice_already_claimed")
    assert_problem(await _file(world, claim_body(world, voucher, invoice="44030002", contract="C-3",
                                                 document="invoice-1")), 409, "document_already_claimed")
    assert_problem(await _file(world, claim_body(world, voucher, invoice="44030003", contract="sz-2026-118",
                                                 document="d-3")), 409, "contract_already_used")
    assert await world.voucher(voucher["id"]) == before  # refusals hold nothing


async def test_a_look_alike_invoice_is_the_same_invoice_or_refused(world: World) -> None:
    """Issue 19, finding 5: 44031210 claimed; 4403121O (letter O) is the same invoice, 440312І0
    (Cyrillic І) is refused, and the claim keeps the number as typed."""
    voucher = await world.issue(10_000_000)
    first = await _file(world, claim_body(world, voucher, invoice="44031210"))
    assert first.status_code == 201, first.text
    assert (first.json()["invoice_number"], first.json()["invoice_code"]) == ("44031210", "3300231130")
    assert_problem(await _file(world, claim_body(world, voucher, invoice="4403121o", contract="C-2", document="d-2")),
                   409, "invoice_already_claimed")
    refused = await _file(world, claim_body(world, voucher, invoice="440312\u04060", contract="C-3", document="d-3"))
    problem = assert_problem(refused, 422, "validation_failed")
    assert problem["errors"][0]["pointer"] == "/invoice_number"
    assert_problem(await _file(world, claim_body(world, voucher, invoice="44031211", contract="SZ-2O26-118",
                                                 document="d-4")), 409, "contract_already_used")


async def test_an_invoice_is_known_as_the_tax_system_knows_it(app, world: World, client: httpx.AsyncClient) -> None:
    """A fully digital invoice is its 20-digit number; an older VAT invoice its code and number.
    One invoice is claimed once whoever files it: through another provider too."""
    voucher = await world.issue(10_000_000)
    digital = "26332000000012345678"
    assert (await _file(world, claim_body(world, voucher, invoice=digital, code=None))).status_code == 201
    # The same number of an older invoice with another code is another invoice.
    assert (await _file(world, claim_body(world, voucher, invoice="44031234", code="3300231130", contract="C-2",
                                          document="d-2"))).status_code == 201
    assert (await _file(world, claim_body(world, voucher, invoice="44031234", code="330023113011", contract="C-3",
                                          document="d-3"))).status_code == 201
    # Another provider of the programme files the digital invoice: still the same invoice.
    other = await create(client, world.operator, "/v1/providers", provider_payload())
    assert (await client.post(f"/v1/providers/{other['id']}/approve", json={"reason": "ok"},
                              headers=auth(world.operator))).status_code == 200
    assert (await client.put(f"/v1/programmes/{world.programme['id']}/enrolments/{other['id']}",
                             headers=auth(world.operator))).status_code == 201
    body = {**claim_body(world, voucher, invoice=digital, code=None, contract="C-4", document="d-4"),
            "provider_id": other["id"]}
    assert_problem(await _file(world, body), 409, "invoice_already_claimed")
    for invoice, code, pointers in (("44031234", None, ["/invoice_number"]),
                                    ("2633200000001234567", None, ["/invoice_number"]),
                                    ("26332000000012345678", "3300231130", ["/invoice_number"]),
                                    ("44031235", "33002311", ["/invoice_code"]),
                                    ("4403123", "3300231130", ["/invoice_number"])):
        refused = await _file(world, claim_body(world, voucher, invoice=invoice, code=code, contract="C-5",
                                                document="d-5"))
        problem = assert_problem(refused, 422, "validation_failed")
        assert [e["pointer"] for e in problem["errors"]] == pointers, (invoice, code, problem)


async def test_refusals(world: World, app, client: httpx.AsyncClient) -> None:
    voucher = await world.issue(10_000_000)
    body = claim_body(world, voucher)
    body["amount_paid"] = 1
    assert_problem(await _file(world, body), 422, "validation_failed")
    response = await client.post("/v1/claims", json=claim_body(world, voucher), headers=auth(world.operator,
                                                                                               **fresh_key()))
    assert_problem(response, 403, "insufficient_scope")
    provider_mode = await build_world(app, client)
    other = await provider_mode.issue(1_000_000)
    refused = await client.post("/v1/claims", json=claim_body(provider_mode, other),
                                headers=auth(provider_mode.enterprise_key, **fresh_key()))
    assert_problem(refused, 409, "wrong_payout_mode")


async def test_a_claim_is_not_the_providers_to_see_move_or_settle(app, world: World, clock) -> None:
    hook = await world.client.post("/v1/webhook-endpoints", headers=auth(world.provider_key, **fresh_key()),
                                   json={"url": "http://127.0.0.1:9/hook",
                                         "event_types": ["redemption.captured", "claim.approved", "hold.expired"]})
    assert hook.status_code == 201, hook.text
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    await _step(world, claim, "review")
    await _step(world, claim, "approve")
    provider = auth(world.provider_key)
    # Nor is it announced to the provider: not its approval, not the capture it makes (DESIGN:
    # the claim's redemption is the enterprise's); the enterprise is told of both.
    await events.publish_pending(app.state.database, clock())
    told = (await world.client.get("/v1/events", headers=provider)).json()["items"]
    assert [e["type"] for e in told] == []
    deliveries = await world.client.get(f"/v1/webhook-endpoints/{hook.json()['id']}/deliveries", headers=provider)
    assert deliveries.json()["items"] == []
    theirs = (await world.client.get("/v1/events", headers=auth(world.enterprise_key))).json()["items"]
    assert {e["type"] for e in theirs} >= {"claim.approved", "redemption.captured"}
    assert_problem(await world.client.get(f"/v1/redemptions/{claim['redemption_id']}", headers=provider),
                   404, "not_found")
    refund = await world.client.post(f"/v1/redemptions/{claim['redemption_id']}/refunds",
                                     json={"amount": 1, "reason": "x"}, headers=auth(world.provider_key, **fresh_key()))
    assert_problem(refund, 404, "not_found")
    assert (await world.client.get("/v1/claims", headers=provider)).status_code == 403
    clock.advance(days=1)
    settle = await world.client.post("/v1/settlements", json={
        "provider_id": world.provider["id"], "programme_id": world.programme["id"],
        "period_start": "2026-03-02", "period_end": "2026-03-02"}, headers=auth(world.operator, **fresh_key()))
    assert_problem(settle, 409, "nothing_to_settle")
    mine = (await world.client.get("/v1/claims", headers=auth(world.enterprise_key))).json()["items"]
    assert [c["id"] for c in mine] == [claim["id"]]


async def test_another_enterprise_cannot_claim_the_same_invoice_or_document(
    app, world: World, client: httpx.AsyncClient
) -> None:
    voucher = await world.issue(10_000_000)
    assert (await _file(world, claim_body(world, voucher))).status_code == 201
    other = await create(client, world.operator, "/v1/enterprises", enterprise_payload())
    other_voucher = await create(client, world.operator, "/v1/vouchers", {
        "programme_id": world.programme["id"], "enterprise_id": other["id"], "face_value": 5_000_000})
    other_key = await make_key(app, "enterprise", enterprise_id=uuid.UUID(other["id"]))
    for body in (claim_body(world, other_voucher, contract="C-9", document="d-9"),
                 claim_body(world, other_voucher, invoice="44030009", contract="C-9")):
        refused = await client.post("/v1/claims", json=body, headers=auth(other_key, **fresh_key()))
        assert_problem(refused, 409, "already_filed_elsewhere")  # another's: not saying which
    # Nor can it file against a voucher that is not its own.
    theirs = await client.post("/v1/claims", json=claim_body(world, voucher, invoice="44030010", contract="C-10",
                                                             document="d-10"), headers=auth(other_key, **fresh_key()))
    assert_problem(theirs, 404, "not_found")
    # Nor read or list the first enterprise's claim: as if it did not exist.
    claim = (await client.get("/v1/claims", headers=auth(world.enterprise_key))).json()["items"][0]
    assert_problem(await client.get(f"/v1/claims/{claim['id']}", headers=auth(other_key)), 404, "not_found")
    assert (await client.get("/v1/claims", headers=auth(other_key))).json()["items"] == []


async def test_a_provider_cannot_redeem_in_a_claim_programme(app, world: World) -> None:
    """Never both a provider's redemption and the SME's claim on one purchase."""
    voucher = await world.issue(10_000_000)
    refused = await world.post("/v1/redemptions", {
        "voucher_code": voucher["code"], "enterprise_uscc": world.enterprise["uscc"], "order_reference": "PO-1",
        "line_items": [{"category": "accelerator:domestic", "amount": 1_000_000, "accelerator": "Ascend 910B",
                        "hours_milli": 1000}]})
    assert assert_problem(refused, 409, "wrong_payout_mode")["mode"] == "enterprise_claim"
    assert (await world.voucher(voucher["id"]))["balances"]["available"] == 10_000_000
    # A provider outside the programme is told that first, not the programme's payout mode.
    other = await create(world.client, world.operator, "/v1/providers", provider_payload())
    await world.client.post(f"/v1/providers/{other['id']}/approve", json={"reason": "ok"}, headers=auth(world.operator))
    outsider = await make_key(app, "provider", provider_id=uuid.UUID(other["id"]))
    refused = await world.post("/v1/redemptions", {
        "voucher_code": voucher["code"], "enterprise_uscc": world.enterprise["uscc"], "order_reference": "PO-2",
        "line_items": [{"category": "accelerator:domestic", "amount": 1_000_000, "accelerator": "Ascend 910B",
                        "hours_milli": 1000}]}, key=outsider)
    assert "mode" not in assert_problem(refused, 403, "provider_not_enrolled")


async def test_an_enterprise_learns_a_provider_s_status_only_if_the_programme_enrolled_it(app, world: World) -> None:
    """The enrolments are public; a provider's status elsewhere is not. A claim naming a suspended
    provider outside the programme is refused as not enrolled, as an approved one outside it is
    (it had said `provider_not_approved`, "provider is suspended": an independent review,
    December 2026); an enrolled provider's suspension is the enterprise's to know."""
    voucher = await world.issue(10_000_000)
    other = await create(world.client, world.operator, "/v1/providers", provider_payload())
    for action in ("approve", "suspend"):
        done = await world.client.post(f"/v1/providers/{other['id']}/{action}", json={"reason": "audit"},
                                       headers=auth(world.operator))
        assert done.status_code == 200, done.text
    refused = assert_problem(await _file(world, {**claim_body(world, voucher), "provider_id": other["id"]}), 403,
                             "provider_not_enrolled")
    assert "current_status" not in refused and "suspended" not in refused["detail"]
    # nor whether a provider no longer in the programme has a contract in use: the enrolment is
    # checked before the contract (`contract_already_used` had told it)
    filed = await _file(world, claim_body(world, voucher, contract="SZ-USED-1"))
    assert filed.status_code == 201, filed.text
    withdrawn = await world.client.delete(
        f"/v1/programmes/{world.programme['id']}/enrolments/{world.provider['id']}", headers=auth(world.operator))
    assert withdrawn.status_code in (200, 204), withdrawn.text
    assert_problem(await _file(world, claim_body(world, voucher, contract="SZ-USED-1", invoice="44037777",
                                                 document="d-z")), 403, "provider_not_enrolled")
    again = await world.client.put(f"/v1/programmes/{world.programme['id']}/enrolments/{world.provider['id']}",
                                   headers=auth(world.operator))
    assert again.status_code in (200, 201), again.text
    await world.client.post(f"/v1/providers/{world.provider['id']}/suspend", json={"reason": "audit"},
                            headers=auth(world.operator))
    assert assert_problem(await _file(world, claim_body(world, voucher, invoice="44035555", document="d-y",
                                                       contract="SZ-OTHER-2")), 403,
                          "provider_not_approved")["current_status"] == "suspended"


async def test_a_claim_on_an_expired_voucher_cannot_be_approved(world: World, clock) -> None:
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    await _step(world, claim, "review")
    clock.advance(days=366)
    assert_problem(await _step(world, claim, "approve"), 409, "voucher_expired")
    rejected = await _step(world, claim, "reject", {"reason": "the voucher expired during review"})
    assert rejected.json()["status"] == "rejected"
    # Its hold lapsed with the voucher (long before the claim hold's own TTL): the release says so.
    hold = (await world.client.get(f"/v1/redemptions/{claim['redemption_id']}",
                                   headers=auth(world.enterprise_key))).json()
    assert (hold["status"], hold["void_reason"], hold["voided_at"]) == ("voided", "voucher_expired",
                                                                        voucher["expires_at"])


async def test_a_claim_on_a_revoked_voucher_is_refused_as_revoked_and_can_then_be_rejected(world: World) -> None:
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    await _step(world, claim, "review")
    revoked = await world.client.post(f"/v1/vouchers/{voucher['id']}/revoke", json={"reason": "fraud"},
                                      headers=auth(world.operator, **fresh_key()))
    assert revoked.status_code == 200, revoked.text
    problem = assert_problem(await _step(world, claim, "approve"), 409, "voucher_revoked")
    assert "revoked" in problem["detail"]
    rejected = await _step(world, claim, "reject", {"reason": "voucher revoked"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected", rejected.text
    assert (await world.reconciliation())["is_clean"]


async def test_a_claim_rejected_for_a_wrong_amount_can_be_filed_again_corrected(world: World) -> None:
    voucher = await world.issue(10_000_000)
    wrong = (await _file(world, claim_body(world, voucher, amount=2_000_000))).json()
    await _step(world, wrong, "review")
    await _step(world, wrong, "reject", {"reason": "the invoice says 1,500,000.00"})
    corrected = await _file(world, claim_body(world, voucher, amount=1_500_000))
    assert corrected.status_code == 201, corrected.text
    assert corrected.json()["subsidy"] == 450_000
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 9_550_000, "held": 450_000, "used": 0}


@pytest.mark.parametrize("paid_on", ["0001-01-01", "1999-01-01", "2026-03-01", "2026-03-03", "9999-12-31"])
async def test_a_claims_payment_is_recorded_on_a_day_from_its_approval_to_today(
        world: World, clock, paid_on: str) -> None:
    """Approved on 2026-03-02 in Beijing, today: a payment before it, or not made yet, is
    refused as a settlement's is (independent reviews recorded claims paid on 1999-01-01 and
    9999-12-31), and the claim stays approved."""
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    for action in ("review", "approve"):
        assert (await _step(world, claim, action)).status_code == 200
    problem = assert_problem(await _step(world, claim, "pay", {"reference": "ICBC-1", "paid_on": paid_on}),
                             422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/paid_on"]
    assert (await world.client.get(f"/v1/claims/{claim['id']}", headers=auth(world.operator))).json()["status"] == (
        "approved")
    clock.advance(days=1)  # the day after the approval is a day it may have been paid on, once it has come
    assert (await _step(world, claim, "pay", {"reference": "ICBC-1", "paid_on": "2026-03-03"})).status_code == 200


@pytest.mark.parametrize("invoice_date", ["0001-01-01", "1999-12-31", "2026-03-03", "2099-01-01"])
async def test_an_invoice_dated_ahead_of_today_or_before_2000_is_refused(world: World, invoice_date: str) -> None:
    """Today is 2026-03-02 in Beijing: an invoice dated later has not been issued (a review
    filed one dated 2099-01-01, and its subsidy was held). Nothing is held."""
    voucher = await world.issue(10_000_000)
    problem = assert_problem(await _file(world, {**claim_body(world, voucher), "invoice_date": invoice_date}),
                             422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/invoice_date"]
    assert (await world.voucher(voucher["id"]))["balances"]["held"] == 0
    today = await _file(world, {**claim_body(world, voucher), "invoice_date": "2026-03-02"})
    assert today.status_code == 201, today.text


async def test_a_document_listed_twice_in_one_claim_is_a_field_error(world: World) -> None:
    """It was answered 409 `invoice_already_claimed` ("just claimed by another claim") by the
    claim's own second document row, and that answer was kept under the Idempotency-Key."""
    voucher = await world.issue(10_000_000)
    body = claim_body(world, voucher)
    body["documents"] = body["documents"] * 2
    problem = assert_problem(await _file(world, body), 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/documents"]
    assert (await world.voucher(voucher["id"]))["balances"]["held"] == 0


async def _payable(world: World) -> int:
    trial = (await world.client.get(f"/v1/programmes/{world.programme['id']}/trial-balance",
                                    headers=auth(world.auditor))).json()
    return sum(a["balance"] for a in trial["accounts"]
               if a["kind"] == "enterprise_payable" and a["enterprise_id"] == world.enterprise["id"])


async def test_an_approved_claim_not_yet_paid_can_still_be_rejected(world: World) -> None:
    """A forged invoice found after approval: the office could only pay the claim (there was no
    way from `approved` but to `paid`). Rejected now, the approved amount is refunded out of the
    enterprise's payable back to the voucher, and the invoice may be claimed again."""
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    await _step(world, claim, "review")
    approved = await _step(world, claim, "approve", {"amount": 500_000})
    assert approved.status_code == 200, approved.text
    assert await _payable(world) == 500_000
    rejected = await _step(world, claim, "reject", {"reason": "the invoice was forged"})
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["status_reason"]) == ("rejected", "the invoice was forged")
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 10_000_000, "held": 0, "used": 0}
    assert await _payable(world) == 0
    redemption = (await world.client.get(f"/v1/redemptions/{claim['redemption_id']}",
                                         headers=auth(world.operator))).json()
    assert (redemption["status"], redemption["refunded_amount"]) == ("refunded", 500_000)
    for action, body in (("pay", {"reference": "ICBC-1", "paid_on": "2026-03-02"}), ("reject", {"reason": "x"}),
                         ("approve", None)):
        problem = assert_problem(await _step(world, claim, action, body), 409, "invalid_transition")
        assert problem["current_status"] == "rejected"
    events = (await world.client.get("/v1/audit/events", params={"resource_id": claim["id"]},
                                     headers=auth(world.auditor))).json()["items"]
    last = [e for e in events if e["action"] == "claim.rejected"][0]
    assert last["before"] == {"status": "approved"} and last["after"]["withdrawn_amount"] == 500_000
    # The invoice, documents and contract are free again; this voucher's subsidy of that very
    # order (invoice and amount) stands refunded, so the same claim on it is the same order again.
    same = await _file(world, claim_body(world, voucher))
    assert_problem(same, 409, "order_already_subsidised")
    corrected = await _file(world, claim_body(world, voucher, amount=1_900_000))
    assert corrected.status_code == 201, corrected.text
    other = await world.issue(1_000_000)
    assert (await _file(world, claim_body(world, other))).status_code == 409  # the invoice is claimed again, above
    assert (await world.reconciliation())["is_clean"]


async def test_an_approved_claim_rejected_after_its_voucher_expired_returns_to_the_pool(
        world: World, clock) -> None:
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    await _step(world, claim, "review")
    assert (await _step(world, claim, "approve")).status_code == 200
    clock.advance(days=366)
    rejected = await _step(world, claim, "reject", {"reason": "the invoice was forged"})
    assert rejected.status_code == 200, rejected.text
    assert await _payable(world) == 0
    refunds = (await world.client.get(f"/v1/redemptions/{claim['redemption_id']}/refunds",
                                      headers=auth(world.operator))).json()
    assert [r["destination"] for r in refunds] == ["pool"]
    assert (await world.reconciliation())["is_clean"]


async def test_a_paid_claim_cannot_be_rejected(world: World) -> None:
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    await _step(world, claim, "review")
    await _step(world, claim, "approve")
    assert (await _step(world, claim, "pay", {"reference": "ICBC-1", "paid_on": "2026-03-02"})).status_code == 200
    assert_problem(await _step(world, claim, "reject", {"reason": "x"}), 409, "invalid_transition")
    assert await _payable(world) == 0


@pytest.fixture
async def tiered(app, client: httpx.AsyncClient) -> World:
    # 50 % on the enterprise's first 2,000,000 of subsidised spend in the period, 30 % beyond.
    return await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000},
                             tiers=[{"spend_up_to": 2_000_000, "rate_bps": 5000, "categories": None}])


@pytest.mark.parametrize("approve_first", [False, True], ids=["rejected_in_review", "rejected_after_approval"])
async def test_a_rejected_claims_spend_leaves_the_tier_band(tiered: World, approve_first: bool) -> None:
    """Rejected after approval, a forged invoice's spend had stayed in the enterprise's period,
    so the next claim was priced as if the purchase had happened: 450,000 instead of 750,000
    here (an independent review). Withdrawn, it leaves the band, as a rejection in review does."""
    world = tiered
    voucher = await world.issue(10_000_000)
    forged = (await _file(world, claim_body(world, voucher, amount=2_000_000))).json()
    assert forged["subsidy"] == 1_000_000  # all of it in the 50 % band
    await _step(world, forged, "review")
    if approve_first:
        assert (await _step(world, forged, "approve")).status_code == 200
    assert (await _step(world, forged, "reject", {"reason": "the invoice was forged"})).status_code == 200
    corrected = await _file(world, claim_body(world, voucher, amount=1_500_000))
    assert corrected.status_code == 201, corrected.text
    assert corrected.json()["subsidy"] == 750_000  # 50 % of 1,500,000
    assert (await world.reconciliation())["is_clean"]


async def test_rejecting_a_claim_requires_an_idempotency_key(world: World) -> None:
    """It moves value (a release, or a refund out of the enterprise's payable): like approving
    and paying, it is answered once, and a retry gets the first answer."""
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    await _step(world, claim, "review")
    assert (await _step(world, claim, "approve")).status_code == 200
    response = await world.client.post(f"/v1/claims/{claim['id']}/reject", json={"reason": "forged"},
                                       headers=auth(world.operator))
    assert_problem(response, 428, "idempotency_key_required")


@pytest.mark.parametrize("approve_first", [False, True], ids=["rejected_in_review", "rejected_after_approval"])
async def test_an_invoice_freed_by_a_rejection_can_be_claimed_by_its_real_owner(
        app, world: World, approve_first: bool) -> None:
    """The order (the provider's invoice and its amount) had stayed the first enterprise's, so
    the enterprise the invoice really belongs to was refused `invoice_already_claimed` for good,
    though the rejection had freed the invoice (an independent review)."""
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    await _step(world, claim, "review")
    if approve_first:
        assert (await _step(world, claim, "approve")).status_code == 200
    assert (await _step(world, claim, "reject", {"reason": "not this enterprise's invoice"})).status_code == 200
    owner = await create(world.client, world.operator, "/v1/enterprises", enterprise_payload())
    owner_voucher = await create(world.client, world.operator, "/v1/vouchers", {
        "programme_id": world.programme["id"], "enterprise_id": owner["id"], "face_value": 5_000_000})
    owner_key = await make_key(app, "enterprise", enterprise_id=uuid.UUID(owner["id"]))
    filed = await world.client.post("/v1/claims", headers=auth(owner_key, **fresh_key()),
                                    json=claim_body(world, owner_voucher, contract="C-own", document="own"))
    assert filed.status_code == 201, filed.text
    again = await world.client.post("/v1/claims", headers=auth(world.enterprise_key, **fresh_key()),
                                    json=claim_body(world, voucher, contract="C-2", document="second"))
    # One standing claim per invoice, whoever files it. Whether another enterprise filed it is
    # asked only once the rest of the claim holds (the claim-probe review): after an approval
    # was rejected, the voucher's own rule on the order (its captured redemption, withdrawn)
    # answers first, and that is the enterprise's own to know.
    assert_problem(again, 409, "order_already_subsidised" if approve_first else "already_filed_elsewhere")


async def test_a_claim_changed_behind_the_service_is_not_paid(app, world: World) -> None:
    """An approved claim's amount raised with an UPDATE (as a review did to a settlement) had
    been paid as it stood: the payment now checks it against what its redemption captured."""
    import uuid

    from sqlalchemy import update

    from services.voucher.db import table_of
    from services.voucher.tables import Claim

    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    await _step(world, claim, "review")
    assert (await _step(world, claim, "approve", {"amount": 500_000})).status_code == 200
    table = table_of(Claim)
    async with app.state.database.unit_of_work() as session:
        await session.execute(update(table).where(table.c.id == uuid.UUID(claim["id"])).values(approved_amount=5_000_000))
    [found] = (await world.reconciliation())["record_differences"]
    assert (found["what"], found["approved_amount"], found["captured_amount"]) == (
        "claim differs from its redemption or payment", 5_000_000, 500_000)
    problem = assert_problem(await _step(world, claim, "pay", {"reference": "ICBC-1", "paid_on": "2026-03-02"}),
                             409, "records_differ")
    assert (problem["captured_amount"], problem["ledger_captured"]) == (500_000, 500_000)
    assert await _payable(world) == 500_000  # nothing moved
    # the redemption raised with it (its guard out of the way, as a review did): the journals say 500,000
    from services.voucher.tables import Redemption
    from tests.settlement.test_reconciliation import _change

    await _change(app, Redemption, claim["redemption_id"], captured_amount=5_000_000, held_amount=5_000_000)
    problem = assert_problem(await _step(world, claim, "pay", {"reference": "ICBC-1", "paid_on": "2026-03-02"}),
                             409, "records_differ")
    assert (problem["captured_amount"], problem["ledger_captured"]) == (5_000_000, 500_000)
    await _change(app, Redemption, claim["redemption_id"], captured_amount=500_000, held_amount=claim["subsidy"])
    async with app.state.database.unit_of_work() as session:  # put back, as the office would
        await session.execute(update(table).where(table.c.id == uuid.UUID(claim["id"])).values(approved_amount=500_000))
    assert (await _step(world, claim, "pay", {"reference": "ICBC-1", "paid_on": "2026-03-02"})).status_code == 200
    assert (await world.reconciliation())["is_clean"]


async def test_an_older_invoice_typed_as_its_code_and_number_run_together_is_the_same_invoice(world: World) -> None:
    """An older electronic VAT invoice: a 12-digit code and an 8-digit number, 20 digits in all,
    the shape of a fully digital invoice's number. Typed together without a code, the same
    invoice had passed for a fully digital one and was subsidised a second time (an
    independent review, December 2026). A fully digital number starts with its year (21 on)."""
    voucher = await world.issue(10_000_000)
    first = await _file(world, claim_body(world, voucher, invoice="12345678", code="033002100611",
                                          contract="HT-1", document="scan-1"))
    assert first.status_code == 201, first.text
    before = await world.voucher(voucher["id"])
    again = await _file(world, claim_body(world, voucher, invoice="03300210061112345678", code=None,
                                          contract="HT-1-A", document="scan-2"))
    assert_problem(again, 409, "invoice_already_claimed")
    assert await world.voucher(voucher["id"]) == before
    digital = await _file(world, claim_body(world, voucher, invoice="26332000000012345678", code=None,
                                            contract="HT-2", document="scan-3"))
    assert digital.status_code == 201, digital.text


@pytest.mark.parametrize("digital_first", [True, False])
async def test_twenty_digits_split_as_a_code_and_a_number_are_the_same_invoice(world: World, digital_first: bool) -> None:
    """The same twenty digits typed as one number starting with 2 (a fully digital invoice) and
    as a 12-digit code starting with 2 and an 8-digit number had been two invoices, and were
    subsidised twice (an independent review, December 2026): they are one, whichever is filed
    first."""
    voucher = await world.issue(10_000_000)
    whole = {"invoice": "26332000000012345678", "code": None}
    split = {"invoice": "12345678", "code": "263320000000"}
    first_kind, second_kind = (whole, split) if digital_first else (split, whole)
    first = await _file(world, claim_body(world, voucher, **first_kind, contract="HT-1", document="scan-1"))
    assert first.status_code == 201, first.text
    before = await world.voucher(voucher["id"])
    again = await _file(world, claim_body(world, voucher, **second_kind, contract="HT-1-A", document="scan-2"))
    assert_problem(again, 409, "invoice_already_claimed")
    assert await world.voucher(voucher["id"]) == before
    ten = await _file(world, claim_body(world, voucher, invoice="12345678", code="2633200000", contract="HT-2",
                                        document="scan-3"))
    assert ten.status_code == 201, ten.text  # a 10-digit code is its own kind of invoice


async def test_the_contract_an_enterprise_applied_with_is_claimed_against_its_voucher(
        app, client: httpx.AsyncClient) -> None:
    """A claim programme that asks for the contract at application: the voucher is granted for
    that contract, and the claim under it had been refused `contract_already_used` by the
    enterprise's own application (an independent review, December 2026). The claim takes the
    application's reference over; a rejection gives it back to the application (the voucher
    stays granted for it), and a second claim under it, or another voucher's, is refused."""
    world = await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000},
                              tiers=[], application_requires_contract=True, publicity_days=0)
    contract = {"number": "HZC-2026-0001", "provider_id": world.provider["id"], "amount": 2_000_000,
                "signed_on": "2026-02-20", "starts_on": "2026-03-01", "ends_on": "2026-12-31"}
    applied = await client.post("/v1/applications", json={
        "programme_id": world.programme["id"], "requested_amount": 1_000_000, "purpose": "fine-tuning",
        "contracts": [contract]}, headers=auth(world.enterprise_key, **fresh_key()))
    assert applied.status_code == 201, applied.text
    approved = await client.post(f"/v1/applications/{applied.json()['id']}/approve", json={"amount": 1_000_000},
                                 headers=auth(world.operator, **fresh_key()))
    assert approved.status_code == 200, approved.text
    [voucher] = (await client.get("/v1/vouchers", headers=auth(world.enterprise_key))).json()["items"]
    filed = await _file(world, claim_body(world, voucher, contract="HZC-2026-0001", document="scan-1"))
    assert filed.status_code == 201, filed.text
    second = await _file(world, claim_body(world, voucher, invoice="44031235", contract="hzc-2026-0001",
                                           document="scan-2"))
    assert_problem(second, 409, "contract_already_used")
    other = await world.issue(1_000_000)  # a voucher issued directly: not granted for the contract
    elsewhere = await _file(world, claim_body(world, other, invoice="44031236", contract="HZC-2026-0001",
                                              document="scan-3"))
    assert_problem(elsewhere, 409, "contract_already_used")
    review = await client.post(f"/v1/claims/{filed.json()['id']}/review", headers=auth(world.operator, **fresh_key()))
    assert review.status_code == 200, review.text
    rejected = await client.post(f"/v1/claims/{filed.json()['id']}/reject", json={"reason": "wrong invoice"},
                                 headers=auth(world.operator, **fresh_key()))
    assert rejected.status_code == 200, rejected.text
    assert_problem(await _file(world, claim_body(world, other, invoice="44031237", contract="HZC-2026-0001",
                                                 document="scan-4")), 409, "contract_already_used")
    again = await _file(world, claim_body(world, voucher, invoice="44031238", contract="HZC-2026-0001",
                                          document="scan-5"))
    assert again.status_code == 201, again.text


@pytest.mark.parametrize("written", ["uscc:{uscc}", "{uscc}", "{lower}"])
async def test_a_provider_recorded_as_the_enterprises_shareholder_by_its_uscc_is_a_related_party(
        world: World, written: str) -> None:
    """The provider owns the enterprise. Recorded as a shareholder by its USCC alone, the
    relation had not been matched with the provider's own USCC (only the spelling
    `uscc:<USCC>` was), and the parent's purchase for its subsidiary was subsidised (an
    independent review, December 2026)."""
    path = f"/v1/enterprises/{world.enterprise['id']}"
    current = await world.client.get(path, headers=auth(world.operator))
    uscc = world.provider["uscc"]
    patched = await world.client.patch(path, json={"related_parties": [
        {"role": "shareholder", "party_id": written.format(uscc=uscc, lower=uscc.lower())}]},
        headers=auth(world.operator, **{"If-Match": current.headers["ETag"]}))
    assert patched.status_code == 200, patched.text
    voucher = await world.issue(10_000_000)
    before = await world.voucher(voucher["id"])
    filed = await _file(world, claim_body(world, voucher, contract="HT-7", document="scan-7"))
    assert_problem(filed, 409, "related_party")
    assert await world.voucher(voucher["id"]) == before


async def test_a_relation_recorded_during_review_stops_the_claims_approval(world: World) -> None:
    """Related parties were judged when the claim was filed, never again: a relation the office
    recorded while the claim was under review (months: its hold lasts ten years) did not stop
    the approval (an independent review, December 2026). Approval judges them as they stand."""
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher, contract="HT-R", document="scan-r"))).json()
    review = await world.client.post(f"/v1/claims/{claim['id']}/review", headers=auth(world.operator, **fresh_key()))
    assert review.status_code == 200, review.text
    path = f"/v1/enterprises/{world.enterprise['id']}"
    current = await world.client.get(path, headers=auth(world.operator))
    patched = await world.client.patch(path, json={"related_parties": [
        {"role": "shareholder", "party_id": f"uscc:{world.provider['uscc']}"}]},
        headers=auth(world.operator, **{"If-Match": current.headers["ETag"]}))
    assert patched.status_code == 200, patched.text
    before = await world.voucher(voucher["id"])
    approved = await world.client.post(f"/v1/claims/{claim['id']}/approve",
                                       headers=auth(world.operator, **fresh_key()))
    assert_problem(approved, 409, "related_party")
    assert await world.voucher(voucher["id"]) == before
    rejected = await world.client.post(f"/v1/claims/{claim['id']}/reject", json={"reason": "related party"},
                                       headers=auth(world.operator, **fresh_key()))
    assert rejected.status_code == 200, rejected.text


async def test_an_approvals_note_is_words_or_nothing(world: World) -> None:
    """The note is kept in the audit trail, as a rejection's reason is: a blank one or one with a
    terminal escape had been recorded (an independent review)."""
    voucher = await world.issue(10_000_000)
    claim = (await _file(world, claim_body(world, voucher))).json()
    await _step(world, claim, "review")
    for note in ("  \n ", "ok\x1b[2J"):
        assert_problem(await _step(world, claim, "approve", {"note": note}), 422, "validation_failed")
    approved = await _step(world, claim, "approve", {"note": "checked\nagainst the invoice"})
    assert approved.status_code == 200, approved.text


async def test_another_enterprise_cannot_probe_what_was_filed_at_no_cost(app, world: World) -> None:
    """Enterprise A files a claim. Enterprise B, with a voucher of its own, sends claims naming
    A's contract, invoice or document: with a line item the programme does not cover, all are
    refused for the line item alike, taken or not (asked first, the taken ones had answered
    `contract_already_used`, `invoice_already_claimed` or `document_already_claimed` and nothing
    was ever filed); with a covered one, whatever A holds is refused as one, not saying which,
    so A's contract put beside a guessed invoice tells B nothing of the invoice (a second
    review: named apart, the invoice's refusal came first). A free guess files a claim. A's
    own refiling of its invoice is told so before anything else."""
    voucher = await world.issue(10_000_000)
    assert (await _file(world, claim_body(world, voucher, contract="SECRET-A-77"))).status_code == 201
    other = await create(world.client, world.operator, "/v1/enterprises", enterprise_payload())
    other_voucher = await create(world.client, world.operator, "/v1/vouchers", {
        "programme_id": world.programme["id"], "enterprise_id": other["id"], "face_value": 5_000_000})
    other_key = await make_key(app, "enterprise", enterprise_id=uuid.UUID(other["id"]))

    def guess(**taken: str) -> dict[str, Any]:
        fields = {"invoice": "44039999", "contract": "GUESS-1", "document": "b-own", **taken}
        return claim_body(world, other_voucher, **fields)  # type: ignore[arg-type]

    async def send(body: dict[str, Any]) -> httpx.Response:
        return await world.client.post("/v1/claims", json=body, headers=auth(other_key, **fresh_key()))

    uncovered = {"category": "storage:disk", "amount": 2_000_000, "accelerator": "Ascend 910B", "hours_milli": 150_000}
    for taken in ({"contract": "SECRET-A-77"}, {"invoice": "44031234"}, {"document": "invoice-1"}, {}):
        body = guess(**taken)
        body["line_items"] = [uncovered]
        assert_problem(await send(body), 409, "category_out_of_scope")
    for taken in ({"contract": "SECRET-A-77"}, {"invoice": "44031234"}, {"document": "invoice-1"},
                  {"contract": "SECRET-A-77", "invoice": "44031234"}, {"contract": "SECRET-A-77", "document": "nope"},
                  {"contract": "SECRET-A-77", "invoice": "44038888"}):
        problem = assert_problem(await send(guess(**taken)), 409, "already_filed_elsewhere")
        assert not {"invoice_number", "contract_number", "sha256"} & problem.keys(), problem
    own = await _file(world, claim_body(world, voucher, contract="SECRET-A-78", document="a-again"))
    assert_problem(own, 409, "invoice_already_claimed")
    async with app.state.database.unit_of_work(write=False) as session:
        from sqlalchemy import func, select

        from services.voucher.tables import AuditEvent, Claim, Redemption
        assert (await session.execute(select(func.count()).select_from(Claim))).scalar_one() == 1
        assert (await session.execute(select(func.count()).select_from(Redemption))).scalar_one() == 1
        assert (await session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.enterprise_id == uuid.UUID(other["id"]),
            AuditEvent.action.in_(["claim.submitted", "hold.placed"])))).scalar_one() == 0  # type: ignore[attr-defined]
    filed = await send(guess())  # a guess that is free files a claim
    assert filed.status_code == 201, filed.text


async def test_a_document_s_file_name_is_one_line_without_direction_overrides(world: World) -> None:
    """The office reads a claim's file names on its review page: a right-to-left override made
    "invoice\u202efdp.exe" read as "invoiceexe.pdf" (an independent review), and a line break or
    control character has no place in one. Refused, naming the field; nothing is filed."""
    voucher = await world.issue(10_000_000)
    for name in ("invoice\u202efdp.exe", "invoice\n.pdf", "in\x00voice.pdf", "\u200b"):
        body = claim_body(world, voucher)
        body["documents"][0]["file_name"] = name
        problem = assert_problem(await _file(world, body), 422, "validation_failed")
        assert [e["pointer"] for e in problem["errors"]] == ["/documents/0/file_name"], (name, problem)
    body = claim_body(world, voucher)
    body["documents"][0]["file_name"] = "  发票 44031234.pdf "
    body["documents"].append({**body["documents"][0], "file_name": "👩\u200d💻 合同.pdf", "sha256": _digest("two")})
    filed = await _file(world, body)
    assert filed.status_code == 201, filed.text
    # an emoji's zero-width joiner is part of a real name (a review: refused at first)
    assert [d["file_name"] for d in filed.json()["documents"]] == ["发票 44031234.pdf", "👩\u200d💻 合同.pdf"]
