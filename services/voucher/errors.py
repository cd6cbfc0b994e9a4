"""Domain errors: each failure the service can explain has a class with a stable `code`.

Pure module (no framework). `http/problems.py` renders any DomainError as RFC 9457
problem+json; routes list the classes they can raise so they appear in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "domain_error"
    title: ClassVar[str] = "The request was refused"
    status: ClassVar[int] = 409
    #: A transient refusal (lost race, lock timeout) is not stored as the idempotent answer:
    #: the same request may succeed when retried.
    transient: ClassVar[bool] = False

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)


# -- 4xx: the request itself -------------------------------------------------------------


class ValidationFailed(DomainError):
    """Business-level field validation (the shape was fine, a value is not acceptable)."""

    code = "validation_failed"
    title = "The request has invalid fields"
    status = 422

    def __init__(self, errors: list[dict[str, Any]], detail: str | None = None) -> None:
        super().__init__(detail or f"{len(errors)} field(s) are invalid", errors=errors)


class UnstorableValue(DomainError):
    """The database cannot hold a value (a NUL character, a number beyond its range)."""

    code = "unstorable_value"
    title = "A value cannot be stored (e.g. it contains a NUL character or is out of range)"
    status = 422


class InvalidCursor(DomainError):
    code = "invalid_cursor"
    title = "The pagination cursor is not valid"
    status = 422


class NotFound(DomainError):
    code = "not_found"
    title = "Resource not found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    title = "The request conflicts with the current state"
    status = 409


class AlreadyExists(Conflict):
    code = "already_exists"
    title = "A resource with the same identity already exists"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "That state change is not allowed from the current state"


class TermsFrozen(Conflict):
    code = "terms_frozen"
    title = "These fields can no longer be changed"


class ConcurrentUpdate(Conflict):
    code = "concurrent_update"
    title = "Another request changed or locked the same data; retry"
    transient = True


class PreconditionFailed(DomainError):
    code = "precondition_failed"
    title = "The resource changed since you read it"
    status = 412


class PreconditionRequired(DomainError):
    code = "precondition_required"
    title = "This update needs an If-Match header"
    status = 428


# -- authentication and authorisation -------------------------------------------------------


class Unauthenticated(DomainError):
    code = "unauthenticated"
    title = "Authentication required"
    status = 401


class InvalidApiKey(Unauthenticated):
    code = "invalid_api_key"
    title = "The API key is not valid"


class ApiKeyExpired(Unauthenticated):
    code = "api_key_expired"
    title = "The API key has expired"


class ApiKeyRevoked(Unauthenticated):
    code = "api_key_revoked"
    title = "The API key has been revoked"


class Forbidden(DomainError):
    code = "forbidden"
    title = "This key may not do that"
    status = 403


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    title = "The API key lacks the scope this operation needs"


# -- idempotency -----------------------------------------------------------------------------


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with a different request"
    status = 422


class IdempotencyRequestInProgress(DomainError):
    code = "idempotency_request_in_progress"
    title = "A request with this Idempotency-Key is still being processed"
    status = 409
    transient = True


class InvalidIdempotencyKey(DomainError):
    code = "invalid_idempotency_key"
    title = "The Idempotency-Key header is not acceptable"
    status = 422


class IdempotencyKeyRequired(DomainError):
    code = "idempotency_key_required"
    title = "This operation moves value and needs an Idempotency-Key header"
    status = 428


class ProviderKindMismatch(Conflict):
    code = "provider_kind_mismatch"
    title = "The provider does not offer this programme's kind of service"


class EnrolmentClosed(Conflict):
    code = "enrolment_closed"
    title = "The programme no longer accepts provider enrolments"


def field_error(pointer: str, message: str, type_: str = "invalid", location: str = "body") -> dict[str, Any]:
    """One entry of a 422 problem's `errors` list, in the same shape as schema validation's."""
    return {
        "location": location,
        "pointer": "/" + pointer.lstrip("/"),
        "message": message,
        "type": type_,
    }


# -- vouchers ----------------------------------------------------------------------------------


class ProgrammeNotOpen(Conflict):
    code = "programme_not_open"
    title = "The programme is not open"


class ExceedsMaxPerVoucher(Conflict):
    code = "exceeds_max_per_voucher"
    title = "The amount exceeds the programme's maximum per voucher"


class EnterpriseCapExceeded(Conflict):
    code = "enterprise_cap_exceeded"
    title = "The enterprise would exceed its cap for the period"


class BudgetExhausted(Conflict):
    code = "budget_exhausted"
    title = "The programme's remaining budget is too small"


class InvalidVoucherCode(DomainError):
    code = "invalid_voucher_code"
    title = "That is not a valid voucher code (check character mismatch)"
    status = 422


class VoucherNotYetValid(Conflict):
    code = "voucher_not_yet_valid"
    title = "The voucher is not valid yet"


class VoucherExpired(Conflict):
    code = "voucher_expired"
    title = "The voucher has expired"


class VoucherSuspended(Conflict):
    code = "voucher_suspended"
    title = "The voucher is suspended"


class VoucherRevoked(Conflict):
    code = "voucher_revoked"
    title = "The voucher has been revoked"


class VoucherExhausted(Conflict):
    code = "voucher_exhausted"
    title = "The voucher has no available balance"


# -- redemption --------------------------------------------------------------------------------


class ProviderNotApproved(Forbidden):
    code = "provider_not_approved"
    title = "The provider is not approved"


class ProviderNotEnrolled(Forbidden):
    code = "provider_not_enrolled"
    title = "The provider is not enrolled in the voucher's programme"


class RelatedParty(Conflict):
    code = "related_party"
    title = "The provider is a related party of the enterprise"


class VoucherKindMismatch(Conflict):
    code = "voucher_kind_mismatch"
    title = "The voucher's kind does not cover these line items"


class CategoryOutOfScope(Conflict):
    code = "category_out_of_scope"
    title = "A line item's category is outside the programme's scope"


class OrderAlreadySubsidised(Conflict):
    code = "order_already_subsidised"
    title = "The order is already subsidised up to the stacking ceiling"


class OrderReferenceConflict(Conflict):
    code = "order_reference_conflict"
    title = "The order reference is already used for another enterprise or amount"


class EnterpriseCapReached(Conflict):
    code = "enterprise_cap_reached"
    title = "The enterprise has reached its subsidy cap for the period"


class NothingToSubsidise(Conflict):
    code = "nothing_to_subsidise"
    title = "The line items earn no subsidy"


class HoldNotActive(Conflict):
    code = "hold_not_active"
    title = "The hold is no longer active"


class HoldExpired(Conflict):
    code = "hold_expired"
    title = "The hold's time to live has passed; it is void"


class CaptureExceedsHold(Conflict):
    code = "capture_exceeds_hold"
    title = "A capture cannot exceed the held amount"


class RefundExceedsCaptured(Conflict):
    code = "refund_exceeds_captured"
    title = "A refund cannot exceed what was captured and not yet refunded"


class RedemptionNotCaptured(Conflict):
    code = "redemption_not_captured"
    title = "Only a captured redemption can be refunded"


# -- applications ------------------------------------------------------------------------------


class ApplicationWindowClosed(Conflict):
    code = "application_window_closed"
    title = "The programme is not taking applications now"


class ApplicationAlreadyOpen(Conflict):
    code = "application_already_open"
    title = "The enterprise already has an open application to this programme"


class ContractAlreadyUsed(Conflict):
    code = "contract_already_used"
    title = "This contract is already part of another application or claim"


class EligibilityRulesInvalid(Conflict):
    code = "eligibility_rules_invalid"
    title = "The programme's stored eligibility rules cannot be evaluated; an operator must fix them"


# -- settlement --------------------------------------------------------------------------------


class SettlementExists(Conflict):
    code = "settlement_exists"
    title = "A settlement of this provider, programme and period already exists"


class NothingToSettle(Conflict):
    code = "nothing_to_settle"
    title = "The period has no unsettled captures or refunds"


class NegativeSettlement(Conflict):
    code = "negative_settlement"
    title = "Refunds exceed captures in the period; they carry over to a later settlement"


# -- claims ------------------------------------------------------------------------------------


class WrongPayoutMode(Conflict):
    code = "wrong_payout_mode"
    title = "The programme does not pay out this way"


class InvoiceAlreadyClaimed(Conflict):
    code = "invoice_already_claimed"
    title = "This provider's invoice is already part of a claim"


class DocumentAlreadyClaimed(Conflict):
    code = "document_already_claimed"
    title = "A document with this SHA-256 digest is already part of a claim"


class CheckpointSignatureInvalid(DomainError):
    """A checkpoint handed in for verification was not signed by this service's key."""

    code = "checkpoint_signature_invalid"
    title = "The checkpoint's signature does not verify with this service's public key"
    status = 422
