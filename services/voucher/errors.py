"""Domain errors: each failure the service can explain has a class with a stable `code`.

Pure module (no framework). `http/problems.py` renders any DomainError as RFC 9457
problem+json; routes list the classes they can raise so they appear in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "domain_error"
    title: ClassVar[str] = "The request was refused"
    #: Simplified Chinese title; every class needs one (tests/http/test_error_language.py).
    title_zh: ClassVar[str] = "请求被拒绝"
    status: ClassVar[int] = 409
    #: A transient refusal (lost race, lock timeout) is not stored as the idempotent answer:
    #: the same request may succeed when retried.
    transient: ClassVar[bool] = False
    #: The answer carries `Retry-After` with the seconds in `extra["retry_after"]`.
    retry_after_header: ClassVar[bool] = False

    def __init__(self, detail: str | None = None, *, detail_zh: str | None = None, **extra: Any) -> None:
        """`detail`: English, with the specifics. `detail_zh`: the same in Chinese; a raise site
        that gives none answers Chinese callers with `title_zh` (the English detail still travels
        as `detail_en`, see docs/errors.md)."""
        self.detail = detail or self.title
        self.detail_zh = detail_zh or self.title_zh
        self.extra = extra
        super().__init__(self.detail)

    def title_in(self, language: str) -> str:
        """The title in "zh" or "en"."""
        return self.title_zh if language == "zh" else self.title

    def detail_in(self, language: str) -> str:
        """The detail in "zh" or "en"."""
        return self.detail_zh if language == "zh" else self.detail


# -- 4xx: the request itself -------------------------------------------------------------


class ValidationFailed(DomainError):
    """Business-level field validation (the shape was fine, a value is not acceptable)."""

    code = "validation_failed"
    title = "The request has invalid fields"
    title_zh = "请求中有字段不符合要求"
    status = 422

    def __init__(self, errors: list[dict[str, Any]], detail: str | None = None, *, detail_zh: str | None = None) -> None:
        super().__init__(detail or f"{len(errors)} field(s) are invalid",
                         detail_zh=detail_zh or f"有 {len(errors)} 个字段不符合要求，详见 errors 列表（字段说明为英文）",
                         errors=errors)


class UnstorableValue(DomainError):
    """The database cannot hold a value (a NUL character, a number beyond its range)."""

    code = "unstorable_value"
    title = "A value cannot be stored (e.g. it contains a NUL character or is out of range)"
    title_zh = "数据无法保存（例如含有空字符或数值超出范围）"
    status = 422


class InvalidCursor(DomainError):
    code = "invalid_cursor"
    title = "The pagination cursor is not valid"
    title_zh = "分页游标无效"
    status = 422


class NotFound(DomainError):
    code = "not_found"
    title = "Resource not found"
    title_zh = "资源不存在"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    title = "The request conflicts with the current state"
    title_zh = "请求与当前状态冲突"
    status = 409


class AlreadyExists(Conflict):
    code = "already_exists"
    title = "A resource with the same identity already exists"
    title_zh = "已存在相同标识的资源"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "That state change is not allowed from the current state"
    title_zh = "当前状态下不允许进行该状态变更"


class TermsFrozen(Conflict):
    code = "terms_frozen"
    title = "These fields can no longer be changed"
    title_zh = "这些字段已不可修改"


class ConcurrentUpdate(Conflict):
    code = "concurrent_update"
    title = "Another request changed or locked the same data; retry"
    title_zh = "其他请求正在修改或锁定同一数据，请重试"
    transient = True


class PreconditionFailed(DomainError):
    code = "precondition_failed"
    title = "The resource changed since you read it"
    title_zh = "资源在您读取后已被修改"
    status = 412


class PayloadTooLarge(DomainError):
    """The body is over the limit for its route (docs/security.md); refused before it is read."""

    code = "payload_too_large"
    title = "The request body is too large"
    title_zh = "请求体过大"
    status = 413
    #: Never stored as an Idempotency-Key's answer: no key is claimed before the body is read.
    transient = True


class RequestTimeout(DomainError):
    """The body stopped arriving (http/gate.py)."""

    code = "request_timeout"
    title = "The request body did not arrive in time"
    title_zh = "请求体未能及时到达"
    status = 408
    transient = True


class PreconditionRequired(DomainError):
    code = "precondition_required"
    title = "This update needs an If-Match header"
    title_zh = "此更新须提供 If-Match 请求头"
    status = 428


# -- authentication and authorisation -------------------------------------------------------


class Unauthenticated(DomainError):
    code = "unauthenticated"
    title = "Authentication required"
    title_zh = "需要身份认证"
    status = 401


class InvalidApiKey(Unauthenticated):
    code = "invalid_api_key"
    title = "The API key is not valid"
    title_zh = "API 密钥无效"


class ApiKeyExpired(Unauthenticated):
    code = "api_key_expired"
    title = "The API key has expired"
    title_zh = "API 密钥已过期"


class ApiKeyRevoked(Unauthenticated):
    code = "api_key_revoked"
    title = "The API key has been revoked"
    title_zh = "API 密钥已被吊销"


class Forbidden(DomainError):
    code = "forbidden"
    title = "This key may not do that"
    title_zh = "该密钥无权执行此操作"
    status = 403


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    title = "The API key lacks the scope this operation needs"
    title_zh = "API 密钥缺少此操作所需的权限范围"


class ScopeEscalation(Forbidden):
    """A key asked to create or rotate a key with scopes it does not hold itself."""

    code = "scope_escalation"
    title = "A key may only create or rotate keys within its own scopes"
    title_zh = "密钥只能创建或轮换不超出其自身权限范围的密钥"


# -- idempotency -----------------------------------------------------------------------------


class TooManyLiveKeys(Conflict):
    """A principal may hold a limited number of live keys (VOUCHER_MAX_LIVE_KEYS_PER_PRINCIPAL)."""

    code = "too_many_live_keys"
    title = "This principal holds as many live API keys as it may"
    title_zh = "该主体持有的有效 API 密钥已达上限"


class KeyBeingReplaced(Conflict):
    """A rotated key in its grace period: only its successor may be rotated."""

    code = "key_being_replaced"
    title = "This API key was already rotated; rotate its successor"
    title_zh = "该 API 密钥已轮换，请轮换其新密钥"


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with a different request"
    title_zh = "幂等键已被其他请求使用"
    status = 422


class IdempotencyRequestInProgress(DomainError):
    code = "idempotency_request_in_progress"
    title = "A request with this Idempotency-Key is still being processed"
    title_zh = "使用该幂等键的请求仍在处理中"
    status = 409
    transient = True


class InvalidIdempotencyKey(DomainError):
    code = "invalid_idempotency_key"
    title = "The Idempotency-Key header is not acceptable"
    title_zh = "幂等键（Idempotency-Key）格式不符合要求"
    status = 422


class IdempotencyKeyRequired(DomainError):
    code = "idempotency_key_required"
    title = "This operation moves value and needs an Idempotency-Key header"
    title_zh = "此操作涉及资金变动，须提供幂等键（Idempotency-Key）请求头"
    status = 428


class ProviderKindMismatch(Conflict):
    code = "provider_kind_mismatch"
    title = "The provider does not offer this programme's kind of service"
    title_zh = "服务商不提供本项目类型的服务"


class EnrolmentClosed(Conflict):
    code = "enrolment_closed"
    title = "The programme no longer accepts provider enrolments"
    title_zh = "本项目已停止接受服务商入驻"


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
    title_zh = "项目未开放"


class ExceedsMaxPerVoucher(Conflict):
    code = "exceeds_max_per_voucher"
    title = "The amount exceeds the programme's maximum per voucher"
    title_zh = "金额超过本项目单券上限"


class EnterpriseCapExceeded(Conflict):
    code = "enterprise_cap_exceeded"
    title = "The enterprise would exceed its cap for the period"
    title_zh = "企业本期补贴将超过上限"


class BudgetExhausted(Conflict):
    code = "budget_exhausted"
    title = "The programme's remaining budget is too small"
    title_zh = "项目剩余预算不足"


class InvalidVoucherCode(DomainError):
    code = "invalid_voucher_code"
    title = "That is not a valid voucher code (check character mismatch)"
    title_zh = "券码无效（校验位不符）"
    status = 422


class VoucherNotYetValid(Conflict):
    code = "voucher_not_yet_valid"
    title = "The voucher is not valid yet"
    title_zh = "券尚未生效"


class VoucherExpired(Conflict):
    code = "voucher_expired"
    title = "The voucher has expired"
    title_zh = "券已过期"


class VoucherSuspended(Conflict):
    code = "voucher_suspended"
    title = "The voucher is suspended"
    title_zh = "券已暂停使用"


class VoucherRevoked(Conflict):
    code = "voucher_revoked"
    title = "The voucher has been revoked"
    title_zh = "券已被撤销"


class VoucherExhausted(Conflict):
    code = "voucher_exhausted"
    title = "The voucher has no available balance"
    title_zh = "券已无可用余额"


# -- redemption --------------------------------------------------------------------------------


class ProviderNotApproved(Forbidden):
    code = "provider_not_approved"
    title = "The provider is not approved"
    title_zh = "服务商未通过审核"


class ProviderNotEnrolled(Forbidden):
    code = "provider_not_enrolled"
    title = "The provider is not enrolled in the voucher's programme"
    title_zh = "服务商未入驻该券所属项目"


class RelatedParty(Conflict):
    code = "related_party"
    title = "The provider is a related party of the enterprise"
    title_zh = "服务商与企业存在关联关系"


class VoucherKindMismatch(Conflict):
    code = "voucher_kind_mismatch"
    title = "The voucher's kind does not cover these line items"
    title_zh = "券的类型不适用于这些订单明细"


class CategoryOutOfScope(Conflict):
    code = "category_out_of_scope"
    title = "A line item's category is outside the programme's scope"
    title_zh = "订单明细的类别不在本项目补贴范围内"


class OrderAlreadySubsidised(Conflict):
    code = "order_already_subsidised"
    title = "The order is already subsidised up to the stacking ceiling"
    title_zh = "该订单的补贴已达叠加上限"


class OrderReferenceConflict(Conflict):
    code = "order_reference_conflict"
    title = "The order reference is already used for another enterprise or amount"
    title_zh = "该订单号已用于其他企业或其他金额"


class EnterpriseCapReached(Conflict):
    code = "enterprise_cap_reached"
    title = "The enterprise has reached its subsidy cap for the period"
    title_zh = "企业本期补贴已达上限"


class NothingToSubsidise(Conflict):
    code = "nothing_to_subsidise"
    title = "The line items earn no subsidy"
    title_zh = "订单明细无可补贴金额"


class HoldNotActive(Conflict):
    code = "hold_not_active"
    title = "The hold is no longer active"
    title_zh = "该笔冻结已失效"


class HoldExpired(Conflict):
    code = "hold_expired"
    title = "The hold's time to live has passed; it is void"
    title_zh = "冻结已超过有效期，已作废"


class SubsidyBelowExpected(Conflict):
    """The provider quoted an exact subsidy (`expected_subsidy`) and the rules grant less."""

    code = "subsidy_below_expected"
    title = "Less than the expected subsidy would be granted; nothing was held"
    title_zh = "可给予的补贴低于期望补贴，未做任何冻结"


class CaptureExceedsHold(Conflict):
    code = "capture_exceeds_hold"
    title = "A capture cannot exceed the held amount"
    title_zh = "核销金额不能超过冻结金额"


class RefundExceedsCaptured(Conflict):
    code = "refund_exceeds_captured"
    title = "A refund cannot exceed what was captured and not yet refunded"
    title_zh = "退款金额不能超过已核销且尚未退款的金额"


class RedemptionNotCaptured(Conflict):
    code = "redemption_not_captured"
    title = "Only a captured redemption can be refunded"
    title_zh = "只有已核销的用券记录才能退款"


# -- applications ------------------------------------------------------------------------------


class ApplicationWindowClosed(Conflict):
    code = "application_window_closed"
    title = "The programme is not taking applications now"
    title_zh = "本项目当前不在申报期内"


class ApplicationAlreadyOpen(Conflict):
    code = "application_already_open"
    title = "The enterprise already has an open application to this programme"
    title_zh = "该企业在本项目已有进行中的申请"


class ContractAlreadyUsed(Conflict):
    code = "contract_already_used"
    title = "This contract is already part of another application or claim"
    title_zh = "该合同已用于其他申请或补贴申领"


class EligibilityRulesInvalid(Conflict):
    code = "eligibility_rules_invalid"
    title = "The programme's stored eligibility rules cannot be evaluated; an operator must fix them"
    title_zh = "本项目保存的资格规则无法执行，须由项目管理方修正"


# -- settlement --------------------------------------------------------------------------------


class SettlementExists(Conflict):
    code = "settlement_exists"
    title = "A settlement of this provider, programme and period already exists"
    title_zh = "该服务商在本项目本期间的结算单已存在"


class NothingToSettle(Conflict):
    code = "nothing_to_settle"
    title = "The period has no unsettled captures or refunds"
    title_zh = "本期间没有待结算的核销或退款"


class NegativeSettlement(Conflict):
    code = "negative_settlement"
    title = "Refunds exceed captures in the period; they carry over to a later settlement"
    title_zh = "本期间退款超过核销金额，差额结转至以后的结算"


# -- claims ------------------------------------------------------------------------------------


class WrongPayoutMode(Conflict):
    code = "wrong_payout_mode"
    title = "The programme does not pay out this way"
    title_zh = "本项目不采用此兑付方式"


class InvoiceAlreadyClaimed(Conflict):
    code = "invoice_already_claimed"
    title = "This invoice is already part of a claim (an invoice is claimed once, whoever files it)"
    title_zh = "这张发票已用于补贴申领（同一张发票只能申领一次，无论由谁提交）"


class DocumentAlreadyClaimed(Conflict):
    code = "document_already_claimed"
    title = "A document with this SHA-256 digest is already part of a claim"
    title_zh = "相同 SHA-256 摘要的材料已用于补贴申领"


class CheckpointSignatureInvalid(DomainError):
    """A checkpoint handed in for verification was not signed by this service's key."""

    code = "checkpoint_signature_invalid"
    title = "The checkpoint's signature does not verify with this service's public key"
    title_zh = "检查点签名无法用本服务的公钥验证"
    status = 422


