"""Two-phase redemption over HTTP: holds, captures, voids, refunds, one-step redeem, every
refusal with its own code and no value moved (DESIGN §2–§4)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select, update
from sqlmodel import col

from services.voucher import jobs
from services.voucher.tables import OutboxEvent, Redemption
from tests.support import (
    assert_problem,
    auth,
    create,
    enterprise_payload,
    guard_lifted,
    make_key,
    provider_payload,
)
from tests.world import World, build_world, hold_body


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=200_000_000,
                             max_per_voucher=100_000_000,
                             rate_table={"accelerator:domestic": 3000, "accelerator:other": 2000,
                                         "storage:block": 0})


async def balances(world: World, voucher: dict) -> dict:
    return (await world.voucher(voucher["id"]))["balances"]


async def test_hold_capture_partial_releases_the_rest(world: World) -> None:
    voucher = await world.issue(10_000_000)
    hold = await world.hold(voucher, 10_000_000, order="PO-1")
    assert hold.status_code == 201, hold.text
    body = hold.json()
    assert body["status"] == "held" and body["held_amount"] == 3_000_000
    assert body["computation"]["items"][0]["parts"][0]["rate_bps"] == 3000
    assert body["computation"]["enterprise_pays"] == 7_000_000
    assert await balances(world, voucher) == {"available": 7_000_000, "held": 3_000_000, "used": 0}
    captured = await world.post(f"/v1/redemptions/{body['id']}/capture", {"amount": 2_000_000}, idem="c1")
    assert captured.status_code == 200 and captured.json()["status"] == "captured"
    assert await balances(world, voucher) == {"available": 8_000_000, "held": 0, "used": 2_000_000}
    again = await world.post(f"/v1/redemptions/{body['id']}/capture", {}, idem="c2")
    assert_problem(again, 409, "hold_not_active")
    assert (await world.reconciliation())["is_clean"]


async def test_capture_cannot_exceed_the_hold(world: World) -> None:
    voucher = await world.issue(10_000_000)
    hold = (await world.hold(voucher, 1_000_000, order="PO-1")).json()
    refused = await world.post(f"/v1/redemptions/{hold['id']}/capture", {"amount": 300_001}, idem="c")
    assert_problem(refused, 409, "capture_exceeds_hold")
    assert await balances(world, voucher) == {"available": 9_700_000, "held": 300_000, "used": 0}


async def test_void_returns_everything_and_resolves_once(world: World) -> None:
    voucher = await world.issue(10_000_000)
    hold = (await world.hold(voucher, 1_000_000, order="PO-1")).json()
    voided = await world.post(f"/v1/redemptions/{hold['id']}/void", idem="v1")
    assert voided.json()["status"] == "voided" and voided.json()["void_reason"] == "provider"
    assert await balances(world, voucher) == {"available": 10_000_000, "held": 0, "used": 0}
    assert_problem(await world.post(f"/v1/redemptions/{hold['id']}/capture", idem="c1"), 409, "hold_not_active")
    assert_problem(await world.post(f"/v1/redemptions/{hold['id']}/void", idem="v2"), 409, "hold_not_active")


async def test_a_void_keeps_its_reason_and_refuses_control_characters(app, world: World) -> None:
    """Issue 19, finding 9: the reason was accepted and dropped (and took a NUL refunds refuse)."""
    from sqlalchemy import select

    from services.voucher.tables import AuditEvent, LedgerTransaction

    voucher = await world.issue(10_000_000)
    hold = (await world.hold(voucher, 1_000_000, order="PO-1")).json()
    for bad in ("order\x00cancelled", "bell\x07", "", "x" * 501):
        assert_problem(await world.post(f"/v1/redemptions/{hold['id']}/void", {"reason": bad}), 422,
                       "validation_failed")
    assert await balances(world, voucher) == {"available": 9_700_000, "held": 300_000, "used": 0}
    voided = await world.post(f"/v1/redemptions/{hold['id']}/void", {"reason": "订单取消\ncustomer cancelled"})
    assert voided.status_code == 200, voided.text
    async with app.state.database.unit_of_work(write=False) as session:
        event = (await session.execute(select(AuditEvent).where(
            AuditEvent.action == "hold.voided", AuditEvent.resource_id == uuid.UUID(hold["id"])))).scalar_one()
        memo = (await session.execute(select(LedgerTransaction.memo).where(
            LedgerTransaction.redemption_id == uuid.UUID(hold["id"]), LedgerTransaction.kind != "hold_placed"))).scalar_one()
    assert event.after["note"] == "订单取消\ncustomer cancelled"
    assert memo.endswith(": 订单取消\ncustomer cancelled")
    redeemed = (await world.hold(voucher, 1_000_000, order="PO-2", path="/v1/redemptions")).json()
    refused = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 1, "reason": "a\x00b"})
    assert_problem(refused, 422, "validation_failed")


async def test_expired_hold_is_void_on_read_and_refuses_capture(app, world: World, clock) -> None:
    from services.voucher.redemption import service as redemption

    voucher = await world.issue(10_000_000)
    hold = (await world.hold(voucher, 1_000_000, order="PO-1")).json()
    clock.advance(seconds=1800)
    read = (await world.client.get(f"/v1/redemptions/{hold['id']}", headers=auth(world.provider_key))).json()
    assert read["status"] == "voided" and read["void_reason"] == "expired"
    assert_problem(await world.post(f"/v1/redemptions/{hold['id']}/capture", idem="late"), 409, "hold_expired")
    async with app.state.database.unit_of_work() as session:
        assert await redemption.expire_holds(session, clock()) == 1
    async with app.state.database.unit_of_work() as session:
        assert await redemption.expire_holds(session, clock()) == 0
    assert await balances(world, voucher) == {"available": 10_000_000, "held": 0, "used": 0}


async def test_new_hold_treats_expired_holds_as_void(world: World, clock) -> None:
    voucher = await world.issue(3_000_000)
    first = await world.hold(voucher, 10_000_000, order="PO-1")  # holds all 3,000,000
    assert first.json()["held_amount"] == 3_000_000
    assert_problem(await world.hold(voucher, 1_000_000, order="PO-2"), 409, "voucher_exhausted")
    clock.advance(seconds=1801)
    second = await world.hold(voucher, 1_000_000, order="PO-3")
    assert second.status_code == 201 and second.json()["held_amount"] == 300_000
    assert await balances(world, voucher) == {"available": 2_700_000, "held": 300_000, "used": 0}


async def test_one_step_redeem_and_exhaustion(world: World) -> None:
    voucher = await world.issue(3_000_000)
    redeemed = await world.hold(voucher, 10_000_000, order="PO-1", path="/v1/redemptions")
    assert redeemed.status_code == 201 and redeemed.json()["status"] == "captured"
    assert redeemed.json()["captured_amount"] == 3_000_000
    after = await world.voucher(voucher["id"])
    assert after["status"] == "exhausted" and after["balances"] == {"available": 0, "held": 0, "used": 3_000_000}
    assert_problem(await world.hold(voucher, 1_000, order="PO-2"), 409, "voucher_exhausted")


async def test_refunds_partial_then_full_back_to_the_voucher(world: World) -> None:
    voucher = await world.issue(3_000_000)
    redeemed = (await world.hold(voucher, 10_000_000, order="PO-1", path="/v1/redemptions")).json()
    path = f"/v1/redemptions/{redeemed['id']}/refunds"
    first = await world.post(path, {"amount": 1_000_000, "reason": "partial"}, idem="r1")
    assert first.status_code == 201 and first.json()["destination"] == "voucher"
    after = await world.voucher(voucher["id"])
    assert after["status"] == "active" and after["balances"] == {"available": 1_000_000, "held": 0, "used": 2_000_000}
    assert_problem(await world.post(path, {"amount": 2_000_001, "reason": "x"}, idem="r2"), 409,
                   "refund_exceeds_captured")
    assert (await world.post(path, {"amount": 2_000_000, "reason": "rest"}, idem="r3")).status_code == 201
    red = (await world.client.get(f"/v1/redemptions/{redeemed['id']}", headers=auth(world.provider_key))).json()
    assert red["status"] == "refunded" and red["refunded_amount"] == 3_000_000
    refunds = (await world.client.get(path, headers=auth(world.provider_key))).json()
    assert [r["amount"] for r in refunds] == [1_000_000, 2_000_000]
    assert (await world.reconciliation())["is_clean"]


async def test_refund_after_expiry_goes_to_the_pool(world: World, clock) -> None:
    voucher = await world.issue(3_000_000)
    redeemed = (await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")).json()
    clock.advance(days=400)
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 300_000, "reason": "late"},
                              idem="r")
    assert refund.json()["destination"] == "pool"
    assert (await balances(world, voucher))["used"] == 0
    assert (await world.reconciliation())["is_clean"]


async def test_refund_of_a_hold_is_refused(world: World) -> None:
    voucher = await world.issue(3_000_000)
    hold = (await world.hold(voucher, 1_000_000, order="PO-1")).json()
    assert_problem(await world.post(f"/v1/redemptions/{hold['id']}/refunds", {"amount": 1, "reason": "x"}, idem="r"),
                   409, "redemption_not_captured")


async def test_value_moving_posts_require_an_idempotency_key(world: World) -> None:
    voucher = await world.issue(3_000_000)
    body = hold_body(voucher["code"], world.enterprise["uscc"], "PO-1", [("accelerator:domestic", 1_000)])
    missing = await world.client.post("/v1/redemptions/holds", json=body, headers=auth(world.provider_key))
    assert_problem(missing, 428, "idempotency_key_required")
    assert await balances(world, voucher) == {"available": 3_000_000, "held": 0, "used": 0}


async def test_value_routes_check_the_key_the_query_and_the_scope_before_claiming(world: World) -> None:
    """The value routes authenticate in their own dependency (http/idempotency.value_call) in
    the order every other route does: the key, the scope, the query string, then the
    Idempotency-Key. A refusal leaves no claim: the same Idempotency-Key then holds."""
    voucher = await world.issue(3_000_000)
    body = hold_body(voucher["code"], world.enterprise["uscc"], "PO-1", [("accelerator:domestic", 1_000)])
    url, idem = "/v1/redemptions/holds", {"Idempotency-Key": "k-1"}
    anonymous = await world.client.post(url, params={"stauts": "x"}, json=body)
    assert_problem(anonymous, 401, "unauthenticated")
    assert "order_reference" not in anonymous.text  # nothing about the operation before the key
    assert_problem(await world.client.post(url, json=body, headers=auth(world.enterprise_key)),
                   403, "insufficient_scope")  # before the missing Idempotency-Key
    # the scope before the query string: a key that may not hold is told so whatever its query
    assert_problem(await world.client.post(url, params={"stauts": "x"}, json=body,
                                           headers=auth(world.enterprise_key, **idem)), 403, "insufficient_scope")
    unknown = await world.client.post(url, params={"stauts": "x"}, json=body, headers=auth(world.provider_key, **idem))
    assert assert_problem(unknown, 422, "validation_failed")["errors"][0]["type"] == "unknown_parameter"
    assert_problem(await world.client.post(url, json=body, headers=auth(world.enterprise_key, **idem)),
                   403, "insufficient_scope")
    assert await balances(world, voucher) == {"available": 3_000_000, "held": 0, "used": 0}
    held = await world.client.post(url, json=body, headers=auth(world.provider_key, **idem))
    assert held.status_code == 201 and "idempotent-replayed" not in held.headers, held.text


async def test_replayed_hold_and_capture_move_value_once(world: World) -> None:
    voucher = await world.issue(10_000_000)
    first = await world.hold(voucher, 1_000_000, order="PO-1", key="same")
    again = await world.hold(voucher, 1_000_000, order="PO-1", key="same")
    assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]
    hid = first.json()["id"]
    c1 = await world.post(f"/v1/redemptions/{hid}/capture", {}, idem="cap")
    c2 = await world.post(f"/v1/redemptions/{hid}/capture", {}, idem="cap")
    assert c1.status_code == c2.status_code == 200 and c2.headers["idempotent-replayed"] == "true"
    r1 = await world.post(f"/v1/redemptions/{hid}/refunds", {"amount": 100_000, "reason": "x"}, idem="ref")
    r2 = await world.post(f"/v1/redemptions/{hid}/refunds", {"amount": 100_000, "reason": "x"}, idem="ref")
    assert r1.json()["id"] == r2.json()["id"]
    assert await balances(world, voucher) == {"available": 9_800_000, "held": 0, "used": 200_000}


async def _refused_without_moving(world: World, voucher: dict, response: httpx.Response, status: int, code: str) -> None:
    before = await balances(world, voucher)
    assert_problem(response, status, code)
    assert await balances(world, voucher) == before


async def test_refusals_each_have_their_code_and_move_nothing(app, world: World, clock) -> None:
    voucher = await world.issue(10_000_000)
    start = await balances(world, voucher)

    async def refused(response: httpx.Response, status: int, code: str) -> None:
        assert_problem(response, status, code)
        assert await balances(world, voucher) == start

    # wrong kind: a model line on a compute voucher; out of scope: a category the table lacks
    await refused(await world.hold(voucher, 1_000, order="K", category="model:registered"), 409, "voucher_kind_mismatch")
    await refused(await world.hold(voucher, 1_000, order="S", category="network:egress"), 409, "category_out_of_scope")
    # a covered category at 0 %
    await refused(await world.hold(voucher, 1_000, order="Z", category="storage:block"), 409, "nothing_to_subsidise")
    # unknown code for this enterprise; mistyped code
    await refused(await world.hold(voucher, 1_000, order="U", uscc=enterprise_payload()["uscc"]), 404, "not_found")
    # provider not enrolled, then not approved
    other = await create(world.client, world.operator, "/v1/providers", provider_payload())
    await world.client.post(f"/v1/providers/{other['id']}/approve", json={"reason": "ok"}, headers=auth(world.operator))
    other_key = await make_key(app, "provider", provider_id=other["id"])
    await refused(await world.hold(voucher, 1_000, order="E", provider_key=other_key), 403, "provider_not_enrolled")
    await world.client.post(f"/v1/providers/{world.provider['id']}/suspend", json={"reason": "audit"},
                            headers=auth(world.operator))
    await refused(await world.hold(voucher, 1_000, order="A"), 403, "provider_not_approved")
    await world.client.post(f"/v1/providers/{world.provider['id']}/approve", json={"reason": "ok"},
                            headers=auth(world.operator))
    # suspended voucher
    await world.post(f"/v1/vouchers/{voucher['id']}/suspend", {"reason": "fraud inquiry 17"}, key=world.operator)
    await refused(await world.hold(voucher, 1_000, order="P"), 409, "voucher_suspended")
    # the office's reason is the enterprise's and the office's, not the provider's
    detail = assert_problem(await world.hold(voucher, 1_000, order="P2"), 409, "voucher_suspended")["detail"]
    assert "fraud" not in detail and "suspended by the programme office" in detail
    await world.post(f"/v1/vouchers/{voucher['id']}/resume", {"reason": "ok"}, key=world.operator)
    # not yet valid
    later = await world.issue(1_000_000, valid_from=(clock() + timedelta(days=3)).isoformat())
    assert_problem(await world.hold(later, 1_000, order="L"), 409, "voucher_not_yet_valid")
    # same order twice on the same voucher; same reference with another amount
    assert (await world.hold(voucher, 1_000_000, order="DUP")).status_code == 201
    start = await balances(world, voucher)
    await refused(await world.hold(voucher, 1_000_000, order="DUP", key="dup-2"), 409, "order_already_subsidised")
    await refused(await world.hold(voucher, 2_000_000, order="DUP", key="dup-3"), 409, "order_reference_conflict")
    # revoked
    await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "forged contract"}, key=world.operator)
    assert "forged" not in assert_problem(await world.hold(voucher, 1_000, order="R"), 409, "voucher_revoked")["detail"]
    assert (await world.reconciliation())["is_clean"]


async def test_related_party_is_refused(app, world: World) -> None:
    party = {"role": "shareholder", "party_id": "sha256:0123456789abcdef"}
    etag = (await world.client.get(f"/v1/enterprises/{world.enterprise['id']}", headers=auth(world.operator))).headers["etag"]
    await world.client.patch(f"/v1/enterprises/{world.enterprise['id']}", json={"related_parties": [party]},
                             headers=auth(world.operator, **{"If-Match": etag}))
    etag = (await world.client.get(f"/v1/providers/{world.provider['id']}", headers=auth(world.operator))).headers["etag"]
    await world.client.patch(f"/v1/providers/{world.provider['id']}", json={"related_parties": [party]},
                             headers=auth(world.operator, **{"If-Match": etag}))
    voucher = await world.issue(1_000_000)
    problem = assert_problem(await world.hold(voucher, 1_000, order="RP"), 409, "related_party")
    assert problem["shared_parties"] == ["sha256:0123456789abcdef"]


async def test_related_parties_match_whatever_their_letter_case(app, world: World) -> None:
    """A hex digest names the same party in upper or lower case: the hold is refused all the same."""
    digest = "sha256:9f2c1a7b3e5d8c40aa11bb22cc33dd44"
    for path, party in ((f"/v1/enterprises/{world.enterprise['id']}", {"role": "legal_representative",
                                                                        "party_id": digest}),
                        (f"/v1/providers/{world.provider['id']}", {"role": "shareholder", "party_id": digest.upper()})):
        etag = (await world.client.get(path, headers=auth(world.operator))).headers["etag"]
        patched = await world.client.patch(path, json={"related_parties": [party]},
                                           headers=auth(world.operator, **{"If-Match": etag}))
        assert patched.status_code == 200, patched.text
    voucher = await world.issue(1_000_000)
    problem = assert_problem(await world.hold(voucher, 1_000, order="RP"), 409, "related_party")
    assert problem["shared_parties"] == [digest]
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 1_000_000, "held": 0, "used": 0}


async def test_a_provider_that_is_the_enterprise_itself_is_refused(app, world: World) -> None:
    """One legal entity registered as both enterprise and provider (the same USCC, no related
    parties recorded) cannot subsidise its purchases from itself, by a hold or a one-step redeem."""
    from tests.anomalies.test_routes import another_provider

    _, key = await another_provider(app, world, uscc=world.enterprise["uscc"], name=world.enterprise["name"])
    voucher = await world.issue(10_000_000)
    for path in ("/v1/redemptions/holds", "/v1/redemptions"):
        problem = assert_problem(await world.hold(voucher, 10_000_000, order="SELF-1", path=path, provider_key=key,
                                                 key=f"self-{path}"),
                                 409, "related_party")
        assert problem["shared_parties"] == [f"uscc:{world.enterprise['uscc']}"]
        assert "USCC" in problem["detail"]
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 10_000_000, "held": 0, "used": 0}
    assert (await world.hold(voucher, 10_000_000, order="SELF-1")).status_code == 201  # another provider may


async def test_enterprise_cap_limits_redemption_in_the_period(app, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=1_000_000,
                              max_per_voucher=1_000_000)
    voucher = await world.issue(1_000_000)
    first = await world.hold(voucher, 3_000_000, order="PO-1", path="/v1/redemptions")
    assert first.json()["captured_amount"] == 900_000
    second = await world.hold(voucher, 3_000_000, order="PO-2")
    assert second.json()["held_amount"] == 100_000
    assert second.json()["computation"]["limited_by"] == "enterprise_cap"  # checked before the balance
    await world.post(f"/v1/redemptions/{second.json()['id']}/capture", {}, idem="c")
    # cap and voucher are both used up; the cap is checked first, so it is the reason given
    problem = assert_problem(await world.hold(voucher, 3_000_000, order="PO-3"), 409, "enterprise_cap_reached")
    assert problem["computation"]["limited_by"] == "enterprise_cap"


async def test_stacking_ceiling_across_two_vouchers(app, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client, stacking_ceiling_bps=4000,
                              rate_table={"accelerator:domestic": 3000})
    a, b = await world.issue(10_000_000), await world.issue(10_000_000)
    first = await world.hold(a, 1_000_000, order="SHARED")
    assert first.json()["held_amount"] == 300_000
    second = await world.hold(b, 1_000_000, order="SHARED", key="shared-2")
    assert second.json()["held_amount"] == 100_000  # 40 % of ¥10,000.00 minus ¥3,000.00
    assert second.json()["computation"]["limited_by"] == "stacking_ceiling"
    assert_problem(await world.hold(await world.issue(1_000_000), 1_000_000, order="SHARED", key="shared-3"), 409,
                   "order_already_subsidised")


async def test_tier_switch_over_http(app, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client, rate_table={"accelerator:other": 2000},
                              tiers=[{"spend_up_to": 50_000_000, "rate_bps": 5000, "categories": None}])
    voucher = await world.issue(100_000_000)
    first = await world.hold(voucher, 40_000_000, order="T1", category="accelerator:other")
    assert first.json()["held_amount"] == 20_000_000
    second = await world.hold(voucher, 30_000_000, order="T2", category="accelerator:other")
    assert second.json()["held_amount"] == 5_000_000 + 4_000_000


async def test_providers_touch_only_their_own_redemptions(app, world: World) -> None:
    voucher = await world.issue(10_000_000)
    hold = (await world.hold(voucher, 1_000_000, order="PO-1")).json()
    other = await create(world.client, world.operator, "/v1/providers", provider_payload())
    other_key = await make_key(app, "provider", provider_id=other["id"])
    assert_problem(await world.post(f"/v1/redemptions/{hold['id']}/capture", key=other_key, idem="x"), 404, "not_found")
    assert_problem(await world.client.get(f"/v1/redemptions/{hold['id']}", headers=auth(other_key)), 404, "not_found")
    assert (await world.client.get("/v1/redemptions", headers=auth(other_key))).json()["items"] == []
    mine = (await world.client.get(f"/v1/redemptions/{hold['id']}", headers=auth(world.enterprise_key)))
    assert mine.status_code == 200
    stranger = await create(world.client, world.operator, "/v1/enterprises", enterprise_payload())
    stranger_key = await make_key(app, "enterprise", enterprise_id=stranger["id"])
    assert_problem(await world.client.get(f"/v1/redemptions/{hold['id']}", headers=auth(stranger_key)), 404, "not_found")
    # enterprises and auditors cannot redeem
    assert_problem(await world.hold(voucher, 1_000, order="E", provider_key=world.enterprise_key), 403,
                   "insufficient_scope")
    assert_problem(await world.hold(voucher, 1_000, order="A", provider_key=world.auditor), 403, "insufficient_scope")


async def test_a_voided_hold_does_not_block_its_order(world: World) -> None:
    voucher = await world.issue(10_000_000)
    first = (await world.hold(voucher, 1_000_000, order="PO-again", key="h1")).json()
    await world.post(f"/v1/redemptions/{first['id']}/void", idem="v1")
    again = await world.hold(voucher, 1_000_000, order="PO-again", key="h2")
    assert again.status_code == 201, again.text
    assert again.json()["held_amount"] == 300_000


async def test_an_expired_hold_on_another_voucher_does_not_use_up_the_order(app, client: httpx.AsyncClient, clock) -> None:
    world = await build_world(app, client, stacking_ceiling_bps=3000, rate_table={"accelerator:domestic": 3000})
    a, b = await world.issue(10_000_000), await world.issue(10_000_000)
    assert (await world.hold(a, 1_000_000, order="SHARED", key="a")).json()["held_amount"] == 300_000
    assert_problem(await world.hold(b, 1_000_000, order="SHARED", key="b1"), 409, "order_already_subsidised")
    clock.advance(seconds=1801)  # A's hold is void from now on, though no job has posted it
    second = await world.hold(b, 1_000_000, order="SHARED", key="b2")
    assert second.status_code == 201, second.text
    assert second.json()["held_amount"] == 300_000


async def test_an_expired_hold_on_another_voucher_does_not_use_up_the_cap(app, client: httpx.AsyncClient, clock) -> None:
    world = await build_world(app, client, enterprise_cap=300_000, max_per_voucher=300_000,
                              voucher_validity_days=900, rate_table={"accelerator:domestic": 3000})
    a = await world.issue(300_000)
    clock.advance(days=366)  # next period: a second grant of the full cap, and A still valid
    b = await world.issue(300_000)
    assert (await world.hold(a, 1_000_000, order="O1")).json()["held_amount"] == 300_000
    assert_problem(await world.hold(b, 1_000_000, order="O2"), 409, "enterprise_cap_reached")
    clock.advance(seconds=1801)
    assert (await world.hold(b, 1_000_000, order="O3")).json()["held_amount"] == 300_000


async def test_a_hold_another_voucher_counted_as_expired_can_no_longer_be_captured_on_the_order(
        app, client: httpx.AsyncClient, clock) -> None:
    """A capture whose instant was read before a hold on another voucher treated its hold as
    expired, but whose locks came after that hold committed (it waited on the order's lock, or
    its machine's clock is behind), judges expiry no earlier than that hold did: otherwise the
    order would be subsidised twice over the stacking ceiling (DESIGN §1)."""
    world = await build_world(app, client, stacking_ceiling_bps=6000, rate_table={"accelerator:domestic": 6000})
    a, b = await world.issue(10_000_000), await world.issue(10_000_000)
    first = (await world.hold(a, 1_000_000, order="SHARED", key="a")).json()
    clock.advance(seconds=1801)  # A's hold is void from now on: B's hold may take the order's room
    second = await world.hold(b, 1_000_000, order="SHARED", key="b")
    assert second.json()["held_amount"] == 600_000, second.text
    clock.advance(seconds=-2)  # the capture read its clock before B's hold did, 1 s before A's expiry
    assert_problem(await world.post(f"/v1/redemptions/{first['id']}/capture", idem="late"), 409, "hold_expired")
    captured = await world.post(f"/v1/redemptions/{second.json()['id']}/capture", idem="b-capture")
    assert captured.status_code == 200, captured.text
    assert (await world.reconciliation())["is_clean"]


async def test_a_hold_another_voucher_counted_as_expired_can_no_longer_be_captured_in_the_period(
        app, client: httpx.AsyncClient, clock) -> None:
    """As above, for the enterprise's cap: the period's usage row carries the instant too."""
    world = await build_world(app, client, enterprise_cap=300_000, max_per_voucher=300_000,
                              voucher_validity_days=900, rate_table={"accelerator:domestic": 3000})
    a = await world.issue(300_000)
    clock.advance(days=366)
    b = await world.issue(300_000)
    first = (await world.hold(a, 1_000_000, order="O1")).json()
    clock.advance(seconds=1801)
    assert (await world.hold(b, 1_000_000, order="O2")).json()["held_amount"] == 300_000
    clock.advance(seconds=-2)
    assert_problem(await world.post(f"/v1/redemptions/{first['id']}/capture", idem="late"), 409, "hold_expired")
    assert (await world.reconciliation())["is_clean"]


async def test_the_orders_row_alone_keeps_a_hold_counted_as_expired_from_being_captured(
        app, client: httpx.AsyncClient, clock) -> None:
    """Two holds on one order in different cap periods share the order's row but not a usage
    row: the order's row carries the instant on its own."""
    world = await build_world(app, client, stacking_ceiling_bps=6000, voucher_validity_days=900,
                              rate_table={"accelerator:domestic": 6000})
    a, b = await world.issue(10_000_000), await world.issue(10_000_000)
    # 23:50 on 31 December in Shanghai, the programme's time zone: A's hold is in this year's period
    clock.advance(seconds=(datetime(clock().year, 12, 31, 15, 50, tzinfo=UTC) - clock()).total_seconds())
    first = (await world.hold(a, 1_000_000, order="SHARED", key="a")).json()
    clock.advance(seconds=1801)  # 00:20:01 on 1 January: A's hold is void, B's falls in next year's period
    second = await world.hold(b, 1_000_000, order="SHARED", key="b")
    assert second.json()["held_amount"] == 600_000, second.text
    assert second.json()["computation"]["period"] != first["computation"]["period"]
    clock.advance(seconds=-2)
    assert_problem(await world.post(f"/v1/redemptions/{first['id']}/capture", idem="late"), 409, "hold_expired")
    assert (await world.reconciliation())["is_clean"]


async def test_a_void_of_a_hold_another_voucher_counted_as_expired_records_it_as_expired(
        app, client: httpx.AsyncClient, clock) -> None:
    """The void's own instant reads before the TTL, but another voucher's hold already took the
    room as the hold's expiry left it: the release is recorded as that expiry, at that moment."""
    world = await build_world(app, client, stacking_ceiling_bps=6000, rate_table={"accelerator:domestic": 6000})
    a, b = await world.issue(10_000_000), await world.issue(10_000_000)
    first = (await world.hold(a, 1_000_000, order="SHARED", key="a")).json()
    clock.advance(seconds=1801)
    assert (await world.hold(b, 1_000_000, order="SHARED", key="b")).status_code == 201
    clock.advance(seconds=-2)
    voided = await world.post(f"/v1/redemptions/{first['id']}/void", idem="void-a")
    assert voided.status_code == 200, voided.text
    assert voided.json()["void_reason"] == "expired"
    assert voided.json()["voided_at"] == first["hold_expires_at"]
    read = await world.client.get(f"/v1/redemptions/{first['id']}", headers=auth(world.provider_key))
    assert (read.json()["status"], read.json()["void_reason"]) == ("voided", "expired")
    assert (await world.reconciliation())["is_clean"]


async def test_a_hold_on_an_expired_voucher_does_not_use_up_the_order_before_the_job_runs(
        app, client: httpx.AsyncClient, clock) -> None:
    """DESIGN §2 and §6: a voucher past its expiry is expired, its holds void, whether or not the
    job has posted it. A hold on it whose own TTL has not passed no longer takes up the order's
    room for another voucher, and can no longer be captured."""
    world = await build_world(app, client, stacking_ceiling_bps=3000, rate_table={"accelerator:domestic": 3000})
    a = await world.issue(10_000_000)
    clock.advance(seconds=(datetime.fromisoformat(a["expires_at"]) - clock()).total_seconds() - 600)
    b = await world.issue(10_000_000)  # issued later: still valid when A has expired
    first = (await world.hold(a, 1_000_000, order="SHARED", key="a")).json()
    assert first["held_amount"] == 300_000
    assert_problem(await world.hold(b, 1_000_000, order="SHARED", key="b1"), 409, "order_already_subsidised")
    clock.advance(seconds=660)  # A has expired; its hold's 30-minute TTL has not passed; no job has run
    second = await world.hold(b, 1_000_000, order="SHARED", key="b2")
    assert second.status_code == 201, second.text
    assert second.json()["held_amount"] == 300_000
    clock.advance(seconds=-120)  # the capture's instant: a minute before A's expiry, read before B's hold
    assert_problem(await world.post(f"/v1/redemptions/{first['id']}/capture", idem="a-capture"), 409, "voucher_expired")
    assert (await world.reconciliation())["is_clean"]


async def test_a_hold_on_an_expired_voucher_does_not_use_up_the_cap_before_the_job_runs(
        app, client: httpx.AsyncClient, clock) -> None:
    """As above, for the enterprise's cap in the period."""
    world = await build_world(app, client, enterprise_cap=600_000, max_per_voucher=300_000,
                              rate_table={"accelerator:domestic": 3000})
    a = await world.issue(300_000)
    clock.advance(seconds=(datetime.fromisoformat(a["expires_at"]) - clock()).total_seconds() - 600)
    b, c = await world.issue(300_000), await world.issue(300_000)
    first = (await world.hold(a, 1_000_000, order="O1")).json()
    assert (await world.hold(b, 1_000_000, order="O2")).json()["held_amount"] == 300_000
    assert_problem(await world.hold(c, 1_000_000, order="O3"), 409, "enterprise_cap_reached")
    clock.advance(seconds=660)
    assert (await world.hold(c, 1_000_000, order="O4")).json()["held_amount"] == 300_000
    clock.advance(seconds=-120)
    assert_problem(await world.post(f"/v1/redemptions/{first['id']}/capture", idem="a-capture"), 409, "voucher_expired")
    assert (await world.reconciliation())["is_clean"]


async def test_a_refund_after_a_clawback_is_not_recovered_twice(app, world: World) -> None:
    from sqlalchemy import select

    from services.voucher.tables import LedgerAccount

    voucher = await world.issue(1_000_000)
    redeemed = (await world.hold(voucher, 1_000_000, order="PO-c", path="/v1/redemptions")).json()
    revoked = await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "fraud", "clawback": 300_000},
                               key=world.operator, idem="revoke")
    assert revoked.status_code == 200, revoked.text
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 200_000, "reason": "x"},
                              idem="r1")
    assert refund.json()["destination"] == "pool"
    async with app.state.database.unit_of_work(write=False) as session:
        owed = (await session.execute(select(LedgerAccount.balance).where(
            LedgerAccount.kind == "enterprise_receivable",
            LedgerAccount.enterprise_id == uuid.UUID(world.enterprise["id"])))).scalar_one()
    assert owed == 100_000  # 300,000 clawed back, 200,000 of it came back through the refund
    assert (await world.reconciliation())["is_clean"]


