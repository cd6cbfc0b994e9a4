"""a refund is never deleted

A refund row is what the settlement job reads to take a refund of a settled capture back from
its provider (0017, 0022): with the database's ordinary role a refund not yet settled could be
deleted, and the next settlement then paid the provider for value refunded to the voucher. Its
journal and its redemption's refunded amount stayed, so the reconciliation reported it
(`refunded_amount` against the refund rows), but only after the fact. Migration 0022 refused
changing what a refund is; the database now refuses deleting one too, on both engines (and a
TRUNCATE on PostgreSQL; SQLite's `INSERT OR REPLACE` meeting its id is refused since 0022). Its
time stays writable, as 0022 left it.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-06 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0029'
down_revision: str | None = '0028'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE = "a refund is never deleted"

PG_GUARDS = f"""
CREATE TRIGGER redemption_refund_never_deleted BEFORE DELETE ON redemption_refund FOR EACH ROW
    EXECUTE FUNCTION record_guard_refuse('{MESSAGE}');
CREATE TRIGGER redemption_refund_no_truncate BEFORE TRUNCATE ON redemption_refund FOR EACH STATEMENT
    EXECUTE FUNCTION record_guard_refuse('{MESSAGE}');
"""
PG_NAMES = ("redemption_refund_never_deleted", "redemption_refund_no_truncate")
SQLITE_NAME = "redemption_refund_never_deleted"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GUARDS)  # record_guard_refuse() is migration 0020's
    else:
        op.execute(f"CREATE TRIGGER {SQLITE_NAME} BEFORE DELETE ON redemption_refund "
                   f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in PG_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON redemption_refund")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {SQLITE_NAME}")
