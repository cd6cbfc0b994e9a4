"""Publicity ends in an issued voucher; a closed programme honours it; archiving waits for it."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import assert_problem, auth, create, fresh_key
from tests.world import build_world


async def test_apply_approve_publicity_issue(app, client: httpx.AsyncClient, clock) -> None:
    rules = {"all": [{"id": "region", "check": "region_in", "regions": ["330110"]},
                     {"id": "cap", "check": "requested_within_remaining_cap"}]}
    world = await build_world(app, client, eligibility_rules=rules, publicity_days=5,
                              budget_total=100_000_000, enterprise_cap=30_000_000, max_per_voucher=20_000_000)
    application = await create(client, world.enterprise_key, "/v1/applications", {
        "programme_id": world.programme["id"], "requested_amount": 20_000_000, "purpose": "training"})
    assert application["status"] == "under_review", application
    assert application["eligibility"]["passed"] is True
    approved = await client.post(f"/v1/applications/{application['id']}/approve", json={"amount": 15_000_000},
                                 headers=auth(world.operator, **fresh_key()))
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "publicity"
    notice = await client.get(f"/v1/programmes/{world.programme['id']}/publicity")
    assert notice.status_code == 200, notice.text
    assert notice.json()["items"][0]["approved_amount"] == 15_000_000
    recon = await world.reconciliation()
    assert recon["is_clean"], recon
    clock.advance(days=5)
    read = await client.get(f"/v1/applications/{application['id']}", headers=auth(world.enterprise_key),)
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["status"] == "issued", body
    voucher = await world.voucher(body["voucher_id"])
    assert voucher["face_value"] == 15_000_000
    assert (await world.reconciliation())["is_clean"]
    zh = await client.get(f"/v1/applications/{application['id']}",
                          headers=auth(world.enterprise_key, **{"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}))
    assert "注册地" in zh.json()["eligibility"]["result"]["rules"][0]["reason"]


async def test_archiving_waits_for_commitments_in_publicity(app, client: httpx.AsyncClient, clock) -> None:
    world = await build_world(app, client, publicity_days=3, budget_total=100_000_000,
                              enterprise_cap=30_000_000, max_per_voucher=20_000_000)
    application = await create(client, world.enterprise_key, "/v1/applications", {
        "programme_id": world.programme["id"], "requested_amount": 10_000_000, "purpose": "inference"})
    approved = await client.post(f"/v1/applications/{application['id']}/approve", json={"amount": 10_000_000},
                                 headers=auth(world.operator, **fresh_key()))
    assert approved.status_code == 200, approved.text
    programme = f"/v1/programmes/{world.programme['id']}"
    closed = await client.post(f"{programme}/close", headers=auth(world.operator))
    assert closed.status_code == 200, closed.text
    refused = await client.post(f"{programme}/archive", headers=auth(world.operator))
    problem = assert_problem(refused, 409, "invalid_transition")
    assert (problem["committed"], problem["open_applications"], problem["current_status"]) == (
        10_000_000, 1, "closed")
    # A closed programme still honours the approval when publicity ends; then it can be archived.
    clock.advance(days=3)
    issued = (await client.get(f"/v1/applications/{application['id']}", headers=auth(world.operator))).json()
    assert issued["status"] == "issued"
    voucher = await world.voucher(issued["voucher_id"])
    assert voucher["face_value"] == 10_000_000
    # The voucher can still be spent: archiving waits for it to expire (or be revoked) too.
    problem = assert_problem(await client.post(f"{programme}/archive", headers=auth(world.operator)),
                             409, "invalid_transition")
    assert (problem["live_vouchers"], problem["unpaid"]) == (1, 0)
    revoked = await client.post(f"/v1/vouchers/{voucher['id']}/revoke", json={"reason": "programme wound up"},
                                headers=auth(world.operator, **fresh_key()))
    assert revoked.status_code == 200, revoked.text
    archived = await client.post(f"{programme}/archive", headers=auth(world.operator))
    assert archived.status_code == 200, archived.text


async def test_archiving_waits_for_applications_under_review(app, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    application = await create(client, world.enterprise_key, "/v1/applications", {
        "programme_id": world.programme["id"], "requested_amount": 1_000_000, "purpose": "inference"})
    programme = f"/v1/programmes/{world.programme['id']}"
    assert (await client.post(f"{programme}/close", headers=auth(world.operator))).status_code == 200
    problem = assert_problem(await client.post(f"{programme}/archive", headers=auth(world.operator)),
                             409, "invalid_transition")
    assert (problem["committed"], problem["open_applications"]) == (0, 1)
    rejected = await client.post(f"/v1/applications/{application['id']}/reject", json={"reason": "window closed"},
                                 headers=auth(world.operator))
    assert rejected.status_code == 200, rejected.text
    assert (await client.post(f"{programme}/archive", headers=auth(world.operator))).status_code == 200


async def test_ended_publicity_shows_in_every_read_without_the_job(app, client: httpx.AsyncClient, clock) -> None:
    """The enterprise's voucher list and a status=issued filter see vouchers whose publicity
    ended, before anyone has read the application and without the job."""
    world = await build_world(app, client, publicity_days=2, budget_total=100_000_000,
                              enterprise_cap=30_000_000, max_per_voucher=20_000_000)
    application = await create(client, world.enterprise_key, "/v1/applications", {
        "programme_id": world.programme["id"], "requested_amount": 7_000_000, "purpose": "inference"})
    approved = await client.post(f"/v1/applications/{application['id']}/approve", json={"amount": 7_000_000},
                                 headers=auth(world.operator, **fresh_key()))
    assert approved.status_code == 200, approved.text
    mine = await client.get("/v1/vouchers", headers=auth(world.enterprise_key))
    assert mine.json()["items"] == []
    clock.advance(days=2)
    mine = (await client.get("/v1/vouchers", headers=auth(world.enterprise_key))).json()["items"]
    assert [(v["face_value"], v["valid_from"]) for v in mine] == [(7_000_000, approved.json()["publicity_ends_at"])]
    issued = await client.get("/v1/applications", params={"status": "issued"}, headers=auth(world.operator))
    assert [a["id"] for a in issued.json()["items"]] == [application["id"]]


async def test_an_applications_reasons_and_an_objection_are_words(app, client: httpx.AsyncClient) -> None:
    """Kept as the application's status reason and in the audit trail, as a settlement's reason is:
    blank text or a terminal escape had been recorded (a review of the notes' rule)."""
    world = await build_world(app, client)
    application = await create(client, world.enterprise_key, "/v1/applications", {
        "programme_id": world.programme["id"], "requested_amount": 1_000_000, "purpose": "inference"})
    for reason in ("  \n ", "late\x1b[2J"):
        assert_problem(await client.post(f"/v1/applications/{application['id']}/reject", json={"reason": reason},
                                         headers=auth(world.operator)), 422, "validation_failed")
        assert_problem(await client.post(f"/v1/applications/{application['id']}/withdraw", json={"reason": reason},
                                         headers=auth(world.enterprise_key)), 422, "validation_failed")
    found = await client.get(f"/v1/applications/{application['id']}", headers=auth(world.operator))
    assert found.json()["status"] == application["status"]


async def test_a_read_shows_an_ended_publicity_as_issued_before_its_voucher_is_written(
        app, client: httpx.AsyncClient, clock, monkeypatch) -> None:
    """A read writes at most SETTLE_ON_READ vouchers (the worker the rest): those beyond it had
    shown `publicity`, with an end in the past, left out of `status=issued`, while approving or
    objecting to them was refused naming `issued` (an independent review, December 2026)."""
    from services.voucher.applications import service

    monkeypatch.setattr(service, "SETTLE_ON_READ", 0)  # as if the read's share went to others
    world = await build_world(app, client, publicity_days=2)
    application = await create(client, world.enterprise_key, "/v1/applications", {
        "programme_id": world.programme["id"], "requested_amount": 7_000_000, "purpose": "inference"})
    approved = await client.post(f"/v1/applications/{application['id']}/approve", json={"amount": 7_000_000},
                                 headers=auth(world.operator, **fresh_key()))
    assert approved.status_code == 200, approved.text

    async def listed(**params: str) -> list[tuple[str, str, Any]]:
        found = await client.get("/v1/applications", params=params, headers=auth(world.operator))
        assert found.status_code == 200, found.text
        return [(a["id"], a["status"], a["voucher_id"]) for a in found.json()["items"]]

    assert await listed(status="publicity") == [(application["id"], "publicity", None)]
    clock.advance(days=2)
    assert await listed() == [(application["id"], "issued", None)]  # its voucher not written yet
    assert await listed(status="issued") == [(application["id"], "issued", None)]
    assert await listed(status="publicity") == []
    objected = await client.post(f"/v1/applications/{application['id']}/objections", json={"statement": "late"},
                                 headers=auth(world.operator, **fresh_key()))
    assert assert_problem(objected, 409, "invalid_transition")["current_status"] == "issued"
    read = await client.get(f"/v1/applications/{application['id']}", headers=auth(world.operator))
    assert (read.json()["status"], read.json()["voucher_id"] is not None) == ("issued", True)  # one read writes it