async def _receivable(app, world: World) -> int:
    from sqlalchemy import select

    from services.voucher.tables import LedgerAccount

    async with app.state.database.unit_of_work(write=False) as session:
        return (await session.execute(select(LedgerAccount.balance).where(
            LedgerAccount.kind == "enterprise_receivable",
            LedgerAccount.enterprise_id == uuid.UUID(world.enterprise["id"])))).scalar_one()


async def test_a_refund_on_another_voucher_leaves_a_clawback_owed(app, world: World) -> None:
    """The receivable is the enterprise's, shared by its vouchers; a clawback is one voucher's.
    A refund on a second revoked voucher, which nothing was clawed back from, recovers none of
    it: the first voucher's used value is still spent and still owed."""
    a, b = await world.issue(1_000_000), await world.issue(1_000_000)
    await world.hold(a, 1_000_000, order="PO-a", path="/v1/redemptions")
    on_b = (await world.hold(b, 1_000_000, order="PO-b", path="/v1/redemptions")).json()
    assert on_b["captured_amount"] == 300_000
    for voucher, body in ((a, {"reason": "fraud", "clawback": 300_000}), (b, {"reason": "programme closed"})):
        revoked = await world.post(f"/v1/vouchers/{voucher['id']}/revoke", body, key=world.operator)
        assert revoked.status_code == 200, revoked.text
    refund = await world.post(f"/v1/redemptions/{on_b['id']}/refunds", {"amount": 300_000, "reason": "not delivered"})
    assert refund.status_code == 201, refund.text
    assert await _receivable(app, world) == 300_000
    assert (await world.reconciliation())["is_clean"]


