"""Domain errors: each failure the service can explain has a class with a stable `code`.

Pure module (no framework). `http/problems.py` renders any DomainError as RFC 9457
problem+json; routes list the classes they can raise so they appear in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, ClassVar

from services.voucher.i18n import Message, msg, translate


class DomainError(Exception):
    code: ClassVar[str] = "domain_error"
    title: ClassVar[str] = "The request was refused"
    status: ClassVar[int] = 409
    #: A transient refusal (lost race, lock timeout) is not stored as the idempotent answer:
    #: the same request may succeed when retried.
    transient: ClassVar[bool] = False
    #: The answer carries `Retry-After` with the seconds in `extra["retry_after"]`.
    retry_after_header: ClassVar[bool] = False

    def __init__(self, detail: Message | None = None, **extra: Any) -> None:
        """`detail`: the specifics, a message from the catalogue (services/voucher/i18n.py) that
        is rendered in the reader's language; without one, the title is the detail. `extra`:
        the problem's extension members (their Messages are rendered too)."""
        self.message = detail
        self.extra = extra
        super().__init__(self.detail)

    @property
    def detail(self) -> str:
        """The detail in English (logs, the CLI, `detail_en`)."""
        return self.detail_in("en")

    def title_in(self, language: str) -> str:
        """The title in "zh" or "en"."""
        return translate(self.title, language)

    def detail_in(self, language: str) -> str:
        """The detail in "zh" or "en"."""
        return self.title_in(language) if self.message is None else self.message.render(language)


def every_class() -> list[type[DomainError]]:
    """Every DomainError subclass, wherever it is defined (the problem catalogue)."""
    found: list[type[DomainError]] = []
    pending = list(DomainError.__subclasses__())
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


# -- 4xx: the request itself -------------------------------------------------------------


class ValidationFailed(DomainError):
    """Business-level field validation (the shape was fine, a value is not acceptable)."""

    code = "validation_failed"
    title = "The request has invalid fields"
    status = 422

    def __init__(self, errors: list[dict[str, Any]], detail: Message | None = None) -> None:
        fields = [f"{e['location']}{e['pointer']}" for e in errors[:5]]
        super().__init__(detail or msg("{count} field(s) are invalid: {fields}; each is explained in errors",
                                       count=len(errors), fields=fields),
                         errors=errors)


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


class PayloadTooLarge(DomainError):
    """The body is over the limit for its route (docs/security.md); refused before it is read."""

    code = "payload_too_large"
    title = "The request body is too large"
    status = 413
    #: Never stored as an Idempotency-Key's answer: no key is claimed before the body is read.
    transient = True


class MalformedJson(DomainError):
    """The body could not be parsed as JSON (answered by http/problems.py)."""

    code = "malformed_json"
    title = "The request body is not valid JSON"
    status = 400
    transient = True


class DuplicateHeader(DomainError):
    """A header that carries one value was sent more than once (http/gate.py)."""

    code = "duplicate_header"
    title = "A header was sent more than once"
    status = 400
    transient = True


class UnsupportedMediaType(DomainError):
    """A body sent as a form, text or anything but JSON (answered by http/problems.py)."""

    code = "unsupported_media_type"
    title = "Unsupported media type"
    status = 415
    transient = True


class RequestTimeout(DomainError):
    """The body stopped arriving (http/gate.py)."""

    code = "request_timeout"
    title = "The request body did not arrive in time"
    status = 408
    transient = True


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


class ScopeEscalation(Forbidden):
    """A key asked to create or rotate a key with scopes it does not hold itself."""

    code = "scope_escalation"
    title = "A key may only create or rotate keys within its own scopes"


class ReplacedKeyManagesNoKeys(Forbidden):
    """A key a rotation replaced (in its grace period) asked to create, rotate or revoke a key."""

    code = "replaced_key_manages_no_keys"
    title = "A key that was rotated may not create, rotate or revoke keys"


# -- idempotency -----------------------------------------------------------------------------


class TooManyLiveKeys(Conflict):
    """A principal may hold a limited number of live keys (VOUCHER_MAX_LIVE_KEYS_PER_PRINCIPAL)."""

    code = "too_many_live_keys"
    title = "This principal holds as many live API keys as it may"


class KeyBeingReplaced(Conflict):
    """A rotated key in its grace period: only its successor may be rotated."""

    code = "key_being_replaced"
    title = "This API key was already rotated; rotate its successor"


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


def field_error(pointer: str, message: Message, type_: str = "invalid", location: str = "body") -> dict[str, Any]:
    """One entry of a 422 problem's `errors` list, in the same shape as schema validation's; the
    message is rendered in the reader's language with the rest of the problem."""
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


class ClawbackOnLiveVoucher(Conflict):
    code = "clawback_on_live_voucher"
    title = "A live voucher's clawback is recorded by revoking it"


class RepaymentAlreadyRecorded(Conflict):
    code = "repayment_already_recorded"
    title = "A repayment with this payment reference is already recorded for the voucher"


class OverpaymentReturnAlreadyRecorded(Conflict):
    code = "overpayment_return_already_recorded"
    title = "A return of an overpayment with this payment reference is already recorded for the voucher"


class AlreadyReversed(Conflict):
    code = "already_reversed"
    title = "This clawback, repayment, write-off or overpayment return was already reversed"


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


class PeriodSpendLimitReached(Conflict):
    """The enterprise's orders this period would sum past what the service counts (`MAX_PERIOD_SPEND`)."""

    code = "period_spend_limit_reached"
    title = "The enterprise's orders this period have reached the most the service counts"


