"""A settlement's statement as CSV: UTF-8 with a byte-order mark (spreadsheet software in
China then reads the Chinese text right), amounts in major units with every minor digit, a
total row that equals the sum of the lines; no cell a spreadsheet would run as a formula
(services/voucher/spreadsheet.py). Pure: stdlib only."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.voucher import spreadsheet
from services.voucher.money import Unit, format_major

BOM = "\ufeff"
HEADER = ("序号 line", "类型 kind", "订单号 order_reference", "核销编号 redemption_id", "退款编号 refund_id",
          "发生时间 occurred_at (UTC)", "金额 amount")
KIND_LABEL = {"capture": "核销 capture", "refund": "退款 refund"}


@dataclass(frozen=True)
class Line:
    kind: str
    order_reference: str
    redemption_id: str
    refund_id: str | None
    occurred_at: datetime
    amount: int


def render_csv(title: str, unit: Unit, lines: Iterable[Line]) -> bytes:
    """The statement as CSV bytes, BOM first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(spreadsheet.row([title]))
    writer.writerow([f"单位 unit: {unit.value}"])
    writer.writerow(HEADER)
    total = 0
    for number, line in enumerate(lines, start=1):
        total += line.amount
        writer.writerow(spreadsheet.row([number, KIND_LABEL[line.kind], line.order_reference, line.redemption_id,
                                         line.refund_id or "", line.occurred_at.isoformat(),
                                         format_major(line.amount, unit)]))
    writer.writerow(["合计 total", "", "", "", "", "", format_major(total, unit)])
    return (BOM + out.getvalue()).encode("utf-8")


def digest(document: bytes) -> str:
    return hashlib.sha256(document).hexdigest()