async def test_a_refund_of_value_not_clawed_back_leaves_the_clawback_owed(app, world: World) -> None:
    """One voucher, two orders, the clawback for one of them: refunding the other leaves as much
    used as was clawed back, so all of it is still owed; refunding the first then recovers it."""
    voucher = await world.issue(1_000_000)
    fraud = (await world.hold(voucher, 1_000_000, order="PO-fraud", path="/v1/redemptions")).json()
    legit = (await world.hold(voucher, 1_000_000, order="PO-legit", path="/v1/redemptions")).json()
    assert fraud["captured_amount"] == legit["captured_amount"] == 300_000
    revoked = await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "PO-fraud", "clawback": 300_000},
                               key=world.operator)
    assert revoked.status_code == 200, revoked.text
    refund = await world.post(f"/v1/redemptions/{legit['id']}/refunds", {"amount": 300_000, "reason": "cancelled"})
    assert refund.status_code == 201, refund.text
    assert (await world.voucher(voucher["id"]))["balances"]["used"] == 300_000
    assert await _receivable(app, world) == 300_000
    refund = await world.post(f"/v1/redemptions/{fraud['id']}/refunds", {"amount": 100_000, "reason": "partly"})
    assert refund.status_code == 201, refund.text
    assert await _receivable(app, world) == 200_000  # 200,000 still used, all of it owed
    assert (await world.reconciliation())["is_clean"]


