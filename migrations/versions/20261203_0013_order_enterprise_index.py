"""drop the order counter's enterprise index, which no query reads

`order_subsidy` is read and locked by its key (provider, order reference) and by its id; nothing
looks an order up by enterprise, and enterprises are never deleted (so no foreign-key check
reads it either). Every new order a hold or a redeem opened wrote an entry into it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('order_subsidy', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_subsidy_enterprise_id'))


def downgrade() -> None:
    with op.batch_alter_table('order_subsidy', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_order_subsidy_enterprise_id'), ['enterprise_id'], unique=False)
