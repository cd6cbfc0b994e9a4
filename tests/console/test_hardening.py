"""What an independent review of the console found, each pinned: files that would stall the
process or crash the preview, keys that cannot go in a header, bodies at sign-in, htmx errors
that showed nothing, a link from elsewhere that signed the person out, Secure cookies behind a
proxy."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx
import pytest

from services.voucher.console import bulk
from services.voucher.console.api import Refusal
from services.voucher.console.session import SESSION_COOKIE
from services.voucher.console.web import create_console
from services.voucher.settings import Settings
from tests.console.conftest import Browser, csrf_of
from tests.world import World


def _workbook(parts: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_a_workbook_that_unpacks_to_far_more_than_it_weighs_is_refused_before_it_is_parsed() -> None:
    bomb = _workbook({"[Content_Types].xml": b"<Types/>", "xl/sharedStrings.xml": b"<sst>" + b"A" * 30_000_000})
    assert len(bomb) < 100_000
    with pytest.raises(ValueError, match="unpacks"):
        bulk.read_table("grants.xlsx", bomb)


@pytest.mark.parametrize("part", ["xl/sharedStrings.xml", "xl/styles.xml", "xl/strings-elsewhere.xml"])
def test_a_workbook_whose_strings_or_styles_are_read_whole_is_kept_small(part: str) -> None:
    """openpyxl reads these parts whole even read-only: 19 MB of them in a 2 MB upload had taken
    10-13 s and 300 MB (an independent review, December 2026). Past 2 MB each, refused unread."""
    import os

    big = _workbook({"[Content_Types].xml": b"<Types/>", part: os.urandom(1_200_000).hex().encode()})
    with pytest.raises(bulk.WorkbookTooLarge):
        bulk.read_table("grants.xlsx", big)


@pytest.mark.parametrize("name, content", [
    ("grants.xlsx", _workbook({"[Content_Types].xml": b"<Types", "xl/workbook.xml": b"<not xml"})),
    ("grants.xlsx", b"PK\x03\x04 not a zip at all"),
    ("grants.csv", ("uscc,face_value,reference\n" + "9" * 200_000 + ",1,x\n").encode()),
    ("grants.csv", b"\xff\xfe not utf-8"),
])
def test_a_file_that_cannot_be_read_whole_is_a_readable_refusal(name: str, content: bytes) -> None:
    with pytest.raises(ValueError):
        bulk.read_table(name, content)


def test_a_csv_is_read_no_further_than_its_row_limit() -> None:
    """16 MB of one-letter lines had been read whole into eight million rows (1 GB, seconds of
    the interpreter shared with the API) before the 1,000-row limit was looked at (an
    independent review): the reader stops one row past the limit, and at MAX_LINES lines of
    blanks, and a file within the limit reads as before."""
    header = "uscc,face_value,reference\n"
    rows = bulk.read_table("grants.csv", (header + "a\n" * 2_000_000).encode())
    assert len(rows) == bulk.MAX_ROWS + 2 and rows[0] == ["uscc", "face_value", "reference"]
    with pytest.raises(bulk.TooManyRows):
        bulk.read_table("grants.csv", (header + "\n" * 2_000_000 + "x,1,y\n").encode())
    within = header + "\n" * 500 + "91330100MA2CFM2X1A,100.00,R-1\n" * bulk.MAX_ROWS
    assert len(bulk.read_table("grants.csv", within.encode())) == bulk.MAX_ROWS + 1


def _xlsx(rows: list[list[Any]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for i, row in enumerate(rows, start=1):
        for j, value in enumerate(row, start=1):
            if value is not None:
                sheet.cell(row=i, column=j, value=value)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_a_workbook_with_blank_rows_loses_none_of_its_grants() -> None:
    """The first MAX_ROWS + 2 rows of a sheet were read, blank ones counted: a thousand grants
    with a blank row between each came out as 501, and two blank rows above the header lost
    the last grant, with the preview saying the file was valid (an independent review,
    December 2026). Blank rows are dropped as a CSV's are, and a sheet past the limit is
    refused, never cut."""
    header = ["uscc", "face_value", "reference"]
    spaced: list[list[Any]] = [header]
    for n in range(bulk.MAX_ROWS):
        spaced += [["91330100MA2CFM2X1A", "100.00", f"R-{n}"], []]
    rows = bulk.read_table("grants.xlsx", _xlsx(spaced))
    assert len(rows) == bulk.MAX_ROWS + 1 and rows[-1][2] == f"R-{bulk.MAX_ROWS - 1}"
    lifted = [[], [], header] + [["91330100MA2CFM2X1A", "1.00", f"R-{n}"] for n in range(bulk.MAX_ROWS)]
    assert len(bulk.read_table("grants.xlsx", _xlsx(lifted))) == bulk.MAX_ROWS + 1
    over = [header] + [["91330100MA2CFM2X1A", "1.00", f"R-{n}"] for n in range(bulk.MAX_ROWS + 5)]
    assert len(bulk.read_table("grants.xlsx", _xlsx(over))) == bulk.MAX_ROWS + 2  # one past: the preview refuses
    # Far below blank (formatted) rows, a grant is still read: the sheet's <dimension> tag
    # neither refuses the file nor cuts it (a review of the first form).
    far = [header] + [[] for _ in range(bulk.MAX_LINES)] + [["91330100MA2CFM2X1A", "1.00", "late"]]
    assert bulk.read_table("grants.xlsx", _xlsx(far))[-1][2] == "late"


@pytest.mark.parametrize("name", ["grants.csv", "grants.xlsx"])
async def test_a_row_with_more_cells_than_the_columns_is_refused_not_cut(name: str) -> None:
    """`9133…,12,000.00,R-1` unquoted in a CSV had been read as ¥12.00 with the reference
    "000.00", and R-1 dropped (an independent review, December 2026): a row with more cells
    than the three columns is that row's error."""
    rows = [["uscc", "face_value", "reference"], ["AAA", "12", "000.00", "R-1"], ["AAA", "12,000.00", "R-2"],
            ["AAA", "12", "000.00"]]  # the last: no reference, the amount's comma unquoted (a review of the fix)
    content = (_xlsx(rows) if name.endswith("xlsx")
               else ("\n".join(",".join(r) for r in rows[:2]) + '\nAAA,"12,000.00",R-2\nAAA,12,000.00\n').encode())
    preview = await bulk.preview(_CountingApi(), {"unit": "CNY"}, name, content, "en")  # type: ignore[arg-type]
    assert ["quote an amount" in " ".join(r.errors) for r in preview.rows] == [True, False, True]
    assert preview.rows[1].face_value == 1_200_000