async def test_the_reconciliation_shows_a_clawback_forgiven_beyond_the_refunds(app, world: World) -> None:
    """What the refunds of a revoked voucher may recover is checked from the postings alone: a
    recovery journal such as the one refunds on another voucher used to post shows as a
    difference of that voucher, and nothing else differs."""
    from services.voucher.ledger import service as ledger
    from services.voucher.ledger.rules import AccountKind, transfer
    from services.voucher.tables import LedgerAccount

    voucher = await world.issue(1_000_000)
    await world.hold(voucher, 1_000_000, order="PO-c", path="/v1/redemptions")
    revoked = await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "fraud", "clawback": 200_000},
                               key=world.operator)
    assert revoked.status_code == 200, revoked.text
    assert (await world.reconciliation())["is_clean"]
    async with app.state.database.unit_of_work() as session:
        receivable = (await session.execute(select(LedgerAccount.id).where(
            LedgerAccount.kind == "enterprise_receivable",
            LedgerAccount.enterprise_id == uuid.UUID(world.enterprise["id"])))).scalar_one()
        contra = (await ledger.programme_accounts(session, uuid.UUID(world.programme["id"])))[
            AccountKind.PROGRAMME_CLAWBACK]
        await ledger.post(session, kind="refund", legs=transfer(receivable, contra, 150_000, "CNY"), now=datetime.now(UTC),
                          programme_id=uuid.UUID(world.programme["id"]), voucher_id=uuid.UUID(voucher["id"]),
                          memo="forgiven")
    result = await world.reconciliation()
    assert not result["is_clean"]
    assert result["clawback_differences"] == [{
        "what": "clawback owed for the voucher", "voucher_id": voucher["id"], "clawed_back": 200_000,
        "used": 300_000, "repaid": 0, "written_off": 0, "returned": 0, "owed": 50_000, "expected": 200_000}]
    assert [k for k, v in result.items() if isinstance(v, list) and v] == ["clawback_differences"]
    async with app.state.database.unit_of_work() as session:  # the debt put back: clean again
        await ledger.post(session, kind="refund", legs=transfer(contra, receivable, 150_000, "CNY"),
                          now=datetime.now(UTC), programme_id=uuid.UUID(world.programme["id"]),
                          voucher_id=uuid.UUID(voucher["id"]), memo="put back")
    assert (await world.reconciliation())["is_clean"]


async def _clawback(world: World, voucher: dict[str, Any], key: str | None = None) -> httpx.Response:
    return await world.client.get(f"/v1/vouchers/{voucher['id']}/clawback", headers=auth(key or world.operator))


