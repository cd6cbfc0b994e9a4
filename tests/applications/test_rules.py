"""The application lifecycle's pure rules: the whole transition table, the open and committed
sets, the publicity period, the application window, 公示 masking and contract numbers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from services.voucher.applications.rules import (
    COMMITTED,
    OPEN,
    RELEASES_CONTRACTS,
    TRANSITIONS,
    ApplicationStatus,
    check_transition,
    foreign_characters,
    in_window,
    mask_uscc,
    normalise_contract_number,
    number_problem,
    publicity_end,
    publicity_over,
    reference_key,
)
from services.voucher.errors import InvalidTransition
from services.voucher.i18n import Status

S = ApplicationStatus
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)

#: The lifecycle as the issue describes it, written out independently of the module.
LEGAL = {
    (S.SUBMITTED, S.INELIGIBLE), (S.SUBMITTED, S.UNDER_REVIEW), (S.SUBMITTED, S.WITHDRAWN),
    (S.UNDER_REVIEW, S.APPROVED), (S.UNDER_REVIEW, S.REJECTED), (S.UNDER_REVIEW, S.WITHDRAWN),
    (S.APPROVED, S.PUBLICITY), (S.APPROVED, S.ISSUED),
    (S.PUBLICITY, S.ISSUED), (S.PUBLICITY, S.UNDER_REVIEW),
}
FINAL = {S.INELIGIBLE, S.ISSUED, S.REJECTED, S.WITHDRAWN}


def test_the_table_covers_every_status_and_matches_the_lifecycle() -> None:
    assert set(TRANSITIONS) == set(S)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL
    assert {s for s, targets in TRANSITIONS.items() if not targets} == FINAL


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)),
                         ids=lambda s: s.value)
def test_every_pair_is_legal_iff_in_the_table(current: ApplicationStatus, target: ApplicationStatus) -> None:
    if (current, target) in LEGAL:
        check_transition(current, target)
        return
    with pytest.raises(InvalidTransition) as caught:
        check_transition(current, target)
    error = caught.value
    assert error.code == "invalid_transition" and error.status == 409
    assert error.extra == {"current_status": current.value,
                           "allowed": sorted(t.value for t in TRANSITIONS[current])}
    # statuses are words in the sentence (`under_review` reads "under review"); the codes are in `extra`
    assert str(Status(current.value)) in error.detail and str(Status(target.value)) in error.detail


def test_no_status_moves_to_itself_or_back_to_submitted() -> None:
    for status in S:
        with pytest.raises(InvalidTransition):
            check_transition(status, status)
        with pytest.raises(InvalidTransition):
            check_transition(status, S.SUBMITTED)


def test_open_and_committed_sets() -> None:
    assert OPEN == {S.SUBMITTED, S.UNDER_REVIEW, S.APPROVED, S.PUBLICITY}
    assert COMMITTED == {S.APPROVED, S.PUBLICITY, S.UNDER_REVIEW}  # under review: when an objection returned it
    assert RELEASES_CONTRACTS == {S.INELIGIBLE, S.REJECTED, S.WITHDRAWN}
    assert COMMITTED < OPEN
    # Every final status is outside OPEN, every non-final one inside it.
    assert OPEN == set(S) - FINAL
    # Leaving the statuses that may hold a commitment goes to issuance (the commitment granted)
    # or to an end without a subsidy (the commitment released).
    assert {t for s in COMMITTED for t in TRANSITIONS[s]} - COMMITTED == {S.ISSUED, S.REJECTED, S.WITHDRAWN}


@pytest.mark.parametrize(("days", "expected"), [(0, None), (-1, None), (1, NOW + timedelta(days=1)),
                                                (5, NOW + timedelta(days=5)), (30, NOW + timedelta(days=30))])
def test_publicity_end(days: int, expected: datetime | None) -> None:
    assert publicity_end(NOW, days) == expected


def test_publicity_over_only_for_an_ended_publicity() -> None:
    ends = NOW + timedelta(days=5)
    assert not publicity_over(S.PUBLICITY, ends, ends - SECOND)
    assert publicity_over(S.PUBLICITY, ends, ends)
    assert publicity_over(S.PUBLICITY, ends, ends + timedelta(days=100))
    assert not publicity_over(S.PUBLICITY, None, ends)
    for status in set(S) - {S.PUBLICITY}:
        assert not publicity_over(status, ends, ends + SECOND), status


def test_in_window_opens_inclusive_and_closes_exclusive() -> None:
    opens, closes = NOW, NOW + timedelta(days=10)
    assert not in_window(opens, closes, opens - SECOND)
    assert in_window(opens, closes, opens)
    assert in_window(opens, closes, closes - SECOND)
    assert not in_window(opens, closes, closes)
    assert not in_window(opens, closes, closes + SECOND)


def test_in_window_none_is_unbounded() -> None:
    far_past, far_future = NOW - timedelta(days=36500), NOW + timedelta(days=36500)
    assert in_window(None, None, far_past) and in_window(None, None, far_future)
    assert in_window(None, NOW, far_past) and not in_window(None, NOW, NOW)
    assert in_window(NOW, None, far_future) and not in_window(NOW, None, NOW - SECOND)


@pytest.mark.parametrize(
    ("uscc", "masked"),
    [
        ("91330110MA2H0W1P48", "913301********1P48"),
        ("91330110MA2J7C3X1M", "913301********3X1M"),
        ("12345678901", "123456*8901"),
        ("1234567890", "**********"),
        ("ABC", "***"),
        ("", ""),
    ],
)
def test_mask_uscc(uscc: str, masked: str) -> None:
    assert mask_uscc(uscc) == masked
    assert len(mask_uscc(uscc)) == len(uscc)


def test_mask_uscc_of_a_real_code_shows_six_and_four() -> None:
    masked = mask_uscc("91330110MA2H0W1P48")
    assert masked[:6] == "913301" and masked[-4:] == "1P48" and masked[6:-4] == "*" * 8
    assert "MA2H0W" not in masked


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("HT-2026-001", "HT-2026-001"),
        ("ht-2026-001", "HT-2026-001"),
        ("  ht-2026-001  ", "HT-2026-001"),
        ("HT 2026 001", "HT2026001"),
        ("ht\t2026\n001", "HT2026001"),
        ("杭算 字 第1号", "杭算字第1号"),
        ("ht\u30002026", "HT2026"),  # ideographic space counts as white space
    ],
)
def test_normalise_contract_number(number: str, expected: str) -> None:
    assert normalise_contract_number(number) == expected


def test_normalised_numbers_compare_equal_across_spelling() -> None:
    variants = ["HT-2026-001", "ht-2026-001", " Ht-2026-001", "HT -2026- 001"]
    assert len({normalise_contract_number(v) for v in variants}) == 1
    assert normalise_contract_number("HT-2026-001") != normalise_contract_number("HT-2026-002")
    assert normalise_contract_number("HT-2026-001") != normalise_contract_number("HT_2026_001")


@pytest.mark.parametrize("typed", [
    "ＨＺＣ－２０２６－００４２",  # full width, as Chinese input methods type it
    "hzc\u20102026\u20100042",  # Unicode hyphens
    "HZC-2026-\u200b0042",  # a zero-width space
    " hzc - 2026 - 0042 ",
    "HZC—2026–0042",  # em and en dashes
])
def test_one_contract_typed_differently_is_one_contract(typed: str) -> None:
    assert normalise_contract_number(typed) == "HZC-2026-0042"


def test_case_folding_can_lengthen_a_number() -> None:
    assert normalise_contract_number("ß" * 3) == "SSSSSS"


# -- look-alike letters (issue 19, finding 5) ----------------------------------------------------


@pytest.mark.parametrize(("typed", "foreign"), [
    ("\u041dZ\u0421-2026-0042", ["U+041D", "U+0421"]),  # Cyrillic Н and С
    ("\u0406NV-1", ["U+0406"]),  # Cyrillic І
    ("HZC-\u039f\u039f42", ["U+039F"]),  # Greek Ο (twice, named once)
    ("\u0430BC-2026", ["U+0410"]),  # Cyrillic а, upper-cased to А
])
def test_letters_of_other_scripts_are_refused_not_compared(typed: str, foreign: list[str]) -> None:
    number = normalise_contract_number(typed)
    assert foreign_characters(number) == foreign
    problem = number_problem(number)
    assert problem is not None and all(code in problem.render(language) for code in foreign for language in ("en", "zh"))


@pytest.mark.parametrize("typed", ["HZC-2026-0042", "浙杭合〔2026〕第0042号", "【合同】2026-12", "INV/2026.07#3",
                                   "〔二〇二六〕12号",
                                   "ＨＺＣ－２０２６－００４２"])
def test_ascii_han_and_document_marks_are_accepted(typed: str) -> None:
    assert number_problem(normalise_contract_number(typed)) is None


def test_a_document_number_compares_alike_whatever_its_brackets_and_quotes() -> None:
    key = lambda n: reference_key(normalise_contract_number(n))  # noqa: E731
    typed = ("浙杭合〔2026〕第12号", "浙杭合[2026]第12号", "浙杭合(2026)第12号", "浙杭合【2026】第12号",
             "浙杭合（2026）第12号", "浙杭合［2026］第12号", "浙杭合{2026}第12号", "浙杭合〔2026]第12号")
    assert {key(n) for n in typed} == {"浙杭合(2026)第12号"}
    assert all(number_problem(normalise_contract_number(n)) is None for n in typed)
    assert key("《框架》「一期」") == key('<框架>"-期"') == key("<框架>『一期』")
    assert key("浙杭合〔2026〕第12号") != key("浙杭合〔2026〕第13号")


def test_letters_that_read_as_digits_compare_as_the_digits() -> None:
    same = {reference_key(normalise_contract_number(n)) for n in ("HZC-2026-0042", "HZC-2O26-0O42", "hzc-2o26-0042")}
    assert same == {"HZC-2026-0042"}
    assert reference_key(normalise_contract_number("INV-1O")) == reference_key(normalise_contract_number("inv-10"))
    assert reference_key("INV-ILO") == "1NV-110"
    key = lambda n: reference_key(normalise_contract_number(n))  # noqa: E731
    assert key("hzc-2026-l042") == key("HZC-2026-1042")  # a lower-case l reads as 1
    assert key("\u4e28NV-1") == key("INV-1")  # the ideograph 丨
    assert key("HZC\u4e002026\u4e000042") == key("HZC-2026-0042")  # the ideograph 一 as a dash
    assert key("〔二〇二六〕12号") == "(二0二六)12号"  # 〇 is allowed, and read as 0
    assert reference_key("HZC-2026-0042") != reference_key("HZC-2026-0043")
    assert number_problem("") is not None and number_problem("X" * 65) is not None
