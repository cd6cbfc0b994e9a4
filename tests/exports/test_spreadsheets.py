"""Exports as a finance office opens them: CSV and .xlsx hold flat cells only (no JSON text in any
cell), times in Beijing time with the header saying so (JSON Lines keeps UTC), a redemption's
line items as rows of their own that add up to it, an audit event's changes as rows, and an
.xlsx that is a workbook with the CSV's rows: amounts as numbers in the unit with its number
format, times as date-times, the header frozen; the manifest's SHA-256 is that of each file."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.exports import xlsx
from tests.exports.helpers import (
    AMOUNTS,
    FORMATS,
    NUMBER_FORMAT,
    PLACES,
    SPREADSHEETS,
    TIME_NOTE,
    database_rows,
    export,
    header_of,
    manifest_of,
    rows_of,
)
from tests.exports.history import History, build_history, read_jsonl
from tests.support import auth
from tests.world import build_world

DATASETS = ("ledger-entries", "redemptions", "redemption-line-items", "settlements", "audit-events",
            "audit-event-changes")
BEIJING = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+08:00")


@pytest.fixture
async def history(app, client: httpx.AsyncClient, clock) -> History:
    return await build_history(app, client, clock)


def _is_json_structure(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict | list)
    except ValueError:
        return False


@pytest.mark.parametrize("dataset", DATASETS)
async def test_no_spreadsheet_cell_holds_json_and_every_time_is_beijing_time(
    client: httpx.AsyncClient, history: History, dataset: str
) -> None:
    auditor = history.world.auditor
    csv_ = await export(client, auditor, dataset, "csv")
    rows = rows_of("csv", csv_.content)
    assert rows, dataset
    cells = [value for row in rows for value in row.values()]
    assert not [c for c in cells if _is_json_structure(c)]
    assert not [c for c in cells if c.startswith(("{", "["))]
    times = [name for name in header_of("csv", csv_.content) if name.endswith(TIME_NOTE)]
    assert times, "every dataset has a time column, and its header names the zone"
    for name in times:
        assert all(BEIJING.fullmatch(r[name]) for r in rows if r[name]), (name, [r[name] for r in rows][:3])
    # The .xlsx has the same header (but for the CSV's note on amounts in minor units); its times
    # are date-times, its cells never formulas or JSON.
    book = (await export(client, auditor, dataset, "xlsx")).content
    header, records = xlsx.as_records(xlsx.read(book))
    assert header == [n.removesuffix(" (minor units)") for n in header_of("csv", csv_.content)]
    assert len(records) == len(rows)
    for name in times:
        assert all(isinstance(r[name], datetime) for r in records if r[name] is not None)
    assert not [v for r in records for v in r.values() if isinstance(v, str) and _is_json_structure(v)]
    # JSON Lines, for programs, keeps UTC
    jsonl = read_jsonl((await export(client, auditor, dataset, "jsonl")).content)
    for name in times:
        key = name.removesuffix(TIME_NOTE)
        assert all(r[key].endswith("Z") for r in jsonl if r[key] is not None)


async def test_a_known_instant_in_every_format(client: httpx.AsyncClient, history: History) -> None:
    """The hold's capture at 02:10 UTC on 22 February is 10:10 in Beijing."""
    auditor = history.world.auditor
    want = {"jsonl": "2026-02-22T02:10:00Z", "csv": "2026-02-22T10:10:00+08:00",
            "xlsx": datetime(2026, 2, 22, 10, 10)}
    for fmt in FORMATS:
        rows = rows_of(fmt, (await export(client, auditor, "ledger-entries", fmt)).content)
        column = "created_at" if fmt == "jsonl" else f"created_at{TIME_NOTE}"
        captured = [r for r in rows if r["kind"] == "hold_captured"]
        assert captured and {r[column] for r in captured} == {want[fmt]}, fmt