async def test_a_clawback_found_after_expiry_is_recorded_and_refunds_recover_it(app, world: World, clock) -> None:
    """Misuse found once the voucher expired: the office records the clawback against it (its
    expiry posted first, as the worker would), at most the used value; a refund of the order
    afterwards recovers what the used value no longer covers, as after a revocation."""
    voucher = await world.issue(1_000_000)
    redeemed = (await world.hold(voucher, 1_000_000, order="PO-late", path="/v1/redemptions")).json()
    assert redeemed["captured_amount"] == 300_000
    path = f"/v1/vouchers/{voucher['id']}/clawback"
    live = await world.post(path, {"amount": 100_000, "reason": "fraud"}, key=world.operator, idem="live")
    assert_problem(live, 409, "clawback_on_live_voucher")
    assert (await _clawback(world, voucher)).json()["owed"] == 0
    clock.advance(days=400)  # past its validity; the worker has not posted the expiry yet
    too_much = await world.post(path, {"amount": 300_001, "reason": "fraud"}, key=world.operator, idem="much")
    assert_problem(too_much, 422, "validation_failed")
    assert (await world.voucher(voucher["id"]))["status"] == "expired"
    recorded = await world.post(path, {"amount": 300_000, "reason": "fraud"}, key=world.operator, idem="c1")
    assert recorded.status_code == 200, recorded.text
    assert recorded.json() == {"voucher_id": voucher["id"], "status": "expired", "unit": "CNY", "used": 300_000,
                               "clawed_back": 300_000, "recovered_by_refunds": 0, "repaid": 0, "written_off": 0,
                               "owed": 300_000, "room": 0, "overpaid": 0,
                               "overpayment_returned": 0, "forgivable": 300_000}
    again = await world.post(path, {"amount": 300_000, "reason": "fraud"}, key=world.operator, idem="c1")
    assert again.json() == recorded.json()  # the stored answer: nothing posted twice
    assert await _receivable(app, world) == 300_000
    assert (await world.reconciliation())["is_clean"]
    assert_problem(await world.post(path, {"amount": 1, "reason": "more"}, key=world.operator, idem="c2"),
                   422, "validation_failed")  # all of the used value is owed back already
    mine = await _clawback(world, voucher, world.enterprise_key)
    assert mine.status_code == 200 and mine.json()["owed"] == 300_000  # the enterprise sees what it owes
    assert_problem(await _clawback(world, voucher, world.provider_key), 403, "insufficient_scope")
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 100_000, "reason": "x"},
                              idem="r1")
    assert refund.status_code == 201 and refund.json()["destination"] == "pool"
    assert await _receivable(app, world) == 200_000  # 200,000 still used, all of it owed
    assert (await _clawback(world, voucher)).json() == {**recorded.json(), "used": 200_000, "owed": 200_000,
                                                        "recovered_by_refunds": 100_000, "forgivable": 200_000}
    assert (await world.reconciliation())["is_clean"]


async def test_a_revocation_clawback_can_be_raised_later(app, world: World) -> None:
    """A voucher revoked with part of its used value clawed back: more found later is recorded
    on top, up to the used value not yet owed back; the reconciliation agrees."""
    voucher = await world.issue(1_000_000)
    await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")
    revoked = await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "fraud", "clawback": 100_000},
                               key=world.operator)
    assert revoked.status_code == 200, revoked.text
    path = f"/v1/vouchers/{voucher['id']}/clawback"
    refused = await world.post(path, {"amount": 200_001, "reason": "more"}, key=world.operator)
    assert_problem(refused, 422, "validation_failed")
    assert (await _clawback(world, voucher)).json()["owed"] == 100_000  # the refusal changed nothing
    for body, key, status, code in (
            ({"amount": 0, "reason": "x"}, world.operator, 422, "validation_failed"),
            ({"amount": 1, "reason": ""}, world.operator, 422, "validation_failed"),
            ({"amount": 1, "reason": "x"}, world.enterprise_key, 403, "insufficient_scope"),
            ({"amount": 1, "reason": "x"}, world.provider_key, 403, "insufficient_scope")):
        assert_problem(await world.post(path, body, key=key), status, code)
    recorded = await world.post(path, {"amount": 200_000, "reason": "more"}, key=world.operator)
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["owed"] == 300_000 and await _receivable(app, world) == 300_000
    assert (await world.reconciliation())["is_clean"]
    other = await world.issue(1_000_000)
    assert_problem(await world.post(f"/v1/vouchers/{other['id']}/clawback", {"amount": 1, "reason": "x"},
                                    key=world.operator), 409, "clawback_on_live_voucher")
    assert_problem(await world.post(f"/v1/vouchers/{uuid.uuid4()}/clawback", {"amount": 1, "reason": "x"},
                                    key=world.operator), 404, "not_found")


async def _pool(app, world: World) -> int:
    from services.voucher.ledger import service as ledger
    from services.voucher.ledger.rules import AccountKind
    from services.voucher.tables import LedgerAccount

    async with app.state.database.unit_of_work(write=False) as session:
        pool = (await ledger.programme_accounts(session, uuid.UUID(world.programme["id"])))[
            AccountKind.PROGRAMME_AVAILABLE]
        return (await session.execute(select(LedgerAccount.balance).where(LedgerAccount.id == pool))).scalar_one()


