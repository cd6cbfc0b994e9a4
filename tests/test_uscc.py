"""Unified social credit codes (GB 32100-2015): the check character and every way a code is wrong."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.voucher.uscc import ALPHABET, check_character, is_valid, mask, problem

#: Codes printed on real business licences (published in public registers).
REAL_CODES = ["91330100716105852F", "91110000802100433B", "9144030071526726XG"]

#: Characters that are not in the 31-symbol alphabet but that people actually type.
OUTSIDE_ALPHABET = "IOZSV" + "abcxyz" + " -_./*#" + "\u0391\uff10"  # Greek Alpha, full-width 0


def _with(code: str, position: int, ch: str) -> str:
    return code[:position] + ch + code[position + 1 :]


@pytest.mark.parametrize("code", REAL_CODES)
def test_real_published_codes_are_valid(code: str) -> None:
    assert problem(code) is None
    assert is_valid(code)


def test_check_character_worked_by_hand() -> None:
    # 91330100716105852F: values 9 1 3 3 0 1 0 0 7 1 6 1 0 5 8 5 2 times the weights
    # 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28 sum to 884; 884 mod 31 = 16;
    # 31 - 16 = 15, and ALPHABET[15] is "F".
    assert check_character("91330100716105852") == "F"
    # 9144030071526726X: the organisation code may contain letters (X = 30).
    assert check_character("9144030071526726X") == "G"
    # A weighted sum of 0 gives check value (31 - 0) mod 31 = 0, not 31 (out of range).
    assert check_character("0" * 17) == "0"
    # Sum 1 (only the first character, weight 1) -> 31 - 1 = 30 -> "Y", the last symbol.
    assert check_character("1" + "0" * 16) == "Y"


def test_alphabet_is_digits_and_letters_without_i_o_z_s_v() -> None:
    assert len(ALPHABET) == 31
    assert set(ALPHABET).isdisjoint("IOZSV")
    assert set("0123456789") <= set(ALPHABET)


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        ("91330100716105852A", "F"),
        ("911100008021004330", "B"),
        ("9144030071526726XY", "G"),
    ],
)
def test_wrong_check_character_names_the_expected_one(wrong: str, expected: str) -> None:
    found = problem(wrong)
    assert found is not None
    assert found.code == "uscc_check_character"
    assert found.expected_check == expected
    assert repr(expected) in found.message
    assert not is_valid(wrong)


@pytest.mark.parametrize("code", ["", "9133010071610585", "91330100716105852", "91330100716105852F0"])
def test_wrong_length(code: str) -> None:
    found = problem(code)
    assert found is not None
    assert found.code == "uscc_length"
    assert f"got {len(code)}" in found.message
    assert found.expected_check is None


@pytest.mark.parametrize("letter", list("IOZSV"))
def test_letters_i_o_z_s_v_are_refused_anywhere(letter: str) -> None:
    for position in (0, 1, 8, 12, 17):
        found = problem(_with(REAL_CODES[0], position, letter))
        assert found is not None
        assert found.code == "uscc_character", (position, letter)
        assert repr(letter) in found.message


def test_lower_case_is_refused_by_the_pure_check() -> None:
    # The HTTP layer upper-cases first; the rule itself only knows the canonical form.
    found = problem(REAL_CODES[2].lower())
    assert found is not None
    assert found.code == "uscc_character"


@pytest.mark.parametrize("position", range(2, 8))
def test_region_must_be_six_digits(position: int) -> None:
    code = _with(REAL_CODES[0], position, "A")
    found = problem(code)
    assert found is not None
    assert found.code == "uscc_region"


def test_letters_are_allowed_outside_the_region() -> None:
    # Registration authority, entity type and organisation code may be letters.
    body = "Y1" + "330110" + "MA2H0W1P4"
    assert is_valid(body + check_character(body))


@pytest.mark.parametrize("code", REAL_CODES)
def test_every_single_character_substitution_is_detected(code: str) -> None:
    """Exhaustive: 18 positions × every other symbol of the alphabet and beyond."""
    candidates = ALPHABET + OUTSIDE_ALPHABET
    tried = 0
    for position in range(len(code)):
        for ch in candidates:
            if ch == code[position]:
                continue
            mutated = _with(code, position, ch)
            found = problem(mutated)
            assert found is not None, f"{mutated} ({position}: {code[position]}->{ch}) accepted"
            if ch in ALPHABET and not (2 <= position < 8 and not ch.isdigit()):
                # A well-formed substitution is caught by the checksum itself.
                assert found.code == "uscc_check_character", mutated
            tried += 1
    assert tried == 18 * (len(candidates) - 1)


@pytest.mark.parametrize("code", REAL_CODES)
def test_every_adjacent_transposition_in_the_body_is_detected(code: str) -> None:
    # Distinct weights modulo the prime 31 make any swap of two different characters visible.
    for i in range(16):
        if code[i] == code[i + 1]:
            continue
        swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
        assert not is_valid(swapped), swapped


_body = st.tuples(
    st.text(ALPHABET, min_size=2, max_size=2),
    st.text("0123456789", min_size=6, max_size=6),
    st.text(ALPHABET, min_size=9, max_size=9),
).map("".join)


@given(body=_body, position=st.integers(0, 17), ch=st.sampled_from(ALPHABET))
def test_generated_codes_are_valid_and_any_substitution_breaks_them(
    body: str, position: int, ch: str
) -> None:
    code = body + check_character(body)
    assert problem(code) is None
    mutated = _with(code, position, ch)
    assert is_valid(mutated) == (mutated == code)


def test_mask_keeps_the_first_six_and_last_four() -> None:
    assert mask("91330100716105852F") == "913301********852F"
    assert mask("9144030071526726XG") == "914403********26XG"
    for code in REAL_CODES:
        masked = mask(code)
        assert len(masked) == len(code)
        assert masked.count("*") == 8
        assert code[6:14] not in masked


@pytest.mark.parametrize("code", ["", "A", "913301", "9133010071"])
def test_mask_never_reveals_a_code_too_short_to_mask(code: str) -> None:
    # Keeping 6 + 4 characters of a code of 10 or fewer would show all of it (or repeat it).
    assert mask(code) == "*" * len(code)
