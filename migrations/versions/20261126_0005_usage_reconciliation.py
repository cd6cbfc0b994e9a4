"""usage reconciliation

Providers' own usage records compared with ours, kept as reports for auditors.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 09:53:34.091656
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('usage_reconciliation',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('programme_id', sa.Uuid(), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('source_format', sa.String(length=8), nullable=False),
    sa.Column('source_sha256', sa.String(length=64), nullable=False),
    sa.Column('record_count', sa.Integer(), nullable=False),
    sa.Column('summary', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('report', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('principal_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_usage_reconciliation_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_usage_reconciliation_provider_id_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_reconciliation'))
    )
    with op.batch_alter_table('usage_reconciliation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_usage_reconciliation_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index('ix_usage_reconciliation_provider_id_id', ['provider_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('usage_reconciliation', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_reconciliation_provider_id_id')
        batch_op.drop_index(batch_op.f('ix_usage_reconciliation_programme_id'))

    op.drop_table('usage_reconciliation')
