"""Unified social credit codes (统一社会信用代码), GB 32100-2015.

18 characters from a 31-symbol alphabet (no I, O, Z, S, V): registration authority, entity
type, 6-digit administrative division, 9-character organisation code, and a check character
computed as a weighted sum modulo 31. Pure code: no framework imports.
"""

from __future__ import annotations

from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
LENGTH = 18


@dataclass(frozen=True)
class UsccProblem:
    code: str
    message: str
    expected_check: str | None = None


def check_character(first17: str) -> str:
    """The check character for the first 17 characters (which must be in the alphabet)."""
    total = sum(_VALUE[ch] * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def problem(code: str) -> UsccProblem | None:
    """None when `code` is a valid USCC, else what is wrong with it (first problem found)."""
    if len(code) != LENGTH:
        return UsccProblem("uscc_length", f"must be {LENGTH} characters, got {len(code)}")
    bad = [ch for ch in code if ch not in _VALUE]
    if bad:
        return UsccProblem(
            "uscc_character",
            f"character {bad[0]!r} is not allowed (upper-case digits and letters except I, O, Z, S, V)",
        )
    if not code[2:8].isdigit():
        return UsccProblem("uscc_region", "characters 3-8 must be the 6-digit region code")
    expected = check_character(code[:17])
    if code[17] != expected:
        return UsccProblem(
            "uscc_check_character",
            f"check character is {code[17]!r} but should be {expected!r}",
            expected_check=expected,
        )
    return None


def is_valid(code: str) -> bool:
    return problem(code) is None


def mask(code: str) -> str:
    """The masked form used in public notices: first 6 and last 4 characters kept."""
    if len(code) <= 10:  # keeping 6 + 4 would reveal (or repeat) the whole code
        return "*" * len(code)
    return code[:6] + "*" * (len(code) - 10) + code[-4:]
