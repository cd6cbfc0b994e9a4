"""a database production has served is marked as production's

Whether a process runs as production was its own environment's say alone: a cron line
`voucher worker --once --database-url <production>` without `VOUCHER_ENVIRONMENT` ran as
development, with the published development keys, and signed production's audit checkpoints with
a seed anyone holds (checkpoints are never changed, so for good); `voucher demo` loaded its
programmes and full-power keys into production's audit trail (an independent review of
operations, December 2026). The first production process to start on a database now marks it
(this one row), and the API, the worker, cron's jobs, the demo and the sandbox refuse a marked
database outside production.

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-07 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0035'
down_revision: str | None = '0034'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "production_mark",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_production_mark_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_production_mark")),
    )


def downgrade() -> None:
    op.drop_table("production_mark")