async def test_a_column_the_header_names_after_the_three_is_allowed() -> None:
    """A workbook with a name column after the three: its cells are not an amount's comma, and
    every row had been refused with the CSV's hint (a review of the fix)."""
    rows = [["uscc", "face_value", "reference", "name"], ["AAA", "12,000.00", "R-1", "Acme Ltd"]]
    preview = await bulk.preview(_CountingApi(), {"unit": "CNY"}, "g.xlsx", _xlsx(rows), "en")  # type: ignore[arg-type]
    assert [r.errors for r in preview.rows] == [[]] and preview.rows[0].face_value == 1_200_000


async def test_a_row_repeated_in_a_file_is_refused_unless_its_reference_differs() -> None:
    """A row pasted twice had become two vouchers, doubling the grant with nothing said (an
    independent review, December 2026). The same enterprise, amount and reference again is the
    repeat's error; with its own reference, a second voucher is meant."""
    rows = "\n".join(["uscc,face_value,reference", "AAA,100.00,R-1", "AAA,100.00,R-2", "AAA,100,R-1",
                      "AAA,100.00,", "AAA,¥100.0,"])
    preview = await bulk.preview(_CountingApi(), {"unit": "CNY"}, "g.csv", rows.encode(), "en")  # type: ignore[arg-type]
    assert [r.errors for r in preview.rows] == [
        [], [], ["the row repeats line 2: to issue both, give each its own reference"], [],
        ["the row repeats line 5: to issue both, give each its own reference"]]  # the amounts as read


class _CountingApi:
    def __init__(self) -> None:
        self.lookups: list[str] = []

    async def get(self, path: str, **params: Any) -> Any:
        assert path == "/v1/enterprises"
        self.lookups.append(params["uscc"])
        if params["uscc"].startswith("BAD"):
            raise Refusal(422, "validation_failed", "t", f"{params['uscc']} is not a USCC", [])
        return {"items": [{"id": "e-" + params["uscc"], "uscc": params["uscc"]}]}


