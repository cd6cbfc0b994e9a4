"""the sandbox clock: one row holding the offset from real time that sandbox mode adds

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sandbox_clock",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("offset_us", sa.BigInteger(), nullable=False),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_sandbox_clock_one_row")),
        sa.CheckConstraint("offset_us >= 0", name=op.f("ck_sandbox_clock_offset_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_clock")),
    )
    op.execute("INSERT INTO sandbox_clock (id, offset_us) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("sandbox_clock")
