"""A provider's usage reconciliation over HTTP: a CSV file uploaded from the console is compared
by the API with the provider's captures and refunds, the kept report is listed and read; a file
the API refuses is shown row by row; another provider's report is a 404 page."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import Browser, csrf_of
from tests.support import auth, create, make_key, provider_payload
from tests.world import World

RECORDS = ("order_reference,amount,subsidy\n"
           "PO-1,1000000,300000\n"  # as recorded
           "PO-2,2000000,500000\n"  # we granted 600000
           "PO-9,100000,30000\n")  # never presented here


async def captured_yesterday(world: World, clock: Any) -> None:
    voucher = await world.issue(10_000_000)
    for order, amount in (("PO-1", 1_000_000), ("PO-2", 2_000_000), ("PO-3", 500_000)):
        done = await world.hold(voucher, amount, order=order, path="/v1/redemptions")
        assert done.status_code == 201, done.text
    clock.advance(days=1)


def upload(html: str, world: World, **values: str) -> dict[str, str]:
    return {"csrf_token": csrf_of(html), "new_programme_id": world.programme["id"], "period_start": "2026-03-02",
            "period_end": "2026-03-02", **values}


async def test_a_provider_uploads_its_records_and_reads_the_kept_report(browser: Browser, world: World,
                                                                        clock: Any) -> None:
    await captured_yesterday(world, clock)
    await browser.sign_in(world.provider_key, language="en")
    page = await browser.get("/console/provider/usage")
    assert page.status_code == 200 and "No reports yet." in page.text
    sent = await browser.post("/console/provider/usage", data=upload(page.text, world),
                              files={"file": ("usage.csv", ("\ufeff" + RECORDS).encode(), "text/csv")})
    assert sent.status_code == 303, sent.text
    report = await browser.get(sent.headers["location"])
    assert report.status_code == 200
    for name, count in (("matched", 1), ("mismatched", 1), ("missing_ours", 1), ("missing_theirs", 1)):
        assert f'id="count-{name}">{count}<' in report.text, name
    assert 'id="their-subsidy">¥8,300.00' in report.text and 'id="our-subsidy">¥10,500.00' in report.text
    assert "-¥1,000.00" in report.text and "PO-9" in report.text and "PO-3" in report.text
    listing = await browser.get("/console/provider/usage", params={"programme_id": world.programme["id"]})
    assert sent.headers["location"] in listing.text
    kept = (await world.client.get("/v1/usage-reconciliations", headers=auth(world.provider_key))).json()["items"]
    assert len(kept) == 1 and kept[0]["record_count"] == 3


async def test_a_file_the_api_refuses_is_shown_row_by_row(browser: Browser, world: World, clock: Any) -> None:
    await captured_yesterday(world, clock)
    await browser.sign_in(world.provider_key, language="en")
    page = await browser.get("/console/provider/usage")
    bad = "order_reference,amount,subsidy\nPO-1,1000000,300000\nPO-2,ten,3\n"
    refused = await browser.post("/console/provider/usage", data=upload(page.text, world),
                                 files={"file": ("usage.csv", bad.encode(), "text/csv")})
    assert refused.status_code == 422 and 'role="alert"' in refused.text
    assert "line 3 of the file" in refused.text and 'value="2026-03-02"' in refused.text
    early = await browser.post("/console/provider/usage", data=upload(page.text, world, period_end="2026-03-03"),
                               files={"file": ("usage.csv", RECORDS.encode(), "text/csv")})
    assert early.status_code == 422 and "Last day (included): " in early.text  # not over yet: the API says so
    latin = await browser.post("/console/provider/usage", data=upload(page.text, world),
                               files={"file": ("usage.csv", "PO-é".encode("latin-1"), "text/csv")})
    assert latin.status_code == 422 and "UTF-8" in latin.text
    nothing = await browser.post("/console/provider/usage", data={**upload(page.text, world), "period_start": ""})
    assert nothing.status_code == 422
    no_token = await browser.post("/console/provider/usage", data={**upload(page.text, world), "csrf_token": ""},
                                  files={"file": ("usage.csv", RECORDS.encode(), "text/csv")})
    assert no_token.status_code == 403
    assert (await world.client.get("/v1/usage-reconciliations",
                                   headers=auth(world.provider_key))).json()["items"] == []


async def test_another_providers_report_is_no_page_and_other_roles_are_refused(
        app: Any, browser: Browser, world: World, clock: Any) -> None:
    await captured_yesterday(world, clock)
    made = await world.post("/v1/usage-reconciliations", {
        "programme_id": world.programme["id"], "period_start": "2026-03-02", "period_end": "2026-03-02",
        "csv": RECORDS})
    assert made.status_code == 201, made.text
    path = f"/console/provider/usage/{made.json()['id']}"
    other = await create(world.client, world.operator, "/v1/providers", provider_payload())
    await browser.sign_in(await make_key(app, "provider", provider_id=other["id"]))
    refused = await browser.get(path)
    assert refused.status_code == 404 and "PO-9" not in refused.text
    assert made.json()["id"] not in (await browser.get("/console/provider/usage")).text
    for key in (world.operator, world.enterprise_key, world.auditor):
        b = Browser(app)
        try:
            await b.sign_in(key)
            assert (await b.get("/console/provider/usage")).status_code == 403
            assert (await b.get(path)).status_code == 403
        finally:
            await b.http.aclose()


async def test_the_kept_sha256_is_that_of_the_file_uploaded(browser: Browser, world: World, clock: Any) -> None:
    """The console decoded the file without its BOM (what Excel writes), so the report's
    SHA-256 was never the file's and an auditor's `sha256sum usage.csv` did not match it (an
    independent review, December 2026)."""
    import hashlib

    from tests.support import auth

    await captured_yesterday(world, clock)
    await browser.sign_in(world.provider_key, language="en")
    page = await browser.get("/console/provider/usage")
    content = ("\ufeff" + "order_reference,amount,subsidy\r\nPO-1,1000000,300000\r\n").encode()
    sent = await browser.post("/console/provider/usage", data=upload(page.text, world),
                              files={"file": ("usage.csv", content, "text/csv")})
    assert sent.status_code == 303, sent.text
    kept = (await world.client.get("/v1/usage-reconciliations", headers=auth(world.provider_key))).json()["items"]
    assert kept[0]["source_sha256"] == hashlib.sha256(content).hexdigest()
    assert kept[0]["summary"]["matched"] == 1, kept[0]["summary"]