async def test_line_items_are_rows_that_add_up_to_their_redemption(app, client: httpx.AsyncClient, clock) -> None:
    """Three items, one within a tier, one across its boundary, one at the table's rate: each a
    row with its own gross subsidy, the rows summing to the redemption's order amount and gross
    subsidy in every format."""
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000, "accelerator:other": 2000},
                              tiers=[{"spend_up_to": 1_500_000, "rate_bps": 5000, "categories": None}])
    voucher = await world.issue(5_000_000)
    items = [
        {"category": "accelerator:domestic", "amount": 1_000_000, "description": "训练 64 卡 × 20 小时",
         "accelerator": "Ascend 910B", "hours_milli": 1_280_000},
        {"category": "accelerator:domestic", "amount": 1_333_333, "description": "=SUM(A1)", "accelerator": "MLU370",
         "hours_milli": 500},
        {"category": "accelerator:other", "amount": 333_333, "accelerator": "A800", "hours_milli": 1},
    ]
    made = await world.client.post("/v1/redemptions", json={
        "voucher_code": voucher["code"], "enterprise_uscc": world.enterprise["uscc"], "order_reference": "PO-ITEMS",
        "line_items": items}, headers=auth(world.provider_key, **{"Idempotency-Key": "items-1"}))
    assert made.status_code == 201, made.text
    redemption = made.json()
    assert redemption["computation"]["gross_subsidy"] == 500_000 + 250_000 + 249_999 + 66_666
    by_format: dict[str, list[dict[str, Any]]] = {}
    for fmt in FORMATS:
        response = await export(client, world.auditor, "redemption-line-items", fmt)
        assert response.status_code == 200, response.text
        rows = rows_of(fmt, response.content)
        manifest = await manifest_of(client, world.auditor, response)
        assert manifest["row_count"] == len(rows) == 3
        assert manifest["sha256"] == hashlib.sha256(response.content).hexdigest()
        by_format[fmt] = rows
    jsonl, csv_, book = by_format["jsonl"], by_format["csv"], by_format["xlsx"]
    assert [(r["line"], r["category"], r["amount"], r["gross_subsidy"], r["rate_bps"], r["rate_source"])
            for r in jsonl] == [
        (1, "accelerator:domestic", 1_000_000, 500_000, 5000, "tier"),
        (2, "accelerator:domestic", 1_333_333, 499_999, None, "tier+rate_table"),
        (3, "accelerator:other", 333_333, 66_666, 2000, "rate_table"),
    ]
    assert {r["redemption_id"] for r in jsonl} == {redemption["id"]}
    assert sum(r["amount"] for r in jsonl) == redemption["order_amount"]
    assert sum(r["gross_subsidy"] for r in jsonl) == redemption["computation"]["gross_subsidy"]
    assert [r["description"] for r in jsonl] == ["训练 64 卡 × 20 小时", "=SUM(A1)", ""]
    assert [r["hours_milli"] for r in jsonl] == [1_280_000, 500, 1]
    # CSV: integers in fen, the formula-like description inert
    assert sum(int(r["amount"]) for r in csv_) == redemption["order_amount"]
    assert sum(int(r["gross_subsidy"]) for r in csv_) == redemption["computation"]["gross_subsidy"]
    assert [r["description"] for r in csv_] == ["训练 64 卡 × 20 小时", "'=SUM(A1)", ""]
    assert [r["rate_bps"] for r in csv_] == ["5000", "", "2000"]
    # .xlsx: yuan, two decimals; the description as it is (a text cell)
    assert sum(r["amount"] for r in book) == Decimal("26666.66") == Decimal(redemption["order_amount"]) / 100
    assert sum(r["gross_subsidy"] for r in book) == Decimal("10666.65")
    assert [r["description"] for r in book] == ["训练 64 卡 × 20 小时", "=SUM(A1)", None]
    # the redemption's own row keeps the totals and counts its items
    [flat] = rows_of("csv", (await export(client, world.auditor, "redemptions", "csv")).content)
    assert (flat["line_item_count"], flat["order_amount"], flat["gross_subsidy"]) == ("3", "2666666", "1066665")
    assert "line_items" not in flat and "computation" not in flat