async def test_a_preview_looks_each_enterprise_up_once_however_many_rows_name_it() -> None:
    rows = ["uscc,face_value,reference"] + [f"AAA,{n}.00,r{n}" for n in range(1, 6)] + ["BAD1,1.00,x", "BAD1,2.00,y"]
    api = _CountingApi()
    preview = await bulk.preview(api, {"unit": "CNY"}, "g.csv", "\n".join(rows).encode(), "en")  # type: ignore[arg-type]
    assert api.lookups == ["AAA", "BAD1"]
    assert [r.errors for r in preview.rows[-2:]] == [["BAD1 is not a USCC"], ["BAD1 is not a USCC"]]
    assert all(r.enterprise == {"id": "e-AAA", "uscc": "AAA"} for r in preview.rows[:5])


async def test_a_key_that_cannot_be_a_header_is_not_valid_and_no_500(browser: Browser) -> None:
    form = await browser.get("/console/sign-in")
    answer = await browser.post("/console/sign-in", data={"api_key": "密钥-é", "csrf_token": csrf_of(form.text)})
    assert answer.status_code == 401
    assert SESSION_COOKIE not in answer.cookies


async def test_sign_in_takes_no_multipart_body(browser: Browser) -> None:
    form = await browser.get("/console/sign-in")
    answer = await browser.post("/console/sign-in", data={"csrf_token": csrf_of(form.text)},
                                files={"api_key": ("key.txt", b"x" * 1000)})
    assert answer.status_code == 415


async def test_a_link_from_elsewhere_does_not_end_the_session(browser: Browser, world: World) -> None:
    await browser.sign_in(world.operator)
    # SameSite=Strict: a navigation from another site arrives without the cookie.
    outside = httpx.AsyncClient(transport=browser.http._transport, base_url="https://test")  # noqa: SLF001
    answer = await outside.get("/console/operator")
    await outside.aclose()
    assert answer.status_code == 303
    assert "set-cookie" not in answer.headers  # nothing to delete: the browser's session stays
    assert (await browser.get("/console/operator")).status_code == 200


async def test_an_htmx_check_shows_its_error_in_place_and_a_dead_form_reloads(browser: Browser, world: World) -> None:
    await browser.sign_in(world.enterprise_key)
    token = csrf_of((await browser.get("/console/enterprise/apply")).text)
    values = {"csrf_token": token, "programme_id": world.programme["id"], "amount": "12.345", "purpose": "x"}
    partial = await browser.post("/console/enterprise/apply/check", data=values, headers={"HX-Request": "true"})
    assert partial.status_code == 200  # htmx swaps a 2xx in: the person sees what is wrong
    assert 'id="apply-error"' in partial.text
    stale = await browser.post("/console/enterprise/apply/check", data={**values, "csrf_token": "forged"},
                               headers={"HX-Request": "true"})
    assert stale.status_code == 403 and stale.headers["HX-Refresh"] == "true"


