"""Every table of the service. Alembic imports this one module to compare against migrations.

Conventions: singular snake_case names, time columns end in `_at` (aware UTC), amounts are
BIGINT in the unit's minor unit, rates are integer basis points, ids are time-ordered UUIDs.
Status columns carry CHECK constraints so the database refuses values the code never writes.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    LargeBinary,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from services.voucher.apikeys.rules import Role
from services.voucher.applications.rules import OPEN as OPEN_APPLICATION
from services.voucher.applications.rules import ApplicationStatus
from services.voucher.claims.rules import ClaimStatus
from services.voucher.db import JSONNullable, JSONType, UTCDateTime
from services.voucher.ids import uuid7
from services.voucher.ledger.rules import AccountKind
from services.voucher.money import Unit
from services.voucher.programmes.rules import (
    CapPeriod,
    ExpiryDisposition,
    PayoutMode,
    ProgrammeKind,
    ProgrammeStatus,
)
from services.voucher.providers.rules import ProviderStatus
from services.voucher.redemption.rules import Payee, RedemptionStatus
from services.voucher.settlement.rules import ItemKind, SettlementStatus
from services.voucher.vouchers.rules import VoucherStatus


def _one_of(column: str, values: Any) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Enterprise(SQLModel, table=True):
    __tablename__ = "enterprise"
    __table_args__ = (
        CheckConstraint("headcount IS NULL OR headcount >= 0", name="headcount_non_negative"),
        CheckConstraint(
            "annual_revenue IS NULL OR annual_revenue >= 0", name="revenue_non_negative"
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    uscc: str = Field(max_length=18, unique=True)
    name: str = Field(max_length=200)
    region_code: str = Field(max_length=6, index=True)
    headcount: int | None = Field(default=None)
    #: Annual revenue in fen.
    annual_revenue: int | None = Field(default=None, sa_type=BigInteger)
    founded_on: date | None = None
    industry_code: str | None = Field(default=None, max_length=16)
    certifications: list[str] = Field(default_factory=list, sa_type=JSONType)
    blacklist_records: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    related_parties: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    version: int = Field(default=1)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class Provider(SQLModel, table=True):
    __tablename__ = "provider"
    __table_args__ = (CheckConstraint(_one_of("status", ProviderStatus), name="status_known"),)

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    uscc: str = Field(max_length=18, unique=True)
    name: str = Field(max_length=200)
    kinds: list[str] = Field(default_factory=list, sa_type=JSONType)
    status: str = Field(default=ProviderStatus.PENDING.value, max_length=16, index=True)
    settlement_account: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    webhook_url: str | None = Field(default=None, max_length=2000)
    related_parties: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    status_reason: str | None = Field(default=None, max_length=500)
    version: int = Field(default=1)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class Programme(SQLModel, table=True):
    __tablename__ = "programme"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ProgrammeKind), name="kind_known"),
        CheckConstraint(_one_of("unit", Unit), name="unit_known"),
        CheckConstraint(_one_of("mode", PayoutMode), name="mode_known"),
        CheckConstraint(_one_of("status", ProgrammeStatus), name="status_known"),
        CheckConstraint(_one_of("cap_period", CapPeriod), name="cap_period_known"),
        CheckConstraint(_one_of("expiry_disposition", ExpiryDisposition), name="expiry_known"),
        CheckConstraint("budget_total > 0", name="budget_positive"),
        CheckConstraint("enterprise_cap > 0", name="cap_positive"),
        CheckConstraint("max_per_voucher > 0", name="max_per_voucher_positive"),
        CheckConstraint(
            "stacking_ceiling_bps BETWEEN 0 AND 10000", name="stacking_ceiling_range"
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=4000)
    kind: str = Field(max_length=16)
    unit: str = Field(max_length=16)
    mode: str = Field(max_length=32)
    status: str = Field(default=ProgrammeStatus.DRAFT.value, max_length=16, index=True)
    budget_total: int = Field(sa_type=BigInteger)
    #: {category: rate in basis points}
    rate_table: dict[str, int] = Field(sa_type=JSONType)
    #: [{"spend_up_to": amount, "rate_bps": int, "categories": [..] | null}]
    tiers: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    stacking_ceiling_bps: int
    enterprise_cap: int = Field(sa_type=BigInteger)
    cap_period: str = Field(max_length=32)
    cap_timezone: str = Field(max_length=64)
    max_per_voucher: int = Field(sa_type=BigInteger)
    application_opens_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    application_closes_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    voucher_validity_days: int
    publicity_days: int
    hold_ttl_seconds: int
    expiry_disposition: str = Field(max_length=16)
    eligibility_rules: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    eligibility_version: int = Field(default=1)
    #: Applications must name at least one contract (number, provider, amount, dates).
    application_requires_contract: bool = Field(default=False)
    version: int = Field(default=1)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ProgrammeEnrolment(SQLModel, table=True):
    """A provider taking part in a programme. Withdrawal keeps the row (history)."""

    __tablename__ = "programme_enrolment"
    __table_args__ = (UniqueConstraint("programme_id", "provider_id"),)

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    programme_id: uuid.UUID = Field(foreign_key="programme.id")
    provider_id: uuid.UUID = Field(foreign_key="provider.id", index=True)
    enrolled_at: datetime = Field(sa_type=UTCDateTime)
    withdrawn_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Principal(SQLModel, table=True):
    """Who a key acts for: an operator or auditor (a person or office), or one enterprise or
    provider. Idempotency keys and tenancy are scoped to the principal, not to the key, so a
    rotated key keeps its principal's history."""

    __tablename__ = "principal"
    __table_args__ = (
        CheckConstraint(_one_of("role", Role), name="role_known"),
        CheckConstraint(
            "(role = 'enterprise') = (enterprise_id IS NOT NULL)", name="enterprise_binding"
        ),
        CheckConstraint("(role = 'provider') = (provider_id IS NOT NULL)", name="provider_binding"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    role: str = Field(max_length=16)
    name: str = Field(max_length=200)
    enterprise_id: uuid.UUID | None = Field(default=None, foreign_key="enterprise.id", unique=True)
    provider_id: uuid.UUID | None = Field(default=None, foreign_key="provider.id", unique=True)
    created_at: datetime = Field(sa_type=UTCDateTime)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    principal_id: uuid.UUID = Field(foreign_key="principal.id", index=True)
    name: str = Field(max_length=200)
    #: Public, non-secret part of the key, shown in lists so people can tell keys apart.
    prefix: str = Field(max_length=32, unique=True)
    #: SHA-256 of the whole key; the key itself is never stored.
    secret_hash: str = Field(max_length=64, unique=True)
    scopes: list[str] = Field(sa_type=JSONType)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_reason: str | None = Field(default=None, max_length=500)
    rotated_from_id: uuid.UUID | None = Field(default=None, foreign_key="api_key.id")
    created_by_key_id: uuid.UUID | None = Field(default=None)


class IdempotencyRecord(SQLModel, table=True):
    """The first answer to a request made with an Idempotency-Key.

    Inserted with the answer in the SAME transaction as the handler's changes, so "value moved"
    and "answer stored" commit together or not at all (protocol: idempotency/service.py).
    """

    __tablename__ = "idempotency_record"
    __table_args__ = (
        UniqueConstraint("principal_id", "key"),
        CheckConstraint("state IN ('in_progress', 'completed')", name="state_known"),
        Index("ix_idempotency_record_expires_at", "expires_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    principal_id: uuid.UUID = Field(foreign_key="principal.id")
    key: str = Field(max_length=255)
    method: str = Field(max_length=8)
    path: str = Field(max_length=1000)
    request_hash: str = Field(max_length=64)
    state: str = Field(max_length=16)
    response_status: int | None = None
    response_body: bytes | None = Field(default=None, sa_type=LargeBinary)
    response_content_type: str | None = Field(default=None, max_length=100)
    #: Headers that belong to the answer (Location, ETag), replayed with it.
    response_headers: dict[str, str] | None = Field(default=None, sa_type=JSONType)
    created_at: datetime = Field(sa_type=UTCDateTime)
    locked_at: datetime = Field(sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


# -- ledger ------------------------------------------------------------------------------------


class LedgerAccount(SQLModel, table=True):
    """One account of the double-entry ledger, with its materialised balance.

    `balance` equals the sum of the account's postings (reconciliation proves it) and is
    updated in the same transaction as every posting, so a balance read costs one row however
    long the history. Accounts that would be hot rows keep `is_materialised` false and have
    their balance computed from postings when asked.
    """

    __tablename__ = "ledger_account"
    __table_args__ = (
        CheckConstraint(_one_of("kind", AccountKind), name="kind_known"),
        CheckConstraint("NOT is_non_negative OR balance >= 0", name="balance_non_negative"),
        CheckConstraint("is_materialised OR balance = 0", name="unmaterialised_balance_zero"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    code: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=32)
    unit: str = Field(max_length=16)
    programme_id: uuid.UUID | None = Field(default=None, foreign_key="programme.id", index=True)
    voucher_id: uuid.UUID | None = Field(default=None, index=True)
    provider_id: uuid.UUID | None = Field(default=None, foreign_key="provider.id", index=True)
    enterprise_id: uuid.UUID | None = Field(default=None, foreign_key="enterprise.id", index=True)
    is_non_negative: bool
    is_materialised: bool
    balance: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = Field(sa_type=UTCDateTime)


class LedgerTransaction(SQLModel, table=True):
    """A journal transaction: one movement of value, as a set of postings summing to zero per
    unit. Append-only: the database refuses UPDATE and DELETE (migration 0002's triggers)."""

    __tablename__ = "ledger_transaction"

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    #: No index but the key: journals are reached through their postings (migration 0009).
    kind: str = Field(max_length=40)
    programme_id: uuid.UUID | None = Field(default=None)
    voucher_id: uuid.UUID | None = Field(default=None)
    redemption_id: uuid.UUID | None = Field(default=None)
    memo: str = Field(default="", max_length=500)
    request_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(sa_type=UTCDateTime)


class LedgerPosting(SQLModel, table=True):
    __tablename__ = "ledger_posting"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_non_zero"),
        Index("ix_ledger_posting_account_id_id", "account_id", "id"),
    )

    #: BIGINT on PostgreSQL; INTEGER on SQLite, where only that is an auto-numbered rowid.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer(), "sqlite")
    )
    transaction_id: uuid.UUID = Field(foreign_key="ledger_transaction.id", index=True)
    account_id: uuid.UUID = Field(foreign_key="ledger_account.id")
    amount: int = Field(sa_type=BigInteger)
    unit: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=UTCDateTime)


# -- vouchers and redemption -------------------------------------------------------------------


class Voucher(SQLModel, table=True):
    __tablename__ = "voucher"
    __table_args__ = (
        CheckConstraint(_one_of("status", VoucherStatus), name="status_known"),
        CheckConstraint("face_value > 0", name="face_value_positive"),
        CheckConstraint("expires_at > valid_from", name="validity_window"),
        # An approved application yields exactly one voucher, however often its issuance runs.
        Index("uq_voucher_application_id", "application_id", unique=True),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    programme_id: uuid.UUID = Field(foreign_key="programme.id", index=True)
    enterprise_id: uuid.UUID = Field(foreign_key="enterprise.id", index=True)
    kind: str = Field(max_length=16)
    unit: str = Field(max_length=16)
    face_value: int = Field(sa_type=BigInteger)
    status: str = Field(max_length=16)
    valid_from: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    period_key: str = Field(max_length=16)
    available_account_id: uuid.UUID = Field(foreign_key="ledger_account.id")
    held_account_id: uuid.UUID = Field(foreign_key="ledger_account.id")
    used_account_id: uuid.UUID = Field(foreign_key="ledger_account.id")
    application_id: uuid.UUID | None = Field(default=None)
    issue_reference: str | None = Field(default=None, max_length=128)
    status_reason: str | None = Field(default=None, max_length=500)
    issued_at: datetime = Field(sa_type=UTCDateTime)
    status_changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: When the expiry was posted to the ledger (the status may read expired before that).
    expiry_posted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = Field(default=1)


class EnterprisePeriodUsage(SQLModel, table=True):
    """What one enterprise has received from one programme in one cap period: face value
    granted, subsidy held or captured (net of voids and refunds), and the order spend that
    subsidy was on (for tiers). Locked whenever any of them moves, so the cap holds under
    concurrency."""

    __tablename__ = "enterprise_period_usage"
    __table_args__ = (
        UniqueConstraint("programme_id", "enterprise_id", "period_key"),
        CheckConstraint(
            "granted >= 0 AND committed >= 0 AND subsidised >= 0 AND subsidised_spend >= 0", name="non_negative"
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    programme_id: uuid.UUID = Field(foreign_key="programme.id")
    enterprise_id: uuid.UUID = Field(foreign_key="enterprise.id", index=True)
    period_key: str = Field(max_length=16)
    granted: int = Field(default=0, sa_type=BigInteger)
    #: Approved by an application and not yet issued (publicity running): counts against the cap.
    committed: int = Field(default=0, sa_type=BigInteger)
    subsidised: int = Field(default=0, sa_type=BigInteger)
    subsidised_spend: int = Field(default=0, sa_type=BigInteger)
    #: The latest instant a value operation that moved these totals was decided at (migration 0014).
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OrderSubsidy(SQLModel, table=True):
    """One provider order and the subsidy on it across all vouchers, for the one-subsidy-per-
    order rule and the stacking ceiling."""

    __tablename__ = "order_subsidy"
    __table_args__ = (
        UniqueConstraint("provider_id", "order_reference"),
        CheckConstraint("order_amount > 0 AND subsidised >= 0", name="amounts"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    provider_id: uuid.UUID = Field(foreign_key="provider.id")
    order_reference: str = Field(max_length=128)
    enterprise_id: uuid.UUID = Field(foreign_key="enterprise.id")  # no query reads orders by enterprise (migration 0013)
    unit: str = Field(max_length=16)
    order_amount: int = Field(sa_type=BigInteger)
    subsidised: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = Field(sa_type=UTCDateTime)
    #: The latest instant a value operation that moved its total was decided at: a capture locked
    #: after it judges a hold's expiry no earlier (migration 0014; docs/decisions.md, "Value engine").
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


_HELD = text("status = 'held'")
_SEALED = text("seq IS NOT NULL")
#: The predicate of the outbox's dedupe index, which `ON CONFLICT (dedupe_key)` must name too.
DEDUPED = text("dedupe_key IS NOT NULL")


class Redemption(SQLModel, table=True):
    __tablename__ = "redemption"
    __table_args__ = (
        CheckConstraint(_one_of("status", RedemptionStatus), name="status_known"),
        CheckConstraint(_one_of("payee", Payee), name="payee_known"),
        CheckConstraint(
            "held_amount > 0 AND captured_amount >= 0 AND refunded_amount >= 0 "
            "AND captured_amount <= held_amount AND refunded_amount <= captured_amount",
            name="amounts",
        ),
        # One live redemption per voucher and order is enforced under the order's row lock, not
        # by a unique constraint: a voided hold must not block the order forever.
        Index("ix_redemption_provider_id_order_reference", "provider_id", "order_reference"),
        Index("ix_redemption_provider_id_id", "provider_id", "id"),
        # Live holds only (status 'held'): the checks for holds past their TTL read these,
        # never the history (migration 0009; docs/decisions.md, "Indexes on the value path").
        Index("ix_redemption_live_hold_expires_at", "hold_expires_at", postgresql_where=_HELD, sqlite_where=_HELD),
        Index("ix_redemption_live_voucher_id", "voucher_id", postgresql_where=_HELD, sqlite_where=_HELD),
        Index("ix_redemption_live_enterprise_id_period_key", "enterprise_id", "period_key",
              postgresql_where=_HELD, sqlite_where=_HELD),
        # A settlement's captures: one provider, one programme, a period of capture times.
        Index("ix_redemption_provider_id_programme_id_captured_at", "provider_id", "programme_id", "captured_at",
              postgresql_where=text("captured_at IS NOT NULL"), sqlite_where=text("captured_at IS NOT NULL")),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    voucher_id: uuid.UUID = Field(foreign_key="voucher.id", index=True)
    programme_id: uuid.UUID = Field(foreign_key="programme.id")
    enterprise_id: uuid.UUID = Field(foreign_key="enterprise.id", index=True)
    provider_id: uuid.UUID = Field(foreign_key="provider.id")
    order_reference: str = Field(max_length=128)
    order_amount: int = Field(sa_type=BigInteger)
    unit: str = Field(max_length=16)
    line_items: list[dict[str, Any]] = Field(sa_type=JSONType)
    computation: dict[str, Any] = Field(sa_type=JSONType)
    status: str = Field(max_length=16)
    held_amount: int = Field(sa_type=BigInteger)
    captured_amount: int = Field(default=0, sa_type=BigInteger)
    refunded_amount: int = Field(default=0, sa_type=BigInteger)
    period_key: str = Field(max_length=16)
    hold_expires_at: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    captured_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    voided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    void_reason: str | None = Field(default=None, max_length=32)
    #: Provider redemptions are settled with the provider; claims are paid to the enterprise.
    payee: str = Field(default=Payee.PROVIDER.value, max_length=16)


class RedemptionRefund(SQLModel, table=True):
    __tablename__ = "redemption_refund"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("destination IN ('voucher', 'pool')", name="destination_known"),
        # A settlement's refunds to take back: one provider, one programme, made before or since
        # a day (0022; the database refuses a pair other than the redemption's).
        Index("ix_redemption_refund_provider_id_programme_id_created_at", "provider_id", "programme_id",
              "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    redemption_id: uuid.UUID = Field(foreign_key="redemption.id", index=True)
    #: The redemption's own provider and programme, copied so that the pair's refunds are read by
    #: their own index (0022), not among every pair's.
    provider_id: uuid.UUID
    programme_id: uuid.UUID
    amount: int = Field(sa_type=BigInteger)
    reason: str = Field(max_length=500)
    destination: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=UTCDateTime)


# -- eligibility and applications ----------------------------------------------------------------


class EligibilityRuleVersion(SQLModel, table=True):
    """Every rule set a programme has published, kept so a verdict can always be explained by
    the exact rules it was judged by."""

    __tablename__ = "eligibility_rule_version"
    __table_args__ = (UniqueConstraint("programme_id", "version"),)

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    programme_id: uuid.UUID = Field(foreign_key="programme.id")
    version: int
    rules: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    published_at: datetime = Field(sa_type=UTCDateTime)


_OPEN_STATUSES = ", ".join(repr(s.value) for s in sorted(OPEN_APPLICATION))


class Application(SQLModel, table=True):
    __tablename__ = "application"
    __table_args__ = (
        CheckConstraint(_one_of("status", ApplicationStatus), name="status_known"),
        CheckConstraint("requested_amount > 0", name="requested_positive"),
        CheckConstraint(
            "approved_amount IS NULL OR (approved_amount > 0 AND approved_amount <= requested_amount)",
            name="approved_within_request",
        ),
        # One open application per enterprise and programme, enforced by the database too.
        Index(
            "uq_application_one_open",
            "programme_id",
            "enterprise_id",
            unique=True,
            sqlite_where=text(f"status IN ({_OPEN_STATUSES})"),
            postgresql_where=text(f"status IN ({_OPEN_STATUSES})"),
        ),
        Index("ix_application_programme_id_status", "programme_id", "status"),
        Index("ix_application_status_publicity_ends_at", "status", "publicity_ends_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    programme_id: uuid.UUID = Field(foreign_key="programme.id")
    enterprise_id: uuid.UUID = Field(foreign_key="enterprise.id", index=True)
    status: str = Field(max_length=16)
    unit: str = Field(max_length=16)
    requested_amount: int = Field(sa_type=BigInteger)
    purpose: str = Field(max_length=2000)
    #: [{"number", "provider_id", "amount", "signed_on", "starts_on", "ends_on"}]
    contracts: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    eligibility_version: int
    is_eligible: bool
    #: The whole evaluation, every rule with its verdict and its reasons in zh-CN and English.
    eligibility_result: dict[str, Any] = Field(sa_type=JSONType)
    approved_amount: int | None = Field(default=None, sa_type=BigInteger)
    #: The cap period the approval's commitment counts in.
    period_key: str | None = Field(default=None, max_length=16)
    status_reason: str | None = Field(default=None, max_length=2000)
    submitted_at: datetime = Field(sa_type=UTCDateTime)
    approved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    publicity_ends_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    issued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    voucher_id: uuid.UUID | None = Field(default=None, foreign_key="voucher.id")
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    version: int = Field(default=1)


class ApplicationTransition(SQLModel, table=True):
    """Each step an application took, who took it and why (objections keep their statement)."""

    __tablename__ = "application_transition"

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    application_id: uuid.UUID = Field(foreign_key="application.id", index=True)
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=2000)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    principal_id: uuid.UUID
    created_at: datetime = Field(sa_type=UTCDateTime)


class ContractReference(SQLModel, table=True):
    """One subsidy per contract: a live reference blocks the number for every other
    application or claim; it is released when its application ends without a subsidy."""

    __tablename__ = "contract_reference"
    __table_args__ = (
        Index(
            "uq_contract_reference_live",
            "provider_id",
            "number",
            unique=True,
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    provider_id: uuid.UUID = Field(foreign_key="provider.id")
    #: The number's comparison key (applications/rules.py `reference_key`): normalised — no
    #: white space, upper case — with O read as 0, I and L as 1 (and 〇, 一, 丨 as 0, -, 1).
    number: str = Field(max_length=64)
    enterprise_id: uuid.UUID = Field(foreign_key="enterprise.id")
    application_id: uuid.UUID | None = Field(default=None, foreign_key="application.id", index=True)
    claim_id: uuid.UUID | None = Field(default=None, foreign_key="claim.id", index=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# -- settlement ----------------------------------------------------------------------------------


class Settlement(SQLModel, table=True):
    """What the programme owes one provider for one period: the sum of its lines."""

    __tablename__ = "settlement"
    __table_args__ = (
        CheckConstraint(_one_of("status", SettlementStatus), name="status_known"),
        CheckConstraint("period_end >= period_start", name="period_order"),
        # A total below zero is a repayment: refunds of paid captures exceed the period's captures (0017).
        CheckConstraint("line_count > 0", name="totals"),
        # One live settlement per provider, programme and period.
        Index(
            "uq_settlement_live_period",
            "provider_id", "programme_id", "period_start", "period_end",
            unique=True,
            sqlite_where=text("status <> 'cancelled'"),
            postgresql_where=text("status <> 'cancelled'"),
        ),
        Index("ix_settlement_provider_id_id", "provider_id", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    provider_id: uuid.UUID = Field(foreign_key="provider.id")
    programme_id: uuid.UUID = Field(foreign_key="programme.id", index=True)
    unit: str = Field(max_length=16)
    period_start: date
    period_end: date
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(max_length=16)
    captured_total: int = Field(sa_type=BigInteger)
    refunded_total: int = Field(sa_type=BigInteger)
    total: int = Field(sa_type=BigInteger)
    line_count: int
    status_reason: str | None = Field(default=None, max_length=2000)
    payment_reference: str | None = Field(default=None, max_length=128)
    paid_on: date | None = None
    #: The provider's settlement account as it stood when the payment was approved (0033):
    #: where the money goes, whatever the registry says later. Null for a settlement that pays
    #: nothing, or approved before it was recorded.
    payee_account: dict[str, Any] | None = Field(default=None, sa_type=JSONNullable)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    submitted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    approved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    paid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = Field(default=1)


class SettlementItem(SQLModel, table=True):
    """One capture (+) or refund (−) in a settlement. A capture or refund is in at most one
    settlement that is not cancelled: partial unique indexes hold that, not only the code."""

    __tablename__ = "settlement_item"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ItemKind), name="kind_known"),
        CheckConstraint(
            "(kind = 'capture' AND refund_id IS NULL AND amount > 0) "
            "OR (kind = 'refund' AND refund_id IS NOT NULL AND amount < 0)",
            name="kind_shape",
        ),
        Index("uq_settlement_item_live_capture", "redemption_id", unique=True,
              sqlite_where=text("kind = 'capture' AND released_at IS NULL"),
              postgresql_where=text("kind = 'capture' AND released_at IS NULL")),
        Index("uq_settlement_item_live_refund", "refund_id", unique=True,
              sqlite_where=text("released_at IS NULL"),
              postgresql_where=text("released_at IS NULL")),
        # Whether any settlement, live or cancelled, ever held a refund (the reconciliation's
        # late-refund check; migration 0030): the partial index above has only live items.
        Index("ix_settlement_item_refund_id", "refund_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    settlement_id: uuid.UUID = Field(foreign_key="settlement.id", index=True)
    kind: str = Field(max_length=16)
    redemption_id: uuid.UUID = Field(foreign_key="redemption.id")
    refund_id: uuid.UUID | None = Field(default=None, foreign_key="redemption_refund.id")
    order_reference: str = Field(max_length=128)
    amount: int = Field(sa_type=BigInteger)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    #: Set when the settlement is cancelled: the capture or refund can be settled again.
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class UsageReconciliation(SQLModel, table=True):
    """A provider's own usage records for a period compared with our books; kept for auditors."""

    __tablename__ = "usage_reconciliation"
    __table_args__ = (Index("ix_usage_reconciliation_provider_id_id", "provider_id", "id"),)

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    provider_id: uuid.UUID = Field(foreign_key="provider.id")
    programme_id: uuid.UUID = Field(foreign_key="programme.id", index=True)
    period_start: date
    period_end: date
    source_format: str = Field(max_length=8)
    #: SHA-256 of the records as uploaded (the CSV text, or the canonical JSON of the list).
    source_sha256: str = Field(max_length=64)
    record_count: int
    summary: dict[str, Any] = Field(sa_type=JSONType)
    report: dict[str, Any] = Field(sa_type=JSONType)
    principal_id: uuid.UUID
    created_at: datetime = Field(sa_type=UTCDateTime)


# -- enterprise claims -----------------------------------------------------------------------------


class Claim(SQLModel, table=True):
    """An SME's claim against its voucher after paying a provider in full."""

    __tablename__ = "claim"
    __table_args__ = (
        CheckConstraint(_one_of("status", ClaimStatus), name="status_known"),
        CheckConstraint("amount_paid > 0 AND subsidy > 0", name="amounts"),
        # An invoice (its national identity) is never claimed twice while a claim on it stands.
        Index("uq_claim_live_invoice_key", "invoice_key", unique=True,
              sqlite_where=text("status <> 'rejected'"), postgresql_where=text("status <> 'rejected'")),
        Index("ix_claim_enterprise_id_id", "enterprise_id", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    voucher_id: uuid.UUID = Field(foreign_key="voucher.id", index=True)
    programme_id: uuid.UUID = Field(foreign_key="programme.id", index=True)
    enterprise_id: uuid.UUID = Field(foreign_key="enterprise.id")
    provider_id: uuid.UUID = Field(foreign_key="provider.id")
    redemption_id: uuid.UUID = Field(foreign_key="redemption.id", unique=True)
    contract_number: str = Field(max_length=64)
    invoice_number: str = Field(max_length=64)
    #: An older VAT invoice's code (10 or 12 digits); none for a fully digital invoice (数电票).
    invoice_code: str | None = Field(default=None, max_length=64)
    #: The invoice's national identity (claims/rules.py `invoice_identity`): `digital:<20 digits>` or
    #: `vat:<code>:<number>`, from the numbers' keys; claims filed before 0012: `provider:<id>:<key>`.
    invoice_key: str = Field(max_length=160)
    invoice_date: date
    amount_paid: int = Field(sa_type=BigInteger)
    unit: str = Field(max_length=16)
    line_items: list[dict[str, Any]] = Field(sa_type=JSONType)
    documents: list[dict[str, Any]] = Field(sa_type=JSONType)
    subsidy: int = Field(sa_type=BigInteger)
    approved_amount: int | None = Field(default=None, sa_type=BigInteger)
    status: str = Field(max_length=16)
    status_reason: str | None = Field(default=None, max_length=2000)
    payment_reference: str | None = Field(default=None, max_length=128)
    paid_on: date | None = None
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    version: int = Field(default=1)


class ClaimDocument(SQLModel, table=True):
    """A document's digest, unique across every standing claim: one proof, one claim."""

    __tablename__ = "claim_document"
    __table_args__ = (
        Index("uq_claim_document_live_sha256", "sha256", unique=True,
              sqlite_where=text("released_at IS NULL"), postgresql_where=text("released_at IS NULL")),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    claim_id: uuid.UUID = Field(foreign_key="claim.id", index=True)
    sha256: str = Field(max_length=64)
    file_name: str = Field(max_length=255)
    media_type: str = Field(max_length=100)
    size: int = Field(sa_type=BigInteger)
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# -- audit -------------------------------------------------------------------------------------


class AuditEvent(SQLModel, table=True):
    """One state change, written in the same transaction as the change itself.

    Insert-only, then sealed once: a sealing step after commit gives each event its place in
    the hash chain (`seq`, `chain_hash`); the database refuses any other UPDATE and every
    DELETE (migration 0007's triggers). See docs/decisions.md, "Audit chain".
    """

    __tablename__ = "audit_event"
    __table_args__ = (
        CheckConstraint("seq IS NULL OR seq > 0", name="seq_positive"),
        Index("ix_audit_event_resource", "resource_type", "resource_id"),
        Index("ix_audit_event_unsealed", "id", postgresql_where=text("seq IS NULL"),
              sqlite_where=text("seq IS NULL")),
        # Entries only where set: an event gets its seq when sealed; only ledger.posted names a journal.
        Index("uq_audit_event_seq", "seq", unique=True, postgresql_where=_SEALED, sqlite_where=_SEALED),
        Index("uq_audit_event_journal_id", "journal_id", unique=True,
              postgresql_where=text("journal_id IS NOT NULL"), sqlite_where=text("journal_id IS NOT NULL")),
        Index("ix_audit_event_voucher_id", "voucher_id",
              postgresql_where=text("voucher_id IS NOT NULL"), sqlite_where=text("voucher_id IS NOT NULL")),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    actor_principal_id: uuid.UUID | None = Field(default=None)
    actor_role: str = Field(max_length=16)
    actor_key_id: uuid.UUID | None = Field(default=None)
    action: str = Field(max_length=64)
    resource_type: str = Field(max_length=32)
    resource_id: uuid.UUID
    programme_id: uuid.UUID | None = Field(default=None)
    enterprise_id: uuid.UUID | None = Field(default=None)
    provider_id: uuid.UUID | None = Field(default=None)
    voucher_id: uuid.UUID | None = Field(default=None)
    before: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    request_id: str | None = Field(default=None, max_length=128)
    idempotency_key: str | None = Field(default=None, max_length=255)
    rule_version: int | None = Field(default=None)
    #: The ledger journal transaction this event accounts for (`ledger.posted` events only).
    journal_id: uuid.UUID | None = Field(default=None)
    seq: int | None = Field(default=None, sa_type=BigInteger)
    chain_hash: str | None = Field(default=None, max_length=64)


class AuditCheckpoint(SQLModel, table=True):
    """A signed statement of the chain head: "the first `seq` events hash to `chain_hash`".

    Auditors keep these outside the system; a verification from one proves nothing before it
    was rewritten, whoever holds the database."""

    __tablename__ = "audit_checkpoint"

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    seq: int = Field(sa_type=BigInteger, index=True)
    chain_hash: str = Field(max_length=64)
    signed_at: datetime = Field(sa_type=UTCDateTime)
    key_id: str = Field(max_length=64)
    signature: str = Field(max_length=128)


class AuditVerification(SQLModel, table=True):
    """One recheck of the chain and of the ledger against it, kept with its result."""

    __tablename__ = "audit_verification"

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    requested_by: uuid.UUID | None = Field(default=None)
    from_seq: int = Field(default=0, sa_type=BigInteger)
    to_seq: int = Field(default=0, sa_type=BigInteger)
    is_intact: bool
    events_checked: int = Field(default=0, sa_type=BigInteger)
    journals_checked: int = Field(default=0, sa_type=BigInteger)
    accounts_checked: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})
    problems: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    created_at: datetime = Field(sa_type=UTCDateTime)


class ExportManifest(SQLModel, table=True):
    """What one streamed export contained: written when its last byte was produced.

    The export's response names this row (`Export-Id`); an auditor fetches it to check the
    file's SHA-256 and row count, and the audit chain head the export is consistent with."""

    __tablename__ = "export_manifest"

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    dataset: str = Field(max_length=32)
    format: str = Field(max_length=8)
    filters: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    requested_by: uuid.UUID | None = Field(default=None)
    chain_seq: int = Field(default=0, sa_type=BigInteger)
    chain_hash: str = Field(max_length=64)
    #: Events committed in the export's snapshot but not yet sealed (migration 0023; null on
    #: manifests made before it): the rows they describe are not proved under the head.
    unsealed_events: int | None = Field(default=None, sa_type=BigInteger)
    #: Holds past their TTL and vouchers past their validity whose release the snapshot did not
    #: hold yet (migration 0032; null before it): the file shows them held, the API released.
    lapsed_unreleased: int | None = Field(default=None, sa_type=BigInteger)
    row_count: int | None = Field(default=None, sa_type=BigInteger)
    sha256: str | None = Field(default=None, max_length=64)
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# -- events and webhooks -----------------------------------------------------------------------


class OutboxEvent(SQLModel, table=True):
    """Something a subscriber is told about, written in the transaction of the change it
    announces (a rolled-back change leaves no event).

    Published after commit, one publisher at a time: `seq` is given in commit order and is
    gap-free, so `GET /v1/events` can page on it without missing a late commit, and each
    matching webhook endpoint gets one delivery row. `dedupe_key` makes announcements that
    must happen once (a voucher's 80 % mark, its expiry warning) once, whatever races."""

    __tablename__ = "outbox_event"
    __table_args__ = (
        CheckConstraint("seq IS NULL OR seq > 0", name="seq_positive"),
        Index("ix_outbox_event_unpublished", "id", postgresql_where=text("seq IS NULL"),
              sqlite_where=text("seq IS NULL")),
        # Subscribers page on seq: entries once published (migration 0009).
        Index("ix_outbox_event_enterprise_seq", "enterprise_id", "seq",
              postgresql_where=text("seq IS NOT NULL AND enterprise_id IS NOT NULL"),
              sqlite_where=text("seq IS NOT NULL AND enterprise_id IS NOT NULL")),
        Index("ix_outbox_event_provider_seq", "provider_id", "seq",
              postgresql_where=text("seq IS NOT NULL AND provider_id IS NOT NULL"),
              sqlite_where=text("seq IS NOT NULL AND provider_id IS NOT NULL")),
        Index("ix_outbox_event_resource", "resource_id", "type"),
        Index("uq_outbox_event_seq", "seq", unique=True, postgresql_where=_SEALED, sqlite_where=_SEALED),
        Index("uq_outbox_event_dedupe_key", "dedupe_key", unique=True,
              postgresql_where=DEDUPED, sqlite_where=DEDUPED),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    type: str = Field(max_length=64)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    programme_id: uuid.UUID | None = Field(default=None)
    enterprise_id: uuid.UUID | None = Field(default=None)
    provider_id: uuid.UUID | None = Field(default=None)
    resource_type: str = Field(max_length=32)
    resource_id: uuid.UUID
    data: dict[str, Any] = Field(sa_type=JSONType)
    dedupe_key: str | None = Field(default=None, max_length=160)
    seq: int | None = Field(default=None, sa_type=BigInteger)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookEndpoint(SQLModel, table=True):
    """A URL an enterprise or a provider registered for itself, with the event types it wants.

    Signing needs the secret itself (an HMAC key cannot be hashed), so it is kept sealed under
    VOUCHER_SECRETS_KEY (services/voucher/secretbox.py; a row from before sealing holds it in
    plain text until `voucher secrets reseal`); it is shown only when created or rotated. After a rotation the previous secret
    also signs until `previous_secret_expires_at`, and any older one rotated within its own
    overlap until its end (`older_secrets`), so receivers can switch without a gap."""

    __tablename__ = "webhook_endpoint"
    __table_args__ = (
        CheckConstraint("(enterprise_id IS NULL) <> (provider_id IS NULL)", name="one_owner"),
        CheckConstraint("status IN ('enabled', 'disabled', 'deleted')", name="status_known"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    enterprise_id: uuid.UUID | None = Field(default=None, foreign_key="enterprise.id", index=True)
    provider_id: uuid.UUID | None = Field(default=None, foreign_key="provider.id", index=True)
    url: str = Field(max_length=2048)
    event_types: list[str] = Field(sa_type=JSONType)
    description: str | None = Field(default=None, max_length=500)
    status: str = Field(max_length=16)
    secret: str = Field(max_length=128)
    previous_secret: str | None = Field(default=None, max_length=128)
    previous_secret_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: The secrets before the previous one still in their overlap (rotated more than once within
    #: it), newest first, as [secret, ends at (ISO 8601)]: they sign too until they end (0018).
    older_secrets: list[list[str]] | None = Field(default=None, sa_type=JSONType)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    version: int = Field(default=1)


class WebhookDelivery(SQLModel, table=True):
    """One event owed to one endpoint, retried with backoff until it succeeds or gives up."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_delivery_endpoint_event"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'cancelled')", name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        Index("ix_webhook_delivery_due", "next_attempt_at", postgresql_where=text("status = 'pending'"),
              sqlite_where=text("status = 'pending'")),
        Index("ix_webhook_delivery_endpoint_id_id", "endpoint_id", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    endpoint_id: uuid.UUID = Field(foreign_key="webhook_endpoint.id")
    event_id: uuid.UUID = Field(foreign_key="outbox_event.id", index=True)
    status: str = Field(max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status_code: int | None = Field(default=None)
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    #: Which claim holds the delivery while it is being sent: only that claim may settle it.
    lease_id: uuid.UUID | None = Field(default=None)


class WebhookAttempt(SQLModel, table=True):
    """One HTTP attempt of a delivery: the endpoint's delivery log."""

    __tablename__ = "webhook_attempt"
    __table_args__ = (Index("ix_webhook_attempt_delivery_id_number", "delivery_id", "number", unique=True),)

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    delivery_id: uuid.UUID = Field(foreign_key="webhook_delivery.id")
    number: int
    attempted_at: datetime = Field(sa_type=UTCDateTime)
    status_code: int | None = Field(default=None)
    duration_ms: int
    error: str | None = Field(default=None, max_length=500)


# -- sandbox ------------------------------------------------------------------------------------


class SandboxClock(SQLModel, table=True):
    """The sandbox's clock (docs/sandbox.md): one row, the offset from real time in
    microseconds. It only grows (the clock never goes back); unused outside sandbox mode."""

    __tablename__ = "sandbox_clock"
    __table_args__ = (
        CheckConstraint("id = 1", name="one_row"),
        CheckConstraint("offset_us >= 0", name="offset_not_negative"),
    )

    id: int = Field(default=1, primary_key=True, sa_type=Integer, sa_column_kwargs={"autoincrement": False})
    offset_us: int = Field(default=0, sa_type=BigInteger)
    moved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ProductionMark(SQLModel, table=True):
    """One row once a production process has started on the database (services/voucher/
    deployment.py): outside production, the API, the worker, the jobs, the demo and the sandbox
    refuse it."""

    __tablename__ = "production_mark"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: int = Field(default=1, primary_key=True, sa_type=Integer, sa_column_kwargs={"autoincrement": False})
    marked_at: datetime = Field(sa_type=UTCDateTime)


# -- console ------------------------------------------------------------------------------------


class ConsoleSessionEnd(SQLModel, table=True):
    """A console session signed out before its time (docs/decisions.md, "Console"): the
    SHA-256 of the session id its cookie seals, and when the session would have ended anyway.
    The cookie is the whole session, so a copy taken before sign-out would otherwise work on
    until then; every console page looks its session up here first. Rows past `expires_at` are
    purged by the `purge-idempotency` job (in real time, as sessions end)."""

    __tablename__ = "console_session_end"
    __table_args__ = (Index("ix_console_session_end_expires_at", "expires_at"),)

    session_hash: str = Field(max_length=64, primary_key=True)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    ended_at: datetime = Field(sa_type=UTCDateTime)
