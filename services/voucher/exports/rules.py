"""What an export contains and how its rows are written: datasets, formats, which filters
apply to which dataset, each file's columns (exports/layouts.py), and the row encoders (CSV
UTF-8 with a BOM, or JSON Lines; the .xlsx writer is exports/workbook.py). Pure: stdlib only
(and the message catalogue for the filter problems), so the bytes an auditor receives depend on
nothing but the rows.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from services.voucher import spreadsheet
from services.voucher.exports import layouts
from services.voucher.exports.layouts import Layout
from services.voucher.i18n import Message, msg
from services.voucher.windows import range_problem

BOM = "\ufeff"
#: Bytes gathered before a chunk is handed to the server: large enough that per-chunk costs do
#: not matter, small enough that memory stays flat whatever the export's size.
CHUNK_BYTES = 64 * 1024
#: Rows fetched from the database per round trip (server-side cursor on PostgreSQL): the
#: memory an export holds is about one such batch, whatever its size.
FETCH_ROWS = 1000
#: Rows encoded at a time, so pending bytes stay near one chunk.
ENCODE_ROWS = 100


class Dataset(StrEnum):
    LEDGER_ENTRIES = "ledger-entries"
    REDEMPTIONS = "redemptions"
    REDEMPTION_LINE_ITEMS = "redemption-line-items"
    SETTLEMENTS = "settlements"
    SETTLEMENT_ITEMS = "settlement-items"
    AUDIT_EVENTS = "audit-events"
    AUDIT_EVENT_CHANGES = "audit-event-changes"


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    XLSX = "xlsx"


MEDIA_TYPES = {Format.CSV: "text/csv; charset=utf-8", Format.JSONL: "application/x-ndjson",
               Format.XLSX: spreadsheet.XLSX_MEDIA_TYPE}
#: The formats a finance office opens in a spreadsheet: flat cells only (no JSON in a cell) and
#: times in Asia/Shanghai. JSON Lines is for programs: nested values, times in UTC.
SPREADSHEET_FORMATS = frozenset({Format.CSV, Format.XLSX})
#: The rows each dataset is read from: line items from redemptions, changes from audit events
#: (so they take the same filters).
SOURCE: dict[Dataset, Dataset] = {
    **{dataset: dataset for dataset in Dataset},
    Dataset.REDEMPTION_LINE_ITEMS: Dataset.REDEMPTIONS,
    Dataset.AUDIT_EVENT_CHANGES: Dataset.AUDIT_EVENTS,
}


@dataclass(frozen=True)
class Filters:
    """The filters of one export; None means "any". The time range is half-open."""

    programme_id: uuid.UUID | None = None
    enterprise_id: uuid.UUID | None = None
    provider_id: uuid.UUID | None = None
    voucher_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None

    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def as_record(self) -> dict[str, str]:
        """The filters as the manifest keeps them (JSON text values)."""
        return {name: plain(value) for name, value in self.given().items()}


_TENANT = frozenset({"programme_id", "enterprise_id", "provider_id", "voucher_id", "since", "until"})
_SETTLEMENT = frozenset({"programme_id", "provider_id", "since", "until"})
#: Which filters mean something for which dataset (a settlement has no enterprise or voucher).
APPLICABLE: dict[Dataset, frozenset[str]] = {
    Dataset.LEDGER_ENTRIES: _TENANT | {"account_id"},
    Dataset.REDEMPTIONS: _TENANT,
    Dataset.REDEMPTION_LINE_ITEMS: _TENANT,
    Dataset.SETTLEMENTS: _SETTLEMENT,
    # A settlement's lines take its filters (its `created_at` for the range), so the two files
    # of one request cover the same settlements.
    Dataset.SETTLEMENT_ITEMS: _SETTLEMENT,
    Dataset.AUDIT_EVENTS: _TENANT,
    Dataset.AUDIT_EVENT_CHANGES: _TENANT,
}
#: The time column `since`/`until` select on, per dataset read from a table.
TIME_COLUMN: dict[Dataset, str] = {
    Dataset.LEDGER_ENTRIES: "created_at",
    Dataset.REDEMPTIONS: "created_at",
    Dataset.SETTLEMENTS: "created_at",
    Dataset.AUDIT_EVENTS: "occurred_at",
}


def filter_problems(dataset: Dataset, filters: Filters) -> list[tuple[str, Message]]:
    """(field, message) for each filter that cannot be applied: refused, never ignored, so an
    auditor never receives more than was asked for while believing it was filtered."""
    problems = [
        (name, msg("`{name}` does not apply to {dataset}; it applies to {applicable}",
                   name=name, dataset=dataset.value, applicable=sorted(APPLICABLE[dataset])))
        for name in filters.given() if name not in APPLICABLE[dataset]
    ]
    if (problem := range_problem(filters.since, filters.until)) is not None:
        problems.append(("until", problem))
    return problems


def rfc3339(value: datetime) -> str:
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def plain(value: Any) -> Any:
    """A value as JSON has it: ids and times as text (RFC 3339 UTC), the rest unchanged."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _no_json(value: Any) -> str:
    raise TypeError(f"a {type(value).__name__} cannot be a spreadsheet cell; the layout must flatten it")


