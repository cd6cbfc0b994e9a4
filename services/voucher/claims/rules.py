"""The enterprise claim lifecycle (`enterprise_claim` programmes). Pure: stdlib only.

    submitted → under_review → approved → paid
                             ↘ rejected ↙

The subsidy is computed and held from the voucher when the claim is filed, exactly as a
provider's hold; approval captures it payable to the enterprise, rejection releases it. An
approved claim not yet paid may still be rejected (a forged invoice found after approval): the
approved amount is refunded out of the enterprise's payable, as a provider's refund is.
"""

from __future__ import annotations

from enum import StrEnum

from services.voucher.applications.rules import normalise_contract_number
from services.voucher.errors import InvalidTransition
from services.voucher.i18n import Message, Status, msg


class ClaimStatus(StrEnum):
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    PAID = "paid"
    REJECTED = "rejected"


C = ClaimStatus
TRANSITIONS: dict[ClaimStatus, frozenset[ClaimStatus]] = {
    C.SUBMITTED: frozenset({C.UNDER_REVIEW}),
    C.UNDER_REVIEW: frozenset({C.APPROVED, C.REJECTED}),
    C.APPROVED: frozenset({C.PAID, C.REJECTED}),
    C.PAID: frozenset(),
    C.REJECTED: frozenset(),
}
#: How long a claim's hold lasts: the review, not a checkout.
HOLD_DAYS = 3650


def check_transition(current: ClaimStatus, target: ClaimStatus) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(
            msg("a claim that is {current} cannot become {target}", current=Status(current),
                target=Status(target)),
            current_status=current.value,
            allowed=sorted(s.value for s in TRANSITIONS[current]),
        )


def normalise_invoice_number(number: str) -> str:
    """Invoice numbers compare as contract numbers do (full-width, dashes, case, spaces)."""
    return normalise_contract_number(number)


def invoice_identity(number_key: str, code_key: str | None) -> tuple[str | None, list[tuple[str, Message]]]:
    """An invoice as the tax system identifies it, from the keys of its number and code
    (applications/rules.py `reference_key`): a fully digital invoice (数电票) by its 20-digit
    number, unique nationally; a VAT invoice of the older kind (paper or electronic) by its
    invoice code (10 or 12 digits) and its 8-digit number. Either the identity, or the fields'
    problems.

    A fully digital invoice's number starts with its year (21 onward), an older electronic
    invoice's 12-digit code with 0 or 1. Twenty digits are one identity however they are typed
    (`_twenty`): as one number, or as a 12-digit code and an 8-digit number. Read by how they
    were typed, the same invoice had been claimed twice — twenty digits starting with 0 or 1
    typed as one number, then a code starting with 2 or more and its number (an independent
    review each, December 2026)."""
    if code_key is None:
        if len(number_key) == 20 and number_key.isdigit():
            return _twenty(number_key), []
        return None, [("invoice_number", msg("a fully digital invoice (数电票) has a 20-digit number; for an older "
                                             "VAT invoice give its invoice_code (10 or 12 digits) and its 8-digit "
                                             "number"))]
    problems: list[tuple[str, Message]] = []
    if not (len(code_key) in (10, 12) and code_key.isdigit()):
        problems.append(("invoice_code", msg("an invoice code has 10 or 12 digits (a fully digital invoice has none: "
                                             "leave invoice_code out)")))
    if not (len(number_key) == 8 and number_key.isdigit()):
        problems.append(("invoice_number", msg("an invoice with an invoice code has an 8-digit number")))
    if problems:
        return None, problems
    return (_twenty(code_key + number_key) if len(code_key) == 12 else f"vat:{code_key}:{number_key}"), []


def _twenty(digits: str) -> str:
    """The identity of twenty digits: an older invoice's code and number when they start with 0
    or 1, else a fully digital invoice's number (`vat:` and `digital:` keys, as migration 0024
    and 0031 left the claims filed before)."""
    return f"vat:{digits[:12]}:{digits[12:]}" if digits[0] in "01" else f"digital:{digits}"


#: How a claim's order reference begins: kept for claims, a provider's order may not begin so
#: (redemption/schemas.py), else a provider's hold could take a claim's order first.
CLAIM_ORDER_PREFIX = "invoice:"


def order_reference(invoice_number: str, amount_paid: int, enterprise_uscc: str) -> str:
    """The order a claim subsidises, for the one-subsidy-per-order rule and the stacking
    ceiling: the provider's invoice, as the enterprise filing it bought it. The amount is part
    of it so that a claim rejected for a wrong amount can be filed again, corrected; the
    enterprise, so that an invoice a rejection freed can be claimed by the enterprise it really
    belongs to (the order had stayed another enterprise's, and its owner was refused for good;
    an independent review). Two standing claims of one invoice are refused by the invoice rule
    (the unique `invoice_key`), whoever files them and whatever their amounts."""
    return f"{CLAIM_ORDER_PREFIX}{invoice_number}:{amount_paid}:{enterprise_uscc}"
