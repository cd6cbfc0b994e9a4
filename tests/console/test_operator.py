"""The programme office's pages over HTTP: review and approve an application (the same
service, idempotency and audit trail as the API, the audit event naming the key), and bulk
issue from a CSV or .xlsx file with a preview that writes nothing while any row is bad."""

from __future__ import annotations

import html
import io
import re
import uuid
from typing import Any

import httpx
import xlsxwriter

from tests.console.conftest import Browser, csrf_of
from tests.support import auth, create, enterprise_payload, fresh_key
from tests.world import World, build_world


async def submit(client: httpx.AsyncClient, world: World, amount: int = 2_000_000) -> dict[str, Any]:
    response = await client.post("/v1/applications", json={
        "programme_id": world.programme["id"], "requested_amount": amount, "purpose": "训练质检模型"},
        headers=auth(world.enterprise_key, **{"Idempotency-Key": str(uuid.uuid4())}))
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "under_review"
    return response.json()  # type: ignore[no-any-return]


def figure(html: str, name: str) -> str:
    found = re.search(rf'id="figure-{name}">([^<]+)<', html)
    assert found, name
    return found.group(1)


async def test_approving_in_the_console_commits_budget_and_the_audit_names_the_key(
        client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    application = await submit(client, world)
    await browser.sign_in(world.operator)
    dashboard = f"/console/operator/programmes/{world.programme['id']}"
    assert figure((await browser.get(dashboard)).text, "committed") == "¥0.00"
    queue = await browser.get("/console/operator/applications")
    assert f"/console/operator/applications/{application['id']}" in queue.text
    detail = await browser.get(f"/console/operator/applications/{application['id']}")
    assert detail.status_code == 200 and 'data-status="under_review"' in detail.text
    key = re.search(r'name="form_key" value="([^"]+)"', detail.text).group(1)  # type: ignore[union-attr]
    form = {"csrf_token": csrf_of(detail.text), "form_key": key, "amount": "15,000.00", "note": ""}
    approved = await browser.post(f"/console/operator/applications/{application['id']}/approve", data=form)
    assert approved.status_code == 303, approved.text
    again = await browser.post(f"/console/operator/applications/{application['id']}/approve", data=form)
    assert again.status_code == 303  # the same form twice: one approval (its Idempotency-Key)
    after = (await client.get(f"/v1/applications/{application['id']}", headers=auth(world.operator))).json()
    assert after["status"] == "publicity" and after["approved_amount"] == 1_500_000
    assert figure((await browser.get(dashboard)).text, "committed") == "¥15,000.00"
    me = (await client.get("/v1/me", headers=auth(world.operator))).json()
    events = (await client.get("/v1/audit/events", params={"resource_id": application["id"]},
                               headers=auth(world.auditor))).json()["items"]
    approvals = [e for e in events if e["action"] == "application.approved"]
    assert len(approvals) == 1
    assert approvals[0]["actor_key_id"] == me["key_id"] and approvals[0]["idempotency_key"] == key


async def test_an_approval_the_api_refuses_shows_its_reason_and_changes_nothing(
        client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    application = await submit(client, world)
    await browser.sign_in(world.operator, language="en")
    detail = await browser.get(f"/console/operator/applications/{application['id']}")
    too_much = await browser.post(f"/console/operator/applications/{application['id']}/approve", data={
        "csrf_token": csrf_of(detail.text), "amount": "999,999,999.00"})
    assert too_much.status_code in (409, 422), too_much.text
    assert 'role="alert"' in too_much.text
    unreadable = await browser.post(f"/console/operator/applications/{application['id']}/approve", data={
        "csrf_token": csrf_of(detail.text), "amount": "twelve"})
    assert unreadable.status_code == 422 and "12,000.00" in unreadable.text
    after = (await client.get(f"/v1/applications/{application['id']}", headers=auth(world.operator))).json()
    assert after["status"] == "under_review"


async def test_approve_without_the_csrf_token_is_refused(client: httpx.AsyncClient, browser: Browser,
                                                        world: World) -> None:
    application = await submit(client, world)
    await browser.sign_in(world.operator)
    refused = await browser.post(f"/console/operator/applications/{application['id']}/approve",
                                 data={"amount": "10.00"})
    assert refused.status_code == 403
    after = (await client.get(f"/v1/applications/{application['id']}", headers=auth(world.operator))).json()
    assert after["status"] == "under_review"


async def test_reject_with_a_reason(client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    application = await submit(client, world)
    await browser.sign_in(world.operator)
    detail = await browser.get(f"/console/operator/applications/{application['id']}")
    empty = await browser.post(f"/console/operator/applications/{application['id']}/reject",
                               data={"csrf_token": csrf_of(detail.text), "reason": " "})
    assert empty.status_code == 422
    rejected = await browser.post(f"/console/operator/applications/{application['id']}/reject",
                                  data={"csrf_token": csrf_of(detail.text), "reason": "不在补贴范围内"})
    assert rejected.status_code == 303
    after = (await client.get(f"/v1/applications/{application['id']}", headers=auth(world.operator))).json()
    assert after["status"] == "rejected" and after["status_reason"] == "不在补贴范围内"


def xlsx(rows: list[list[str]]) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet()
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.write_string(r, c, value)
    book.close()
    return buffer.getvalue()


async def _preview(browser: Browser, world: World, name: str, content: bytes) -> httpx.Response:
    token = await browser.csrf("/console/operator/vouchers/bulk")
    return await browser.post("/console/operator/vouchers/bulk/preview",
                              data={"csrf_token": token, "programme_id": world.programme["id"]},
                              files={"file": (name, content, "application/octet-stream")})


async def _vouchers(client: httpx.AsyncClient, world: World) -> list[dict[str, Any]]:
    return (await client.get("/v1/vouchers", headers=auth(world.operator))).json()["items"]  # type: ignore[no-any-return]


async def test_a_bulk_file_with_one_bad_row_shows_the_rows_error_and_issues_nothing(
        client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    other = await create(client, world.operator, "/v1/enterprises", enterprise_payload())
    await browser.sign_in(world.operator, language="en")
    for name, content in (
        ("grants.csv", (f"uscc,face_value,reference\n{world.enterprise['uscc']},1000.00,A-1\n"
                        f"{other['uscc']},12.345,A-2\n").encode()),
        ("grants.xlsx", xlsx([["uscc", "face_value", "reference"], [world.enterprise["uscc"], "1000.00", "A-1"],
                              ["91330110MA2XXXXXX0", "500", "A-2"]])),
    ):
        preview = await _preview(browser, world, name, content)
        assert preview.status_code == 422, preview.text
        assert 'id="bulk-refused"' in preview.text and 'id="issue"' not in preview.text
        bad_row = re.search(r'<tr class="bad" id="row-3">(.*?)</tr>', preview.text, re.S)
        assert bad_row, preview.text
        assert 'class="problem"' in bad_row.group(1)
        assert '<tr class="" id="row-2">' in preview.text
    assert await _vouchers(client, world) == []


async def test_a_bulk_row_whose_reference_breaks_a_line_is_shown_as_the_rows_error(
        client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    """A voucher's reference is one line (the API refuses a line break or a control character):
    the preview names the row, rather than a refusal of the whole file at issue."""
    await browser.sign_in(world.operator, language="en")
    for reference, problem in (('"A-1\nA-2"', "the reference must be one line"),
                               ("\u200b", "the reference must hold visible text")):
        content = f'uscc,face_value,reference\n{world.enterprise["uscc"]},1000.00,{reference}\n'.encode()
        preview = await _preview(browser, world, "grants.csv", content)
        assert preview.status_code == 422, preview.text
        bad_row = re.search(r'<tr class="bad" id="row-2">(.*?)</tr>', preview.text, re.S)
        assert bad_row and problem in bad_row.group(1), preview.text
    assert await _vouchers(client, world) == []


async def test_a_face_value_that_does_not_read_is_shown_with_an_example_in_the_programmes_unit(
        app: Any, client: httpx.AsyncClient, browser: Browser) -> None:
    """A token has no minor digits and a GPU-hour three: the example the console gives with the
    refusal is one the programme's unit reads, never a yuan figure."""
    for unit, example in (("TOKEN", "12,000"), ("GPU_HOUR", "12,000.000"), ("CNY", "12,000.00")):
        terms = {"kind": "model", "rate_table": {"model:registered": 3000}} if unit == "TOKEN" else {}
        world = await build_world(app, client, unit=unit, **terms)
        await browser.sign_in(world.operator, language="en")
        content = f"uscc,face_value,reference\n{world.enterprise['uscc']},twelve,A-1\n".encode()
        preview = await _preview(browser, world, "grants.csv", content)
        assert preview.status_code == 422, preview.text
        assert f"is not an amount in {unit} (e.g. {example})" in preview.text
        token = await browser.csrf("/console/operator/vouchers/issue")
        issue = await browser.post("/console/operator/vouchers/issue", data={
            "csrf_token": token, "programme_id": world.programme["id"], "uscc": world.enterprise["uscc"],
            "face_value": "twelve", "reference": ""})
        assert issue.status_code == 422 and f"e.g. {example}<" in issue.text, issue.text
        assert await _vouchers(client, world) == []


async def test_a_good_bulk_file_is_previewed_then_issued_once(client: httpx.AsyncClient, browser: Browser,
                                                            world: World) -> None:
    other = await create(client, world.operator, "/v1/enterprises", enterprise_payload())
    await browser.sign_in(world.operator)
    content = xlsx([["uscc", "face_value", "reference"], [world.enterprise["uscc"], "1,000.00", "B-1"],
                    [other["uscc"], "¥2000", "B-2"]])
    preview = await _preview(browser, world, "grants.xlsx", content)
    assert preview.status_code == 200 and 'id="issue"' in preview.text
    assert await _vouchers(client, world) == []
    form = {name: value for name, value in re.findall(r'name="(\w+)" value="([^"]*)"', preview.text)
            if name in ("csrf_token", "form_key", "programme_id", "grants")}
    form["grants"] = form["grants"].replace("&#34;", '"').replace("&quot;", '"')
    issued = await browser.post("/console/operator/vouchers/bulk/issue", data=form)
    assert issued.status_code == 200, issued.text
    assert issued.text.count("<td class=\"num\">¥") == 2 and 'id="bulk-replayed"' not in issued.text
    twice = await browser.post("/console/operator/vouchers/bulk/issue", data=form)
    assert twice.status_code == 200
    # Sent again, the batch is the one issued before, and the page says so: it had said "2
    # vouchers were issued" when nothing was (an independent review, December 2026).
    assert 'id="bulk-replayed"' in twice.text and "2 vouchers were issued." not in twice.text
    vouchers = await _vouchers(client, world)
    assert sorted(v["face_value"] for v in vouchers) == [100_000, 200_000]


async def test_a_file_that_is_not_a_table_is_refused_plainly(browser: Browser, world: World) -> None:
    await browser.sign_in(world.operator)
    for name, content in (("x.csv", b"\xff\xfe\x00garbage"), ("x.xlsx", b"PK\x03\x04broken"),
                          ("x.csv", b"name,amount\nA,1\n")):
        preview = await _preview(browser, world, name, content)
        assert preview.status_code == 422 and 'role="alert"' in preview.text


async def test_an_operator_suspends_resumes_and_revokes_a_voucher(client: httpx.AsyncClient, browser: Browser,
                                                                  world: World) -> None:
    voucher = await world.issue(1_000_000)
    await browser.sign_in(world.operator, language="en")
    listing = await browser.get("/console/operator/vouchers", params={"status": "active"})
    assert f"/console/operator/vouchers/{voucher['id']}" in listing.text and "¥10,000.00" in listing.text
    path = f"/console/operator/vouchers/{voucher['id']}"
    page = await browser.get(path)
    token = csrf_of(page.text)
    refused = await browser.post(f"{path}/suspend", data={"reason": "核查中"})
    assert refused.status_code == 403
    assert (await browser.post(f"{path}/suspend", data={"csrf_token": token, "reason": " "})).status_code == 422
    assert (await browser.post(f"{path}/suspend", data={"csrf_token": token, "reason": "核查中"})).status_code == 303
    page = await browser.get(path)
    assert 'data-status="suspended"' in page.text and 'id="resume"' in page.text
    again = await browser.post(f"{path}/suspend", data={"csrf_token": token, "reason": "核查中"})
    assert again.status_code == 409 and 'role="alert"' in again.text  # the API's refusal, shown
    assert (await browser.post(f"{path}/resume", data={"csrf_token": token, "reason": "核查完毕"})).status_code == 303
    bad = await browser.post(f"{path}/revoke", data={"csrf_token": token, "reason": "违规", "clawback": "lots"})
    assert bad.status_code == 422
    revoked = await browser.post(f"{path}/revoke", data={"csrf_token": token, "reason": "违规", "clawback": ""})
    assert revoked.status_code == 303
    found = (await client.get(f"/v1/vouchers/{voucher['id']}", headers=auth(world.operator))).json()
    assert found["status"] == "revoked" and found["balances"]["available"] == 0
    page = await browser.get(path)
    assert 'id="revoke"' not in page.text
    me = (await client.get("/v1/me", headers=auth(world.operator))).json()
    events = (await client.get("/v1/audit/events", params={"resource_id": voucher["id"]},
                               headers=auth(world.auditor))).json()["items"]
    changes = [e for e in events if e["action"] in ("voucher.suspended", "voucher.resumed", "voucher.revoked")]
    assert [e["action"] for e in changes] == ["voucher.suspended", "voucher.resumed", "voucher.revoked"]
    assert {e["actor_key_id"] for e in changes} == {me["key_id"]}


async def test_an_operator_records_a_clawback_on_a_revoked_voucher(client: httpx.AsyncClient, browser: Browser,
                                                                   world: World) -> None:
    """Misuse found after the revocation: the ended voucher's page shows what is owed back and
    records more, up to the used value; a bad amount comes back with what was typed."""
    voucher = await world.issue(1_000_000)
    redeemed = await world.hold(voucher, 1_000_000, order="PO-cb", path="/v1/redemptions")
    assert redeemed.status_code == 201 and redeemed.json()["captured_amount"] == 300_000
    revoked = await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "fraud", "clawback": 100_000},
                               key=world.operator)
    assert revoked.status_code == 200, revoked.text
    await browser.sign_in(world.operator, language="en")
    path = f"/console/operator/vouchers/{voucher['id']}"
    page = await browser.get(path)
    assert 'id="clawback-owed">¥1,000.00<' in page.text and 'id="record-clawback"' in page.text
    token = csrf_of(page.text)
    for amount in ("", "lots", "2000.01"):
        bad = await browser.post(f"{path}/clawback", data={"csrf_token": token, "reason": "more found",
                                                           "clawback": amount})
        assert bad.status_code == 422 and 'role="alert"' in bad.text, amount
        assert f'value="{amount}"' in bad.text  # what was typed comes back
    done = await browser.post(f"{path}/clawback", data={"csrf_token": token, "reason": "more found",
                                                        "clawback": "2000"})
    assert done.status_code == 303
    owed = (await client.get(f"/v1/vouchers/{voucher['id']}/clawback", headers=auth(world.operator))).json()
    assert owed["owed"] == 300_000
    page = await browser.get(path)
    assert 'id="clawback-owed">¥3,000.00<' in page.text and 'id="record-clawback"' not in page.text


async def test_an_operator_records_a_repayment_and_writes_off_the_rest(client: httpx.AsyncClient, browser: Browser,
                                                                       world: World) -> None:
    """The ended voucher's page shows the clawback line by line and records the enterprise's
    repayment (amount, bank reference, day) and a write-off; a refused form keeps what was typed."""
    voucher = await world.issue(1_000_000)
    assert (await world.hold(voucher, 1_000_000, order="PO-rp", path="/v1/redemptions")).status_code == 201
    revoked = await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "fraud", "clawback": 300_000},
                               key=world.operator)
    assert revoked.status_code == 200, revoked.text
    await browser.sign_in(world.operator, language="en")
    path = f"/console/operator/vouchers/{voucher['id']}"
    page = await browser.get(path)
    assert 'id="clawback-owed">¥3,000.00<' in page.text and 'id="record-repayment"' in page.text
    assert 'id="record-clawback"' not in page.text  # all of the used value is clawed back
    token = csrf_of(page.text)
    payment = {"csrf_token": token, "amount": "1000", "reference": "ICBC-77", "paid_on": "2026-03-02"}
    for bad_form in ({**payment, "amount": "lots"}, {**payment, "amount": "3000.01"}, {**payment, "reference": ""},
                     {**payment, "paid_on": "2099-01-01"}):
        bad = await browser.post(f"{path}/clawback/repayments", data=bad_form)
        assert bad.status_code == 422 and 'role="alert"' in bad.text, bad_form
        assert f'value="{bad_form["amount"]}"' in bad.text  # what was typed comes back
    assert (await browser.post(f"{path}/clawback/refunds", data=payment)).status_code == 404
    done = await browser.post(f"{path}/clawback/repayments", data=payment)
    assert done.status_code == 303, done.text
    written = await browser.post(f"{path}/clawback/write-offs", data={"csrf_token": token, "amount": "500",
                                                                      "reason": "settled in court"})
    assert written.status_code == 303, written.text
    state = (await client.get(f"/v1/vouchers/{voucher['id']}/clawback", headers=auth(world.operator))).json()
    assert (state["repaid"], state["written_off"], state["owed"]) == (100_000, 50_000, 150_000)
    page = await browser.get(path)
    assert 'id="clawback-repaid">¥1,000.00<' in page.text and 'id="clawback-written-off">¥500.00<' in page.text
    assert 'id="clawback-owed">¥1,500.00<' in page.text

    # the repayment was a bounced transfer: reversed from its row, with why; a reason is required
    entries = (await client.get(f"/v1/vouchers/{voucher['id']}/clawback/entries", headers=auth(world.operator))).json()
    repaid = next(e for e in entries["items"] if e["kind"] == "clawback_repaid")
    assert page.text.count('class="reverse-entry"') == 3  # the clawback's row, the repayment's and the write-off's
    reversal = {"csrf_token": token, "entry_id": repaid["id"], "reason": ""}
    blank = await browser.post(f"{path}/clawback/reversals", data=reversal)
    assert blank.status_code == 422 and 'role="alert"' in blank.text
    undone = await browser.post(f"{path}/clawback/reversals", data={**reversal, "reason": "the transfer bounced"})
    assert undone.status_code == 303, undone.text
    again = await browser.post(f"{path}/clawback/reversals", data={**reversal, "reason": "once more"})
    assert again.status_code == 409 and 'role="alert"' in again.text  # another tab: the row now reads reversed
    state = (await client.get(f"/v1/vouchers/{voucher['id']}/clawback", headers=auth(world.operator))).json()
    assert (state["repaid"], state["owed"]) == (0, 250_000)
    page = await browser.get(path)
    assert 'id="clawback-owed">¥2,500.00<' in page.text and page.text.count('class="reverse-entry"') == 2
    assert 'data-kind="clawback_repayment_reversed">clawback repayment reversed' in page.text
    assert "the transfer bounced" in page.text


async def test_an_operator_records_the_return_of_an_overpayment(client: httpx.AsyncClient, browser: Browser,
                                                                  world: World) -> None:
    """Repaid in full, then the order refunded in part: the page shows what the enterprise overpaid
    and records the office's return of it (amount, bank reference, day); the return's row can be
    reversed like a repayment's, and a refused form keeps what was typed."""
    voucher = await world.issue(1_000_000)
    redeemed = (await world.hold(voucher, 1_000_000, order="PO-op", path="/v1/redemptions")).json()
    await world.post(f"/v1/vouchers/{voucher['id']}/revoke", {"reason": "fraud", "clawback": 300_000},
                     key=world.operator)
    await world.post(f"/v1/vouchers/{voucher['id']}/clawback/repayments",
                     {"amount": 300_000, "reference": "ICBC-1", "paid_on": "2026-03-02"}, key=world.operator)
    refund = await world.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 200_000, "reason": "x"})
    assert refund.status_code == 201, refund.text
    await browser.sign_in(world.operator, language="en")
    path = f"/console/operator/vouchers/{voucher['id']}"
    page = await browser.get(path)
    assert 'id="clawback-overpaid">¥2,000.00<' in page.text and 'id="record-overpayment-return"' in page.text
    token = csrf_of(page.text)
    form = {"csrf_token": token, "amount": "2000.01", "reference": "BOC-1", "paid_on": "2026-03-02"}
    bad = await browser.post(f"{path}/clawback/overpayment-returns", data=form)
    assert bad.status_code == 422 and 'role="alert"' in bad.text and 'value="2000.01"' in bad.text
    done = await browser.post(f"{path}/clawback/overpayment-returns", data={**form, "amount": "2000"})
    assert done.status_code == 303, done.text
    state = (await client.get(f"/v1/vouchers/{voucher['id']}/clawback", headers=auth(world.operator))).json()
    assert (state["overpaid"], state["overpayment_returned"], state["owed"]) == (0, 200_000, 0)
    page = await browser.get(path)
    assert 'id="clawback-returned">¥2,000.00<' in page.text and 'id="record-overpayment-return"' not in page.text
    assert 'data-kind="clawback_overpayment_returned">overpayment returned to the enterprise' in page.text
    assert "BOC-1" in page.text
    assert page.text.count('class="reverse-entry"') == 3  # the clawback's row, the repayment's and the return's