# -- protection and readiness ------------------------------------------------------------------


class RateLimited(DomainError):
    """The API key spent its request budget for the current window (docs/observability.md)."""

    code = "rate_limited"
    title = "Too many requests for this API key; retry after the time in Retry-After"
    title_zh = "请求过于频繁"
    status = 429
    #: Never stored as an Idempotency-Key's answer: the same request succeeds once the window resets.
    transient = True


class DatabaseUnavailable(DomainError):
    """The connection to the database was lost, refused or not to be had in time. Retryable:
    the client waits Retry-After and sends the same request with the same Idempotency-Key."""

    code = "database_unavailable"
    title = "The database cannot be reached for a moment; retry after the time in Retry-After"
    title_zh = "数据库暂时无法访问，请按 Retry-After 指示的时间后重试"
    status = 503
    transient = True
    retry_after_header = True

    def __init__(self, detail: str | None = None, *, detail_zh: str | None = None) -> None:
        super().__init__(detail, detail_zh=detail_zh, retry_after=1)


class AuthenticationThrottled(DomainError):
    """Too many requests with unknown API keys from one client address (http/throttle.py)."""

    code = "authentication_throttled"
    title = "Too many failed authentications from this address; retry after the time in Retry-After"
    title_zh = "该地址认证失败次数过多，请按 Retry-After 指示的时间后重试"
    status = 429
    transient = True
    retry_after_header = True


