"""The programme office's settlements over HTTP: the list by programme and status, one
settlement with its lines, approved and paid end to end (the audit events naming the key), a
refused payment shown with the API's reason, and the statement downloads."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from tests.console.conftest import Browser, csrf_of
from tests.console.test_claims import today
from tests.console.test_roles import fresh, redeem, settlement
from tests.support import auth
from tests.world import World


def form_key_of(html: str, action: str) -> str:
    found = re.search(rf'name="form_key" value="([^"]+-{action})"', html)
    assert found, action
    return found.group(1)


async def confirmed(world: World, clock: Any) -> dict[str, Any]:
    drafted = await settlement(world, clock)
    submitted = await world.client.post(f"/v1/settlements/{drafted['id']}/submit", json={},
                                        headers=auth(world.provider_key, **fresh()))
    assert submitted.status_code == 200, submitted.text
    return drafted


async def test_an_operator_approves_and_pays_a_settlement_and_the_audit_names_the_key(
        browser: Browser, world: World, clock: Any) -> None:
    drafted = await confirmed(world, clock)
    path = f"/console/operator/settlements/{drafted['id']}"
    await browser.sign_in(world.operator, language="en")
    listing = await browser.get("/console/operator/settlements", params={"status": "submitted"})
    assert listing.status_code == 200 and path in listing.text and world.provider["name"] in listing.text
    assert path not in (await browser.get("/console/operator/settlements", params={"status": "paid"})).text
    page = await browser.get(path)
    assert page.status_code == 200 and 'data-status="submitted"' in page.text and "PO-1" in page.text
    assert "<td>subsidy captured</td>" in page.text  # a line's kind in words, not its code
    assert 'id="pay"' not in page.text
    approve = {"csrf_token": csrf_of(page.text), "form_key": form_key_of(page.text, "approve"), "note": "核对无误"}
    assert (await browser.post(f"{path}/approve", data=approve)).status_code == 303
    assert (await browser.post(f"{path}/approve", data=approve)).status_code == 303  # one approval
    page = await browser.get(path)
    assert 'data-status="approved"' in page.text and 'id="pay"' in page.text
    key = form_key_of(page.text, "pay")
    missing = await browser.post(f"{path}/pay", data={"csrf_token": csrf_of(page.text), "form_key": key,
                                                      "reference": " ", "paid_on": "2026-03-05"})
    assert missing.status_code == 422 and 'role="alert"' in missing.text
    bad_day = await browser.post(f"{path}/pay", data={"csrf_token": csrf_of(page.text), "form_key": key + "x",
                                                      "reference": "ICBC-1", "paid_on": "5 March"})
    assert bad_day.status_code == 422 and 'role="alert"' in bad_day.text  # the API's refusal, shown
    paid = await browser.post(f"{path}/pay", data={"csrf_token": csrf_of(page.text), "form_key": key,
                                                   "reference": "ICBC-20260305-0001", "paid_on": today(clock)})
    assert paid.status_code == 303, paid.text
    page = await browser.get(path)
    assert 'data-status="paid"' in page.text and "ICBC-20260305-0001" in page.text
    assert 'id="pay"' not in page.text and 'id="cancel"' not in page.text
    stale = await browser.post(f"{path}/approve", data={"csrf_token": csrf_of(page.text)})
    assert stale.status_code == 409 and 'role="alert"' in stale.text
    found = (await world.client.get(f"/v1/settlements/{drafted['id']}", headers=auth(world.operator))).json()
    assert found["status"] == "paid" and found["payment_reference"] == "ICBC-20260305-0001"
    assert found["paid_on"] == today(clock)
    me = (await world.client.get("/v1/me", headers=auth(world.operator))).json()
    events = (await world.client.get("/v1/audit/events", params={"resource_id": drafted["id"]},
                                     headers=auth(world.auditor))).json()["items"]
    actions = [e["action"] for e in events]
    assert actions.count("settlement.approved") == 1 and actions.count("settlement.paid") == 1
    for event in events:
        if event["action"] in ("settlement.approved", "settlement.paid"):
            assert event["actor_key_id"] == me["key_id"]
    assert [e for e in events if e["action"] == "settlement.paid"][0]["idempotency_key"] == key
    assert (await world.reconciliation())["is_clean"]


async def test_the_operator_downloads_the_statement_and_answers_a_dispute(
        browser: Browser, world: World, clock: Any) -> None:
    drafted = await confirmed(world, clock)
    disputed = await world.client.post(f"/v1/settlements/{drafted['id']}/dispute", json={"reason": "少一行"},
                                       headers=auth(world.provider_key, **fresh()))
    assert disputed.status_code == 200, disputed.text
    path = f"/console/operator/settlements/{drafted['id']}"
    await browser.sign_in(world.operator)
    csv = await browser.get(f"{path}/statement.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "PO-1" in csv.content.decode("utf-8-sig") and "attachment" in csv.headers["content-disposition"]
    xlsx = await browser.get(f"{path}/statement.xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    assert (await browser.get(f"{path}/statement.pdf")).status_code == 404
    page = await browser.get(path)
    assert 'data-status="disputed"' in page.text and "少一行" in page.text and 'id="approve"' not in page.text
    empty = await browser.post(f"{path}/resolve", data={"csrf_token": csrf_of(page.text), "reason": ""})
    assert empty.status_code == 422
    answered = await browser.post(f"{path}/resolve", data={"csrf_token": csrf_of(page.text),
                                                           "reason": "该订单属于下一结算期"})
    assert answered.status_code == 303
    page = await browser.get(path)
    assert 'data-status="submitted"' in page.text and 'id="approve"' in page.text
    cancelled = await browser.post(f"{path}/cancel", data={"csrf_token": csrf_of(page.text), "reason": "重新结算"})
    assert cancelled.status_code == 303
    found = (await world.client.get(f"/v1/settlements/{drafted['id']}", headers=auth(world.operator))).json()
    assert found["status"] == "cancelled"
    assert (await browser.post(f"{path}/delete", data={"csrf_token": csrf_of(page.text)})).status_code == 404


async def test_settlement_pages_are_for_the_programme_office(browser: Browser, world: World, clock: Any) -> None:
    drafted = await settlement(world, clock)
    await browser.sign_in(world.provider_key)
    assert (await browser.get("/console/operator/settlements")).status_code == 403
    assert (await browser.get(f"/console/operator/settlements/{drafted['id']}")).status_code == 403
    page = await browser.get(f"/console/provider/settlements/{drafted['id']}")
    refused = await browser.post(f"/console/operator/settlements/{drafted['id']}/approve",
                                 data={"csrf_token": csrf_of(page.text)})
    assert refused.status_code == 403
    found = (await world.client.get(f"/v1/settlements/{drafted['id']}", headers=auth(world.operator))).json()
    assert found["status"] == "draft"


async def test_the_operator_draws_up_a_settlement_for_a_period(browser: Browser, world: World, clock: Any) -> None:
    from tests.console.test_roles import redeem

    voucher = await world.issue(10_000_000)
    await redeem(world, voucher, 1_000_000, "PO-9")
    clock.advance(days=1)
    await browser.sign_in(world.operator, language="en")
    listing = await browser.get("/console/operator/settlements")
    key = re.search(r'name="form_key" value="([^"]+)"', listing.text).group(1)  # type: ignore[union-attr]
    form = {"csrf_token": csrf_of(listing.text), "form_key": key, "new_programme_id": world.programme["id"],
            "provider_id": world.provider["id"], "period_start": "2026-03-02", "period_end": "2026-03-02"}
    empty = await browser.post("/console/operator/settlements", data={**form, "period_end": ""})
    assert empty.status_code == 422 and 'role="alert"' in empty.text
    nothing = await browser.post("/console/operator/settlements", data={
        **form, "form_key": key + "-x", "period_start": "2026-02-01", "period_end": "2026-02-01"})
    assert nothing.status_code in (409, 422) and 'role="alert"' in nothing.text  # the API's refusal, shown
    created = await browser.post("/console/operator/settlements", data=form)
    assert created.status_code == 303, created.text
    again = await browser.post("/console/operator/settlements", data=form)
    assert again.headers["location"] == created.headers["location"]  # the same form twice: one draft
    page = await browser.get(created.headers["location"])
    assert 'data-status="draft"' in page.text and "PO-9" in page.text
    settled = (await world.client.get("/v1/settlements", headers=auth(world.operator))).json()["items"]
    assert len(settled) == 1 and settled[0]["total"] == 300_000


async def test_a_repayment_statement_is_shown_and_recorded_as_the_providers_repayment(
        browser: Browser, world: World, clock: Any) -> None:
    """A total below zero is the provider paying back: the page says so and offers to record the
    provider's repayment, not a payment moving payable to paid (an independent review); a draft
    repayment can be approved by the office once its provider has let 15 days pass."""
    async def step(sid: str, action: str, body: dict[str, Any] | None = None, *, provider: bool = False) -> Any:
        done = await world.client.post(f"/v1/settlements/{sid}/{action}", json=body or {},
                                       headers=auth(world.provider_key if provider else world.operator, **fresh()))
        assert done.status_code == 200, done.text
        return done.json()

    first = await settlement(world, clock)
    await step(first["id"], "submit", provider=True)
    await step(first["id"], "approve")
    await step(first["id"], "pay", {"reference": "ICBC-1", "paid_on": today(clock)})
    redeemed = (await world.client.get("/v1/redemptions", headers=auth(world.operator))).json()["items"][0]
    refunded = await world.client.post(f"/v1/redemptions/{redeemed['id']}/refunds",
                                       json={"amount": first["total"], "reason": "order cancelled"},
                                       headers=auth(world.provider_key, **fresh()))
    assert refunded.status_code == 201, refunded.text
    day = clock().astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    clock.advance(days=1)
    owed = await world.client.post("/v1/settlements", json={
        "provider_id": world.provider["id"], "programme_id": world.programme["id"], "period_start": day,
        "period_end": day}, headers=auth(world.operator, **fresh()))
    assert owed.status_code == 201 and owed.json()["total"] == -first["total"], owed.text
    path = f"/console/operator/settlements/{owed.json()['id']}"
    await browser.sign_in(world.operator, language="en")
    page = await browser.get(path)
    assert page.status_code == 200 and "repayment statement" in page.text and 'id="approve"' in page.text
    early = await browser.post(f"{path}/approve", data={"csrf_token": csrf_of(page.text)})
    assert early.status_code == 409 and 'role="alert"' in early.text  # the provider has 15 days
    clock.advance(days=15)
    assert (await browser.post(f"{path}/approve", data={"csrf_token": csrf_of(page.text)})).status_code == 303
    page = await browser.get(path)
    assert "Record the provider&#39;s repayment" in page.text or "Record the provider's repayment" in page.text
    assert "moves the total from payable to paid" not in page.text


async def test_a_statement_that_pays_nothing_is_approved_from_the_page_after_15_days(
        browser: Browser, world: World, clock: Any) -> None:
    """A capture refunded in full on its day: the day's statement pays nothing. The page says
    so and offers the approval the API allows once the provider has let 15 days pass (an
    independent review found the page still said the provider must confirm first)."""
    voucher = await world.issue(10_000_000)
    await redeem(world, voucher, 1_000_000, "PO-Z")
    redeemed = (await world.client.get("/v1/redemptions", headers=auth(world.operator))).json()["items"][0]
    refunded = await world.client.post(f"/v1/redemptions/{redeemed['id']}/refunds",
                                       json={"amount": redeemed["captured_amount"], "reason": "order cancelled"},
                                       headers=auth(world.provider_key, **fresh()))
    assert refunded.status_code == 201, refunded.text
    clock.advance(days=1)
    drafted = await world.client.post("/v1/settlements", json={
        "provider_id": world.provider["id"], "programme_id": world.programme["id"],
        "period_start": "2026-03-02", "period_end": "2026-03-02"}, headers=auth(world.operator, **fresh()))
    assert drafted.status_code == 201 and drafted.json()["total"] == 0, drafted.text
    path = f"/console/operator/settlements/{drafted.json()['id']}"
    await browser.sign_in(world.operator, language="en")
    page = await browser.get(path)
    assert "A statement that pays nothing" in page.text and 'id="approve"' in page.text
    assert "confirms its statement before it can be approved" not in page.text
    early = await browser.post(f"{path}/approve", data={"csrf_token": csrf_of(page.text)})
    assert early.status_code == 409 and 'role="alert"' in early.text
    clock.advance(days=15)
    assert (await browser.post(f"{path}/approve", data={"csrf_token": csrf_of(page.text)})).status_code == 303