async def _revoked_with_clawback(world: World, clawback: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A voucher that redeemed 300,000 on one order, then revoked with `clawback` of it asked back."""
    voucher = await world.issue(1_000_000)
    redeemed = (await world.hold(voucher, 1_000_000, order="PO-m", path="/v1/redemptions")).json()
    assert redeemed["captured_amount"] == 300_000
    revoked = await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "fraud", "clawback": clawback},
                               key=world.operator)
    assert revoked.status_code == 200, revoked.text
    return voucher, redeemed


async def test_a_clawback_is_repaid_in_part_and_the_rest_written_off(app, world: World, clock) -> None:
    """The enterprise pays part of what it owes back and the office writes the rest off: the
    receivable falls each time, and the pool does not rise (the money goes to the funder). Each at
    most what is owed; a refusal changes nothing; the stored answer replays."""
    voucher, _ = await _revoked_with_clawback(world, 300_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    pool = await _pool(app, world)
    today = clock().astimezone(ZoneInfo("Asia/Shanghai")).date()
    payment = {"amount": 100_000, "reference": "ICBC-20260612-1", "paid_on": today.isoformat()}
    repaid = await world.post(f"{base}/repayments", payment, key=world.operator, idem="p1")
    assert repaid.status_code == 200, repaid.text
    assert repaid.json() == {"voucher_id": voucher["id"], "status": "revoked", "unit": "CNY", "used": 300_000,
                             "clawed_back": 300_000, "recovered_by_refunds": 0, "repaid": 100_000,
                             "written_off": 0, "owed": 200_000, "room": 0, "overpaid": 0,
                             "overpayment_returned": 0, "forgivable": 200_000}
    again = await world.post(f"{base}/repayments", payment, key=world.operator, idem="p1")
    assert again.json() == repaid.json()  # the stored answer: nothing posted twice
    for retyped in ("ICBC-20260612-1", " icbc-20260612-1", "ＩＣＢＣ－２０２６０６１２－１", "ICBC-2026\u200b0612-1"):
        twice = await world.post(f"{base}/repayments", {**payment, "reference": retyped, "amount": 50_000},
                                 key=world.operator)
        assert assert_problem(twice, 409, "repayment_already_recorded")["journal_id"], retyped  # the same transfer
    # the money goes back to whoever funds the programme: the pool gets only what refunds return
    assert (await _receivable(app, world), await _pool(app, world)) == (200_000, pool)
    other = {**payment, "reference": "ICBC-9"}  # another transfer: refused for what is wrong with it
    for path, body, key, status, code in (
            ("repayments", {**other, "amount": 200_001}, world.operator, 422, "validation_failed"),
            ("repayments", {**other, "paid_on": (today + timedelta(days=1)).isoformat()}, world.operator, 422,
             "validation_failed"),
            ("repayments", {**other, "reference": " \n"}, world.operator, 422, "validation_failed"),
            ("repayments", {**other, "paid_on": (today - timedelta(days=1)).isoformat()}, world.operator, 422,
             "validation_failed"),  # before the clawback was recorded
            ("repayments", {**other, "amount": 0}, world.operator, 422, "validation_failed"),
            ("repayments", other, world.enterprise_key, 403, "insufficient_scope"),
            ("write-offs", {"amount": 200_001, "reason": "x"}, world.operator, 422, "validation_failed"),
            ("write-offs", {"amount": 1, "reason": ""}, world.operator, 422, "validation_failed"),
            ("write-offs", {"amount": 1, "reason": "x"}, world.provider_key, 403, "insufficient_scope")):
        assert_problem(await world.post(f"{base}/{path}", body, key=key), status, code)
    late = await world.post(f"{base}/repayments", {**other, "paid_on": (today + timedelta(days=1)).isoformat()},
                            key=world.operator)
    assert [e["pointer"] for e in late.json()["errors"]] == ["/paid_on"]
    assert (await _receivable(app, world), await _pool(app, world)) == (200_000, pool)  # unchanged
    written = await world.post(f"{base}/write-offs", {"amount": 200_000, "reason": "enterprise deregistered"},
                               key=world.operator)
    assert written.status_code == 200, written.text
    assert (written.json()["written_off"], written.json()["owed"]) == (200_000, 0)
    assert (await _receivable(app, world), await _pool(app, world)) == (0, pool)
    again_paid = await world.post(f"{base}/repayments", {**payment, "amount": 1}, key=world.operator)
    assert_problem(again_paid, 409, "repayment_already_recorded")  # named as the same transfer, not for its amount
    nothing = await world.post(f"{base}/repayments", {**payment, "reference": "ICBC-2", "amount": 1},
                               key=world.operator)
    assert_problem(nothing, 422, "validation_failed")
    assert "nothing is owed" in nothing.json()["errors"][0]["message"]
    assert_problem(await world.post(f"/v1/vouchers/{uuid.uuid4()}/clawback/write-offs",
                                    {"amount": 1, "reason": "x"}, key=world.operator), 404, "not_found")
    assert (await world.reconciliation())["is_clean"]


async def test_a_refund_after_a_repayment_recovers_only_what_is_still_owed(app, world: World) -> None:
    """300,000 used, all clawed back, 100,000 repaid: a refund of 150,000 leaves 150,000 used,
    of which the enterprise still owes 50,000 (the programme has 100,000 from it and 150,000
    from the provider). Refunding the rest returns value the enterprise had repaid: nothing is
    owed, and the 100,000 it paid shows as overpaid, for the office to give back."""
    voucher, redeemed = await _revoked_with_clawback(world, 300_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    repaid = await world.post(f"{base}/repayments", {"amount": 100_000, "reference": "B-1", "paid_on": "2026-03-02"},
                              key=world.operator)
    assert repaid.status_code == 200, repaid.text
    pool = await _pool(app, world)
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 150_000, "reason": "x"})
    assert refund.status_code == 201, refund.text
    state = (await _clawback(world, voucher)).json()
    assert (state["used"], state["recovered_by_refunds"], state["repaid"], state["owed"], state["overpaid"]) == (
        150_000, 150_000, 100_000, 50_000, 0)
    assert await _receivable(app, world) == 50_000
    assert (await world.reconciliation())["is_clean"]
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 150_000, "reason": "y"})
    assert refund.status_code == 201, refund.text
    state = (await _clawback(world, voucher)).json()
    assert (state["used"], state["recovered_by_refunds"], state["owed"], state["overpaid"]) == (0, 300_000, 0, 100_000)
    assert await _receivable(app, world) == 0
    # the pool got back what the refunds returned, once: the repayment is not in it as well
    assert await _pool(app, world) == pool + 300_000 <= world.programme["budget_total"]
    assert (await world.reconciliation())["is_clean"]


async def test_value_repaid_is_not_clawed_back_again(app, world: World) -> None:
    """100,000 of 300,000 used clawed back at revocation and repaid: 200,000 more may be clawed
    back later, not 300,000 (the receivable reads 0, but the repaid value was clawed back)."""
    voucher, _ = await _revoked_with_clawback(world, 100_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    repaid = await world.post(f"{base}/repayments", {"amount": 100_000, "reference": "B-2", "paid_on": "2026-03-02"},
                              key=world.operator)
    assert (repaid.json()["owed"], repaid.json()["room"]) == (0, 200_000)
    assert_problem(await world.post(base, {"amount": 200_001, "reason": "more"}, key=world.operator),
                   422, "validation_failed")
    more = await world.post(base, {"amount": 200_000, "reason": "more"}, key=world.operator)
    assert more.status_code == 200, more.text
    assert (more.json()["clawed_back"], more.json()["owed"], more.json()["room"]) == (300_000, 200_000, 0)
    assert (await world.reconciliation())["is_clean"]


async def test_the_reconciliation_counts_repayments_and_write_offs(app, world: World) -> None:
    """After a repayment and a write-off, a recovery posted behind the service (a refund journal
    taking more off the receivable) still shows, with what was repaid and written off."""
    from services.voucher.ledger import service as ledger
    from services.voucher.ledger.rules import AccountKind, transfer
    from services.voucher.tables import LedgerAccount

    voucher, _ = await _revoked_with_clawback(world, 300_000)
    base = f"/v1/vouchers/{voucher['id']}/clawback"
    for path, body in (("repayments", {"amount": 100_000, "reference": "B-3", "paid_on": "2026-03-02"}),
                       ("write-offs", {"amount": 50_000, "reason": "part forgiven"})):
        assert (await world.post(f"{base}/{path}", body, key=world.operator)).status_code == 200
    assert (await world.reconciliation())["is_clean"]
    async with app.state.database.unit_of_work() as session:
        receivable = (await session.execute(select(LedgerAccount.id).where(
            LedgerAccount.kind == "enterprise_receivable",
            LedgerAccount.enterprise_id == uuid.UUID(world.enterprise["id"])))).scalar_one()
        contra = (await ledger.programme_accounts(session, uuid.UUID(world.programme["id"])))[
            AccountKind.PROGRAMME_CLAWBACK]
        await ledger.post(session, kind="refund", legs=transfer(receivable, contra, 20_000, "CNY"),
                          now=datetime.now(UTC), programme_id=uuid.UUID(world.programme["id"]),
                          voucher_id=uuid.UUID(voucher["id"]), memo="forgiven")
    result = await world.reconciliation()
    assert result["clawback_differences"] == [{
        "what": "clawback owed for the voucher", "voucher_id": voucher["id"], "clawed_back": 300_000,
        "used": 300_000, "repaid": 100_000, "written_off": 50_000, "returned": 0, "owed": 130_000, "expected": 150_000}]
    async with app.state.database.unit_of_work() as session:
        await ledger.post(session, kind="refund", legs=transfer(contra, receivable, 20_000, "CNY"),
                          now=datetime.now(UTC), programme_id=uuid.UUID(world.programme["id"]),
                          voucher_id=uuid.UUID(voucher["id"]), memo="put back")
    assert (await world.reconciliation())["is_clean"]


async def test_an_expired_hold_reads_as_released_everywhere_before_the_job_runs(app, world: World, clock) -> None:
    """DESIGN §2: what every read shows already counts expired holds as released — the voucher,
    the provider's lookup, lists, the redemption and the trial balance — with no job run."""
    voucher = await world.issue(1_000_000)
    held = await world.hold(voucher, 100_000, order="PO-TTL")
    assert held.status_code == 201, held.text
    clock.advance(minutes=31)
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 1_000_000, "held": 0, "used": 0}
    listed = (await world.client.get("/v1/vouchers", headers=auth(world.enterprise_key))).json()["items"]
    assert [v["balances"] for v in listed if v["id"] == voucher["id"]] == [
        {"available": 1_000_000, "held": 0, "used": 0}]
    quote = await world.client.post("/v1/vouchers/lookup", json={
        "code": voucher["code"], "enterprise_uscc": world.enterprise["uscc"]}, headers=auth(world.provider_key))
    assert quote.json()["available"] == 1_000_000
    read = (await world.client.get(f"/v1/redemptions/{held.json()['id']}", headers=auth(world.provider_key))).json()
    assert (read["status"], read["void_reason"], read["voided_at"]) == ("voided", "expired",
                                                                        held.json()["hold_expires_at"])
    trial = (await world.client.get(f"/v1/programmes/{world.programme['id']}/trial-balance",
                                    headers=auth(world.auditor))).json()
    by_account = {a["voucher_id"] and a["kind"]: a for a in trial["accounts"] if a["voucher_id"] == voucher["id"]}
    assert by_account["voucher_available"]["balance"] == 1_000_000
    assert by_account["voucher_held"]["balance"] == 0
    assert by_account["voucher_held"]["unposted_expiry"] == -30_000
    assert trial["is_balanced"]
    for line in by_account.values():  # one account read alone says the same (an independent review
        alone = (await world.client.get(  # found it summing the postings only)
            f"/v1/ledger/accounts/{line['account_id']}/balance", headers=auth(world.auditor))).json()
        assert (alone["balance"], alone["unposted_expiry"]) == (line["balance"], line["unposted_expiry"]), line
        assert alone["enterprise_id"] == line["enterprise_id"] == world.enterprise["id"]  # a voucher's: its owner's
    # As of before the expiry, the hold still held; after the job posts the release, nothing is unposted.
    before = (await world.client.get(f"/v1/programmes/{world.programme['id']}/trial-balance",
                                     params={"as_of": held.json()["created_at"]}, headers=auth(world.auditor))).json()
    assert {a["kind"]: a["balance"] for a in before["accounts"] if a["voucher_id"] == voucher["id"]}[
        "voucher_held"] == 30_000
    assert await jobs.run_once(app.state.database, "expire-holds", clock()) == 1
    posted = (await world.client.get(f"/v1/programmes/{world.programme['id']}/trial-balance",
                                     headers=auth(world.auditor))).json()
    held_line = [a for a in posted["accounts"] if a["voucher_id"] == voucher["id"] and a["kind"] == "voucher_held"][0]
    assert (held_line["balance"], held_line["unposted_expiry"]) == (0, 0)
    read = (await world.client.get(f"/v1/redemptions/{held.json()['id']}", headers=auth(world.provider_key))).json()
    assert read["voided_at"] == held.json()["hold_expires_at"]  # the job keeps the moment it expired
    # As of a moment between the expiry and the job's posting, the hold counts as released too.
    between = (await world.client.get(f"/v1/programmes/{world.programme['id']}/trial-balance",
                                      params={"as_of": (clock() - timedelta(seconds=30)).isoformat()},
                                      headers=auth(world.auditor))).json()
    assert {a["kind"]: a["balance"] for a in between["accounts"] if a["voucher_id"] == voucher["id"]}[
        "voucher_held"] == 0
    for moment, held_then in ((held.json()["created_at"], 30_000), ((clock() - timedelta(seconds=30)).isoformat(), 0),
                              (clock().isoformat(), 0)):
        alone = (await world.client.get(f"/v1/ledger/accounts/{held_line['account_id']}/balance",
                                        params={"as_of": moment}, headers=auth(world.auditor))).json()
        assert alone["balance"] == held_then, (moment, alone)


