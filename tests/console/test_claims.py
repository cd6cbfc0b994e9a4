"""The programme office's claims over HTTP (an `enterprise_claim` programme): the list by status,
one claim taken into review, approved for less than held and paid, the audit events naming the
key; a rejection with its reason; the API's refusals shown."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.claims.test_routes import claim_body
from tests.console.conftest import Browser, csrf_of
from tests.support import auth, fresh_key
from tests.world import World, build_world


def today(clock: Any) -> str:
    """The service's today in Beijing: a payment is recorded on a day up to it."""
    return clock().astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()  # type: ignore[no-any-return]


@pytest.fixture
async def world(app: Any, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000},
                             tiers=[])


async def filed(world: World, **kwargs: Any) -> dict[str, Any]:
    voucher = await world.issue(10_000_000)
    response = await world.client.post("/v1/claims", json=claim_body(world, voucher, **kwargs),
                                       headers=auth(world.enterprise_key, **fresh_key()))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def key_of(html: str, action: str) -> str:
    found = re.search(rf'name="form_key" value="([^"]+-{action})"', html)
    assert found, action
    return found.group(1)


async def test_an_operator_reviews_approves_and_pays_a_claim(browser: Browser, world: World, clock: Any) -> None:
    claim = await filed(world)
    path = f"/console/operator/claims/{claim['id']}"
    await browser.sign_in(world.operator, language="en")
    listing = await browser.get("/console/operator/claims", params={"status": "submitted"})
    assert listing.status_code == 200 and path in listing.text and "44031234" in listing.text
    assert path not in (await browser.get("/console/operator/claims", params={"status": "paid"})).text
    page = await browser.get(path)
    assert 'data-status="submitted"' in page.text and "invoice-1.pdf" in page.text and "¥6,000.00" in page.text
    reviewed = await browser.post(f"{path}/review", data={"csrf_token": csrf_of(page.text),
                                                          "form_key": key_of(page.text, "review")})
    assert reviewed.status_code == 303
    page = await browser.get(path)
    assert 'data-status="under_review"' in page.text and 'value="6000.00"' in page.text
    too_much = await browser.post(f"{path}/approve", data={"csrf_token": csrf_of(page.text), "amount": "7,000.00"})
    assert too_much.status_code == 422 and 'role="alert"' in too_much.text  # the API's refusal
    unreadable = await browser.post(f"{path}/approve", data={"csrf_token": csrf_of(page.text), "amount": "five"})
    assert unreadable.status_code == 422 and "12,000.00" in unreadable.text
    approve = {"csrf_token": csrf_of(page.text), "form_key": key_of(page.text, "approve"), "amount": "5,000.00",
               "note": "一行不符合条件"}
    assert (await browser.post(f"{path}/approve", data=approve)).status_code == 303
    assert (await browser.post(f"{path}/approve", data=approve)).status_code == 303  # one approval
    page = await browser.get(path)
    assert 'data-status="approved"' in page.text and 'id="pay"' in page.text
    paid = await browser.post(f"{path}/pay", data={"csrf_token": csrf_of(page.text), "form_key": key_of(page.text, "pay"),
                                                   "reference": "ICBC-1", "paid_on": today(clock)})
    assert paid.status_code == 303
    found = (await world.client.get(f"/v1/claims/{claim['id']}", headers=auth(world.operator))).json()
    assert (found["status"], found["approved_amount"], found["payment_reference"]) == ("paid", 500_000, "ICBC-1")
    me = (await world.client.get("/v1/me", headers=auth(world.operator))).json()
    events = (await world.client.get("/v1/audit/events", params={"resource_id": claim["id"]},
                                     headers=auth(world.auditor))).json()["items"]
    mine = [e for e in events if e["action"] in ("claim.under_review", "claim.approved", "claim.paid")]
    assert sorted(e["action"] for e in mine) == ["claim.approved", "claim.paid", "claim.under_review"]
    assert all(e["actor_key_id"] == me["key_id"] for e in mine)
    assert (await world.reconciliation())["is_clean"]


