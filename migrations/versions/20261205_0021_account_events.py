"""every ledger account is recorded in the audit chain, as it was opened

An independent review (December 2026) gave a provider's accounts to another provider with the
accounts' identity trigger turned off by the table's owner; neither verification nor
reconciliation noticed, since a journal's event names its accounts by id only. The service now
records a `ledger.account_opened` event for every account it opens (its code, kind, unit and
owners), and verification matches every account against its event. This migration records one
for each account already in the ledger (marked `backfilled`), as it stands now, and adds the
kept verifications' count of accounts checked. A downgrade drops the count; the events stay,
as every audit event does.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 00:00:00.000000
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What an account's event records (audit.rules.ACCOUNT_FIELDS when this was written).
ACCOUNT_FIELDS = ("id", "code", "kind", "unit", "programme_id", "voucher_id", "provider_id", "enterprise_id",
                  "is_non_negative", "is_materialised", "created_at")
BATCH = 5000

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ACCOUNT = sa.table(
    "ledger_account", sa.column("id", sa.Uuid()), sa.column("code", sa.String()), sa.column("kind", sa.String()),
    sa.column("unit", sa.String()), sa.column("programme_id", sa.Uuid()), sa.column("voucher_id", sa.Uuid()),
    sa.column("provider_id", sa.Uuid()), sa.column("enterprise_id", sa.Uuid()),
    sa.column("is_non_negative", sa.Boolean()), sa.column("is_materialised", sa.Boolean()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
EVENT = sa.table(
    "audit_event", sa.column("id", sa.Uuid()), sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("actor_role", sa.String()), sa.column("action", sa.String()), sa.column("resource_type", sa.String()),
    sa.column("resource_id", sa.Uuid()), sa.column("programme_id", sa.Uuid()), sa.column("enterprise_id", sa.Uuid()),
    sa.column("provider_id", sa.Uuid()), sa.column("voucher_id", sa.Uuid()), sa.column("after", _JSON),
)


def _uuid7() -> uuid.UUID:
    millis = time.time_ns() // 1_000_000
    value = (millis << 80) | (0x7 << 76) | (secrets.randbits(12) << 64) | (0b10 << 62) | secrets.randbits(62)
    return uuid.UUID(int=value)


def _plain(value: object) -> object:
    """A value as an audit event keeps it (audit.rules.plain): uuids as text, times as RFC 3339
    UTC with microseconds (SQLite hands back naive UTC)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def _backfill() -> None:
    """Page through the accounts by id; per page, ask which already have an event (by the
    resource index), so each page costs the same however many events the migration has
    written before it (an anti-join per page had planned, without statistics, to rescan them
    all: 19 minutes for 200,000 accounts in a review)."""
    bind = op.get_bind()
    now = datetime.now(UTC)
    after: uuid.UUID | None = None
    while True:
        stmt = sa.select(*(ACCOUNT.c[name] for name in ACCOUNT_FIELDS))
        if after is not None:
            stmt = stmt.where(ACCOUNT.c.id > after)
        accounts = bind.execute(stmt.order_by(ACCOUNT.c.id).limit(BATCH)).all()
        if not accounts:
            return
        recorded = set(bind.execute(sa.select(EVENT.c.resource_id).where(
            EVENT.c.resource_type == "ledger_account", EVENT.c.action == "ledger.account_opened",
            EVENT.c.resource_id.in_([account.id for account in accounts]))).scalars())
        rows = [{
            "id": _uuid7(), "occurred_at": now, "actor_role": "system", "action": "ledger.account_opened",
            "resource_type": "ledger_account", "resource_id": account.id, "programme_id": account.programme_id,
            "enterprise_id": account.enterprise_id, "provider_id": account.provider_id,
            "voucher_id": account.voucher_id,
            "after": {**{name: _plain(getattr(account, name)) for name in ACCOUNT_FIELDS}, "backfilled": True},
        } for account in accounts if account.id not in recorded]
        if rows:
            bind.execute(EVENT.insert(), rows)
        after = accounts[-1].id


def upgrade() -> None:
    op.add_column("audit_verification",
                  sa.Column("accounts_checked", sa.BigInteger(), nullable=False, server_default="0"))
    _backfill()


def downgrade() -> None:
    # Not a batch alteration: on SQLite that copies the table and drops its triggers.
    op.drop_column("audit_verification", "accounts_checked")
