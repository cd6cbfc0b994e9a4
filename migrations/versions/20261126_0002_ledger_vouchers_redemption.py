"""ledger vouchers redemption

The ledger is append-only in the database itself: triggers refuse UPDATE and DELETE (and
TRUNCATE on PostgreSQL) of journal transactions and postings on both engines, and on
PostgreSQL a deferred constraint trigger refuses, at commit, any journal transaction whose
postings do not sum to zero per unit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 06:19:29.823102
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


APPEND_ONLY = ("ledger_transaction", "ledger_posting")

PG_FUNCTIONS = """
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    off record;
BEGIN
    SELECT unit, sum(amount) AS total INTO off
      FROM ledger_posting
     WHERE transaction_id = NEW.transaction_id
     GROUP BY unit
    HAVING sum(amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal transaction % does not balance: % %', NEW.transaction_id,
            off.total, off.unit USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
"""


def _create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTIONS)
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
            )
        op.execute(
            "CREATE CONSTRAINT TRIGGER ledger_posting_balanced AFTER INSERT ON ledger_posting "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced()"
        )
    else:
        for table in APPEND_ONLY:
            for event in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only: {event} on {table} refused'); END"
                )


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_posting_balanced ON ledger_posting")
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS ledger_check_balanced()")
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")
    else:
        for table in APPEND_ONLY:
            for event in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{event}")


def upgrade() -> None:
    op.create_table('ledger_transaction',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('programme_id', sa.Uuid(), nullable=True),
    sa.Column('voucher_id', sa.Uuid(), nullable=True),
    sa.Column('redemption_id', sa.Uuid(), nullable=True),
    sa.Column('memo', sa.String(length=500), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transaction'))
    )
    with op.batch_alter_table('ledger_transaction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_transaction_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transaction_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transaction_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transaction_redemption_id'), ['redemption_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transaction_voucher_id'), ['voucher_id'], unique=False)

    op.create_table('enterprise_period_usage',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('programme_id', sa.Uuid(), nullable=False),
    sa.Column('enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('period_key', sa.String(length=16), nullable=False),
    sa.Column('granted', sa.BigInteger(), nullable=False),
    sa.Column('subsidised', sa.BigInteger(), nullable=False),
    sa.Column('subsidised_spend', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('granted >= 0 AND subsidised >= 0 AND subsidised_spend >= 0', name=op.f('ck_enterprise_period_usage_non_negative')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_enterprise_period_usage_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_enterprise_period_usage_programme_id_programme')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enterprise_period_usage')),
    sa.UniqueConstraint('programme_id', 'enterprise_id', 'period_key', name=op.f('uq_enterprise_period_usage_programme_id_enterprise_id_period_key'))
    )
    with op.batch_alter_table('enterprise_period_usage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enterprise_period_usage_enterprise_id'), ['enterprise_id'], unique=False)

    op.create_table('ledger_account',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('programme_id', sa.Uuid(), nullable=True),
    sa.Column('voucher_id', sa.Uuid(), nullable=True),
    sa.Column('provider_id', sa.Uuid(), nullable=True),
    sa.Column('enterprise_id', sa.Uuid(), nullable=True),
    sa.Column('is_non_negative', sa.Boolean(), nullable=False),
    sa.Column('is_materialised', sa.Boolean(), nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('programme_funding', 'programme_available', 'programme_committed', 'programme_spent', 'programme_breakage', 'programme_clawback', 'voucher_available', 'voucher_held', 'voucher_used', 'provider_payable', 'provider_paid', 'enterprise_receivable', 'enterprise_payable', 'enterprise_paid')", name=op.f('ck_ledger_account_kind_known')),
    sa.CheckConstraint('NOT is_non_negative OR balance >= 0', name=op.f('ck_ledger_account_balance_non_negative')),
    sa.CheckConstraint('is_materialised OR balance = 0', name=op.f('ck_ledger_account_unmaterialised_balance_zero')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_ledger_account_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_ledger_account_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_ledger_account_provider_id_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_account')),
    sa.UniqueConstraint('code', name=op.f('uq_ledger_account_code'))
    )
    with op.batch_alter_table('ledger_account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_account_enterprise_id'), ['enterprise_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_account_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_account_provider_id'), ['provider_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_account_voucher_id'), ['voucher_id'], unique=False)

    op.create_table('order_subsidy',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('order_reference', sa.String(length=128), nullable=False),
    sa.Column('enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('order_amount', sa.BigInteger(), nullable=False),
    sa.Column('subsidised', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('order_amount > 0 AND subsidised >= 0', name=op.f('ck_order_subsidy_amounts')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_order_subsidy_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_order_subsidy_provider_id_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_subsidy')),
    sa.UniqueConstraint('provider_id', 'order_reference', name=op.f('uq_order_subsidy_provider_id_order_reference'))
    )
    with op.batch_alter_table('order_subsidy', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_order_subsidy_enterprise_id'), ['enterprise_id'], unique=False)

    op.create_table('ledger_posting',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('transaction_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount <> 0', name=op.f('ck_ledger_posting_amount_non_zero')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_account.id'], name=op.f('fk_ledger_posting_account_id_ledger_account')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transaction.id'], name=op.f('fk_ledger_posting_transaction_id_ledger_transaction')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_posting'))
    )
    with op.batch_alter_table('ledger_posting', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_posting_account_id_id', ['account_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_posting_transaction_id'), ['transaction_id'], unique=False)

    op.create_table('voucher',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('programme_id', sa.Uuid(), nullable=False),
    sa.Column('enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('face_value', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_key', sa.String(length=16), nullable=False),
    sa.Column('available_account_id', sa.Uuid(), nullable=False),
    sa.Column('held_account_id', sa.Uuid(), nullable=False),
    sa.Column('used_account_id', sa.Uuid(), nullable=False),
    sa.Column('application_id', sa.Uuid(), nullable=True),
    sa.Column('issue_reference', sa.String(length=128), nullable=True),
    sa.Column('status_reason', sa.String(length=500), nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expiry_posted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("status IN ('active', 'suspended', 'exhausted', 'expired', 'revoked')", name=op.f('ck_voucher_status_known')),
    sa.CheckConstraint('expires_at > valid_from', name=op.f('ck_voucher_validity_window')),
    sa.CheckConstraint('face_value > 0', name=op.f('ck_voucher_face_value_positive')),
    sa.ForeignKeyConstraint(['available_account_id'], ['ledger_account.id'], name=op.f('fk_voucher_available_account_id_ledger_account')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_voucher_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['held_account_id'], ['ledger_account.id'], name=op.f('fk_voucher_held_account_id_ledger_account')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_voucher_programme_id_programme')),
    sa.ForeignKeyConstraint(['used_account_id'], ['ledger_account.id'], name=op.f('fk_voucher_used_account_id_ledger_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voucher')),
    sa.UniqueConstraint('code', name=op.f('uq_voucher_code'))
    )
    with op.batch_alter_table('voucher', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voucher_enterprise_id'), ['enterprise_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_voucher_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_voucher_programme_id'), ['programme_id'], unique=False)

    op.create_table('redemption',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('voucher_id', sa.Uuid(), nullable=False),
    sa.Column('programme_id', sa.Uuid(), nullable=False),
    sa.Column('enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('order_reference', sa.String(length=128), nullable=False),
    sa.Column('order_amount', sa.BigInteger(), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('line_items', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('computation', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('held_amount', sa.BigInteger(), nullable=False),
    sa.Column('captured_amount', sa.BigInteger(), nullable=False),
    sa.Column('refunded_amount', sa.BigInteger(), nullable=False),
    sa.Column('period_key', sa.String(length=16), nullable=False),
    sa.Column('hold_expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('captured_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('voided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('void_reason', sa.String(length=32), nullable=True),
    sa.CheckConstraint("status IN ('held', 'captured', 'voided', 'refunded')", name=op.f('ck_redemption_status_known')),
    sa.CheckConstraint('held_amount > 0 AND captured_amount >= 0 AND refunded_amount >= 0 AND captured_amount <= held_amount AND refunded_amount <= captured_amount', name=op.f('ck_redemption_amounts')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_redemption_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_redemption_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_redemption_provider_id_provider')),
    sa.ForeignKeyConstraint(['voucher_id'], ['voucher.id'], name=op.f('fk_redemption_voucher_id_voucher')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redemption'))
    )
    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.create_index('ix_redemption_provider_id_order_reference', ['provider_id', 'order_reference'], unique=False)
        batch_op.create_index(batch_op.f('ix_redemption_enterprise_id'), ['enterprise_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_redemption_hold_expires_at'), ['hold_expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_redemption_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index('ix_redemption_provider_id_id', ['provider_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_redemption_voucher_id'), ['voucher_id'], unique=False)

    op.create_table('redemption_refund',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('redemption_id', sa.Uuid(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('destination', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("destination IN ('voucher', 'pool')", name=op.f('ck_redemption_refund_destination_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_redemption_refund_amount_positive')),
    sa.ForeignKeyConstraint(['redemption_id'], ['redemption.id'], name=op.f('fk_redemption_refund_redemption_id_redemption')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redemption_refund'))
    )
    with op.batch_alter_table('redemption_refund', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_redemption_refund_redemption_id'), ['redemption_id'], unique=False)


    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    with op.batch_alter_table('redemption_refund', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_redemption_refund_redemption_id'))

    op.drop_table('redemption_refund')
    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_redemption_voucher_id'))
        batch_op.drop_index('ix_redemption_provider_id_id')
        batch_op.drop_index('ix_redemption_provider_id_order_reference')
        batch_op.drop_index(batch_op.f('ix_redemption_programme_id'))
        batch_op.drop_index(batch_op.f('ix_redemption_hold_expires_at'))
        batch_op.drop_index(batch_op.f('ix_redemption_enterprise_id'))

    op.drop_table('redemption')
    with op.batch_alter_table('voucher', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voucher_programme_id'))
        batch_op.drop_index(batch_op.f('ix_voucher_expires_at'))
        batch_op.drop_index(batch_op.f('ix_voucher_enterprise_id'))

    op.drop_table('voucher')
    with op.batch_alter_table('ledger_posting', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_posting_transaction_id'))
        batch_op.drop_index('ix_ledger_posting_account_id_id')

    op.drop_table('ledger_posting')
    with op.batch_alter_table('order_subsidy', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_subsidy_enterprise_id'))

    op.drop_table('order_subsidy')
    with op.batch_alter_table('ledger_account', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_account_voucher_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_account_provider_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_account_programme_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_account_enterprise_id'))

    op.drop_table('ledger_account')
    with op.batch_alter_table('enterprise_period_usage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enterprise_period_usage_enterprise_id'))

    op.drop_table('enterprise_period_usage')
    with op.batch_alter_table('ledger_transaction', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_transaction_voucher_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_transaction_redemption_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_transaction_programme_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_transaction_kind'))
        batch_op.drop_index(batch_op.f('ix_ledger_transaction_created_at'))

    op.drop_table('ledger_transaction')