class NothingToSubsidise(Conflict):
    code = "nothing_to_subsidise"
    title = "The line items earn no subsidy"


class HoldNotActive(Conflict):
    code = "hold_not_active"
    title = "The hold is no longer active"


class HoldExpired(Conflict):
    code = "hold_expired"
    title = "The hold's time to live has passed; it is void"


class SubsidyBelowExpected(Conflict):
    """The provider quoted an exact subsidy (`expected_subsidy`) and the rules grant less."""

    code = "subsidy_below_expected"
    title = "Less than the expected subsidy would be granted; nothing was held"


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


class SettlementAccountMissing(Conflict):
    code = "settlement_account_missing"
    title = "The provider has no settlement account on file"


class RecordsDiffer(Conflict):
    """A record money would be paid from differs from what it is made of (a row changed outside
    the service): nothing is paid until the office has found out why."""

    code = "records_differ"
    title = "The record differs from what it is made of"


class NothingToSettle(Conflict):
    code = "nothing_to_settle"
    title = "The period has no unsettled captures or refunds"


# -- claims ------------------------------------------------------------------------------------


class WrongPayoutMode(Conflict):
    code = "wrong_payout_mode"
    title = "The programme does not pay out this way"


class InvoiceAlreadyClaimed(Conflict):
    code = "invoice_already_claimed"
    title = "This invoice is already part of a claim (an invoice is claimed once, whoever files it)"


class DocumentAlreadyClaimed(Conflict):
    code = "document_already_claimed"
    title = "A document with this SHA-256 digest is already part of a claim"


class FiledElsewhere(Conflict):
    """A claim whose invoice, a document or contract another enterprise holds: which one is not
    said (each named apart, a known taken one let an enterprise learn the others' for free)."""

    code = "already_filed_elsewhere"
    title = "The invoice, a document or the contract of this claim is already part of another enterprise's claim or application"


class CheckpointSignatureInvalid(DomainError):
    """A checkpoint handed in for verification was not signed by this service's key."""

    code = "checkpoint_signature_invalid"
    title = "The checkpoint's signature does not verify with this service's public key"
    status = 422


# -- protection and readiness ------------------------------------------------------------------


class RateLimited(DomainError):
    """The API key spent its request budget for the current window (docs/observability.md)."""

    code = "rate_limited"
    title = "Too many requests for this API key; retry after the time in Retry-After"
    status = 429
    #: Never stored as an Idempotency-Key's answer: the same request succeeds once the window resets.
    transient = True


class DatabaseUnavailable(DomainError):
    """The connection to the database was lost, refused or not to be had in time. Retryable:
    the client waits Retry-After and sends the same request with the same Idempotency-Key."""

    code = "database_unavailable"
    title = "The database cannot be reached for a moment; retry after the time in Retry-After"
    status = 503
    transient = True
    retry_after_header = True

    def __init__(self, detail: Message | None = None) -> None:
        super().__init__(detail, retry_after=1)


class AuthenticationThrottled(DomainError):
    """Too many requests with unknown, revoked or expired API keys from one client address (http/throttle.py)."""

    code = "authentication_throttled"
    title = "Too many failed authentications from this address; retry after the time in Retry-After"
    status = 429
    transient = True
    retry_after_header = True


class NotReady(DomainError):
    """The process is up but cannot serve yet (database unreachable or not migrated to head)."""

    code = "not_ready"
    title = "The service is not ready to serve requests"
    status = 503
    transient = True


class SecretUnavailable(DomainError):
    """A stored answer that carries a secret is sealed under a key this process is not
    configured with (docs/security.md, "Sealed secrets"): the operator must configure it again
    (as VOUCHER_SECRETS_KEY or among VOUCHER_SECRETS_RETIRED_KEYS); the same request with the
    same Idempotency-Key then gets its answer."""

    code = "secret_unavailable"
    title = "The service cannot open the secret this answer holds; its operator must restore the key"
    status = 503
    transient = True


class SecretAnswerWithdrawn(DomainError):
    """The request first made with this Idempotency-Key succeeded, and its answer carried a
    secret (a webhook endpoint's signing secret), which is kept for a day only: the request is
    not run again (no second endpoint, no second rotation), and the answer is not sent again.
    `location` names what it made or changed."""

    code = "idempotent_answer_withdrawn"
    title = "The request with this Idempotency-Key was done; its answer held a secret, which is no longer kept"
    status = 409


# -- webhooks ------------------------------------------------------------------------------------


class TooManyWebhookEndpoints(Conflict):
    """An owner may keep a limited number of endpoints (VOUCHER_MAX_WEBHOOK_ENDPOINTS_PER_OWNER)."""

    code = "too_many_webhook_endpoints"
    title = "Too many webhook endpoints"


class WebhookUrlRefused(DomainError):
    """The URL cannot be a webhook destination: not https, carries credentials, or resolves to
    a loopback, private, link-local or otherwise non-public address the operator has not allowed."""

    code = "webhook_url_refused"
    title = "The URL cannot receive webhooks"
    status = 422


class WebhookEndpointDisabled(Conflict):
    code = "webhook_endpoint_disabled"
    title = "The webhook endpoint is disabled; enable it first"


# -- sandbox ------------------------------------------------------------------------------------


class SandboxDisabled(NotFound):
    """The sandbox clock's endpoints outside sandbox mode (production, or VOUCHER_SANDBOX unset)."""

    code = "sandbox_disabled"
    title = "Sandbox mode is off: the service runs on real time and its clock cannot be moved"


class SandboxClockBackwards(Conflict):
    code = "sandbox_clock_backwards"
    title = "The sandbox clock only moves forward"