async def test_the_computation_steps_are_columns(client: httpx.AsyncClient, history: History) -> None:
    """Each limit's room and the subsidy after it, in the order they apply, ending at the subsidy."""
    rows = rows_of("csv", (await export(client, history.world.auditor, "redemptions", "csv")).content)
    for row, reported in zip(rows, history.redemptions, strict=True):
        steps = reported["computation"]["steps"]
        assert [s["limit"] for s in steps] == ["stacking_ceiling", "enterprise_cap", "voucher_balance"]
        for step in steps:
            assert row[f"{step['limit']}_room"] == str(step["room"])
            assert row[f"{step['limit']}_after"] == str(step["after"])
        assert row["expected_subsidy_room"] == row["expected_subsidy_after"] == ""  # no quote given
        assert row["voucher_balance_after"] == row["subsidy"] == str(reported["computation"]["subsidy"])
        assert row["limited_by"] == reported["computation"]["limited_by"]
        assert row["stacking_ceiling_bps"] == "10000"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted path → scalar; an empty object or list is a path with no value."""
    if isinstance(value, dict | list) and not value:
        return {prefix: None} if prefix else {}
    if isinstance(value, dict):
        found: dict[str, Any] = {}
        for key, inner in value.items():
            found.update(_flatten(inner, f"{prefix}.{key}" if prefix else key))
        return found
    if isinstance(value, list):
        found = {}
        for index, inner in enumerate(value):
            found.update(_flatten(inner, f"{prefix}.{index}" if prefix else str(index)))
        return found
    return {prefix: value} if prefix else {}


async def test_audit_event_changes_are_rows_of_their_own(app, client: httpx.AsyncClient, history: History) -> None:
    from sqlalchemy import select

    from services.voucher.tables import AuditEvent

    auditor = history.world.auditor
    E = AuditEvent.__table__
    events = await database_rows(app, select(E).order_by(E.c.seq.asc().nulls_last(), E.c.id))
    expected = [(str(e["id"]), path, before, after) for e in events
                for path, (before, after) in _paired(_flatten(e["before"]), _flatten(e["after"])).items()]
    jsonl = rows_of("jsonl", (await export(client, auditor, "audit-event-changes")).content)
    # every value exactly as the event recorded it, in every format: text that looks like a
    # time is not turned into one (an auditor compares these with the chain)
    assert [(r["event_id"], r["field"], r["before"], r["after"]) for r in jsonl] == expected
    assert {r["field"] for r in jsonl} >= {"legs.0.1", "kind", "at"}  # a journal's legs, by position
    csv_ = rows_of("csv", (await export(client, auditor, "audit-event-changes", "csv")).content)
    assert len(csv_) == len(jsonl)
    posted = [r for r in csv_ if r["action"] == "ledger.posted" and r["field"] == "at"]
    recorded = {(e, p): a for e, p, _, a in expected}
    assert posted and all(r["after"] == recorded[(r["event_id"], "at")] for r in posted)
    assert all(BEIJING.fullmatch(r["occurred_at (Asia/Shanghai)"]) for r in csv_)  # the row's own time
    # and the audit-events CSV leaves them out rather than writing JSON text
    header = header_of("csv", (await export(client, auditor, "audit-events", "csv")).content)
    assert "before" not in header and "after" not in header and "chain_hash" in header


def _paired(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {path: (before.get(path), after.get(path)) for path in dict.fromkeys([*before, *after])}


@pytest.mark.parametrize("dataset", ["ledger-entries", "redemptions", "settlements", "redemption-line-items"])
async def test_the_xlsx_is_the_csv_as_a_workbook(client: httpx.AsyncClient, history: History, dataset: str) -> None:
    """Same header, same rows; amounts the CSV's integers in the unit with the unit's number
    format; times the CSV's instants as Beijing date-times; one sheet named after the dataset
    with its header frozen and every column given a width; the manifest's digest the file's."""
    auditor = history.world.auditor
    csv_ = rows_of("csv", (await export(client, auditor, dataset, "csv")).content)
    response = await export(client, auditor, dataset, "xlsx")
    assert response.status_code == 200
    assert response.headers["content-type"] == MEDIA_XLSX
    [sheet] = xlsx.read(response.content)
    assert sheet.name == dataset and sheet.frozen_rows == 1
    header = [c.value for c in sheet.rows[0]]
    assert set(sheet.widths) == set(range(len(header))) and min(sheet.widths.values()) >= 10
    assert all(c.value and isinstance(c.value, str) for c in sheet.rows[0])
    assert len(sheet.rows) - 1 == len(csv_)
    for row, want in zip(sheet.rows[1:], csv_, strict=True):
        cells = dict(zip(header, row + [xlsx.Cell(None)] * (len(header) - len(row)), strict=True))
        for name, text in want.items():
            got = cells[name]
            if text == "":
                assert got.value is None, (name, got)
            elif name in AMOUNTS and want.get("unit"):
                unit = want["unit"]
                assert got.number_format == NUMBER_FORMAT[unit], (name, got)
                assert got.value * 10 ** PLACES[unit] == int(text), (name, got.value, text)
            elif name.endswith(TIME_NOTE):
                assert got.value == datetime.fromisoformat(text).replace(tzinfo=None), (name, got, text)
            elif re.fullmatch(r"-?\d+", text):  # a number, or text of digits (a period key)
                assert got.value in (Decimal(text), text), (name, got, text)
            elif text.startswith("'"):
                assert got.value == text[1:]
            else:
                assert got.value == text or (isinstance(got.value, datetime) and text.startswith(
                    got.value.date().isoformat())), (name, got, text)
    manifest = await manifest_of(client, auditor, response)
    assert manifest["format"] == "xlsx" and manifest["row_count"] == len(csv_)
    assert manifest["sha256"] == hashlib.sha256(response.content).hexdigest()


MEDIA_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def test_gpu_hours_have_three_decimals_in_the_xlsx(app, client: httpx.AsyncClient, clock) -> None:
    world = await build_world(app, client, unit="GPU_HOUR", kind="compute", budget_total=10_000_000,
                              enterprise_cap=1_000_000, max_per_voucher=1_000_000,
                              rate_table={"accelerator:domestic": 3000})
    voucher = await world.issue(100_000)
    made = await world.hold(voucher, 12_345, order="GPU-1", path="/v1/redemptions")
    assert made.status_code == 201, made.text
    book = (await export(client, world.auditor, "ledger-entries", "xlsx", voucher_id=voucher["id"])).content
    [sheet] = xlsx.read(book)
    header = [c.value for c in sheet.rows[0]]
    amounts = [row[header.index("amount")] for row in sheet.rows[1:]]
    assert {c.number_format for c in amounts} == {"#,##0.000"}
    assert Decimal("3.703") in {abs(c.value) for c in amounts}  # 30 % of 12.345 GPU-hours, floored
    csv_ = rows_of("csv", (await export(client, world.auditor, "ledger-entries", "csv", voucher_id=voucher["id"])).content)
    assert sorted(int(r["amount"]) for r in csv_) == sorted(int(c.value * 1000) for c in amounts)


@pytest.mark.parametrize("fmt", SPREADSHEETS)
async def test_the_manifest_describes_each_format_of_the_new_datasets(
    client: httpx.AsyncClient, history: History, fmt: str
) -> None:
    for dataset in ("redemption-line-items", "audit-event-changes"):
        response = await export(client, history.world.auditor, dataset, fmt)
        manifest = await manifest_of(client, history.world.auditor, response)
        assert (manifest["dataset"], manifest["format"]) == (dataset, fmt)
        assert manifest["sha256"] == hashlib.sha256(response.content).hexdigest()
        assert manifest["row_count"] == len(rows_of(fmt, response.content)) > 0


@pytest.mark.parametrize("dataset", ["ledger-entries", "redemptions", "settlements", "redemption-line-items"])
async def test_a_csv_amount_column_says_its_figures_are_in_minor_units(
        client: httpx.AsyncClient, history: History, dataset: str) -> None:
    """Under a bare `amount` beside `unit` CNY, the CSV's -25000000000 read as yuan (it is fen) and
    the workbook's same column held -250000000 yuan (an independent review): the CSV's header now
    says `amount (minor units)`; the workbook's, in the unit with its number format, stays `amount`."""
    auditor = history.world.auditor
    csv_header = header_of("csv", (await export(client, auditor, dataset, "csv")).content)
    xlsx_header = header_of("xlsx", (await export(client, auditor, dataset, "xlsx")).content)
    amounts = [name for name in xlsx_header if name in AMOUNTS]
    assert amounts, xlsx_header
    assert [f"{name} (minor units)" for name in amounts] == [n for n in csv_header if n.endswith("(minor units)")]
    assert len(csv_header) == len(xlsx_header)  # still column for column
    assert not [n for n in xlsx_header if "minor" in n]


