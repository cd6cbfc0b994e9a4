"""Smoke: apply, approve, publicity, issue on read, redeem."""

from __future__ import annotations

import httpx

from tests.support import auth, create, fresh_key
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