async def test_an_enterprise_key_cannot_open_the_voucher_pages_of_the_office(browser: Browser, world: World) -> None:
    voucher = await world.issue(1_000_000)
    await browser.sign_in(world.enterprise_key)
    for path in ("/console/operator/vouchers", f"/console/operator/vouchers/{voucher['id']}"):
        assert (await browser.get(path)).status_code == 403


async def test_an_operator_issues_one_voucher_by_uscc_once_and_a_refusal_is_shown(
        client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    await browser.sign_in(world.operator, language="en")
    listing = await browser.get("/console/operator/vouchers")
    assert 'href="/console/operator/vouchers/issue"' in listing.text
    page = await browser.get("/console/operator/vouchers/issue")
    form = {"csrf_token": csrf_of(page.text),
            "form_key": re.search(r'name="form_key" value="([^"]+)"', page.text).group(1),  # type: ignore[union-attr]
            "programme_id": world.programme["id"], "uscc": world.enterprise["uscc"].lower(),
            "face_value": "1,500.00", "reference": "offline selection #1"}
    issued = await browser.post("/console/operator/vouchers/issue", data=form)
    assert issued.status_code == 303, issued.text
    again = await browser.post("/console/operator/vouchers/issue", data=form)  # a double click: one voucher
    assert again.headers["location"] == issued.headers["location"]
    vouchers = await _vouchers(client, world)
    assert [(v["face_value"], v["enterprise_id"]) for v in vouchers] == [(150_000, world.enterprise["id"])]
    assert (await browser.get(issued.headers["location"])).status_code == 200
    unknown = await browser.post("/console/operator/vouchers/issue",
                                 data={**form, "form_key": str(uuid.uuid4()), "uscc": "91330110MA2XXXXXX0"})
    assert unknown.status_code == 422 and 'id="issue-error"' in unknown.text
    too_much = await browser.post("/console/operator/vouchers/issue",
                                  data={**form, "form_key": str(uuid.uuid4()),
                                        "face_value": f"{world.programme['max_per_voucher'] // 100 + 1}.00"})
    assert too_much.status_code == 409 and 'id="issue-error"' in too_much.text  # the API's refusal, in words
    bad_amount = await browser.post("/console/operator/vouchers/issue",
                                    data={**form, "form_key": str(uuid.uuid4()), "face_value": "12.345"})
    assert bad_amount.status_code == 422
    assert len(await _vouchers(client, world)) == 1
    # A space passes the browser's `required`; trimmed, it was no filter at all, and the voucher
    # went to whichever enterprise the API listed first (found by an independent review).
    await create(client, world.operator, "/v1/enterprises", enterprise_payload())
    for blank in ("   ", ""):
        nobody = await browser.post("/console/operator/vouchers/issue",
                                    data={**form, "form_key": str(uuid.uuid4()), "uscc": blank})
        assert nobody.status_code == 422 and 'id="issue-error"' in nobody.text, (nobody.status_code, nobody.text)
    assert len(await _vouchers(client, world)) == 1


async def test_a_bulk_file_refused_for_budget_is_issued_once_the_budget_is_freed(
        app: Any, client: httpx.AsyncClient, browser: Browser) -> None:
    """A batch's refusal was kept under its key and replayed for the key's lifetime: after a
    voucher was revoked and the budget freed, the same file was still refused with the old
    figures (an independent review). Now it is issued, once: sent again, it is the same issue."""
    world = await build_world(app, client, budget_total=1_000_000, enterprise_cap=800_000, max_per_voucher=800_000)
    other = await create(client, world.operator, "/v1/enterprises", enterprise_payload())
    blocker = await create(client, world.operator, "/v1/vouchers", {
        "programme_id": world.programme["id"], "enterprise_id": other["id"], "face_value": 800_000})
    await browser.sign_in(world.operator, language="en")
    content = f"uscc,face_value,reference\n{world.enterprise['uscc']},5000.00,B-1\n".encode()

    async def issue() -> httpx.Response:
        preview = await _preview(browser, world, "grants.csv", content)
        assert preview.status_code == 200, preview.text[:300]
        form = {name: value for name, value in re.findall(r'name="(\w+)" value="([^"]*)"', preview.text)
                if name in ("csrf_token", "form_key", "programme_id", "grants")}
        form["grants"] = html.unescape(form["grants"])
        return await browser.post("/console/operator/vouchers/bulk/issue", data=form)

    first = await issue()
    assert first.status_code == 409 and "¥2,000.00" in first.text, first.text[:500]
    revoked = await client.post(f"/v1/vouchers/{blocker['id']}/revoke", json={"reason": "wrong enterprise"},
                                headers=auth(world.operator, **fresh_key()))
    assert revoked.status_code == 200, revoked.text
    for _ in range(2):  # issued, then the same issue again
        again = await issue()
        assert again.status_code == 200, re.sub(r"<[^>]+>", " ", again.text)[-400:]
        assert [v["face_value"] for v in await _vouchers(client, world) if v["id"] != blocker["id"]] == [500_000]


# -- refusals in words, and what was typed kept (an independent review, December 2026) -------


def _form_key(page: str) -> str:
    return re.search(r'name="form_key" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def _alert(page: str) -> str:
    found = re.search(r'role="alert"[^>]*>(.*?)</p>', page, re.S)
    assert found, "no error shown"
    return html.unescape(found.group(1))


async def test_a_field_the_api_refuses_is_named_in_words_with_its_reason(
        client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    """Approving more than was requested showed only "有 1 个字段不符合要求：body/amount；每个字段
    的说明见 errors 列表" — a JSON pointer and a list no page shows. The field and the API's own
    (Chinese) reason are shown instead."""
    application = await submit(client, world, amount=2_000_000)
    await browser.sign_in(world.operator)
    path = f"/console/operator/applications/{application['id']}"
    detail = await browser.get(path)
    refused = await browser.post(f"{path}/approve", data={
        "csrf_token": csrf_of(detail.text), "form_key": _form_key(detail.text), "amount": "30,000.00"})
    assert refused.status_code == 422
    said = _alert(refused.text)
    assert said == "金额有误：不得超过申请金额 ¥20,000.00", said
    assert "body/amount" not in said and "errors" not in said, said
    form = await browser.get("/console/operator/vouchers/issue")
    refused = await browser.post("/console/operator/vouchers/issue", data={
        "csrf_token": csrf_of(form.text), "form_key": _form_key(form.text), "programme_id": world.programme["id"],
        "uscc": world.enterprise["uscc"], "face_value": "0", "reference": ""})
    assert refused.status_code == 422
    assert _alert(refused.text).startswith("面值有误："), _alert(refused.text)


async def test_a_refused_approval_keeps_what_the_operator_typed(
        client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    """The operator means to approve ¥15,000.00 of ¥20,000.00 and mistypes: the page came back
    with the requested ¥20,000.00 in the field and the note gone, so one more click approved
    ¥5,000.00 more than was decided. Whatever refused it, the form keeps what was typed."""
    application = await submit(client, world, amount=2_000_000)
    await browser.sign_in(world.operator)
    path = f"/console/operator/applications/{application['id']}"
    for amount in ("15,000.0O", "30,000.00"):  # refused by the console, then by the API
        detail = await browser.get(path)
        again = await browser.post(f"{path}/approve", data={
            "csrf_token": csrf_of(detail.text), "form_key": _form_key(detail.text), "amount": amount,
            "note": "committee minutes 12"})
        assert again.status_code == 422
        shown = re.search(r'id="amount" name="amount"[^>]*value="([^"]*)"', again.text).group(1)  # type: ignore[union-attr]
        assert shown == amount
        assert 'value="committee minutes 12"' in again.text
    assert (await client.get(f"/v1/applications/{application['id']}",
                             headers=auth(world.operator))).json()["status"] == "under_review"


async def test_a_refused_revocation_keeps_its_reason_and_clawback(browser: Browser, world: World) -> None:
    """A revocation retyped with its reason only would go through, for good, without the
    clawback the operator meant: the refused form keeps both."""
    voucher = await world.issue(10_000_000)
    await browser.sign_in(world.operator)
    path = f"/console/operator/vouchers/{voucher['id']}"
    page = await browser.get(path)
    refused = await browser.post(f"{path}/revoke", data={
        "csrf_token": csrf_of(page.text), "form_key": _form_key(page.text), "reason": "duplicate grant",
        "clawback": "12,34x"})
    assert refused.status_code == 422
    assert re.search(r'id="revoke-reason"[^>]*value="duplicate grant"', refused.text)
    assert re.search(r'id="clawback"[^>]*value="12,34x"', refused.text)
    assert not re.search(r'id="suspend-reason"[^>]*value="duplicate grant"', refused.text)


async def test_a_vouchers_history_names_the_balance_each_posting_moved(browser: Browser, world: World) -> None:
    """A hold posts −X to available and +X to held; the history's 账户 column showed the journal's
    code (`hold_placed`) on both rows, so nothing said which balance moved. Each row now names its
    balance and the movement in words (the codes stay in data attributes)."""
    voucher = await world.issue(10_000_000)
    held = await world.hold(voucher, 1_000_000, order="PO-HISTORY-1")
    assert held.status_code == 201, held.text
    for key, path in ((world.enterprise_key, "enterprise"), (world.operator, "operator")):
        await browser.sign_in(key)
        page = await browser.get(f"/console/{path}/vouchers/{voucher['id']}")
        rows = re.findall(r'<td data-account="([a-z]+)">([^<]*)</td><td class="num">([^<]*)</td>'
                          r'<td data-kind="([a-z_]+)">([^<]*)', page.text)
        moved = {(account, shown, kind, named.strip()) for account, shown, _, kind, named in rows}
        assert ("held", "券冻结余额", "hold_placed", "为订单冻结补贴") in moved, rows
        assert ("available", "券可用余额", "hold_placed", "为订单冻结补贴") in moved, rows
        assert "hold_placed<" not in page.text


async def test_roles_and_statuses_are_words_in_a_chinese_sentence(
        client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    """"此页面仅供角色 auditor 使用；当前登录密钥的角色为 operator" and "仍处于“under_review”状态":
    codes in Chinese sentences. The page and the API's detail now say the words; the codes stay
    in the problem's extension members."""
    await browser.sign_in(world.operator)
    forbidden = await browser.get("/console/auditor")
    assert forbidden.status_code == 403
    assert "审计" in forbidden.text and "auditor" not in forbidden.text.split("<main", 1)[-1]
    await submit(client, world)
    again = await client.post("/v1/applications", json={"programme_id": world.programme["id"],
                                                        "requested_amount": 100_000, "purpose": "训练"},
                              headers={**auth(world.enterprise_key, **fresh_key()), "Accept-Language": "zh-CN"})
    problem = again.json()
    assert (again.status_code, problem["current_status"]) == (409, "under_review"), problem
    assert "under_review" not in problem["detail"] and "审核中" in problem["detail"], problem["detail"]
