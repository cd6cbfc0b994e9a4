"""Issuing vouchers commits budget and cap atomically; lifecycle; tenancy; expiry on read."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from services.voucher.tables import AuditEvent
from tests.support import (
    assert_problem,
    auth,
    create,
    enterprise_payload,
    fresh_key,
    programme_payload,
)
from tests.world import World, build_world


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, budget_total=100_000_000, enterprise_cap=30_000_000,
                             max_per_voucher=20_000_000)


async def test_issue_moves_budget_into_the_voucher(world: World) -> None:
    voucher = await world.issue(15_000_000)
    assert voucher["status"] == "active"
    assert voucher["balances"] == {"available": 15_000_000, "held": 0, "used": 0}
    assert voucher["code"].startswith("CV-")
    assert voucher["period_key"] == "2026"
    recon = await world.reconciliation()
    assert recon["is_clean"] and recon["postings"] >= 4


async def test_issue_refusals_change_nothing(world: World) -> None:
    assert_problem(await world.client.post("/v1/vouchers", json={
        "programme_id": world.programme["id"], "enterprise_id": world.enterprise["id"], "face_value": 20_000_001},
        headers=auth(world.operator, **fresh_key())), 409, "exceeds_max_per_voucher")
    await world.issue(20_000_000)
    over_cap = await world.client.post("/v1/vouchers", json={
        "programme_id": world.programme["id"], "enterprise_id": world.enterprise["id"], "face_value": 10_000_001},
        headers=auth(world.operator, **fresh_key()))
    problem = assert_problem(over_cap, 409, "enterprise_cap_exceeded")
    assert problem["remaining"] == 10_000_000
    # Amounts read as money, never as raw fen; the extension members stay integers for machines.
    assert problem["detail"] == ("the enterprise has been granted ¥200,000.00 and has ¥0.00 approved awaiting issue, "
                                 "of its ¥300,000.00 cap for 2026; ¥100,000.01 more would exceed it")
    assert (problem["granted"], problem["cap"]) == (20_000_000, 30_000_000)
    vouchers = (await world.client.get("/v1/vouchers", headers=auth(world.operator, **fresh_key()))).json()["items"]
    assert len(vouchers) == 1


async def test_budget_is_never_overcommitted(app, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client, budget_total=25_000_000, enterprise_cap=20_000_000,
                              max_per_voucher=20_000_000)
    other = await create(client, world.operator, "/v1/enterprises", enterprise_payload())
    await world.issue(20_000_000)
    refused = await client.post("/v1/vouchers", json={
        "programme_id": world.programme["id"], "enterprise_id": other["id"], "face_value": 5_000_001},
        headers=auth(world.operator, **fresh_key()))
    assert_problem(refused, 409, "budget_exhausted")
    ok = await client.post("/v1/vouchers", json={
        "programme_id": world.programme["id"], "enterprise_id": other["id"], "face_value": 5_000_000},
        headers=auth(world.operator, **fresh_key()))
    assert ok.status_code == 201


async def test_bulk_issue_is_all_or_nothing(world: World) -> None:
    body = {"programme_id": world.programme["id"], "grants": [
        {"enterprise_id": world.enterprise["id"], "face_value": 10_000_000},
        {"enterprise_id": world.enterprise["id"], "face_value": 10_000_000},
        {"enterprise_id": world.enterprise["id"], "face_value": 10_000_001},  # over the cap
    ]}
    refused = await world.client.post("/v1/vouchers/bulk", json=body, headers=auth(world.operator, **fresh_key()))
    problem = assert_problem(refused, 409, "enterprise_cap_exceeded")
    assert problem["grant_index"] == 2  # the third grant: numbered from 1 in the text
    assert problem["detail"] == ("grant 3: the enterprise has been granted ¥200,000.00 and has ¥0.00 approved "
                                 "awaiting issue, of its ¥300,000.00 cap for 2026; ¥100,000.01 more would exceed it; "
                                 "no voucher of this batch was issued")
    assert (await world.client.get("/v1/vouchers", headers=auth(world.operator, **fresh_key()))).json()["items"] == []
    body["grants"][2]["face_value"] = 10_000_000
    issued = await world.client.post("/v1/vouchers/bulk", json=body, headers=auth(world.operator, **fresh_key()))
    assert issued.status_code == 201 and len(issued.json()) == 3


async def test_draft_programme_cannot_issue(app, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    draft = await create(client, world.operator, "/v1/programmes", programme_payload())
    refused = await client.post("/v1/vouchers", json={
        "programme_id": draft["id"], "enterprise_id": world.enterprise["id"], "face_value": 1},
        headers=auth(world.operator, **fresh_key()))
    assert_problem(refused, 409, "programme_not_open")


async def test_enterprise_reads_only_its_own_vouchers(app, world: World) -> None:
    mine = await world.issue(1_000_000)
    other = await create(world.client, world.operator, "/v1/enterprises", enterprise_payload())
    theirs = await create(world.client, world.operator, "/v1/vouchers", {
        "programme_id": world.programme["id"], "enterprise_id": other["id"], "face_value": 1_000_000})
    listed = (await world.client.get("/v1/vouchers", headers=auth(world.enterprise_key))).json()["items"]
    assert [v["id"] for v in listed] == [mine["id"]]
    assert_problem(await world.client.get(f"/v1/vouchers/{theirs['id']}", headers=auth(world.enterprise_key)),
                   404, "not_found")
    # providers never list vouchers; they look one up by code and USCC
    assert (await world.client.get("/v1/vouchers", headers=auth(world.provider_key))).status_code == 403


async def test_provider_lookup_needs_code_and_uscc(world: World) -> None:
    voucher = await world.issue(1_000_000)
    ok = await world.client.post("/v1/vouchers/lookup", json={
        "code": voucher["code"].lower().replace("-", ""), "enterprise_uscc": world.enterprise["uscc"]},
        headers=auth(world.provider_key))
    assert ok.status_code == 200
    assert set(ok.json()) == {"code", "kind", "unit", "status", "available", "valid_from", "expires_at"}
    assert ok.json()["available"] == 1_000_000
    wrong_uscc = await world.client.post("/v1/vouchers/lookup", json={
        "code": voucher["code"], "enterprise_uscc": enterprise_payload()["uscc"]}, headers=auth(world.provider_key))
    assert_problem(wrong_uscc, 404, "not_found")
    code = voucher["code"]
    typo = code[:-1] + ("0" if code[-1] != "0" else "1")
    mistyped = await world.client.post("/v1/vouchers/lookup", json={
        "code": typo, "enterprise_uscc": world.enterprise["uscc"]}, headers=auth(world.provider_key))
    assert_problem(mistyped, 422, "invalid_voucher_code")


async def test_suspend_resume_and_illegal_transitions(world: World) -> None:
    voucher = await world.issue(1_000_000)
    path = f"/v1/vouchers/{voucher['id']}"
    suspended = await world.post(f"{path}/suspend", {"reason": "check"}, key=world.operator)
    assert suspended.json()["status"] == "suspended"
    assert_problem(await world.post(f"{path}/suspend", {"reason": "again"}, key=world.operator), 409,
                   "invalid_transition")
    assert (await world.post(f"{path}/resume", {"reason": "ok"}, key=world.operator)).json()["status"] == "active"
    assert_problem(await world.post(f"{path}/resume", {"reason": "again"}, key=world.operator), 409,
                   "invalid_transition")


async def test_only_a_suspension_is_resumed_and_a_refusal_records_nothing(app, world: World) -> None:
    """An independent review resumed an exhausted voucher: 200, its reason overwritten and a
    `voucher.resumed` event for a change that was none. Exhausted → active is a refund's."""
    voucher = await world.issue(300_000)
    spent = await world.hold(voucher, 1_000_000, order="PO-X", path="/v1/redemptions")
    assert spent.status_code == 201, spent.text
    before = await world.voucher(voucher["id"])
    assert before["status"] == "exhausted"
    events = await _audit_events(app)
    problem = assert_problem(await world.post(f"/v1/vouchers/{voucher['id']}/resume", {"reason": "x"},
                                              key=world.operator), 409, "invalid_transition")
    assert problem["current_status"] == "exhausted"
    assert await _audit_events(app) == events
    assert await world.voucher(voucher["id"]) == before


