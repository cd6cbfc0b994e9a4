"""An export as an .xlsx workbook, written in constant memory. Pure: stdlib and XlsxWriter.

XlsxWriter's constant-memory mode writes each row to a temporary file as soon as the next one
begins, so the rows are never held together; `close` then assembles the workbook (a zip of XML
files) on disk, and the service streams that file. Everything lives in one temporary directory
the caller removes. A zip cannot be sent before it is finished, so unlike CSV the first byte
leaves only when the last row has been written.

One sheet per 1,048,575 rows (Excel's limit, less the header), each with the same frozen header
row; amounts are numbers in the unit with its number format (read from the row's `unit`),
times Excel date-times in Asia/Shanghai (the header says so), text through `write_string` only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, BinaryIO

from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from services.voucher import spreadsheet
from services.voucher.exports.layouts import Layout
from services.voucher.exports.rules import Format, header

FILE_NAME = "export.xlsx"


def _width(name: str, shape: Layout) -> int:
    if name in shape.times:
        kind = "time"
    elif name in shape.dates:
        kind = "date"
    elif name in shape.amounts:
        kind = "amount"
    elif name == "id" or name.endswith("_id"):
        kind = "id"
    else:
        kind = "text"
    return max(spreadsheet.WIDTHS[kind], min(len(name) + 2, 40))


class WorkbookWriter:
    """Rows of one layout into an .xlsx file in `directory`."""

    def __init__(self, shape: Layout, sheet_name: str, directory: str, *,
                 sheet_rows: int = spreadsheet.SHEET_ROWS) -> None:
        self.path = os.path.join(directory, FILE_NAME)
        self._book = Workbook(self.path, {"constant_memory": True, "tmpdir": directory})
        self._cells = spreadsheet.Cells(self._book)
        self._layout, self._name, self._sheet_rows = shape, sheet_name, sheet_rows
        self._header = header(shape, Format.XLSX)
        unit_at = shape.columns.index("unit") if "unit" in shape.columns else None
        self._writers = [self._writer_for(name, unit_at) for name in shape.columns]
        self._sheets = 0
        self._sheet: Worksheet
        self._row = 0
        self._new_sheet()

    def _writer_for(self, name: str, unit_at: int | None) -> Callable[[Worksheet, int, int, Any, Sequence[Any]], None]:
        cells = self._cells
        if name in self._layout.amounts and unit_at is not None:
            def amount(sheet: Worksheet, row: int, col: int, value: Any, values: Sequence[Any]) -> None:
                if isinstance(value, int) and not isinstance(value, bool):
                    cells.amount_cell(sheet, row, col, value, spreadsheet.amount_unit(values[unit_at]))
                else:
                    cells.value(sheet, row, col, value)
            return amount
        return lambda sheet, row, col, value, _values: cells.value(sheet, row, col, value)

    def _new_sheet(self) -> None:
        self._sheets += 1
        name = self._name if self._sheets == 1 else f"{self._name} ({self._sheets})"
        sheet = self._book.add_worksheet(name[:31])
        for col, column in enumerate(self._layout.columns):
            sheet.set_column(col, col, _width(column, self._layout))
        sheet.freeze_panes(1, 0)
        for col, title in enumerate(self._header):
            sheet.write_string(0, col, title, self._cells.header)
        self._sheet, self._row = sheet, 1

    def write(self, rows: Iterable[Sequence[Any]]) -> int:
        """Append rows; the number written."""
        count, writers = 0, self._writers
        for values in rows:
            if self._row >= self._sheet_rows:
                self._new_sheet()
            sheet, row = self._sheet, self._row
            for col, value in enumerate(values):
                if value is not None:
                    writers[col](sheet, row, col, value, values)
            self._row += 1
            count += 1
        return count

    def close(self) -> BinaryIO:
        """Finish the workbook; the file, open for reading from its start."""
        self._book.close()
        return open(self.path, "rb")  # noqa: SIM115 - the caller sends it and closes it