async def test_a_hold_on_an_expired_voucher_reads_as_released_everywhere_before_the_job_runs(
        app, world: World, clock) -> None:
    """DESIGN §2: an expiring voucher's holds are voided first, and no read waits for a job: from
    the voucher's expiry its live holds read as void since then, reason `voucher_expired` — the
    redemption, the status filters, the voucher's balances, the trial balance — and the expiry
    job's posting records the same reason and instant."""
    voucher = await world.issue(1_000_000)
    expires_at = datetime.fromisoformat(voucher["expires_at"])
    clock.advance(seconds=(expires_at - clock()).total_seconds() - 600)
    held = (await world.hold(voucher, 100_000, order="PO-VX")).json()
    assert (held["status"], held["held_amount"]) == ("held", 30_000)
    clock.advance(seconds=660)  # the voucher expired a minute ago; the hold's TTL is 19 minutes away
    path, headers = f"/v1/redemptions/{held['id']}", auth(world.provider_key)

    async def read() -> tuple[str, str | None, datetime | None]:
        found = (await world.client.get(path, headers=headers)).json()
        return found["status"], found["void_reason"], found["voided_at"] and datetime.fromisoformat(found["voided_at"])

    async def listed(status: str) -> list[str]:
        page = await world.client.get("/v1/redemptions", params={"status": status}, headers=headers)
        assert page.status_code == 200, page.text
        return [r["id"] for r in page.json()["items"]]

    async def held_line(**params: str) -> dict[str, Any]:
        trial = await world.client.get(f"/v1/programmes/{world.programme['id']}/trial-balance", params=params,
                                       headers=auth(world.auditor))
        assert trial.status_code == 200 and trial.json()["is_balanced"], trial.text
        return [a for a in trial.json()["accounts"] if a["voucher_id"] == voucher["id"] and a["kind"] == "voucher_held"][0]

    assert await read() == ("voided", "voucher_expired", expires_at)
    assert held["id"] not in await listed("held") and held["id"] in await listed("voided")
    seen = await world.voucher(voucher["id"])
    assert (seen["status"], seen["balances"]) == ("expired", {"available": 1_000_000, "held": 0, "used": 0})
    vouchers = (await world.client.get("/v1/vouchers", headers=auth(world.enterprise_key))).json()["items"]
    assert [v["balances"] for v in vouchers if v["id"] == voucher["id"]] == [seen["balances"]]
    line_now = await held_line()
    assert (line_now["balance"], line_now["unposted_expiry"]) == (0, -30_000)
    assert (await held_line(as_of=(expires_at - timedelta(seconds=1)).isoformat()))["balance"] == 30_000
    assert (await held_line(as_of=(expires_at + timedelta(seconds=1)).isoformat()))["balance"] == 0

    clock.advance(minutes=30)  # the hold's TTL has passed as well by the time the job runs
    assert await jobs.run_once(app.state.database, "expire-vouchers", clock()) == 1
    assert await read() == ("voided", "voucher_expired", expires_at)  # the job keeps the moment it expired
    async with app.state.database.unit_of_work(write=False) as session:  # and announces it lapsed
        announced = (await session.execute(select(OutboxEvent.data).where(
            OutboxEvent.type == "hold.expired", OutboxEvent.resource_id == uuid.UUID(held["id"])))).scalars().all()
    assert [event["void_reason"] for event in announced] == ["voucher_expired"]
    line_posted = await held_line()
    assert (line_posted["balance"], line_posted["unposted_expiry"]) == (0, 0)
    assert (await held_line(as_of=(expires_at + timedelta(seconds=1)).isoformat()))["balance"] == 0
    # A row written before `rules.lapse` recorded the job's own moment as `voided_at`: as of an
    # instant before that, the trial balance follows the record (still held then), so reports of
    # the past do not change.
    async with app.state.database.unit_of_work() as session, guard_lifted(session, "redemption",
                                                                             "redemption_terms_fixed"):
        await session.execute(update(Redemption).where(col(Redemption.id) == uuid.UUID(held["id"]))
                              .values(voided_at=clock()))
    assert (await held_line(as_of=(expires_at + timedelta(seconds=1)).isoformat()))["balance"] == 30_000
    assert (await held_line())["balance"] == 0
    assert (await world.reconciliation())["is_clean"]


async def test_a_release_of_a_hold_whose_voucher_expired_first_records_the_vouchers_expiry(
        app, world: World, clock) -> None:
    """Whatever releases a hold after its voucher expired — the provider's void, the hold-expiry
    job once the TTL passes too — records that it lapsed with the voucher, then; a capture is
    refused as `voucher_expired`. A hold whose TTL passed before the voucher expired stays
    `expired` (released here by the voucher's next hold)."""
    voucher = await world.issue(1_000_000)
    expires_at = datetime.fromisoformat(voucher["expires_at"])
    clock.advance(seconds=(expires_at - clock()).total_seconds() - 2400)
    early = (await world.hold(voucher, 100_000, order="PO-E")).json()  # its TTL passes 10 minutes before
    clock.advance(seconds=1800)
    first = (await world.hold(voucher, 100_000, order="PO-A")).json()
    second = (await world.hold(voucher, 100_000, order="PO-B")).json()
    clock.advance(seconds=660)  # the voucher expired a minute ago
    assert_problem(await world.post(f"/v1/redemptions/{first['id']}/capture", idem="cap-a"), 409, "voucher_expired")
    voided = await world.post(f"/v1/redemptions/{first['id']}/void", idem="void-a")
    assert voided.status_code == 200, voided.text
    assert voided.json()["void_reason"] == "voucher_expired"
    assert datetime.fromisoformat(voided.json()["voided_at"]) == expires_at
    clock.advance(minutes=30)  # the second hold's TTL has passed as well; the voucher's expiry is not posted
    assert await jobs.run_once(app.state.database, "expire-holds", clock()) == 1
    for hold_, reason, at in ((second, "voucher_expired", expires_at),
                              (early, "expired", datetime.fromisoformat(early["hold_expires_at"]))):
        found = (await world.client.get(f"/v1/redemptions/{hold_['id']}", headers=auth(world.provider_key))).json()
        assert (found["status"], found["void_reason"], datetime.fromisoformat(found["voided_at"])) == (
            "voided", reason, at)
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 1_000_000, "held": 0, "used": 0}
    assert (await world.reconciliation())["is_clean"]


async def test_an_expected_subsidy_is_granted_exactly_or_refused(world: World) -> None:
    voucher = await world.issue(1_000_000)
    body = hold_body(voucher["code"], world.enterprise["uscc"], "PO-Q1", [("accelerator:domestic", 100_000)])
    exact = await world.post("/v1/redemptions/holds", {**body, "expected_subsidy": 20_000}, idem="q1")
    assert exact.status_code == 201, exact.text
    assert exact.json()["held_amount"] == 20_000
    assert exact.json()["computation"]["limited_by"] == "expected_subsidy"
    assert exact.json()["computation"]["steps"][-1] == {"limit": "expected_subsidy", "room": 20_000,
                                                        "before": 30_000, "after": 20_000}
    too_much = {**hold_body(voucher["code"], world.enterprise["uscc"], "PO-Q2", [("accelerator:domestic", 100_000)]),
                "expected_subsidy": 30_001}
    refused = assert_problem(await world.post("/v1/redemptions", too_much, idem="q2"), 409, "subsidy_below_expected")
    assert (refused["expected_subsidy"], refused["subsidy"], refused["limited_by"]) == (30_001, 30_000, "rates")
    assert (await world.voucher(voucher["id"]))["balances"] == {"available": 980_000, "held": 20_000, "used": 0}
    again = await world.post("/v1/redemptions", too_much, idem="q2")  # the refusal is the key's answer
    assert again.status_code == 409 and again.headers.get("idempotent-replayed") == "true"
    for bad in (0, -1, 1.5, "100"):
        assert_problem(await world.post("/v1/redemptions", {**too_much, "expected_subsidy": bad}), 422,
                       "validation_failed")
    assert (await world.reconciliation())["is_clean"]


async def test_the_computation_shows_the_spend_and_the_subsidy_before_the_order(world: World) -> None:
    """The office and the enterprise read the enterprise's spend and subsidy this period before
    the order; the provider's own answer leaves them out (next test)."""
    voucher = await world.issue(5_000_000)
    first = await world.hold(voucher, 1_000_000, order="PO-S1", path="/v1/redemptions")
    computation = await world.computation(first)
    assert (computation["spend_this_period_before"], computation["subsidy_this_period_before"]) == (0, 0)
    second = await world.hold(voucher, 200_000, order="PO-S2", path="/v1/redemptions")
    for key in (world.operator, world.auditor, world.enterprise_key):
        computation = await world.computation(second, key=key)
        assert computation["spend_this_period_before"] == 1_000_000
        assert computation["subsidy_this_period_before"] == 300_000
        assert "subsidised_this_period_before" not in computation
        assert [step.get("room") for step in computation["steps"] if step["limit"] == "enterprise_cap"] \
            == [world.programme["enterprise_cap"] - 300_000]


async def test_a_provider_learns_nothing_of_the_enterprise_s_orders_with_other_providers(app, world: World) -> None:
    """Invariant 8: a provider sees only its own redemptions. The enterprise's spend and subsidy
    this period, and its cap's room, sum its orders with every provider: a second provider quoting
    a small order again and again had read the first one's orders off them (an independent
    review, December 2026). No answer to a provider — a quote, a hold, a redeem, a refusal, a
    read — carries them."""
    other = await create(world.client, world.operator, "/v1/providers", provider_payload())
    await world.client.post(f"/v1/providers/{other['id']}/approve", json={"reason": "ok"}, headers=auth(world.operator))
    enrolled = await world.client.put(f"/v1/programmes/{world.programme['id']}/enrolments/{other['id']}",
                                      headers=auth(world.operator))
    assert enrolled.status_code in (200, 201), enrolled.text
    other_key = await make_key(app, "provider", provider_id=uuid.UUID(other["id"]))
    first, second = await world.issue(5_000_000), await world.issue(5_000_000)
    assert (await world.hold(first, 1_234_500, order="A-SECRET")).status_code == 201

    def hidden(computation: dict[str, Any]) -> None:
        assert "spend_this_period_before" not in computation and "subsidy_this_period_before" not in computation
        limits = [step["limit"] for step in computation["steps"]]
        assert computation["steps"][limits.index("enterprise_cap")] == {"limit": "enterprise_cap"}
        assert "before" not in computation["steps"][limits.index("enterprise_cap") + 1]
        # the voucher's balance is the provider's to see (GET /v1/vouchers/lookup answers it)
        assert [step["room"] > 0 for step in computation["steps"] if step["limit"] == "voucher_balance"] == [True]

    body = hold_body(second["code"], world.enterprise["uscc"], "B-1", [("accelerator:domestic", 100)])
    quoted = await world.client.post("/v1/redemptions/quote", json=body, headers=auth(other_key))
    assert quoted.status_code == 200, quoted.text
    hidden(quoted.json()["computation"])
    held = await world.hold(second, 100, order="B-1", provider_key=other_key)
    assert held.status_code == 201, held.text
    hidden(held.json()["computation"])
    read = await world.client.get(f"/v1/redemptions/{held.json()['id']}", headers=auth(other_key))
    hidden(read.json()["computation"])
    listed = await world.client.get("/v1/redemptions", headers=auth(other_key))
    assert [r["id"] for r in listed.json()["items"]] == [held.json()["id"]]
    hidden(listed.json()["items"][0]["computation"])
    refused = assert_problem(await world.post("/v1/redemptions", {**body, "order_reference": "B-2",
                                                                  "expected_subsidy": 31}, key=other_key),
                             409, "subsidy_below_expected")
    hidden(refused["computation"])
    # the office still reads the whole computation of the second provider's hold
    assert (await world.computation(held))["spend_this_period_before"] == 1_234_500
    # An order larger than the cap's room: the cap's step would have shown the room as its
    # `after`, and the voucher's step as its `before` (the review's 10^12-order quote). Neither
    # figure the enterprise's other orders make appears anywhere in the answer.
    office = await world.computation(held)  # B-1's; B-3 comes after it (B-2 was refused)
    spend = office["spend_this_period_before"] + 100
    subsidised = office["subsidy_this_period_before"] + held.json()["held_amount"]
    room = world.programme["enterprise_cap"] - subsidised
    huge = hold_body(second["code"], world.enterprise["uscc"], "B-3", [("accelerator:domestic", 10**12)])
    quoted = await world.client.post("/v1/redemptions/quote", json=huge, headers=auth(other_key))
    assert quoted.status_code == 200 and quoted.json()["limited_by"] == "voucher_balance", quoted.text
    hidden(quoted.json()["computation"])

    def numbers(value: Any) -> set[int]:
        if isinstance(value, dict):
            return set().union(*(numbers(v) for v in value.values()))
        if isinstance(value, list):
            return set().union(*(numbers(v) for v in value))
        return {value} if isinstance(value, int) else set()

    assert quoted.json()["computation"]["gross_subsidy"] > room  # so the cap's step, shown whole, would name it
    assert not numbers(quoted.json()) & {room, spend, subsidised}