async def test_the_expiry_job_leaves_a_revoked_voucher_alone(app, world: World, clock) -> None:
    """A revoked voucher has nothing left to expire: the job records no `voucher.expired` for it
    (an independent review found one, with the status unchanged)."""
    from services.voucher import jobs

    voucher = await world.issue(1_000_000)
    assert (await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "fraud"},
                             key=world.operator)).status_code == 200
    clock.current = datetime.fromisoformat(voucher["expires_at"]) + timedelta(days=1)
    events = await _audit_events(app)
    assert await jobs.run_once(app.state.database, "expire-vouchers", clock()) == 0
    assert await _audit_events(app) == events
    assert (await world.voucher(voucher["id"]))["status"] == "revoked"


async def _audit_events(app) -> int:
    async with app.state.database.unit_of_work(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(AuditEvent))).scalar_one())


async def test_revoke_returns_unused_value_to_the_pool_and_records_clawback(world: World) -> None:
    voucher = await world.issue(10_000_000)
    captured = await world.hold(voucher, 10_000_000, order="PO-1", path="/v1/redemptions")
    assert captured.status_code == 201, captured.text  # 30 % of ¥100,000.00 = ¥30,000.00 used
    held = await world.hold(voucher, 1_000_000, order="PO-2")
    assert held.status_code == 201
    too_much = await world.post(f"/v1/vouchers/{voucher['id']}/revoke",
                                {"reason": "fraud", "clawback": 3_000_001}, key=world.operator)
    assert_problem(too_much, 422, "validation_failed")
    revoked = await world.post(f"/v1/vouchers/{voucher['id']}/revoke",
                               {"reason": "fraud", "clawback": 3_000_000}, key=world.operator)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["balances"] == {"available": 0, "held": 0, "used": 3_000_000}
    hold = (await world.client.get(f"/v1/redemptions/{held.json()['id']}", headers=auth(world.provider_key))).json()
    assert hold["status"] == "voided" and hold["void_reason"] == "voucher_revoked"
    assert (await world.reconciliation())["is_clean"]
    assert_problem(await world.post(f"/v1/vouchers/{voucher['id']}/resume", {"reason": "x"}, key=world.operator),
                   409, "invalid_transition")


