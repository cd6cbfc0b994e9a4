"""Export test helpers: fetch an export and its manifest, read it back in any format (CSV, JSON
Lines, .xlsx), compare exported cells with database values (a spreadsheet's times in Beijing
time, an .xlsx's amounts in the unit), drive the ASGI app by hand to watch the body arrive chunk
by chunk, and load many postings directly."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import case, insert, select

from services.voucher import driver
from services.voucher.audit.rules import SYSTEM_ROLE, journal_record
from services.voucher.db import UTCDateTime
from services.voucher.ids import uuid7
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind
from services.voucher.tables import (
    AuditEvent,
    LedgerAccount,
    LedgerPosting,
    LedgerTransaction,
    Voucher,
)
from tests.exports import xlsx
from tests.exports.history import read_csv, read_jsonl
from tests.support import auth

A, P, T = LedgerAccount.__table__, LedgerPosting.__table__, LedgerTransaction.__table__
E = AuditEvent.__table__


SHANGHAI = ZoneInfo("Asia/Shanghai")
TIME_NOTE = " (Asia/Shanghai)"
SPREADSHEETS = ("csv", "xlsx")
FORMATS = ("jsonl", *SPREADSHEETS)
MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
#: Decimal places of each unit's minor unit, written here rather than imported, as a reader knows them.
PLACES = {"CNY": 2, "GPU_HOUR": 3, "TOKEN": 0}
NUMBER_FORMAT = {"CNY": "#,##0.00", "GPU_HOUR": "#,##0.000", "TOKEN": "#,##0"}
LIMITS = ("stacking_ceiling", "enterprise_cap", "voucher_balance", "expected_subsidy")
COMPUTATION = ("gross_subsidy", "subsidy", "limited_by", "enterprise_pays", "spend_this_period_before",
               "subsidy_this_period_before", "expected_subsidy", "enterprise_cap", "stacking_ceiling_bps",
               "stacking_ceiling_amount", "already_subsidised_on_order",
               *(f"{limit}_{end}" for limit in LIMITS for end in ("room", "after")))
AMOUNTS = frozenset({"amount", "order_amount", "held_amount", "captured_amount", "refunded_amount",
                     "captured_total", "refunded_total", "total", "gross_subsidy", "subsidy", "enterprise_pays",
                     "spend_this_period_before", "subsidy_this_period_before", "expected_subsidy", "enterprise_cap",
                     "stacking_ceiling_amount", "already_subsidised_on_order",
                     *(f"{limit}_{end}" for limit in LIMITS for end in ("room", "after"))})


async def export(client: httpx.AsyncClient, key: str, dataset: str, fmt: str | None = None,
                 **params: Any) -> httpx.Response:
    query = {k: str(v) for k, v in params.items()}
    if fmt is not None:
        query["format"] = fmt
    return await client.get(f"/v1/exports/{dataset}", params=query, headers=auth(key))


def rows_of(fmt: str, body: bytes) -> list[dict[str, Any]]:
    """The file's rows as dicts keyed by its header (a spreadsheet's time columns say their zone)."""
    if fmt == "xlsx":
        return xlsx.as_records(xlsx.read(body))[1]
    return read_csv(body) if fmt == "csv" else read_jsonl(body)


def header_of(fmt: str, body: bytes) -> list[str]:
    if fmt == "xlsx":
        return xlsx.as_records(xlsx.read(body))[0]
    return next(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


async def manifest_of(client: httpx.AsyncClient, key: str, response: httpx.Response) -> dict[str, Any]:
    export_id = response.headers["export-id"]
    assert response.headers["link"] == f'</v1/exports/manifests/{export_id}>; rel="describedby"'
    found = await client.get(f"/v1/exports/manifests/{export_id}", headers=auth(key))
    assert found.status_code == 200, found.text
    return found.json()  # type: ignore[no-any-return]


def same_cell(exported: Any, expected: Any, fmt: str, unit: str | None = None) -> bool:
    """Whether an exported cell (CSV text, JSON value or .xlsx value) carries the database
    value; `unit` when the column is an amount (an .xlsx shows it in the unit)."""
    if expected is None:
        return exported == ("" if fmt == "csv" else None)
    if isinstance(expected, bool):
        if fmt == "csv":
            return exported == ("true" if expected else "false")
        return exported is expected
    if isinstance(expected, uuid.UUID):
        return isinstance(exported, str) and uuid.UUID(exported) == expected
    if isinstance(expected, datetime):
        if fmt == "jsonl":  # RFC 3339 UTC
            return (isinstance(exported, str) and exported.endswith("Z")
                    and datetime.fromisoformat(exported) == expected.astimezone(UTC))
        if fmt == "csv":  # Beijing time, offset written
            return (isinstance(exported, str) and exported[19:].lstrip(".0123456789") == "+08:00"
                    and datetime.fromisoformat(exported) == expected)
        wall = expected.astimezone(SHANGHAI).replace(tzinfo=None)  # an Excel date-time, Beijing wall clock
        return isinstance(exported, datetime) and abs(exported - wall) < timedelta(milliseconds=1)
    if isinstance(expected, date):
        if fmt == "xlsx":
            return exported == datetime(expected.year, expected.month, expected.day)
        return exported == expected.isoformat()
    if isinstance(expected, int):
        if fmt == "csv":
            return exported == str(expected)
        if fmt == "xlsx":
            places = PLACES[unit] if unit is not None else 0
            return isinstance(exported, Decimal) and exported * 10**places == expected
        return type(exported) is int and exported == expected
    if isinstance(expected, dict | list):
        assert fmt == "jsonl", "no JSON in a spreadsheet cell"
        return exported == expected
    if isinstance(expected, str) and fmt == "xlsx" and expected == "":
        return exported is None
    return exported == expected


def assert_same_rows(exported: list[dict[str, Any]], expected: list[dict[str, Any]], fmt: str,
                     times: frozenset[str] = frozenset()) -> None:
    """The rows are the expected ones, column for column; in a spreadsheet the header of each
    column of `times` says their zone."""
    assert len(exported) == len(expected)
    for got, want in zip(exported, expected, strict=True):
        names = [f"{k}{TIME_NOTE}" if fmt != "jsonl" and k in times else k for k in want]
        assert list(got) == names, (list(got), names)
        got = dict(zip(want, got.values(), strict=True))
        bad = {k: (got[k], want[k]) for k in want
               if not same_cell(got[k], want[k], fmt, want.get("unit") if k in AMOUNTS else None)}
        assert not bad, bad


def time_columns(stmt: Any) -> frozenset[str]:
    """The statement's columns that hold instants (by their SQL type)."""
    return frozenset(c.key for c in stmt.selected_columns if isinstance(c.type, UTCDateTime))


