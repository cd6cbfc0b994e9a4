"""the instant the last value operation on an order's or a period's totals was decided at

A hold on one voucher may count another voucher's hold past its TTL as void and take the room it
leaves on the order (the stacking ceiling) or in the period (the enterprise's cap). A capture of
that hold whose own instant is earlier — read before it waited on the same locks, or on a machine
whose clock is behind — must not then capture it. Each operation that moves these totals now
records its instant on the row (never moving it back), and a capture judges expiry no earlier than
what it finds there once it holds the locks. Existing rows start with none (nothing to compare).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('order_subsidy', 'enterprise_period_usage')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('decided_at')
