"""The application lifecycle and the publicity notice's rules. Pure: stdlib only.

    submitted → ineligible (final) | under_review | withdrawn
    under_review → approved | rejected | withdrawn
    approved → publicity | issued (a programme with no publicity period issues at once)
    publicity → issued | under_review (an objection was lodged)

Approval commits budget and cap. An objection returns the application to review with its
commitment held while the office examines it: approving again keeps it (adjusted to the new
amount), rejecting (the objection upheld) or a withdrawal releases exactly what is held.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from enum import StrEnum

from services.voucher.errors import InvalidTransition
from services.voucher.i18n import Message, Status, msg


class ApplicationStatus(StrEnum):
    SUBMITTED = "submitted"
    INELIGIBLE = "ineligible"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    PUBLICITY = "publicity"
    ISSUED = "issued"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


S = ApplicationStatus
TRANSITIONS: dict[ApplicationStatus, frozenset[ApplicationStatus]] = {
    S.SUBMITTED: frozenset({S.INELIGIBLE, S.UNDER_REVIEW, S.WITHDRAWN}),
    S.UNDER_REVIEW: frozenset({S.APPROVED, S.REJECTED, S.WITHDRAWN}),
    S.APPROVED: frozenset({S.PUBLICITY, S.ISSUED}),
    S.PUBLICITY: frozenset({S.ISSUED, S.UNDER_REVIEW}),
    S.INELIGIBLE: frozenset(),
    S.ISSUED: frozenset(),
    S.REJECTED: frozenset(),
    S.WITHDRAWN: frozenset(),
}

#: An enterprise has at most one application in these states per programme.
OPEN: frozenset[ApplicationStatus] = frozenset({S.SUBMITTED, S.UNDER_REVIEW, S.APPROVED, S.PUBLICITY})
#: Budget and cap are committed exactly while an application is in one of these states with an
#: approved amount: always when approved or in publicity; under review only when an objection
#: returned it there, its approval held until the office decides again.
COMMITTED: frozenset[ApplicationStatus] = frozenset({S.APPROVED, S.PUBLICITY, S.UNDER_REVIEW})
#: Final states whose contracts never led to a subsidy, so the contract numbers are free again.
RELEASES_CONTRACTS: frozenset[ApplicationStatus] = frozenset({S.INELIGIBLE, S.REJECTED, S.WITHDRAWN})


def check_transition(current: ApplicationStatus, target: ApplicationStatus) -> None:
    """Refuse any move the lifecycle does not have, naming the current state."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(
            msg("an application that is {current} cannot become {target}", current=Status(current.value),
                target=Status(target.value)),
            current_status=current.value,
            allowed=sorted(s.value for s in TRANSITIONS[current]),
        )


def publicity_end(approved_at: datetime, publicity_days: int) -> datetime | None:
    """When the 公示 period ends; None when the programme has none (issue at approval)."""
    return approved_at + timedelta(days=publicity_days) if publicity_days > 0 else None


def publicity_over(status: ApplicationStatus, ends_at: datetime | None, now: datetime) -> bool:
    """Whether the voucher is due: the period ended with no objection standing."""
    return status is S.PUBLICITY and ends_at is not None and ends_at <= now


def in_window(opens_at: datetime | None, closes_at: datetime | None, now: datetime) -> bool:
    """Applications are taken from `opens_at` (inclusive) until `closes_at` (exclusive)."""
    return (opens_at is None or opens_at <= now) and (closes_at is None or now < closes_at)


def mask_uscc(uscc: str) -> str:
    """What 公示 notices print: the first 6 and last 4 characters of the code."""
    if len(uscc) <= 10:
        return "*" * len(uscc)
    return uscc[:6] + "*" * (len(uscc) - 10) + uscc[-4:]


#: Dash-like characters Chinese and office input methods type for "-".
_DASHES = dict.fromkeys(map(ord, "‐‑‒–—―−－﹣﹘⁃"), "-")


#: Besides printable ASCII and Han ideographs, the marks Chinese document numbers are written with.
CJK_MARKS = "【】〔〕《》「」『』、·〇"
#: Characters that read as another in a document number, and what they are read as: the
#: letters O, I and L (upper-cased from o, i, l) as digits, the ideographic zero 〇 as 0, and
#: the ideographs 一 and 丨 as a dash and a one.
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1", "〇": "0", "一": "-", "丨": "1"})
#: Brackets and quotes, read as one form each: the year of a document number (文号) is written
#: 〔2026〕 by the standard and typed as (2026), [2026] or 【2026】 just as often; an independent
#: review (December 2026) subsidised one contract four times, once per bracket.
BRACKETS = {**dict.fromkeys("([{【〔", "("), **dict.fromkeys(")]}】〕", ")"), **dict.fromkeys("<《", "<"),
            **dict.fromkeys(">》", ">"), **dict.fromkeys("「」『』", '"')}
_KEY = str.maketrans({**{chr(k): v for k, v in _LOOKALIKES.items()}, **BRACKETS})


def _allowed(c: str) -> bool:
    o = ord(c)
    return (0x21 <= o <= 0x7E or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0x20000 <= o <= 0x3134F
            or c in CJK_MARKS)


def foreign_characters(number: str) -> list[str]:
    """The characters of a normalised contract or invoice number outside its alphabet —
    printable ASCII, Han ideographs and `CJK_MARKS` — as U+ code points. Letters of other
    scripts that look like Latin ones (Cyrillic Н, С, І; Greek Ι, Ο…) are refused rather than
    compared: NFKC does not fold them, and one subsidy per contract must not be escaped by
    typing the same number in look-alike letters."""
    return [f"U+{ord(c):04X}" for c in dict.fromkeys(number) if not _allowed(c)]


def reference_key(number: str) -> str:
    """The form two normalised contract or invoice numbers are compared in: what reads as a
    digit or a dash in a document number is read as one (O and 〇 as 0; I, L and 丨 as 1; 一 as
    -), so HZC-2O26-l042 is HZC-2026-1042; every bracket as one of ( ) < >, and the corner
    quotes 「」『』 as ", so 浙杭合〔2026〕12号 is 浙杭合(2026)12号 (an ASCII ' stays as it is). What is shown stays as typed (normalised)."""
    return number.translate(_KEY)


def number_problem(number: str) -> Message | None:
    """Why a normalised contract or invoice number cannot be accepted, if it cannot (a message
    for the person who typed it)."""
    if not number or len(number) > 64:
        return msg("1 to 64 characters once normalised")
    foreign = foreign_characters(number)
    if foreign:
        return msg("only ASCII, Han characters and {marks} may be used (look-alike letters of other scripts are "
                   "refused): {characters}", marks=" ".join(CJK_MARKS), characters=foreign)
    return None


def normalise_contract_number(number: str) -> str:
    """The form two contract numbers are compared in: Unicode compatibility forms folded
    (full-width ＨＺＣ－０１ is HZC-01), dashes unified, case folded, white space and invisible
    format characters (zero-width spaces) removed. One subsidy per contract must not be
    escaped by typing the same number differently."""
    folded = unicodedata.normalize("NFKC", number).translate(_DASHES)
    kept = "".join(c for c in folded if not c.isspace() and unicodedata.category(c) != "Cf")
    return unicodedata.normalize("NFKC", kept.casefold()).upper()