@pytest.mark.ledger_tampered  # the spend counter set as 9,223 orders would leave it
async def test_an_enterprise_s_orders_this_period_sum_to_at_most_the_service_s_limit(app, world: World) -> None:
    """Each order is at most MAX_AMOUNT but their running sum is not: 9,224 orders of it had
    overflowed the period's BIGINT counter, after which every hold of the enterprise failed as
    `unstorable_value` (an independent review, December 2026). A hold that would take the sum
    past MAX_PERIOD_SPEND is refused by its own code and changes nothing; one that stays within
    it is held."""
    from services.voucher.money import MAX_PERIOD_SPEND
    from services.voucher.tables import EnterprisePeriodUsage

    voucher = await world.issue(1_000_000)
    assert (await world.hold(voucher, 100, order="first")).status_code == 201
    async with app.state.database.unit_of_work() as session:  # as 9,223 orders of MAX_AMOUNT would leave it
        await session.execute(update(EnterprisePeriodUsage).values(subsidised_spend=MAX_PERIOD_SPEND - 50))
    before = await world.voucher(voucher["id"])
    refused = assert_problem(await world.hold(voucher, 51, order="past"), 409, "period_spend_limit_reached")
    assert refused["max_period_spend"] == MAX_PERIOD_SPEND
    assert (await world.voucher(voucher["id"]))["balances"] == before["balances"]
    assert (await world.hold(voucher, 50, order="within")).status_code == 201
    async with app.state.database.unit_of_work(write=False) as session:
        spend = (await session.execute(select(EnterprisePeriodUsage.subsidised_spend))).scalar_one()
    assert spend == MAX_PERIOD_SPEND and isinstance(spend, int)


@pytest.mark.ledger_tampered  # the spend counter set as 9,223 orders would leave it
async def test_the_period_spend_limit_counts_what_the_same_hold_releases(app, world: World, clock) -> None:
    """A hold releases its voucher's holds past their TTL in the same transaction: their spend
    leaves the counter as the new order's enters, so the limit is judged on the counter after both
    (a review had a hold refused until the expiry job ran: DESIGN §6)."""
    from services.voucher.money import MAX_PERIOD_SPEND
    from services.voucher.tables import EnterprisePeriodUsage

    voucher = await world.issue(1_000_000)
    assert (await world.hold(voucher, 100, order="lapsing")).status_code == 201
    async with app.state.database.unit_of_work() as session:  # its 100 among them
        await session.execute(update(EnterprisePeriodUsage).values(subsidised_spend=MAX_PERIOD_SPEND - 50))
    clock.advance(seconds=1801)  # "lapsing" is past its TTL; no job has posted it
    held = await world.hold(voucher, 150, order="after")  # MAX - 50 - 100 + 150 = MAX
    assert held.status_code == 201, held.text
    async with app.state.database.unit_of_work(write=False) as session:
        assert (await session.execute(select(EnterprisePeriodUsage.subsidised_spend))).scalar_one() == MAX_PERIOD_SPEND
    assert_problem(await world.hold(voucher, 1, order="past"), 409, "period_spend_limit_reached")


async def test_a_capture_says_revoked_only_of_a_hold_the_revocation_voided(world: World) -> None:
    """A hold the provider voided before the voucher was revoked is `hold_not_active`; one the
    revocation voided is `voucher_revoked` (the review of the change found the first called
    revoked too)."""
    voucher = await world.issue(10_000_000)
    voided = (await world.hold(voucher, 1_000_000, order="RV-1")).json()
    live = (await world.hold(voucher, 1_000_000, order="RV-2")).json()
    assert (await world.post(f"/v1/redemptions/{voided['id']}/void", {})).status_code == 200
    assert (await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "fraud"},
                             key=world.operator)).status_code == 200
    assert_problem(await world.post(f"/v1/redemptions/{voided['id']}/capture", {}), 409, "hold_not_active")
    assert_problem(await world.post(f"/v1/redemptions/{live['id']}/capture", {}), 409, "voucher_revoked")


async def test_a_mistyped_uscc_is_a_field_error_not_a_missing_voucher(app, world: World) -> None:
    """An integrator could not tell a typo in the enterprise's USCC from a wrong voucher: every
    value route answered 404 'no voucher with this code for this enterprise' (an independent
    review). The check character is public arithmetic, so checking it first tells nothing."""
    voucher = await world.issue(1_000_000)
    good = world.enterprise["uscc"]
    typo = good[:-1] + ("0" if good[-1] != "0" else "1")
    body = hold_body(voucher["code"], typo, "PO-TYPO", [("accelerator:domestic", 1_000)])
    for path, payload in (("/v1/redemptions/quote", body), ("/v1/redemptions/holds", body), ("/v1/redemptions", body),
                          ("/v1/vouchers/lookup", {"code": voucher["code"], "enterprise_uscc": typo})):
        response = await world.client.post(path, json=payload,
                                           headers=auth(world.provider_key, **{"Idempotency-Key": f"typo-{path}"}))
        problem = assert_problem(response, 422, "validation_failed")
        assert [(e["pointer"], e["type"]) for e in problem["errors"]] == [("/enterprise_uscc", "uscc_check_character")], path
    # the same code in lower case, with spaces around, is the enterprise's
    found = await world.client.post("/v1/vouchers/lookup", json={"code": voucher["code"],
                                                                  "enterprise_uscc": f" {good.lower()} "},
                                    headers=auth(world.provider_key))
    assert found.status_code == 200, found.text


async def test_a_provider_s_order_reference_may_not_take_a_claim_s_form(world: World) -> None:
    """A claim's order is keyed by its provider and `invoice:<invoice>:<amount>:<USCC>`, every part
    of which the provider knows. Taken first by a provider's hold (then voided: the order stays),
    the enterprise's genuine claim naming that provider had been 409 `invoice_already_claimed`
    for good, and a quote with the reference told the provider whether the claim was filed (an
    independent review, December 2026). The form is kept for claims: 422 on every value route,
    and nothing is written."""
    voucher = await world.issue(1_000_000)
    squatted = f"invoice:24332000000012345678:300000:{world.enterprise['uscc']}"
    for path in ("/v1/redemptions/holds", "/v1/redemptions", "/v1/redemptions/quote"):
        refused = await world.hold(voucher, 1_000_000, order=squatted, path=path, key=f"sq-{path}")
        problem = assert_problem(refused, 422, "validation_failed")
        assert [e["pointer"] for e in problem["errors"]] == ["/order_reference"], path
    assert (await world.voucher(voucher["id"]))["balances"]["available"] == 1_000_000
    allowed = await world.hold(voucher, 1_000_000, order="Invoice-2433:300000", path="/v1/redemptions")
    assert allowed.status_code == 201, allowed.text  # only the claims' own prefix is kept


async def test_a_stored_answer_is_not_replayed_to_a_key_without_the_routes_scope(app, world: World) -> None:
    """Stored answers belong to the principal, so another key of the same provider may replay
    one, but only with the route's own scope: a read-only key sending a redeem's
    Idempotency-Key is refused 403, as any redeem of its would be, and learns nothing of the
    answer (the order of the two checks had no test; an independent review, December 2026)."""
    voucher = await world.issue(10_000_000)
    redeemed = await world.hold(voucher, 1_000_000, order="PO-SCOPE", path="/v1/redemptions", key="scoped-1")
    assert redeemed.status_code == 201, redeemed.text
    reader = await make_key(app, "provider", provider_id=world.provider["id"], scopes=["redemptions:read"])
    replay = await world.hold(voucher, 1_000_000, order="PO-SCOPE", path="/v1/redemptions", key="scoped-1",
                              provider_key=reader)
    problem = assert_problem(replay, 403, "insufficient_scope")
    assert redeemed.json()["id"] not in replay.text
    again = await world.hold(voucher, 1_000_000, order="PO-SCOPE", path="/v1/redemptions", key="scoped-1")
    assert again.status_code == 201 and again.json()["id"] == redeemed.json()["id"], problem
