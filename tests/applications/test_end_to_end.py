"""The whole application path over HTTP on the demo Hangzhou-style programme: an eligible SME
in Yuhang and an ineligible one (another district, a 失信 record two years ago) apply; the
eligible one is approved for less than it asked, goes through publicity, gets its voucher when
the period ends, and a provider redeems against it."""

from __future__ import annotations

import uuid

import httpx

from services.voucher import demo
from tests.support import auth, create, enterprise_payload, fresh_key, make_key, new_uscc


async def test_demo_programme_from_application_to_first_redemption(app, client: httpx.AsyncClient, clock) -> None:
    async with app.state.database.unit_of_work() as session:
        loaded = await demo.load(session, clock())
    keys, programme_id = loaded.keys, str(loaded.compute_programme.id)
    operator, auditor = keys["operator"], keys["auditor"]

    eligible = await create(client, operator, "/v1/enterprises", enterprise_payload(
        uscc=new_uscc("330110"), name="杭州余杭智算科技有限公司", region_code="330110", founded_on="2022-04-01"))
    ineligible = await create(client, operator, "/v1/enterprises", enterprise_payload(
        uscc=new_uscc("330106"), name="杭州西湖某科技有限公司", region_code="330106", founded_on="2019-01-01",
        blacklist_records=[{"recorded_on": "2024-02-20", "authority": "杭州市中级人民法院",
                            "reason": "被执行人失信"}]))
    eligible_key = await make_key(app, "enterprise", enterprise_id=uuid.UUID(eligible["id"]))
    ineligible_key = await make_key(app, "enterprise", enterprise_id=uuid.UUID(ineligible["id"]))

    # The ineligible SME is told every rule it failed, in Chinese when it asks for Chinese.
    refused = await client.post("/v1/applications", json={
        "programme_id": programme_id, "requested_amount": 50_000_000, "purpose": "大模型推理算力"},
        headers=auth(ineligible_key, **fresh_key(), **{"Accept-Language": "zh-CN"}))
    assert refused.status_code == 201, refused.text
    verdict = refused.json()
    assert verdict["status"] == "ineligible"
    assert verdict["eligibility"]["version"] == 1
    failed = {rule["rule"]: rule["reason"] for rule in verdict["eligibility"]["failed"]}
    assert set(failed) == {"registered-in-yuhang", "no-dishonesty-record-3y"}
    assert "330106" in failed["registered-in-yuhang"] and "不属于" in failed["registered-in-yuhang"]
    assert "2024-02-20" in failed["no-dishonesty-record-3y"] and "失信" in failed["no-dishonesty-record-3y"]
    assert refused.headers["content-language"] == "zh-CN"

    # The eligible SME applies and is judged eligible on every rule.
    submitted = await create(client, eligible_key, "/v1/applications", {
        "programme_id": programme_id, "requested_amount": 60_000_000, "purpose": "Training a defect-detection model",
    })
    assert submitted["status"] == "under_review"
    assert submitted["eligibility"]["passed"] and submitted["eligibility"]["failed"] == []

    # The operator finds it in the review queue and approves ¥500,000.00 of the ¥600,000.00 asked.
    queue = await client.get("/v1/applications", params={"status": "under_review", "programme_id": programme_id},
                             headers=auth(operator))
    assert [a["id"] for a in queue.json()["items"]] == [submitted["id"]]
    approved = await client.post(f"/v1/applications/{submitted['id']}/approve",
                                 json={"amount": 50_000_000, "note": "part of the contract is storage"},
                                 headers=auth(operator, **fresh_key()))
    assert approved.status_code == 200, approved.text
    publicity = approved.json()
    assert publicity["status"] == "publicity" and publicity["approved_amount"] == 50_000_000

    # During publicity the public notice shows name, masked code, amount and end — nothing else.
    notice = (await client.get(f"/v1/programmes/{programme_id}/publicity")).json()
    assert notice["items"] == [{
        "enterprise_name": "杭州余杭智算科技有限公司",
        "uscc_masked": eligible["uscc"][:6] + "********" + eligible["uscc"][-4:],
        "approved_amount": 50_000_000,
        "publicity_ends_at": publicity["publicity_ends_at"],
    }]
    assert (await client.get("/v1/ledger/reconciliation", headers=auth(auditor))).json()["is_clean"]

    # Five days later the period has ended with no objection: reading the application issues it.
    clock.advance(days=5)
    issued = (await client.get(f"/v1/applications/{submitted['id']}", headers=auth(eligible_key))).json()
    assert issued["status"] == "issued"
    voucher = (await client.get(f"/v1/vouchers/{issued['voucher_id']}", headers=auth(eligible_key))).json()
    assert voucher["face_value"] == 50_000_000
    assert voucher["balances"] == {"available": 50_000_000, "held": 0, "used": 0}
    assert voucher["valid_from"] == publicity["publicity_ends_at"]
    assert (await client.get(f"/v1/programmes/{programme_id}/publicity")).json()["items"] == []

    # First redemption: ¥100,000.00 of domestic-accelerator compute, at the 50 % first tier.
    redeemed = await client.post("/v1/redemptions", json={
        "voucher_code": voucher["code"], "enterprise_uscc": eligible["uscc"], "order_reference": "YH-2026-0001",
        "line_items": [{"category": "accelerator:domestic", "amount": 10_000_000,
                        "accelerator": "Ascend 910B", "hours_milli": 120_000}],
    }, headers=auth(keys["provider"], **fresh_key()))
    assert redeemed.status_code == 201, redeemed.text
    assert redeemed.json()["captured_amount"] == 5_000_000
    after = (await client.get(f"/v1/vouchers/{voucher['id']}", headers=auth(eligible_key))).json()
    assert after["balances"] == {"available": 45_000_000, "held": 0, "used": 5_000_000}
    history = (await client.get(f"/v1/applications/{submitted['id']}/history", headers=auth(auditor))).json()
    assert [step["to_status"] for step in history] == ["submitted", "under_review", "approved", "publicity", "issued"]
    recon = (await client.get("/v1/ledger/reconciliation", headers=auth(auditor))).json()
    assert recon["is_clean"] and recon["commitment_differences"] == []
