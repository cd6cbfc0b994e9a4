"""settlement

Settlements and their items. A capture or refund is in at most one live (not cancelled)
settlement: partial unique indexes. A paid settlement is immutable and no settlement or item is
ever deleted: triggers on both engines refuse it, as for the ledger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 09:49:39.979381
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


PG_TRIGGERS = """
CREATE FUNCTION settlement_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'settlements are never deleted and paid ones never change: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE FUNCTION settlement_item_refuse_paid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT status FROM settlement WHERE id = OLD.settlement_id) = 'paid' THEN
        RAISE EXCEPTION 'the items of a paid settlement never change' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER settlement_paid_immutable BEFORE UPDATE ON settlement
    FOR EACH ROW WHEN (OLD.status = 'paid') EXECUTE FUNCTION settlement_refuse_change();
CREATE TRIGGER settlement_no_delete BEFORE DELETE ON settlement
    FOR EACH ROW EXECUTE FUNCTION settlement_refuse_change();
CREATE TRIGGER settlement_item_no_delete BEFORE DELETE ON settlement_item
    FOR EACH ROW EXECUTE FUNCTION settlement_refuse_change();
CREATE TRIGGER settlement_item_paid_immutable BEFORE UPDATE ON settlement_item
    FOR EACH ROW EXECUTE FUNCTION settlement_item_refuse_paid_change();
"""

SQLITE_TRIGGERS = (
    "CREATE TRIGGER settlement_paid_immutable BEFORE UPDATE ON settlement WHEN OLD.status = 'paid' "
    "BEGIN SELECT RAISE(ABORT, 'a paid settlement never changes'); END",
    "CREATE TRIGGER settlement_no_delete BEFORE DELETE ON settlement "
    "BEGIN SELECT RAISE(ABORT, 'settlements are never deleted'); END",
    "CREATE TRIGGER settlement_item_no_delete BEFORE DELETE ON settlement_item "
    "BEGIN SELECT RAISE(ABORT, 'settlement items are never deleted'); END",
    "CREATE TRIGGER settlement_item_paid_immutable BEFORE UPDATE ON settlement_item "
    "WHEN (SELECT status FROM settlement WHERE id = OLD.settlement_id) = 'paid' "
    "BEGIN SELECT RAISE(ABORT, 'the items of a paid settlement never change'); END",
)
TRIGGER_NAMES = ("settlement_paid_immutable", "settlement_no_delete", "settlement_item_no_delete",
                 "settlement_item_paid_immutable")


def upgrade() -> None:
    op.create_table('settlement',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('programme_id', sa.Uuid(), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('captured_total', sa.BigInteger(), nullable=False),
    sa.Column('refunded_total', sa.BigInteger(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('line_count', sa.Integer(), nullable=False),
    sa.Column('status_reason', sa.String(length=2000), nullable=True),
    sa.Column('payment_reference', sa.String(length=128), nullable=True),
    sa.Column('paid_on', sa.Date(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("status IN ('draft', 'submitted', 'disputed', 'approved', 'paid', 'cancelled')", name=op.f('ck_settlement_status_known')),
    sa.CheckConstraint('period_end >= period_start', name=op.f('ck_settlement_period_order')),
    sa.CheckConstraint('total >= 0 AND line_count > 0', name=op.f('ck_settlement_totals')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_settlement_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_settlement_provider_id_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement'))
    )
    with op.batch_alter_table('settlement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_settlement_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index('ix_settlement_provider_id_id', ['provider_id', 'id'], unique=False)
        batch_op.create_index('uq_settlement_live_period', ['provider_id', 'programme_id', 'period_start', 'period_end'], unique=True, sqlite_where=sa.text("status <> 'cancelled'"), postgresql_where=sa.text("status <> 'cancelled'"))

    op.create_table('settlement_item',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('settlement_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('redemption_id', sa.Uuid(), nullable=False),
    sa.Column('refund_id', sa.Uuid(), nullable=True),
    sa.Column('order_reference', sa.String(length=128), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(kind = 'capture' AND refund_id IS NULL AND amount > 0) OR (kind = 'refund' AND refund_id IS NOT NULL AND amount < 0)", name=op.f('ck_settlement_item_kind_shape')),
    sa.CheckConstraint("kind IN ('capture', 'refund')", name=op.f('ck_settlement_item_kind_known')),
    sa.ForeignKeyConstraint(['redemption_id'], ['redemption.id'], name=op.f('fk_settlement_item_redemption_id_redemption')),
    sa.ForeignKeyConstraint(['refund_id'], ['redemption_refund.id'], name=op.f('fk_settlement_item_refund_id_redemption_refund')),
    sa.ForeignKeyConstraint(['settlement_id'], ['settlement.id'], name=op.f('fk_settlement_item_settlement_id_settlement')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_item'))
    )
    with op.batch_alter_table('settlement_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_settlement_item_settlement_id'), ['settlement_id'], unique=False)
        batch_op.create_index('uq_settlement_item_live_capture', ['redemption_id'], unique=True, sqlite_where=sa.text("kind = 'capture' AND released_at IS NULL"), postgresql_where=sa.text("kind = 'capture' AND released_at IS NULL"))
        batch_op.create_index('uq_settlement_item_live_refund', ['refund_id'], unique=True, sqlite_where=sa.text('released_at IS NULL'), postgresql_where=sa.text('released_at IS NULL'))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS settlement_paid_immutable ON settlement")
        op.execute("DROP TRIGGER IF EXISTS settlement_no_delete ON settlement")
        op.execute("DROP TRIGGER IF EXISTS settlement_item_no_delete ON settlement_item")
        op.execute("DROP TRIGGER IF EXISTS settlement_item_paid_immutable ON settlement_item")
        op.execute("DROP FUNCTION IF EXISTS settlement_item_refuse_paid_change()")
        op.execute("DROP FUNCTION IF EXISTS settlement_refuse_change()")
    else:
        for name in TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table('settlement_item', schema=None) as batch_op:
        batch_op.drop_index('uq_settlement_item_live_refund', sqlite_where=sa.text('released_at IS NULL'), postgresql_where=sa.text('released_at IS NULL'))
        batch_op.drop_index('uq_settlement_item_live_capture', sqlite_where=sa.text("kind = 'capture' AND released_at IS NULL"), postgresql_where=sa.text("kind = 'capture' AND released_at IS NULL"))
        batch_op.drop_index(batch_op.f('ix_settlement_item_settlement_id'))

    op.drop_table('settlement_item')
    with op.batch_alter_table('settlement', schema=None) as batch_op:
        batch_op.drop_index('uq_settlement_live_period', sqlite_where=sa.text("status <> 'cancelled'"), postgresql_where=sa.text("status <> 'cancelled'"))
        batch_op.drop_index('ix_settlement_provider_id_id')
        batch_op.drop_index(batch_op.f('ix_settlement_programme_id'))

    op.drop_table('settlement')
