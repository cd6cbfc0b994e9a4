"""What an export contains and how its rows are written: datasets, formats, which filters
apply to which dataset, and the row encoders (CSV UTF-8 with a BOM, or JSON Lines). Pure: stdlib
only, so the bytes an auditor receives depend on nothing but the rows.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from services.voucher import spreadsheet

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
    SETTLEMENTS = "settlements"
    AUDIT_EVENTS = "audit-events"


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


MEDIA_TYPES = {Format.CSV: "text/csv; charset=utf-8", Format.JSONL: "application/x-ndjson"}


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
#: Which filters mean something for which dataset (a settlement has no enterprise or voucher).
APPLICABLE: dict[Dataset, frozenset[str]] = {
    Dataset.LEDGER_ENTRIES: _TENANT | {"account_id"},
    Dataset.REDEMPTIONS: _TENANT,
    Dataset.SETTLEMENTS: frozenset({"programme_id", "provider_id", "since", "until"}),
    Dataset.AUDIT_EVENTS: _TENANT,
}
#: The time column `since`/`until` select on, per dataset.
TIME_COLUMN: dict[Dataset, str] = {
    Dataset.LEDGER_ENTRIES: "created_at",
    Dataset.REDEMPTIONS: "created_at",
    Dataset.SETTLEMENTS: "created_at",
    Dataset.AUDIT_EVENTS: "occurred_at",
}


def filter_problems(dataset: Dataset, filters: Filters) -> list[tuple[str, str]]:
    """(field, message) for each filter that cannot be applied: refused, never ignored, so an
    auditor never receives more than was asked for while believing it was filtered."""
    problems = [
        (name, f"`{name}` does not apply to {dataset.value}; it applies to "
               f"{', '.join(sorted(APPLICABLE[dataset]))}")
        for name in filters.given() if name not in APPLICABLE[dataset]
    ]
    if filters.since is not None and filters.until is not None and filters.since >= filters.until:
        problems.append(("until", "`until` must be after `since` (the range is [since, until))"))
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


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# Conversions by exact type, looked up once per cell (the hot loop of an export); a type not
# listed passes through unchanged. CSV: the csv module writes None as an empty cell and ints
# and text as they are; ids, times, booleans and JSON structures need a word.
_JSON_CONVERT: dict[type, Any] = {uuid.UUID: str, datetime: rfc3339, date: date.isoformat}
# Text is made safe for spreadsheets (services/voucher/spreadsheet.py); what the other
# conversions produce starts with a digit, a letter, `{` or `[`.
_CSV_CONVERT: dict[type, Any] = {
    **_JSON_CONVERT, bool: lambda v: "true" if v else "false", dict: _json_text, list: _json_text,
    str: spreadsheet.cell,
}


class Encoder:
    """Turns rows (sequences of values in `columns` order) into bytes: a preamble, then one
    record per row."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)

    def preamble(self) -> bytes:
        return b""

    def rows(self, rows: Sequence[Sequence[Any]]) -> bytes:
        raise NotImplementedError


class CsvEncoder(Encoder):
    """UTF-8 with a byte-order mark (spreadsheets in China then read the text right), a header
    of column names, CRLF line ends, amounts as integers in minor units (exact, as in the API);
    null is an empty cell, JSON structures are JSON text, booleans `true`/`false`; a text cell
    that a spreadsheet would read as a formula starts with an apostrophe."""

    def __init__(self, columns: Sequence[str]) -> None:
        super().__init__(columns)
        self._out = io.StringIO()
        self._writer = csv.writer(self._out, lineterminator="\r\n")

    def _take(self) -> bytes:
        text = self._out.getvalue()
        self._out.seek(0)
        self._out.truncate()
        return text.encode("utf-8")

    def preamble(self) -> bytes:
        self._writer.writerow(self.columns)
        return BOM.encode("utf-8") + self._take()

    def rows(self, rows: Sequence[Sequence[Any]]) -> bytes:
        get = _CSV_CONVERT.get
        self._writer.writerows(
            [v if (f := get(type(v))) is None else f(v) for v in row] for row in rows
        )
        return self._take()


class JsonLinesEncoder(Encoder):
    """One JSON object per line (UTF-8, no BOM), keys in column order; JSON columns nested."""

    def rows(self, rows: Sequence[Sequence[Any]]) -> bytes:
        columns, get, dumps = self.columns, _JSON_CONVERT.get, json.dumps
        return "".join([
            dumps(dict(zip(columns, [v if (f := get(type(v))) is None else f(v) for v in row], strict=True)),
                  ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
            for row in rows
        ]).encode("utf-8")


def encoder(format_: Format, columns: Sequence[str]) -> Encoder:
    return CsvEncoder(columns) if format_ is Format.CSV else JsonLinesEncoder(columns)


def file_name(dataset: Dataset, format_: Format, export_id: uuid.UUID) -> str:
    return f"{dataset.value}-{export_id}.{format_.value}"
