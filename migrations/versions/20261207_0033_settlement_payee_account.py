"""a settlement records the bank account its payment is approved to

A provider's settlement account was kept in the registry and read by nothing: a settlement was
approved and paid with no account on file, and an account changed between the provider's
confirmation and the payment left no trace on the paid settlement of where the money was to
go (an independent review of the registries, December 2026). An approval of a settlement that
pays the provider now copies the provider's account onto it (`payee_account`), and is refused
while the provider has none; once approved, the database refuses a change of it. Settlements approved before this revision keep null: not
recorded.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-07 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0033'
down_revision: str | None = '0032'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


MESSAGE = "the account a settlement's payment was approved to, and when, never change"


def upgrade() -> None:
    op.add_column('settlement', sa.Column('payee_account', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
                                            nullable=True))
    # Once approved, the account is what the office approved: a change behind the service would
    # have had the payment made, and recorded, to another account (a review of this revision).
    # The approval's time with it: cleared, it had lifted the guard for a second UPDATE.
    # record_guard_refuse() is migration 0020's.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE TRIGGER settlement_payee_fixed BEFORE UPDATE ON settlement FOR EACH ROW "
                   "WHEN (OLD.approved_at IS NOT NULL AND (NEW.payee_account IS DISTINCT FROM OLD.payee_account "
                   "OR NEW.approved_at IS DISTINCT FROM OLD.approved_at)) "
                   f"EXECUTE FUNCTION record_guard_refuse('{MESSAGE.replace(chr(39), chr(39) * 2)}')")
    else:
        op.execute("CREATE TRIGGER settlement_payee_fixed BEFORE UPDATE ON settlement "
                   "WHEN OLD.approved_at IS NOT NULL AND (NEW.payee_account IS NOT OLD.payee_account "
                   "OR NEW.approved_at IS NOT OLD.approved_at) "
                   f"BEGIN SELECT RAISE(ABORT, '{MESSAGE.replace(chr(39), chr(39) * 2)}'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS settlement_payee_fixed ON settlement")
    else:
        op.execute("DROP TRIGGER IF EXISTS settlement_payee_fixed")
    # Not a batch (a copy of the table): the triggers on settlement_item name the settlement
    # table, and SQLite refuses the copy's rename. SQLite drops a column (3.35 and later) when no
    # index, constraint or trigger names it, as here.
    op.execute("ALTER TABLE settlement DROP COLUMN payee_account")