async def test_a_claim_rejected_with_its_reason(browser: Browser, world: World) -> None:
    claim = await filed(world)
    path = f"/console/operator/claims/{claim['id']}"
    await browser.sign_in(world.operator)
    page = await browser.get(path)
    early = await browser.post(f"{path}/reject", data={"csrf_token": csrf_of(page.text), "reason": "发票不符"})
    assert early.status_code == 409 and 'role="alert"' in early.text  # not under review yet: the API says so
    await browser.post(f"{path}/review", data={"csrf_token": csrf_of(page.text)})
    empty = await browser.post(f"{path}/reject", data={"csrf_token": csrf_of(page.text), "reason": " "})
    assert empty.status_code == 422
    rejected = await browser.post(f"{path}/reject", data={"csrf_token": csrf_of(page.text), "reason": "发票不符"})
    assert rejected.status_code == 303
    page = await browser.get(path)
    assert 'data-status="rejected"' in page.text and "发票不符" in page.text and 'id="approve"' not in page.text
    assert (await browser.post(f"{path}/delete", data={"csrf_token": csrf_of(page.text)})).status_code == 404
    found = (await world.client.get(f"/v1/claims/{claim['id']}", headers=auth(world.operator))).json()
    assert found["status"] == "rejected"


async def test_claim_pages_are_for_the_programme_office(browser: Browser, world: World) -> None:
    claim = await filed(world)
    await browser.sign_in(world.enterprise_key)
    assert (await browser.get("/console/operator/claims")).status_code == 403
    assert (await browser.get(f"/console/operator/claims/{claim['id']}")).status_code == 403


async def test_an_approved_claim_not_yet_paid_is_rejected_from_its_page(browser: Browser, world: World) -> None:
    claim = await filed(world)
    path = f"/console/operator/claims/{claim['id']}"
    await world.client.post(f"/v1/claims/{claim['id']}/review", headers=auth(world.operator, **fresh_key()))
    approved = await world.client.post(f"/v1/claims/{claim['id']}/approve", json={},
                                       headers=auth(world.operator, **fresh_key()))
    assert approved.status_code == 200, approved.text
    await browser.sign_in(world.operator, language="en")
    page = await browser.get(path)
    assert 'id="pay"' in page.text and 'id="reject"' in page.text and "can still be rejected" in page.text
    rejected = await browser.post(f"{path}/reject", data={"csrf_token": csrf_of(page.text),
                                                          "form_key": key_of(page.text, "reject"),
                                                          "reason": "the invoice was forged"})
    assert rejected.status_code == 303
    page = await browser.get(path)
    assert 'data-status="rejected"' in page.text and 'id="pay"' not in page.text
    found = (await world.client.get(f"/v1/claims/{claim['id']}", headers=auth(world.operator))).json()
    assert (found["status"], found["status_reason"]) == ("rejected", "the invoice was forged")
    assert (await world.reconciliation())["is_clean"]


async def test_the_claim_page_says_when_its_provider_was_suspended(browser: Browser, world: World) -> None:
    """A review lasts months: the provider may be suspended meanwhile. Approval still pays the
    enterprise (the purchase was made while the provider was approved and enrolled; docs/
    decisions.md "Enterprise claims"), so the page says the provider's status beside its name and
    what approving means, in the reviewer's language."""
    claim = await filed(world)
    path = f"/console/operator/claims/{claim['id']}"
    await world.client.post(f"/v1/claims/{claim['id']}/review", headers=auth(world.operator, **fresh_key()))
    await browser.sign_in(world.operator, language="en")
    assert 'id="provider-status"' not in (await browser.get(path)).text
    suspended = await world.client.post(f"/v1/providers/{world.provider['id']}/suspend", json={"reason": "audit"},
                                        headers=auth(world.operator, **fresh_key()))
    assert suspended.status_code == 200, suspended.text
    page = await browser.get(path)
    assert 'id="provider-status" data-status="suspended">(suspended)' in page.text
    assert "approving it pays the enterprise, not the provider" in page.text
    await browser.sign_in(world.operator, language="zh")
    assert "该服务商目前状态为已暂停" in (await browser.get(path)).text
