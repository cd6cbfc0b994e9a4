"""an export's manifest says how much lapsed value its snapshot still recorded as held

Every read counts a hold past its TTL, or a voucher past its validity, as released (DESIGN §2),
but an export reads rows and postings as they are. An export therefore runs the expire-holds and
expire-vouchers jobs first, for at most five seconds, and goes on if they fail or are cut short:
its redemptions and ledger entries then said `held` where every API read said released, and the
manifest gave the auditor no way to know (an independent review of audit and exports, December
2026). The manifest now records `lapsed_unreleased`: the holds past their TTL and the vouchers
past their validity whose release the snapshot did not yet hold. Zero means the file shows
every lapse as the API does. Manifests made before this revision keep null: not recorded.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-07 11:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0032'
down_revision: str | None = '0031'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('export_manifest', sa.Column('lapsed_unreleased', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN on both engines (SQLite 3.35+): a batch drop rebuilt the table on
    # SQLite and lost its guard triggers (0025's), which upgrading again did not restore (an
    # independent review, December 2026).
    op.execute("ALTER TABLE export_manifest DROP COLUMN lapsed_unreleased")
