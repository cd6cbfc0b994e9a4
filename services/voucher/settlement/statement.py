"""A settlement's statement for the finance office, as CSV and as .xlsx.

CSV: UTF-8 with a byte-order mark (spreadsheet software in China then reads the Chinese text
right), amounts in major units with every minor digit, times in Beijing time with their offset
(the header says so), a total row that equals the sum of the lines; no cell a spreadsheet would
run as a formula (services/voucher/spreadsheet.py).

.xlsx: the same rows, amounts as numbers in the unit with its number format (CNY `#,##0.00`,
GPU-hours three decimals), times as Excel date-times in Beijing time, the header frozen; text
only through `write_string`; past Excel's row limit, on over further sheets. Written in constant memory to a file, and byte-for-byte the same
for the same lines (the workbook's creation date is the settlement's), so its SHA-256 is stable.

Pure: stdlib and XlsxWriter only.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from services.voucher import spreadsheet
from services.voucher.money import Unit, format_major
from services.voucher.settlement.rules import PERIOD_ZONE

BOM = "\ufeff"
HEADER = ("序号 line", "类型 kind", "订单号 order_reference", "核销编号 redemption_id", "退款编号 refund_id",
          f"发生时间 occurred_at {spreadsheet.TIME_NOTE}", "金额 amount")
KIND_LABEL = {"capture": "核销 capture", "refund": "退款 refund"}
TOTAL_LABEL = "合计 total"
SHEET = "结算单 statement"
_WIDTHS = (8, 14, 24, 38, 38, 22, 18)


@dataclass(frozen=True)
class Line:
    kind: str
    order_reference: str
    redemption_id: str
    refund_id: str | None
    occurred_at: datetime
    amount: int

    @classmethod
    def of(cls, item: Any) -> Line:
        """A settlement item (a row with these attributes) as a statement line."""
        return cls(item.kind, item.order_reference, str(item.redemption_id),
                   str(item.refund_id) if item.refund_id else None, item.occurred_at, item.amount)


def statement_title(settlement_id: object, period_start: date, period_end: date) -> str:
    """The statement's first line: the settlement and its period, in Beijing days (the same
    words as the CSV's, which tests/settlement/test_routes.py holds the .xlsx to)."""
    return f"结算单 Settlement {settlement_id} · {period_start.isoformat()}...{period_end.isoformat()} ({PERIOD_ZONE})"


def unit_line(unit: Unit) -> str:
    return f"单位 unit: {unit.value}"


def render_csv(title: str, unit: Unit, lines: Iterable[Line]) -> bytes:
    """The statement as CSV bytes, BOM first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(spreadsheet.row([title]))
    writer.writerow([unit_line(unit)])
    writer.writerow(HEADER)
    total = 0
    for number, line in enumerate(lines, start=1):
        total += line.amount
        writer.writerow(spreadsheet.row([number, KIND_LABEL[line.kind], line.order_reference, line.redemption_id,
                                         line.refund_id or "", spreadsheet.local_time(line.occurred_at),
                                         format_major(line.amount, unit)]))
    writer.writerow([TOTAL_LABEL, "", "", "", "", "", format_major(total, unit)])
    return (BOM + out.getvalue()).encode("utf-8")


def render_xlsx(title: str, unit: Unit, lines: Iterable[Line], path: str, *, created: datetime,
                directory: str | None = None, sheet_rows: int = spreadsheet.SHEET_ROWS) -> None:
    """The statement as an .xlsx file at `path` (temporary files in `directory`): the title,
    the unit, the frozen header, one row per line, the total row. A statement longer than a
    sheet holds (`sheet_rows`, Excel's limit) goes on over further sheets, each with the title,
    unit and header, the lines numbered on; the total row ends the last. (Past the limit,
    XlsxWriter does not raise: it returns -1 and drops the cell, and a statement of a year's
    redemptions had been served without its last lines and its total; an independent review.)"""
    workbook = Workbook(path, {"constant_memory": True, "tmpdir": directory})
    workbook.set_properties({"title": title, "created": created})
    cells = spreadsheet.Cells(workbook)
    sheets = 0

    def new_sheet() -> Worksheet:
        nonlocal sheets
        sheets += 1
        sheet = workbook.add_worksheet(SHEET if sheets == 1 else f"{SHEET} ({sheets})")
        for col, width in enumerate(_WIDTHS):
            sheet.set_column(col, col, width)
        sheet.freeze_panes(3, 0)
        cells.text(sheet, 0, 0, title, cells.bold)
        cells.text(sheet, 1, 0, unit_line(unit))
        for col, name in enumerate(HEADER):
            sheet.write_string(2, col, name, cells.header)
        return sheet

    sheet, total, row_ = new_sheet(), 0, 3
    for number, line in enumerate(lines, start=1):
        if row_ >= sheet_rows:
            sheet, row_ = new_sheet(), 3
        total += line.amount
        sheet.write_number(row_, 0, number)
        cells.text(sheet, row_, 1, KIND_LABEL[line.kind])
        cells.text(sheet, row_, 2, line.order_reference)
        cells.text(sheet, row_, 3, line.redemption_id)
        cells.text(sheet, row_, 4, line.refund_id or "")
        sheet.write_datetime(row_, 5, spreadsheet.wall_clock(line.occurred_at), cells.time)
        cells.amount_cell(sheet, row_, 6, line.amount, unit)
        row_ += 1
    if row_ >= sheet_rows:
        sheet, row_ = new_sheet(), 3
    sheet.write_string(row_, 0, TOTAL_LABEL, cells.bold)
    cells.amount_cell(sheet, row_, 6, total, unit, total=True)
    workbook.close()


def digest(document: bytes) -> str:
    return hashlib.sha256(document).hexdigest()
