"""Voucher rules: status machine, effective status on read, and human-readable codes. Pure.

Codes look like `CV-7K3M-Q9PD-X2HA-R`: a kind prefix (CV compute, MV model), twelve random
symbols and a check symbol, all from a 31-symbol alphabet (Crockford's base 32 without Z: no
I, L, O, U, so nothing reads as something else). The check makes Σ wᵢ·vᵢ ≡ 0 (mod 31) with
distinct non-zero weights; 31 being prime, every single-symbol error and every transposition
of adjacent symbols changes the sum, so a mistyped code is refused before any lookup.
"""

from __future__ import annotations

import secrets
import unicodedata
import uuid
from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

from services.voucher.errors import InvalidTransition, InvalidVoucherCode
from services.voucher.i18n import Message, Status, msg
from services.voucher.settlement.rules import PERIOD_ZONE

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXY"  # 31 symbols: no I, L, O, U (and no Z)
MODULUS = len(ALPHABET)  # prime
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
PREFIX = {"compute": "CV", "model": "MV"}
BODY_LENGTH = 12


class VoucherStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    EXHAUSTED = "exhausted"
    EXPIRED = "expired"
    REVOKED = "revoked"


TRANSITIONS: dict[VoucherStatus, frozenset[VoucherStatus]] = {
    VoucherStatus.ACTIVE: frozenset(
        {VoucherStatus.SUSPENDED, VoucherStatus.EXHAUSTED, VoucherStatus.EXPIRED, VoucherStatus.REVOKED}
    ),
    VoucherStatus.SUSPENDED: frozenset(
        {VoucherStatus.ACTIVE, VoucherStatus.REVOKED, VoucherStatus.EXPIRED}
    ),
    # A refund into a still-valid exhausted voucher makes it usable again; an exhausted
    # voucher is still revocable (e.g. to record a clawback), and can be suspended, so that an
    # office investigating a fully used voucher keeps a refund from making it spendable (an
    # independent review, December 2026); resuming it finds exhausted or active by its balances.
    VoucherStatus.EXHAUSTED: frozenset(
        {VoucherStatus.ACTIVE, VoucherStatus.SUSPENDED, VoucherStatus.EXPIRED, VoucherStatus.REVOKED}
    ),
    VoucherStatus.EXPIRED: frozenset(),
    VoucherStatus.REVOKED: frozenset(),
}


def check_transition(current: VoucherStatus, target: VoucherStatus) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(
            msg("a voucher cannot go from '{current}' to '{target}'", current=Status(current.value),
                target=Status(target.value)),
            current_status=current.value,
            allowed=sorted(s.value for s in TRANSITIONS[current]),
        )


#: The statuses a voucher leaves for expired once its validity ends.
LAPSING = frozenset({VoucherStatus.ACTIVE, VoucherStatus.SUSPENDED, VoucherStatus.EXHAUSTED})


def effective_status(status: VoucherStatus, expires_at: datetime, now: datetime) -> VoucherStatus:
    """Expiry applies when read: a voucher past its expiry is expired whether or not the job
    has posted the expiry to the ledger yet."""
    if status in LAPSING and now >= expires_at:
        return VoucherStatus.EXPIRED
    return status


def settled_status(status: VoucherStatus, available: int, held: int) -> VoucherStatus:
    """Active and exhausted follow the balances: exhausted when nothing is left or held."""
    if status is VoucherStatus.ACTIVE and available == 0 and held == 0:
        return VoucherStatus.EXHAUSTED
    if status is VoucherStatus.EXHAUSTED and (available > 0 or held > 0):
        return VoucherStatus.ACTIVE
    return status


# -- codes -----------------------------------------------------------------------------------


def check_symbol(symbols: str) -> str:
    """The symbol that makes the weighted sum of prefix, body and check ≡ 0 (mod 31).

    Weights are 2, 3, 4, … for the symbols and 1 for the check: all distinct and non-zero
    modulo 31, which is what makes every substitution and adjacent swap detectable.
    """
    total = sum(_VALUE[ch] * (i + 2) for i, ch in enumerate(symbols))
    return ALPHABET[(-total) % MODULUS]


def new_code(kind: str) -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    prefix = PREFIX[kind]
    check = check_symbol(prefix + body)
    return f"{prefix}-{body[0:4]}-{body[4:8]}-{body[8:12]}-{check}"


