"""An enterprise files a claim from the console (an `enterprise_claim` programme) and reads its
own claims: the documents travel as their digests, a form sent twice is one claim, the API's
refusals are shown beside the form with the field each is about, and another enterprise's
claim is a 404 page."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import httpx
import pytest

from tests.console.conftest import Browser, csrf_of
from tests.support import auth, create, enterprise_payload, make_key
from tests.world import World, build_world

INVOICE = b"%PDF-1.7 invoice 44031234"
CONTRACT = b"%PDF-1.7 contract SZ-2026-118"


@pytest.fixture
async def world(app: Any, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000},
                             tiers=[])


def form_of(html: str, **values: str) -> dict[str, str]:
    key = re.search(r'name="form_key" value="([^"]+)"', html)
    voucher = re.search(r'<select id="voucher_id" name="voucher_id" required>\s*<option value="([^"]+)"', html)
    provider = re.search(r'<select id="provider_id" name="provider_id" required>\s*<option value="([^"]+)"', html)
    assert key and voucher and provider, html
    return {"csrf_token": csrf_of(html), "form_key": key.group(1), "lines": "3", "voucher_id": voucher.group(1),
            "provider_id": provider.group(1), "contract_number": "SZ-2026-118", "invoice_number": "44031234",
            "invoice_code": "3300231130", "invoice_date": "2026-03-01", "amount_paid": "20,000.00",
            "line-0-category": "accelerator:domestic", "line-0-description": "训练",
            "line-0-usage_name": "Ascend 910B", "line-0-usage": "150", "line-0-amount": "15,000.00",
            "line-1-category": "accelerator:domestic", "line-1-usage_name": "Ascend 910B", "line-1-usage": "50.5",
            "line-1-amount": "5,000.00", **values}


FILES = [("documents", ("发票.pdf", INVOICE, "application/pdf")),
         ("documents", ("contract.pdf", CONTRACT, "application/pdf"))]


async def test_an_enterprise_files_a_claim_once_and_reads_it(browser: Browser, world: World) -> None:
    voucher = await world.issue(10_000_000)
    await browser.sign_in(world.enterprise_key, language="en")
    blank = await browser.get("/console/enterprise/claims/new")
    assert blank.status_code == 200 and voucher["code"] in blank.text and world.provider["name"] in blank.text
    form = form_of(blank.text)
    filed = await browser.post("/console/enterprise/claims", data=form, files=FILES)
    assert filed.status_code == 303, filed.text
    again = await browser.post("/console/enterprise/claims", data=form, files=FILES)
    assert again.headers["location"] == filed.headers["location"]  # the same form twice: one claim
    claims = (await world.client.get("/v1/claims", headers=auth(world.enterprise_key))).json()["items"]
    assert len(claims) == 1
    claim = claims[0]
    assert claim["amount_paid"] == 2_000_000 and claim["subsidy"] == 600_000
    assert [i["hours_milli"] for i in claim["line_items"]] == [150_000, 50_500]
    assert [(d["file_name"], d["size"], d["sha256"]) for d in claim["documents"]] == [
        ("发票.pdf", len(INVOICE), hashlib.sha256(INVOICE).hexdigest()),
        ("contract.pdf", len(CONTRACT), hashlib.sha256(CONTRACT).hexdigest())]

    page = await browser.get(filed.headers["location"])
    assert page.status_code == 200 and 'data-status="submitted"' in page.text
    assert 'id="claim-subsidy">¥6,000.00' in page.text and voucher["code"] in page.text
    assert world.provider["name"] in page.text and "50.500 GPU-hours" in page.text
    assert hashlib.sha256(CONTRACT).hexdigest() in page.text
    listing = await browser.get("/console/enterprise/claims", params={"status": "submitted"})
    assert filed.headers["location"] in listing.text and "¥20,000.00" in listing.text
    assert filed.headers["location"] not in (await browser.get("/console/enterprise/claims",
                                                               params={"status": "paid"})).text


async def test_the_apis_refusals_are_shown_beside_the_form(browser: Browser, world: World) -> None:
    await world.issue(10_000_000)
    await browser.sign_in(world.enterprise_key, language="en")
    blank = await browser.get("/console/enterprise/claims/new")
    short = await browser.post("/console/enterprise/claims", data=form_of(blank.text, amount_paid="21,000.00"),
                               files=FILES)
    assert short.status_code == 422 and 'role="alert"' in short.text
    assert "Order lines: " in short.text and "¥20,000.00" in short.text  # the field, in the form's words
    assert 'value="21,000.00"' in short.text and 'value="Ascend 910B"' in short.text  # what was typed stays
    unreadable = await browser.post("/console/enterprise/claims", data=form_of(blank.text, **{"line-1-amount": "five"}),
                                    files=FILES)
    assert unreadable.status_code == 422 and "line 2" in unreadable.text
    assert (await browser.post("/console/enterprise/claims", data=form_of(blank.text), files=FILES)).status_code == 303
    fresh = await browser.get("/console/enterprise/claims/new")
    twice = await browser.post("/console/enterprise/claims", data=form_of(fresh.text), files=FILES)
    assert twice.status_code == 409 and 'role="alert"' in twice.text and "44031234" in twice.text
    claims = (await world.client.get("/v1/claims", headers=auth(world.enterprise_key))).json()["items"]
    assert len(claims) == 1


async def test_a_claim_form_without_its_csrf_token_files_nothing(browser: Browser, world: World) -> None:
    await world.issue(10_000_000)
    await browser.sign_in(world.enterprise_key)
    blank = await browser.get("/console/enterprise/claims/new")
    form = form_of(blank.text)
    del form["csrf_token"]
    refused = await browser.post("/console/enterprise/claims", data=form, files=FILES)
    assert refused.status_code == 403
    assert (await world.client.get("/v1/claims", headers=auth(world.enterprise_key))).json()["items"] == []


async def test_a_programme_that_pays_providers_offers_nothing_to_claim(app: Any, client: httpx.AsyncClient,
                                                                      browser: Browser) -> None:
    redeeming = await build_world(app, client)
    await redeeming.issue(1_000_000)
    await browser.sign_in(redeeming.enterprise_key)
    page = await browser.get("/console/enterprise/claims/new")
    assert page.status_code == 200 and 'id="no-claimable"' in page.text and 'id="file-claim"' not in page.text


async def test_another_enterprises_claim_is_no_page_and_other_roles_are_refused(
        app: Any, browser: Browser, world: World) -> None:
    from tests.claims.test_routes import claim_body

    voucher = await world.issue(10_000_000)
    theirs = await world.client.post("/v1/claims", json=claim_body(world, voucher),
                                     headers=auth(world.enterprise_key, **{"Idempotency-Key": "claim-1"}))
    assert theirs.status_code == 201, theirs.text
    path = f"/console/enterprise/claims/{theirs.json()['id']}"
    other = await create(world.client, world.operator, "/v1/enterprises", enterprise_payload())
    await browser.sign_in(await make_key(app, "enterprise", enterprise_id=other["id"]))
    refused = await browser.get(path)
    assert refused.status_code == 404 and "44031234" not in refused.text
    assert theirs.json()["id"] not in (await browser.get("/console/enterprise/claims")).text
    for key in (world.operator, world.provider_key, world.auditor):
        b = Browser(app)
        try:
            await b.sign_in(key)
            for page in ("/console/enterprise/claims", "/console/enterprise/claims/new", path):
                assert (await b.get(page)).status_code == 403, page
        finally:
            await b.http.aclose()