class NotReady(DomainError):
    """The process is up but cannot serve yet (database unreachable or not migrated to head)."""

    code = "not_ready"
    title = "The service is not ready to serve requests"
    title_zh = "服务尚未就绪"
    status = 503
    transient = True


# -- webhooks ------------------------------------------------------------------------------------


class WebhookUrlRefused(DomainError):
    """The URL cannot be a webhook destination: not https, carries credentials, or resolves to
    a loopback, private, link-local or otherwise non-public address the operator has not allowed."""

    code = "webhook_url_refused"
    title = "The URL cannot receive webhooks"
    title_zh = "该地址不能接收 Webhook 推送"
    status = 422


class WebhookEndpointDisabled(Conflict):
    code = "webhook_endpoint_disabled"
    title = "The webhook endpoint is disabled; enable it first"
    title_zh = "该 Webhook 端点已停用，请先启用"


# -- sandbox ------------------------------------------------------------------------------------


class SandboxDisabled(NotFound):
    """The sandbox clock's endpoints outside sandbox mode (production, or VOUCHER_SANDBOX unset)."""

    code = "sandbox_disabled"
    title = "Sandbox mode is off: the service runs on real time and its clock cannot be moved"
    title_zh = "未启用沙箱模式：服务使用真实时间，时钟不能调整"


class SandboxClockBackwards(Conflict):
    code = "sandbox_clock_backwards"
    title = "The sandbox clock only moves forward"
    title_zh = "沙箱时钟只能向前拨"
