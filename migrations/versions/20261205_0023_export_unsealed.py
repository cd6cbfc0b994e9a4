"""an export's manifest says how many of the events in its snapshot were not yet sealed

An export seals the audit chain, then takes its read snapshot, and its manifest names the chain
head it is consistent with. A change committed between the two is in the file, yet its events
are not under that head (an independent review of exports found a hold's journal in a
ledger-entries export whose `ledger.posted` event came after the manifest's `chain_seq`, with
nothing in the manifest to say so). The manifest now records `unsealed_events`: the events
committed in the snapshot but not yet sealed. Zero means every row of the file is proved under
the head; otherwise the rows those events describe are proved by a later checkpoint. Manifests
made before this revision keep null: not recorded.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 08:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('export_manifest', sa.Column('unsealed_events', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('export_manifest', schema=None) as batch_op:
        batch_op.drop_column('unsealed_events')
