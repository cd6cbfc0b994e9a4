"""The .xlsx writer on its own: a sheet past Excel's row limit continues on the next with the
same frozen header; every kind of value gets its cell type and number format; text that looks
like a formula or like XlsxWriter's own rich-string XML stays text."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from services.voucher.exports.layouts import Layout
from services.voucher.exports.workbook import WorkbookWriter
from tests.exports import xlsx

LAYOUT = Layout(("id", "amount", "unit", "note", "is_live", "created_at", "period_start"),
                times=frozenset({"created_at"}), dates=frozenset({"period_start"}), amounts=frozenset({"amount"}))
AT = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def _write(tmp_path: Path, rows: list[tuple], *, sheet_rows: int = 1_048_576) -> bytes:
    writer = WorkbookWriter(LAYOUT, "ledger-entries", str(tmp_path), sheet_rows=sheet_rows)
    assert writer.write(iter(rows)) == len(rows)
    with writer.close() as file:
        return file.read()


def test_a_long_export_continues_on_further_sheets(tmp_path: Path) -> None:
    rows = [(str(uuid.uuid4()), n, "CNY", f"row {n}", True, AT, date(2026, 3, 1)) for n in range(7)]
    sheets = xlsx.read(_write(tmp_path, rows, sheet_rows=3))  # a header and two rows per sheet
    assert [s.name for s in sheets] == ["ledger-entries", "ledger-entries (2)", "ledger-entries (3)",
                                        "ledger-entries (4)"]
    assert all(s.frozen_rows == 1 for s in sheets)
    header, records = xlsx.as_records(sheets)
    assert header == ["id", "amount", "unit", "note", "is_live", "created_at (Asia/Shanghai)", "period_start"]
    assert [r["note"] for r in records] == [f"row {n}" for n in range(7)]


def test_each_value_gets_its_cell_type_and_format(tmp_path: Path) -> None:
    rows = [
        ("a", 123_456, "CNY", "=1+1", False, AT, date(2026, 2, 28)),
        ("b", -1_500, "GPU_HOUR", "<r><t>x</t></r>", None, None, None),
        ("c", 5_000, "TOKEN", "_x0041_ literal", True, AT, None),
        ("d", 77, "SHELLS", "\x07bell", None, None, None),  # a unit this service does not know
    ]
    [sheet] = xlsx.read(_write(tmp_path, rows))
    cells = sheet.rows[1:]
    assert [(c[1].value, c[1].number_format) for c in cells] == [
        (Decimal("1234.56"), "#,##0.00"), (Decimal("-1.5"), "#,##0.000"), (Decimal("5000"), "#,##0"),
        (Decimal("77"), "General")]
    assert [c[3].value for c in cells] == ["=1+1", "<r><t>x</t></r>", "_x0041_ literal", "\x07bell"]
    assert not any(c.is_formula for row in sheet.rows for c in row)
    assert cells[0][4].value is False and cells[2][4].value is True
    assert (cells[0][5].value, cells[0][5].number_format) == (datetime(2026, 3, 1, 8, 0), "yyyy-mm-dd hh:mm:ss")
    assert (cells[0][6].value, cells[0][6].number_format) == (datetime(2026, 2, 28), "yyyy-mm-dd")
    assert len(cells[1]) == 4 or cells[1][5].value is None  # None is a blank cell