async def test_production_cookies_are_secure_even_when_the_proxy_speaks_http(app: Any, settings: Settings) -> None:
    production = settings.model_copy(update={"environment": "production"})
    console = create_console(app, production)
    transport = httpx.ASGITransport(app=console, client=("203.0.113.7", 51000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        form = await http.get("/sign-in")
    assert form.status_code == 200
    assert "secure" in form.headers["set-cookie"].lower()


async def test_the_same_batch_uploaded_twice_and_issued_from_both_previews_is_issued_once(
        client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    import re

    from tests.console.test_operator import _preview, _vouchers
    from tests.support import create, enterprise_payload

    other = await create(client, world.operator, "/v1/enterprises", enterprise_payload())
    await browser.sign_in(world.operator)
    content = (f"uscc,face_value,reference\n{world.enterprise['uscc']},1000.00,C-1\n"
               f"{other['uscc']},2000.00,C-2\n").encode()
    for _ in range(2):  # a second upload of the file (or Back and resend) is a second preview, with its own form
        preview = await _preview(browser, world, "grants.csv", content)
        assert preview.status_code == 200, preview.text
        form = {name: value for name, value in re.findall(r'name="(\w+)" value="([^"]*)"', preview.text)
                if name in ("csrf_token", "form_key", "programme_id", "grants")}
        form["grants"] = form["grants"].replace("&#34;", '"').replace("&quot;", '"')
        issued = await browser.post("/console/operator/vouchers/bulk/issue", data=form)
        assert issued.status_code == 200, issued.text
    assert sorted(v["face_value"] for v in await _vouchers(client, world)) == [100_000, 200_000]


@pytest.mark.parametrize("grants", ["not json", "[" * 100_000 + "]" * 100_000, "NaN", "1e400",
                                    '[{"face_value": Infinity}]'])
async def test_a_bulk_issue_whose_preview_cannot_be_read_is_a_page_not_a_500(
        client: httpx.AsyncClient, browser: Browser, world: World, grants: str) -> None:
    """The preview's grants come back in a hidden field: one tampered with, or nested deeper than
    Python's JSON parser recurses, is the page's own refusal, and nothing is issued."""
    import re

    from tests.console.test_operator import _preview, _vouchers

    await browser.sign_in(world.operator)
    content = f"uscc,face_value,reference\n{world.enterprise['uscc']},1000.00,C-1\n".encode()
    preview = await _preview(browser, world, "grants.csv", content)
    form = {name: value for name, value in re.findall(r'name="(\w+)" value="([^"]*)"', preview.text)
            if name in ("csrf_token", "form_key", "programme_id")}
    issued = await browser.post("/console/operator/vouchers/bulk/issue", data={**form, "grants": grants})
    assert issued.status_code == 422, issued.text[:300]
    assert any(words in issued.text for words in ("upload the file again", "请重新上传", "check the form", "请检查表单"))
    assert await _vouchers(client, world) == []


async def test_a_uscc_too_long_for_a_url_is_the_forms_refusal_not_a_500(browser: Browser, world: World) -> None:
    """The console asks the API for an enterprise by USCC in the query string: a value too long
    for a URL (a pasted column) is refused beside the form, on one issue and in a bulk preview."""
    from tests.console.test_operator import _preview

    await browser.sign_in(world.operator, language="en")
    form = await browser.get("/console/operator/vouchers/issue")
    issued = await browser.post("/console/operator/vouchers/issue", data={
        "csrf_token": csrf_of(form.text), "programme_id": world.programme["id"], "uscc": "A" * 70_000,
        "face_value": "10", "reference": ""})
    assert issued.status_code == 422, issued.text[:300]
    assert "too long" in issued.text
    preview = await _preview(browser, world, "grants.csv",
                             ("uscc,face_value,reference\r\n" + "9" * 70_000 + ",10.00,r1\r\n").encode())
    assert preview.status_code == 422, preview.text[:300]
    assert 'id="issue"' not in preview.text


async def test_verify_now_sent_twice_runs_one_verification(browser: Browser, world: World) -> None:
    import re

    await browser.sign_in(world.auditor)
    page = await browser.get("/console/auditor")
    form = {name: value for name, value in re.findall(r'name="(\w+)" value="([^"]*)"', page.text)
            if name in ("csrf_token", "form_key")}
    assert set(form) == {"csrf_token", "form_key"}
    first = await browser.post("/console/auditor/verifications", data=form)
    second = await browser.post("/console/auditor/verifications", data=form)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]


@pytest.mark.parametrize("status, resource, shown", [
    (422, True, True), (409, True, True), (400, True, True), (404, False, True),
    (404, True, False), (401, False, False), (403, False, False), (500, False, False), (503, False, False),
])
def test_which_refusals_a_form_shows_and_which_go_to_the_error_page(status: int, resource: bool, shown: bool) -> None:
    refusal = Refusal(status, "code", "title", "detail", [])
    assert refusal.for_the_form(page_is_the_resource=resource) is shown


def test_a_refused_field_is_named_as_its_form_names_it_never_by_its_pointer() -> None:
    """Three forms had three near-copies of this naming, and the claim form's showed an unknown
    field's JSON pointer; one rule now: the form's own names first (a list's row by its list),
    else the common name nearest the field, else the API's message alone."""
    from services.voucher.console import filing, usage
    from services.voucher.console.api import field_problem

    def said(pointer: str, names: Any = None) -> str:
        return field_problem({"pointer": pointer, "message": "too large"}, "en", names)

    assert said("/line_items/1/amount", filing.FIELD_NAMES) == "Order lines, number 2: too large"
    assert said("/grants/0/face_value") == "Face value, number 1: too large"
    assert said("/period_start", usage.FIELD_NAMES) == "First day: too large"
    assert said("/no_such_field") == "too large"
    assert said("/line_items/0/no_such_field", filing.FIELD_NAMES) == "Order lines, number 1: too large"
    assert said("/rows/3/no_such_field") == "row 4: too large"