async def test_expiry_applies_on_read_and_the_job_posts_it(app, world: World, clock) -> None:
    from services.voucher.vouchers import service as vouchers

    voucher = await world.issue(5_000_000)
    clock.advance(days=366)
    read = await world.voucher(voucher["id"])
    assert read["status"] == "expired"
    assert read["balances"]["available"] == 5_000_000  # not posted yet: the ledger is the truth
    refused = await world.hold(voucher, 1_000_000, order="PO-late")
    assert_problem(refused, 409, "voucher_expired")
    async with app.state.database.unit_of_work() as session:
        assert await vouchers.expire_due(session, clock()) == 1
    async with app.state.database.unit_of_work() as session:
        assert await vouchers.expire_due(session, clock()) == 0  # idempotent
    after = await world.voucher(voucher["id"])
    assert after["status"] == "expired" and after["balances"]["available"] == 0
    assert (await world.reconciliation())["is_clean"]


async def test_the_status_filter_reads_each_voucher_as_it_reads_now(app, world: World, clock) -> None:
    """Past its validity, before the worker posts its expiry, a voucher reads expired: the list
    had filtered on the stored status, so ?status=active answered it (showing "expired") and
    ?status=expired left it out (an independent review)."""
    from services.voucher import jobs

    lapsing = await world.issue(1_000_000)
    clock.advance(days=200)
    later = await world.issue(1_000_000)
    clock.current = datetime.fromisoformat(lapsing["expires_at"]) + timedelta(minutes=1)

    async def listed(status: str) -> list[tuple[str, str]]:
        for key in (world.operator, world.enterprise_key):
            page = await world.client.get(f"/v1/vouchers?status={status}&programme_id={world.programme['id']}",
                                          headers=auth(key))
            assert page.status_code == 200, page.text
            items = [(v["id"], v["status"]) for v in page.json()["items"]]
            assert all(shown == status for _, shown in items), (status, items)
        return items

    for _ in range(2):  # before the worker's round, and after it
        assert await listed("active") == [(later["id"], "active")]
        assert await listed("expired") == [(lapsing["id"], "expired")]
        await jobs.run_once(app.state.database, "expire-vouchers", clock())


async def test_an_exhausted_voucher_can_be_suspended_and_a_refund_does_not_reopen_it(world: World) -> None:
    """An office investigating a fully used voucher could not suspend it, and the next refund
    made it spendable again (an independent review)."""
    voucher = await world.issue(300_000)
    redeemed = await world.hold(voucher, 1_000_000, order="EX-1", path="/v1/redemptions")
    assert redeemed.status_code == 201, redeemed.text
    assert (await world.voucher(voucher["id"]))["status"] == "exhausted"
    suspended = await world.post(f"/v1/vouchers/{voucher['id']}/suspend", {"reason": "under investigation"},
                                 key=world.operator)
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended", suspended.text
    refund = await world.post(f"/v1/redemptions/{redeemed.json()['id']}/refunds",
                              {"amount": 100_000, "reason": "partly undelivered"}, key=world.provider_key)
    assert refund.status_code == 201, refund.text
    read = await world.voucher(voucher["id"])
    assert (read["status"], read["balances"]["available"]) == ("suspended", 100_000)
    assert_problem(await world.hold(voucher, 100_000, order="EX-2"), 409, "voucher_suspended")
    resumed = await world.post(f"/v1/vouchers/{voucher['id']}/resume", {"reason": "cleared"}, key=world.operator)
    assert resumed.status_code == 200 and resumed.json()["status"] == "active", resumed.text
    assert (await world.reconciliation())["is_clean"]


async def test_history_lists_the_vouchers_postings(world: World) -> None:
    voucher = await world.issue(5_000_000)
    await world.hold(voucher, 1_000_000, order="PO-h")
    first = (await world.client.get(f"/v1/vouchers/{voucher['id']}/history?limit=1",
                                    headers=auth(world.enterprise_key))).json()
    assert first["items"][0]["kind"] == "voucher_issued" and first["items"][0]["amount"] == 5_000_000
    rest = (await world.client.get(f"/v1/vouchers/{voucher['id']}/history?cursor={first['next_cursor']}",
                                   headers=auth(world.enterprise_key))).json()
    assert [(p["kind"], p["account"], p["amount"]) for p in rest["items"]] == [
        ("hold_placed", "available", -300_000), ("hold_placed", "held", 300_000)]