def flat_settlement(row: dict[str, Any]) -> dict[str, Any]:
    """A settlement as a spreadsheet has it: the account an approval paid to in three columns,
    where the account stood."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name == "payee_account":
            out.update({f"payee_{field}": (value or {}).get(field)
                        for field in ("bank_name", "account_name", "account_number")})
        else:
            out[name] = value
    return out


def flat_redemption(row: dict[str, Any]) -> dict[str, Any]:
    """A redemption as a spreadsheet has it: its line items counted, its computation in columns."""
    computation = row["computation"]
    steps = {step["limit"]: step for step in computation["steps"]}
    figures = {
        "gross_subsidy": computation["gross_subsidy"], "subsidy": computation["subsidy"],
        "limited_by": computation["limited_by"], "enterprise_pays": computation["enterprise_pays"],
        "spend_this_period_before": computation["spend_this_period_before"],
        "subsidy_this_period_before": computation["subsidy_this_period_before"],
        "expected_subsidy": computation.get("expected_subsidy"), "enterprise_cap": computation.get("enterprise_cap"),
        "stacking_ceiling_bps": steps["stacking_ceiling"]["ceiling_bps"],
        "stacking_ceiling_amount": steps["stacking_ceiling"]["ceiling_amount"],
        "already_subsidised_on_order": steps["stacking_ceiling"]["already_subsidised_on_order"],
    }
    for limit in LIMITS:
        figures[f"{limit}_room"] = steps[limit]["room"] if limit in steps else None
        figures[f"{limit}_after"] = steps[limit]["after"] if limit in steps else None
    assert list(figures) == list(COMPUTATION)
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name == "line_items":
            out["line_item_count"] = len(value)
        elif name == "computation":
            out.update(figures)
        else:
            out[name] = value
    return out


def without_changes(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("before", "after")}


async def database_rows(app: Any, stmt: Any) -> list[dict[str, Any]]:
    async with app.state.database.unit_of_work(write=False) as session:
        return [dict(r._mapping) for r in (await session.execute(stmt)).all()]


def ledger_rows_statement() -> Any:
    """The ledger-entries dataset, written independently of the code under test: a voucher's
    accounts are its enterprise's."""
    V = Voucher.__table__
    owner = case((A.c.voucher_id.is_(None), A.c.enterprise_id),
                 else_=select(V.c.enterprise_id).where(V.c.id == A.c.voucher_id).scalar_subquery())
    return (
        select(P.c.id.label("posting_id"), P.c.transaction_id.label("journal_id"), T.c.kind, P.c.account_id,
               A.c.code.label("account_code"), A.c.kind.label("account_kind"), P.c.amount, P.c.unit,
               A.c.programme_id, A.c.voucher_id, A.c.provider_id, owner.label("enterprise_id"), T.c.redemption_id,
               P.c.created_at, T.c.created_at.label("journal_created_at"),
               T.c.programme_id.label("journal_programme_id"), T.c.voucher_id.label("journal_voucher_id"), T.c.memo)
        .join_from(P, T, T.c.id == P.c.transaction_id).join(A, A.c.id == P.c.account_id)
        .order_by(P.c.id)
    )


