"""Voucher codes catch typing errors before any lookup; the status machine and expiry-on-read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.voucher.errors import InvalidTransition
from services.voucher.vouchers.rules import (
    ALPHABET,
    TRANSITIONS,
    VoucherStatus,
    check_transition,
    effective_status,
    new_code,
    normalise_code,
    settled_status,
)


@pytest.mark.parametrize("kind,prefix", [("compute", "CV-"), ("model", "MV-")])
def test_new_codes_are_valid_and_prefixed(kind: str, prefix: str) -> None:
    codes = {new_code(kind) for _ in range(500)}
    assert len(codes) == 500
    for code in codes:
        assert code.startswith(prefix) and normalise_code(code) == code


def test_typing_variants_normalise_to_the_same_code() -> None:
    code = new_code("compute")
    assert normalise_code(code.lower()) == code
    assert normalise_code(code.replace("-", " ")) == code
    assert normalise_code(code.replace("-", "")) == code


def test_every_single_substitution_and_adjacent_swap_is_caught() -> None:
    for _ in range(20):
        code = new_code("compute")
        compact = code.replace("-", "")
        for i in range(2, len(compact)):
            for ch in ALPHABET:
                if ch != compact[i]:
                    typo = compact[:i] + ch + compact[i + 1 :]
                    assert normalise_code(typo) is None, (code, typo)
        for i in range(2, len(compact) - 1):
            if compact[i] != compact[i + 1]:
                swapped = compact[:i] + compact[i + 1] + compact[i] + compact[i + 2 :]
                assert normalise_code(swapped) is None, (code, swapped)


@pytest.mark.parametrize("text", ["", "CV", "XX-AAAA-BBBB-CCCC-D", "CV-AAAA-BBBB-CCC", "CV-UUUU-BBBB-CCCC-0", "CV-ZZZZ-BBBB-CCCC-0"])
def test_malformed_codes_are_refused(text: str) -> None:
    assert normalise_code(text) is None


def test_status_machine() -> None:
    legal = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    for a in VoucherStatus:
        for b in VoucherStatus:
            if (a, b) in legal:
                check_transition(a, b)
            else:
                with pytest.raises(InvalidTransition):
                    check_transition(a, b)
    assert not TRANSITIONS[VoucherStatus.REVOKED] and not TRANSITIONS[VoucherStatus.EXPIRED]


def test_expiry_applies_on_read() -> None:
    expires = datetime(2026, 12, 31, tzinfo=UTC)
    before, after = expires - timedelta(seconds=1), expires
    assert effective_status(VoucherStatus.ACTIVE, expires, before) is VoucherStatus.ACTIVE
    for status in (VoucherStatus.ACTIVE, VoucherStatus.SUSPENDED, VoucherStatus.EXHAUSTED):
        assert effective_status(status, expires, after) is VoucherStatus.EXPIRED
    assert effective_status(VoucherStatus.REVOKED, expires, after) is VoucherStatus.REVOKED


def test_exhausted_follows_balances() -> None:
    assert settled_status(VoucherStatus.ACTIVE, 0, 0) is VoucherStatus.EXHAUSTED
    assert settled_status(VoucherStatus.ACTIVE, 0, 5) is VoucherStatus.ACTIVE
    assert settled_status(VoucherStatus.EXHAUSTED, 3, 0) is VoucherStatus.ACTIVE
    assert settled_status(VoucherStatus.SUSPENDED, 0, 0) is VoucherStatus.SUSPENDED