async def test_an_approved_settlements_payee_account_is_three_columns(
    client: httpx.AsyncClient, history: History
) -> None:
    """An approval records the account it pays to (a JSON value): the spreadsheets give its three
    fields their own columns — no JSON cell; a CSV export had failed mid-stream on it — and
    JSON Lines nests it as stored."""
    world, settlement = history.world, history.settlement
    assert settlement is not None
    submitted = await world.post(f"/v1/settlements/{settlement['id']}/submit", {})
    assert submitted.status_code == 200, submitted.text
    approved = await world.post(f"/v1/settlements/{settlement['id']}/approve", {}, key=world.operator)
    assert approved.status_code == 200, approved.text
    account = approved.json()["payee_account"]
    assert account and account["account_number"]
    columns = {f"payee_{name}": account[name] for name in ("bank_name", "account_name", "account_number")}
    for fmt in SPREADSHEETS:
        response = await export(client, world.auditor, "settlements", fmt)
        assert response.status_code == 200
        rows = rows_of(fmt, response.content)
        assert "payee_account" not in rows[0]
        assert [{name: row[name] for name in columns} for row in rows if row["id"] == settlement["id"]] \
            == [columns], fmt
    manifest = await manifest_of(client, world.auditor, response)
    assert manifest["row_count"] == len(rows) and manifest["finished_at"]
    nested = read_jsonl((await export(client, world.auditor, "settlements", "jsonl")).content)
    assert [row["payee_account"] for row in nested if row["id"] == settlement["id"]] == [account]
