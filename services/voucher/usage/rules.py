"""Comparing a provider's own usage records with ours: pure (stdlib and the message catalogue only).

A record is (order reference, order amount, subsidy applied). Ours are the provider's
captured redemptions of the period, one per order (several vouchers on one order add up),
the subsidy net of refunds. Every order falls in exactly one of: matched, mismatched (both
sides have it, amounts or subsidy differ), missing_ours (only in their file), missing_theirs
(only in our books).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from services.voucher.i18n import Message, msg
from services.voucher.money import MINOR_UNITS

MAX_RECORDS = 20_000
#: Lines read at most, blank ones included, and rows refused before the reading stops.
MAX_LINES, MAX_ERRORS = 2 * MAX_RECORDS, 100
CSV_COLUMNS = ("order_reference", "amount", "subsidy")


@dataclass(frozen=True)
class Record:
    order_reference: str
    amount: int
    subsidy: int
    #: Where an uploaded CSV file has it (the line its row starts on, the header being line 1),
    #: so that every refusal of the row names it alike; None for records sent as JSON.
    line: int | None = field(default=None, compare=False)


class RecordsInvalid(ValueError):
    def __init__(self, errors: list[tuple[str, Message]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{p}: {m}" for p, m in errors[:5]))


def parse_csv(text: str) -> list[Record]:
    """Rows of `order_reference,amount,subsidy` (integers in the minor unit) after a header
    row naming those columns; a BOM and blank lines are tolerated. Read row by row, and no
    further than the upload may go: `MAX_RECORDS` records, `MAX_LINES` lines blank ones
    included, `MAX_ERRORS` refused rows — two million one-letter lines had been read whole,
    each refused, on the event loop and under the write lock (7 s; an independent review)."""
    errors: list[tuple[str, Message]] = []
    records: list[Record] = []
    header = False
    # Strict: a quoted field ends at its closing quote (RFC 4180); `"PO-1"x` had been read as PO-1x.
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), strict=True)
    try:
        while True:
            number = reader.line_num + 1  # the line this row starts on (a quoted field may span lines)
            row = next(reader, None)
            if row is None:
                break
            if reader.line_num > MAX_LINES:
                errors.append(("/csv", msg("at most {count} records per upload, in at most {lines} lines",
                                           count=MAX_RECORDS, lines=MAX_LINES)))
                break
            if not any(cell.strip() for cell in row):
                continue
            if not header:
                if tuple(c.strip().lower() for c in row) != CSV_COLUMNS:
                    break
                header = True
                continue
            if len(records) + len(errors) >= MAX_RECORDS:
                errors.append(("/csv", msg("at most {count} records per upload", count=MAX_RECORDS)))
                break
            if len(row) != 3:
                errors.append((f"/csv/{number}", msg("three columns: order_reference, amount, subsidy")))
            else:
                reference, amount, subsidy = (c.strip() for c in row)
                try:
                    records.append(Record(reference, _integer(amount), _integer(subsidy), number))
                except ValueError:
                    errors.append((f"/csv/{number}", msg(
                        "amount and subsidy are integers in the minor unit of the programme's unit ({minor_units})",
                        minor_units=MINOR_UNITS)))
            if len(errors) >= MAX_ERRORS:
                break
    except csv.Error as exc:  # text after a closing quote, a field longer than the csv module's limit
        raise RecordsInvalid([(f"/csv/{number}", _unreadable(exc))]) from exc
    if not header:
        raise RecordsInvalid([("/csv", msg("the first row must be the header {header}", header=",".join(CSV_COLUMNS)))])
    if errors:
        raise RecordsInvalid(errors)
    return records


def _unreadable(exc: csv.Error) -> Message:
    """Why the csv module could not read a row, in the catalogue's words (its own are English)."""
    text = str(exc)
    if "field limit" in text:
        return msg("not readable as CSV: a field is longer than {limit} characters", limit=csv.field_size_limit())
    if "expected after" in text:
        return msg("not readable as CSV: text follows a closing quote; quote the whole field, doubling any quote "
                   "inside it")
    if "new-line" in text or "newline" in text:
        return msg("not readable as CSV: a line break inside a field that is not quoted")
    return msg("not readable as CSV; check its quotes and separators")


def _integer(cell: str) -> int:
    """An integer as a CSV cell writes one: ASCII digits and an optional minus sign, nothing
    else (`int` would also read "1_0", "+1" and other scripts' digits)."""
    if not (cell.isascii() and (cell[1:] if cell.startswith("-") else cell).isdigit()) or len(cell) > 20:
        raise ValueError(cell)
    return int(cell)


def check_records(records: list[Record], where: str) -> None:
    """Refuse empty references, negative or out-of-order amounts, duplicates, too many rows."""
    errors: list[tuple[str, Message]] = []
    if len(records) > MAX_RECORDS:
        errors.append((where, msg("at most {count} records per upload", count=MAX_RECORDS)))
    seen: dict[str, int] = {}
    for index, r in enumerate(records):
        i = index if r.line is None else r.line  # a CSV row by its line, as its parse errors name it
        if not r.order_reference or len(r.order_reference) > 128:
            errors.append((f"{where}/{i}/order_reference", msg("1 to 128 characters")))
        elif "\x00" in r.order_reference or not r.order_reference.isprintable():
            errors.append((f"{where}/{i}/order_reference", msg("an order reference is printable text")))
        if not 0 < r.amount <= 10**15 or not 0 <= r.subsidy <= r.amount:
            errors.append((f"{where}/{i}", msg("0 < amount ≤ 10^15 and 0 ≤ subsidy ≤ amount")))
        if r.order_reference in seen:
            first = seen[r.order_reference]
            errors.append((f"{where}/{i}/order_reference", msg("duplicate of record {index}", index=first)
                           if r.line is None else msg("duplicate of line {line}", line=first)))
        seen.setdefault(r.order_reference, i)
    if errors:
        raise RecordsInvalid(errors)


def compare(theirs: list[Record], ours: list[Record]) -> dict[str, Any]:
    """The report: each category's orders, sorted by reference, and the counts and totals."""
    mine = {r.order_reference: r for r in ours}
    report: dict[str, list[dict[str, Any]]] = {"matched": [], "mismatched": [], "missing_ours": [],
                                               "missing_theirs": []}
    for record in sorted(theirs, key=lambda r: r.order_reference):
        ours_ = mine.pop(record.order_reference, None)
        if ours_ is None:
            report["missing_ours"].append({"order_reference": record.order_reference, "theirs": _amounts(record)})
        elif (ours_.amount, ours_.subsidy) == (record.amount, record.subsidy):
            report["matched"].append({"order_reference": record.order_reference, **_amounts(record)})
        else:
            report["mismatched"].append({"order_reference": record.order_reference, "theirs": _amounts(record),
                                         "ours": _amounts(ours_),
                                         "subsidy_difference": record.subsidy - ours_.subsidy})
    for reference in sorted(mine):
        report["missing_theirs"].append({"order_reference": reference, "ours": _amounts(mine[reference])})
    summary = {name: len(items) for name, items in report.items()}
    summary.update(their_subsidy=sum(r.subsidy for r in theirs), our_subsidy=sum(r.subsidy for r in ours))
    return {"summary": summary, **report}


def _amounts(record: Record) -> dict[str, int]:
    return {"amount": record.amount, "subsidy": record.subsidy}
