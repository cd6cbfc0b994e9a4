"""Bulk issue from a spreadsheet: read the rows, show each with what is wrong with it, and
write nothing unless every row reads.

A row is `uscc, face_value, reference` (a header row first; the face value in the programme's
unit as people write it, e.g. 12,000.00). The console only reads the file and finds each
enterprise by its USCC through the API (whose refusal, such as a bad check character, is the
row's error); every rule of issuing — budget, caps, the most per voucher — is the API's, which
issues the whole batch or nothing and names the grant it refused.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

from services.voucher.console.api import Api, Refusal
from services.voucher.i18n import Amount, msg
from services.voucher.money import format_for_people, parse_major, typed_example
from services.voucher.registry_schemas import text_problem

MAX_ROWS = 1000
MAX_LINES = 10 * MAX_ROWS  # lines a CSV may take, blank ones included
HEADER = ("uscc", "face_value", "reference")


@dataclass
class Row:
    number: int  # the row's line in the file, the header being 1
    uscc: str
    face_value_text: str
    reference: str
    enterprise: dict[str, Any] | None = None
    face_value: int | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class Preview:
    rows: list[Row]
    problems: list[str]  # about the whole file

    @property
    def is_valid(self) -> bool:
        return bool(self.rows) and not self.problems and not any(row.errors for row in self.rows)

    @property
    def numbers(self) -> list[int]:
        """Each grant's line in the file, in the order of `grants`: a refusal names its grant by
        index, and the operator reads it by the line the preview showed (an independent review,
        December 2026: "grant 2" had been line 3 of the file)."""
        return [row.number for row in self.rows if row.enterprise is not None and row.face_value is not None]

    @property
    def grants(self) -> list[dict[str, Any]]:
        return [{"enterprise_id": row.enterprise["id"], "face_value": row.face_value, "reference": row.reference or None}
                for row in self.rows if row.enterprise is not None and row.face_value is not None]


#: What a bulk file may unpack to (an .xlsx is a zip): a thousand rows are well under 1 MB; a
#: workbook that unpacks to more, or compresses any part more than MAX_RATIO to 1, is refused
#: before openpyxl reads it (a small crafted file could otherwise take minutes and gigabytes).
MAX_UNPACKED_BYTES = 8 * 1024 * 1024
MAX_RATIO = 100
#: The parts openpyxl reads whole even read-only: 19 MB of shared strings in a 2.2 MB upload
#: took 13 s and 280 MB, 19 MB of styles 10 s and 370 MB, with 20 MB allowed unpacked (an
#: independent review, December 2026). A thousand rows' strings and any sheet's styles are far
#: below this.
MAX_WHOLE_PART_BYTES = 2 * 1024 * 1024
#: Columns read from a sheet: the three, and as many more as a header may name (a name column).
MAX_COLUMNS = 16


class WorkbookTooLarge(ValueError):
    """A workbook past the size caps: refused unread."""


class TooManyRows(ValueError):
    """More lines than a file of MAX_ROWS rows can hold, blank lines included."""


def read_table(filename: str, content: bytes) -> list[list[str]]:
    """The file's rows as text cells; ValueError when it is neither UTF-8 CSV nor .xlsx, or
    cannot be read whole (a malformed workbook, a CSV field past the csv module's limit).
    Synchronous and CPU-bound: callers run it off the event loop (`read_table_off_loop`)."""
    if filename.lower().endswith(".xlsx") or content[:2] == b"PK":
        return _read_workbook(content)
    try:
        decoded = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8") from exc
    # Row by row, blank lines dropped, no further than one row past the limit (and not through
    # more than MAX_LINES lines, blank or not): 16 MB of one-letter lines had been read whole
    # into eight million rows, 1 GB and seconds of the interpreter (an independent review).
    rows: list[list[str]] = []
    try:
        for line, row in enumerate(csv.reader(io.StringIO(decoded)), start=1):
            if line > MAX_LINES:
                raise TooManyRows
            if any(cell.strip() for cell in row):
                rows.append(row)
                if len(rows) > MAX_ROWS + 1:  # the header and one row too many
                    break
    except csv.Error as exc:
        raise ValueError("not a CSV file") from exc
    return rows


def _read_workbook(content: bytes) -> list[list[str]]:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError("not a workbook") from exc
    # Every part but a worksheet is capped (shared strings and styles are read whole, and may
    # be stored under any name the content types give them).
    if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES or any(
            m.file_size > MAX_RATIO * max(m.compress_size, 1)
            or (not m.filename.lower().startswith("xl/worksheets/") and m.file_size > MAX_WHOLE_PART_BYTES)
            for m in members):
        raise WorkbookTooLarge("the workbook unpacks to too much")
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        try:
            sheet = book.worksheets[0]
            # As a CSV is read: blank rows dropped, up to one row past the limit. The first
            # MAX_ROWS + 2 rows, blank ones counted, had been read: a sheet with blank rows among
            # its thousand lost its last ones without a word (an independent review, December
            # 2026). Every row the sheet holds is read (the size caps above bound them), not as
            # far as its <dimension> tag says: formatted empty rows had refused a file, and a tag
            # too small had dropped rows (a review of the first form). The columns past the
            # three are read for the preview to refuse a cell its header does not name.
            rows: list[list[str]] = []
            for row in sheet.iter_rows(values_only=True, max_col=MAX_COLUMNS):
                cells = ["" if v is None else _cell_text(v) for v in row]
                if any(cell.strip() for cell in cells):
                    rows.append(cells)
                    if len(rows) > MAX_ROWS + 1:
                        return rows
            return rows
        finally:
            book.close()
    except Exception as exc:  # openpyxl raises many kinds on a malformed part (XML, zip, values)
        raise ValueError("not a workbook") from exc


async def read_table_off_loop(filename: str, content: bytes) -> list[list[str]]:
    """`read_table` in a worker thread: parsing a workbook must not stall the requests this
    process is serving meanwhile (redemptions among them)."""
    return await asyncio.to_thread(read_table, filename, content)


def _cell_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


async def preview(api: Api, programme: dict[str, Any], filename: str, content: bytes, language: str) -> Preview:
    unit = programme["unit"]
    try:
        table = await read_table_off_loop(filename, content)
    except TooManyRows:
        return Preview([], [msg("a file may hold at most {count} rows", count=MAX_ROWS).render(language)])
    except WorkbookTooLarge:
        return Preview([], [msg("the workbook is too large to read (more than 8 MB unpacked, or more than 2 MB "
                                "of text or styles): save its first sheet as a CSV file").render(language)])
    except ValueError:
        return Preview([], [msg("the file is neither a CSV file in UTF-8 nor an .xlsx workbook").render(language)])
    table = [row for row in table if any(cell.strip() for cell in row)]
    if not table or tuple(cell.strip().lower() for cell in table[0][:3]) != HEADER:
        return Preview([], [msg("the first row must be the header: {columns}", columns=list(HEADER)).render(language)])
    if len(table) - 1 > MAX_ROWS:
        return Preview([], [msg("a file may hold at most {count} rows", count=MAX_ROWS).render(language)])
    rows: list[Row] = []
    found_by_uscc: dict[str, dict[str, Any] | Refusal] = {}  # one lookup per enterprise, however many rows
    first_of: dict[tuple[str, object, str], int] = {}  # a row's line, by what it grants
    # The columns the header names (a name column after the three is allowed): a row with a cell
    # past them is an amount split by its comma, `…,12,000.00,R-1` unquoted had been ¥12.00
    # with the reference "000.00" (an independent review, December 2026).
    named = max(len(HEADER), max((i + 1 for i, cell in enumerate(table[0]) if cell.strip()), default=0))
    for number, cells in enumerate(table[1:], start=2):
        extra = [cell for cell in cells[named:] if cell.strip()]
        cells = [*cells, "", "", ""][:3]
        row = Row(number, cells[0].strip().upper(), cells[1].strip(), cells[2].strip())
        rows.append(row)
        if extra or _split_amount(row.face_value_text, row.reference):
            row.errors.append(msg("the row has more than {count} cells, or its reference reads as the rest of its "
                                  "amount: quote an amount that holds a comma (\"12,000.00\")",
                                  count=named).render(language))
        try:
            row.face_value = parse_major(row.face_value_text, unit)
        except ValueError:
            row.errors.append(msg("the face value {text} is not an amount in {unit} (e.g. {example})",
                                  text=row.face_value_text or "—", unit=unit,
                                  example=typed_example(unit)).render(language))
        # A row pasted twice had doubled the grant, unremarked (a review, December 2026); the
        # amount compared as read, so `100` and `100.00` are one.
        key = row.face_value if row.face_value is not None else row.face_value_text
        same = first_of.setdefault((row.uscc, key, row.reference), number)
        if same != number:
            row.errors.append(msg("the row repeats line {line}: to issue both, give each its own reference",
                                  line=same).render(language))
        most = programme.get("max_per_voucher")
        if row.face_value is not None and isinstance(most, int) and row.face_value > most:
            row.errors.append(msg("the face value {amount} is more than the programme allows per voucher ({maximum})",
                                  amount=Amount(row.face_value, unit), maximum=Amount(most, unit)).render(language))
        if row.face_value == 0:
            row.errors.append(msg("the face value must be more than zero").render(language))
        if row.reference and len(row.reference) > 128:
            row.errors.append(msg("the reference is longer than 128 characters").render(language))
        problem = text_problem(row.reference, lines=False) if row.reference else None
        if problem is not None:  # the API's own check of a reference, named on its row
            row.errors.append(msg("the reference {problem}", problem=problem[1]).render(language))
        if not row.uscc:
            row.errors.append(msg("the USCC is missing").render(language))
            continue
        found = found_by_uscc.get(row.uscc)
        if found is None:
            try:
                found = await api.get("/v1/enterprises", uscc=row.uscc, limit=1)
            except Refusal as refusal:
                found = refusal
            found_by_uscc[row.uscc] = found
        if isinstance(found, Refusal):
            row.errors.append(found.detail)
            continue
        row.enterprise = registered(found["items"], row.uscc)
        if row.enterprise is None:
            row.errors.append(msg("no enterprise is registered with the USCC {uscc}", uscc=row.uscc).render(language))
    return Preview(rows, [])


def _split_amount(amount: str, reference: str) -> bool:
    """An amount of one to three digits followed by a reference of three digits (and decimals):
    `AAA,12,000.00` unquoted, with no reference, reads as ¥12.00 with the reference "000.00"."""
    return bool(amount.isdigit() and len(amount) <= 3 and re.fullmatch(r"\d{3}(\.\d+)?", reference))


def registered(items: list[dict[str, Any]], uscc: str) -> dict[str, Any] | None:
    """The enterprise of a USCC look-up's answer that has exactly that USCC, or None: never
    the first of a list the filter may not have narrowed (a blank one lists every enterprise)."""
    return next((item for item in items if uscc and item.get("uscc") == uscc), None)


def total(preview: Preview, unit: str, language: str) -> str:
    return format_for_people(sum(row.face_value or 0 for row in preview.rows), unit, language)
