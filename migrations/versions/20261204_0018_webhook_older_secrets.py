"""webhook endpoints keep every secret still in its overlap, not only the last one

A rotation keeps the secret it replaces signing for 24 hours, so a receiver switches without a
gap. Only one previous secret was kept: a second rotation within those 24 hours retired the
first secret at once, and a receiver still holding it refused every delivery (an independent
review, December 2026). `older_secrets` keeps the secrets before the previous one that are
still in their overlap, each with its own end, as a JSON list of [secret, ends at].

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 17:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoint") as batch:
        batch.add_column(sa.Column("older_secrets", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoint") as batch:
        batch.drop_column("older_secrets")