# -- driving the ASGI app by hand ---------------------------------------------------------------


async def stream_by_hand(
    app: Any, path: str, query: str, key: str,
    on_chunk: Callable[[int, bytes], Awaitable[None]] | None = None, *, keep: bool = True,
) -> tuple[int, dict[str, str], list[bytes]]:
    """GET through the whole middleware stack, keeping each body message apart (httpx joins
    them; `keep=False` keeps none); `on_chunk` runs as each one is sent, while the export is
    still running."""
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "root_path": "", "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
        "headers": [(b"host", b"test"), (b"authorization", f"Bearer {key}".encode())],
    }
    requested = False
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()  # the client stays connected
        return {"type": "http.disconnect"}

    status, headers, chunks, count = 0, {}, [], 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers, count
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body:
                count += 1
                if keep:
                    chunks.append(body)
                if on_chunk is not None:
                    await on_chunk(count, body)

    await app(scope, receive, send)
    return status, headers, chunks


# -- many postings, written directly --------------------------------------------------------------


async def load_postings(app: Any, programme_id: str, provider_id: str, journals: int, *,
                        at: datetime, unit: str = "CNY") -> None:
    """`journals` balanced journals of two postings each (programme spent → provider payable,
    both unmaterialised), one second apart from `at`. Their kind, `bulk_test`, is none the
    service posts, so the reconciliation reports them: a test that loads them is marked
    `ledger_tampered`."""
    database = app.state.database
    pid, prov = uuid.UUID(programme_id), uuid.UUID(provider_id)
    async with database.unit_of_work() as session:
        spent = (await ledger.programme_accounts(session, pid))[AccountKind.PROGRAMME_SPENT]
        payable = (await ledger.ensure_provider_accounts(session, prov, pid, unit, at))[AccountKind.PROVIDER_PAYABLE]
        for start in range(0, journals, 5000):
            batch = range(start, min(start + 5000, journals))
            txs = [{"id": uuid.uuid4(), "kind": "bulk_test", "programme_id": pid, "voucher_id": None,
                    "redemption_id": None, "memo": "loaded by the test", "request_id": None,
                    "created_at": at + timedelta(seconds=i)} for i in batch]
            await session.execute(insert(T), txs)
            postings = []
            for i, tx in zip(batch, txs, strict=True):
                amount = 100 + i
                postings.append({"transaction_id": tx["id"], "account_id": spent, "amount": -amount,
                                 "unit": unit, "created_at": tx["created_at"]})
                postings.append({"transaction_id": tx["id"], "account_id": payable, "amount": amount,
                                 "unit": unit, "created_at": tx["created_at"]})
            # One statement for them all, as the ledger writes a journal's postings (PostgreSQL
            # checks each INSERT statement leaves its journals balanced).
            await driver.run(session, driver.one_statement(driver.insert_rows(P), postings))
            # Each journal's `ledger.posted` event, as the ledger service writes it, so the audit
            # trail still verifies after the test.
            await session.execute(insert(E), [{
                "id": uuid7(), "occurred_at": tx["created_at"], "actor_role": SYSTEM_ROLE,
                "action": "ledger.posted", "resource_type": "ledger_transaction", "resource_id": tx["id"],
                "programme_id": pid, "journal_id": tx["id"],
                "after": journal_record("bulk_test", tx["created_at"], [
                    (spent, -(100 + i), unit, tx["created_at"]), (payable, 100 + i, unit, tx["created_at"])]),
            } for i, tx in zip(batch, txs, strict=True)])