# Conversions by exact type, looked up once per cell (the hot loop of an export); a type not
# listed passes through unchanged. CSV: the csv module writes None as an empty cell and ints
# and text as they are; ids, times and booleans need a word, and a JSON structure is a bug in
# the layout (layouts.py flattens every one), never a cell.
_JSON_CONVERT: dict[type, Any] = {uuid.UUID: str, datetime: rfc3339, date: date.isoformat}
# Text is made safe for spreadsheets (services/voucher/spreadsheet.py); what the other
# conversions produce starts with a digit or a letter.
_CSV_CONVERT: dict[type, Any] = {
    uuid.UUID: str, datetime: spreadsheet.local_time, date: date.isoformat,
    bool: lambda v: "true" if v else "false", dict: _no_json, list: _no_json, str: spreadsheet.cell,
}


def layout(dataset: Dataset, format_: Format, source: Sequence[tuple[str, type]]) -> Layout:
    """The columns of `dataset`'s file in `format_`, from the (name, Python type) of the
    columns it is read with."""
    if dataset is Dataset.REDEMPTION_LINE_ITEMS:
        return layouts.line_items(source)
    if dataset is Dataset.AUDIT_EVENT_CHANGES:
        return layouts.audit_changes(source)
    if format_ in SPREADSHEET_FORMATS:
        flat: dict[Dataset, Callable[[Sequence[tuple[str, type]]], Layout]] = {
            Dataset.REDEMPTIONS: layouts.redemptions_flat, Dataset.SETTLEMENTS: layouts.settlements_flat,
            Dataset.AUDIT_EVENTS: layouts.audit_events_flat}
        if dataset in flat:
            return flat[dataset](source)
    return layouts.same(source)


#: What a CSV's amount column says of its figures: integers in the minor unit of the row's `unit`
#: (CNY: fen). Under a bare `amount` beside `unit` CNY, 25000000000 read as yuan, 100 times too
#: much, and the .xlsx's same column holds yuan (an independent review, December 2026).
MINOR_UNITS_NOTE = "(minor units)"


def header(shape: Layout, format_: Format) -> tuple[str, ...]:
    """Column names as a spreadsheet file heads them: a column of times says their zone; a CSV's
    column of amounts says they are in minor units (the .xlsx's are in the unit, as its number
    format shows)."""
    if format_ not in SPREADSHEET_FORMATS:
        return shape.columns
    return tuple(
        f"{name} {spreadsheet.TIME_NOTE}" if name in shape.times
        else f"{name} {MINOR_UNITS_NOTE}" if format_ is Format.CSV and name in shape.amounts
        else name
        for name in shape.columns)


class Encoder:
    """Turns rows (sequences of values in the layout's column order) into bytes: a preamble,
    then one record per row."""

    def __init__(self, shape: Layout) -> None:
        self.layout = shape
        self.columns = shape.columns

    def preamble(self) -> bytes:
        return b""

    def rows(self, rows: Sequence[Sequence[Any]]) -> bytes:
        raise NotImplementedError


class CsvEncoder(Encoder):
    """UTF-8 with a byte-order mark (spreadsheets in China then read the text right), a header
    of column names, CRLF line ends, amounts as integers in minor units (exact, as in the API);
    times in Asia/Shanghai with their offset (the header of a time column says so), null is an
    empty cell, booleans `true`/`false`, never JSON; a text cell that a spreadsheet would read
    as a formula starts with an apostrophe."""

    def __init__(self, shape: Layout) -> None:
        super().__init__(shape)
        self._out = io.StringIO()
        self._writer = csv.writer(self._out, lineterminator="\r\n")

    def _take(self) -> bytes:
        text = self._out.getvalue()
        self._out.seek(0)
        self._out.truncate()
        return text.encode("utf-8")

    def preamble(self) -> bytes:
        self._writer.writerow(spreadsheet.row(header(self.layout, Format.CSV)))
        return BOM.encode("utf-8") + self._take()

    def rows(self, rows: Sequence[Sequence[Any]]) -> bytes:
        get = _CSV_CONVERT.get
        self._writer.writerows(
            [v if (f := get(type(v))) is None else f(v) for v in row] for row in rows
        )
        return self._take()


class JsonLinesEncoder(Encoder):
    """One JSON object per line (UTF-8, no BOM), keys in column order; JSON columns nested;
    times RFC 3339 UTC."""

    def rows(self, rows: Sequence[Sequence[Any]]) -> bytes:
        columns, get, dumps = self.columns, _JSON_CONVERT.get, json.dumps
        return "".join([
            dumps(dict(zip(columns, [v if (f := get(type(v))) is None else f(v) for v in row], strict=True)),
                  ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
            for row in rows
        ]).encode("utf-8")


def encoder(format_: Format, shape: Layout) -> Encoder:
    """The byte encoder of a text format (.xlsx is written by exports/workbook.py)."""
    if format_ is Format.XLSX:
        raise ValueError("an .xlsx file is written by exports/workbook.py, not encoded row by row")
    return CsvEncoder(shape) if format_ is Format.CSV else JsonLinesEncoder(shape)


def file_name(dataset: Dataset, format_: Format, export_id: uuid.UUID) -> str:
    return f"{dataset.value}-{export_id}.{format_.value}"