def normalise_code(text: str) -> str | None:
    """The canonical form of a typed code, or None when it cannot be a valid code.

    Case, spaces and dashes do not matter; O, I and L are read as 0, 1 and 1 in the body.
    """
    compact = "".join(ch for ch in text.upper() if ch not in " -_\t")
    if len(compact) != 2 + BODY_LENGTH + 1:
        return None
    prefix, body, check = compact[:2], compact[2:-1].translate(_ALIASES), compact[-1]
    if prefix not in PREFIX.values() or any(ch not in _VALUE for ch in body):
        return None
    check = check.translate(_ALIASES)
    if check not in _VALUE or check_symbol(prefix + body) != check:
        return None
    return f"{prefix}-{body[0:4]}-{body[4:8]}-{body[8:12]}-{check}"


#: A voucher's code comes back with each of its redemptions: typed codes of a sane length are
#: remembered (never a long text: the cache's memory stays small).
_remembered = lru_cache(maxsize=4096)(normalise_code)


def parse_code(text: str) -> str:
    """The canonical code, or a refusal that says it was probably mistyped."""
    code = _remembered(text) if len(text) <= 64 else normalise_code(text)
    if code is None:
        raise InvalidVoucherCode(msg("the code's check character does not match: it was probably mistyped"))
    return code


def repayment_day_problem(paid_on: date, first_clawback_at: datetime | None) -> Message | None:
    """An enterprise repays a clawback once it is recorded: a repayment dated before the
    voucher's first clawback (in Asia/Shanghai) is a typing error, as a settlement paid before
    its approval is (a review of the repayments recorded one on 1999-01-01)."""
    if first_clawback_at is None:
        return None
    recorded = first_clawback_at.astimezone(ZoneInfo(PERIOD_ZONE)).date()
    if paid_on < recorded:
        return msg("the payment day {paid_on} is before the voucher's first clawback ({recorded}, Beijing time)",
                   paid_on=paid_on, recorded=recorded)
    return None


#: How a repayment's journal memo names the bank's payment reference.
REPAYMENT_MEMO = "clawback repaid by the enterprise, reference "
#: How an overpayment return's journal memo names the office's bank reference, and how the
#: journal of what refunds recover of it names the return (its journal's id).
RETURN_MEMO = "overpayment returned to the enterprise, reference "
RETURN_RECOVERY_MEMO = "refunds recover, on the overpayment return "
#: How a reversal's journals name the clawback, repayment, write-off or return they undo (its
#: journal's id): the reversal, and what refunds recover once it is undone — or, a clawback
#: undone, what refunds or payments had covered of it, put back.
REVERSAL_MEMO = "reversal of "
RECOVERY_MEMO = "refunds recover, on the reversal of "
UNCOVER_MEMO = "no longer covered by refunds or payments, on the reversal of "
#: How a clawback's journal memo gives its reason, and how the journal of what the enterprise's
#: payments already cover of it (after a clawback it paid was reversed) names the clawback.
CLAWBACK_MEMO = "clawback of used value: "
COVER_MEMO = "covered by what the enterprise paid, on the clawback "


def reversed_entry(memo: str | None) -> uuid.UUID | None:
    """The journal a reversal's memo names (`REVERSAL_MEMO`, `RECOVERY_MEMO` or `UNCOVER_MEMO`,
    then its id), or the return or clawback whose covered part a journal is
    (`RETURN_RECOVERY_MEMO`, `COVER_MEMO`)."""
    for prefix in (REVERSAL_MEMO, RECOVERY_MEMO, UNCOVER_MEMO, RETURN_RECOVERY_MEMO, COVER_MEMO):
        if memo is not None and memo.startswith(prefix):
            try:
                return uuid.UUID(memo[len(prefix):len(prefix) + 36])
            except ValueError:
                return None
    return None


def payment_reference_key(reference: str) -> str:
    """A payment reference as compared for duplicates: the same characters whatever the input
    method made of them (NFKC: full-width ＩＣＢＣ－１ is ICBC-1), case, spaces and invisible
    format characters aside — a clerk retyping a transfer writes it as it comes."""
    folded = unicodedata.normalize("NFKC", reference).casefold()
    return "".join(ch for ch in folded if not ch.isspace() and unicodedata.category(ch) != "Cf")
