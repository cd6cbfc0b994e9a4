"""enterprise claims

Claims of `enterprise_claim` programmes and their document digests; a redemption now names
its payee (existing ones are the providers'), and contract references can belong to a claim.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 09:55:33.089621
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('claim',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('voucher_id', sa.Uuid(), nullable=False),
    sa.Column('programme_id', sa.Uuid(), nullable=False),
    sa.Column('enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('redemption_id', sa.Uuid(), nullable=False),
    sa.Column('contract_number', sa.String(length=64), nullable=False),
    sa.Column('invoice_number', sa.String(length=64), nullable=False),
    sa.Column('invoice_date', sa.Date(), nullable=False),
    sa.Column('amount_paid', sa.BigInteger(), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('line_items', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('documents', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('subsidy', sa.BigInteger(), nullable=False),
    sa.Column('approved_amount', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reason', sa.String(length=2000), nullable=True),
    sa.Column('payment_reference', sa.String(length=128), nullable=True),
    sa.Column('paid_on', sa.Date(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("status IN ('submitted', 'under_review', 'approved', 'paid', 'rejected')", name=op.f('ck_claim_status_known')),
    sa.CheckConstraint('amount_paid > 0 AND subsidy > 0', name=op.f('ck_claim_amounts')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_claim_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_claim_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_claim_provider_id_provider')),
    sa.ForeignKeyConstraint(['redemption_id'], ['redemption.id'], name=op.f('fk_claim_redemption_id_redemption')),
    sa.ForeignKeyConstraint(['voucher_id'], ['voucher.id'], name=op.f('fk_claim_voucher_id_voucher')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claim')),
    sa.UniqueConstraint('redemption_id', name=op.f('uq_claim_redemption_id'))
    )
    with op.batch_alter_table('claim', schema=None) as batch_op:
        batch_op.create_index('ix_claim_enterprise_id_id', ['enterprise_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_claim_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_claim_voucher_id'), ['voucher_id'], unique=False)
        batch_op.create_index('uq_claim_live_invoice', ['provider_id', 'invoice_number'], unique=True, sqlite_where=sa.text("status <> 'rejected'"), postgresql_where=sa.text("status <> 'rejected'"))

    op.create_table('claim_document',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('claim_id', sa.Uuid(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('media_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['claim_id'], ['claim.id'], name=op.f('fk_claim_document_claim_id_claim')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claim_document'))
    )
    with op.batch_alter_table('claim_document', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_claim_document_claim_id'), ['claim_id'], unique=False)
        batch_op.create_index('uq_claim_document_live_sha256', ['sha256'], unique=True, sqlite_where=sa.text('released_at IS NULL'), postgresql_where=sa.text('released_at IS NULL'))

    with op.batch_alter_table('contract_reference', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim_id', sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f('ix_contract_reference_claim_id'), ['claim_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_contract_reference_claim_id_claim'), 'claim', ['claim_id'], ['id'])

    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payee', sa.String(length=16), nullable=False, server_default='provider'))
        batch_op.create_check_constraint(op.f('ck_redemption_payee_known'), "payee IN ('provider', 'enterprise')")
    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.alter_column('payee', server_default=None)



def downgrade() -> None:
    # Without `payee`, captured claims would read as provider captures and be settled again.
    claims = op.get_bind().execute(sa.text("SELECT count(*) FROM claim")).scalar()
    if claims:
        raise RuntimeError(f"{claims} claim(s) exist; their value would be settled to providers below 0006")
    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_redemption_payee_known'), type_='check')
        batch_op.drop_column('payee')

    with op.batch_alter_table('contract_reference', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_contract_reference_claim_id_claim'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_contract_reference_claim_id'))
        batch_op.drop_column('claim_id')

    with op.batch_alter_table('claim_document', schema=None) as batch_op:
        batch_op.drop_index('uq_claim_document_live_sha256', sqlite_where=sa.text('released_at IS NULL'), postgresql_where=sa.text('released_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_claim_document_claim_id'))

    op.drop_table('claim_document')
    with op.batch_alter_table('claim', schema=None) as batch_op:
        batch_op.drop_index('uq_claim_live_invoice', sqlite_where=sa.text("status <> 'rejected'"), postgresql_where=sa.text("status <> 'rejected'"))
        batch_op.drop_index(batch_op.f('ix_claim_voucher_id'))
        batch_op.drop_index(batch_op.f('ix_claim_programme_id'))
        batch_op.drop_index('ix_claim_enterprise_id_id')

    op.drop_table('claim')
