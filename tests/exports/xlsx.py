"""Reading an .xlsx file back without a spreadsheet library: the zip, its workbook, styles and
sheet XML (ECMA-376), enough to check what a finance officer would see — each cell's value and
type, its number format, the frozen header, the column widths — and that no cell is a formula."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
      "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
      "rel": "http://schemas.openxmlformats.org/package/2006/relationships"}
_BUILTIN_FORMATS = {0: "General", 1: "0", 3: "#,##0", 4: "#,##0.00", 14: "m/d/yyyy", 22: "m/d/yyyy h:mm"}
_EPOCH = datetime(1899, 12, 30)
_DATE_CODE = re.compile(r"[dmyhs]", re.I)


@dataclass
class Cell:
    value: Any  # str, Decimal, bool, datetime (a number formatted as a date), or None
    number_format: str = "General"
    is_formula: bool = False


@dataclass
class Sheet:
    name: str
    rows: list[list[Cell]] = field(default_factory=list)
    frozen_rows: int = 0
    widths: dict[int, float] = field(default_factory=dict)

    def values(self) -> list[list[Any]]:
        return [[c.value for c in row] for row in self.rows]


def _column(ref: str) -> int:
    letters = re.match(r"[A-Z]+", ref)
    assert letters, ref
    number = 0
    for char in letters.group():
        number = number * 26 + ord(char) - 64
    return number - 1


def _number_formats(archive: zipfile.ZipFile) -> list[str]:
    styles = ElementTree.fromstring(archive.read("xl/styles.xml"))
    custom = {int(f.get("numFmtId", "0")): f.get("formatCode", "")
              for f in styles.iterfind("m:numFmts/m:numFmt", NS)}
    return [custom.get(int(xf.get("numFmtId", "0")), _BUILTIN_FORMATS.get(int(xf.get("numFmtId", "0")), "?"))
            for xf in styles.iterfind("m:cellXfs/m:xf", NS)]


_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _text(node: ElementTree.Element) -> str:
    """A string cell's text as Excel shows it (`_xHHHH_` is the character HHHH, so `_x005F_`
    escapes a literal underscore)."""
    text = "".join(t.text or "" for t in node.iter(f"{{{NS['m']}}}t"))
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def read(document: bytes) -> list[Sheet]:
    """Every sheet of the workbook, in order."""
    archive = zipfile.ZipFile(io.BytesIO(document))
    assert archive.testzip() is None
    formats = _number_formats(archive)
    shared = []
    if "xl/sharedStrings.xml" in archive.namelist():
        shared = [_text(si) for si in ElementTree.fromstring(archive.read("xl/sharedStrings.xml"))]
    book = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    rels = {r.get("Id"): r.get("Target") for r in
            ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels")).iterfind("rel:Relationship", NS)}
    sheets = []
    for entry in book.iterfind("m:sheets/m:sheet", NS):
        target = rels[entry.get(f"{{{NS['r']}}}id")]
        root = ElementTree.fromstring(archive.read(f"xl/{target}"))
        sheet = Sheet(entry.get("name", ""))
        pane = root.find("m:sheetViews/m:sheetView/m:pane", NS)
        if pane is not None and pane.get("state") == "frozen":
            sheet.frozen_rows = int(float(pane.get("ySplit", "0")))
        for col in root.iterfind("m:cols/m:col", NS):
            for index in range(int(col.get("min", "1")) - 1, int(col.get("max", "1"))):
                sheet.widths[index] = float(col.get("width", "0"))
        for row in root.iterfind("m:sheetData/m:row", NS):
            cells: list[Cell] = []
            for c in row.iterfind("m:c", NS):
                at = _column(c.get("r", ""))
                cells += [Cell(None)] * (at - len(cells))
                kind, style = c.get("t", "n"), formats[int(c.get("s", "0"))]
                value_node = c.find("m:v", NS)
                raw = value_node.text if value_node is not None else None
                if kind == "inlineStr":
                    value: Any = _text(c.find("m:is", NS))  # type: ignore[arg-type]
                elif kind == "s":
                    value = shared[int(raw or 0)]
                elif kind == "b":
                    value = raw == "1"
                elif raw is None:
                    value = None
                elif _DATE_CODE.search(style) and style != "General":  # to the millisecond Excel keeps
                    value = _EPOCH + timedelta(milliseconds=round(float(raw) * 86_400_000))
                else:
                    value = Decimal(raw)
                cells.append(Cell(value, style, c.find("m:f", NS) is not None))
            sheet.rows.append(cells)
        sheets.append(sheet)
    return sheets


def sheet_xml(document: bytes) -> list[str]:
    """The raw XML of every worksheet."""
    archive = zipfile.ZipFile(io.BytesIO(document))
    return [archive.read(name).decode("utf-8") for name in sorted(archive.namelist())
            if name.startswith("xl/worksheets/sheet")]


def as_records(sheets: list[Sheet]) -> tuple[list[str], list[dict[str, Any]]]:
    """The header of the first sheet and every data row of every sheet as a dict (every sheet
    has the same header)."""
    header = [c.value for c in sheets[0].rows[0]]
    records = []
    for sheet in sheets:
        assert [c.value for c in sheet.rows[0]] == header
        for row in sheet.rows[1:]:
            values = [c.value for c in row] + [None] * (len(header) - len(row))
            records.append(dict(zip(header, values, strict=True)))
    return header, records
