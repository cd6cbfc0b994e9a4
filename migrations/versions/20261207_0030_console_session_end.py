"""console sessions signed out before their time; settlement items by refund

The console keeps its session in the browser (an encrypted cookie), so sign-out could only ask
the browser to forget it: a copy of the cookie taken before stayed valid until the session's
end, up to `VOUCHER_CONSOLE_SESSION_HOURS` later. Sign-out now records the session here (the
SHA-256 of its id and when it would have ended), and every console page refuses a session
recorded. A row is needed only until the session would have ended; the purge job deletes it then.

The reconciliation asks whether any settlement, live or cancelled, ever held a refund (a refund
that committed after the settlement that should have taken it back): an index on
`settlement_item.refund_id`, since `uq_settlement_item_live_refund` holds only live items and
SQLite otherwise scanned every item once per refund.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07 07:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0030'
down_revision: str | None = '0029'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_session_end",
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_hash", name=op.f("pk_console_session_end")),
    )
    op.create_index("ix_console_session_end_expires_at", "console_session_end", ["expires_at"])
    op.create_index("ix_settlement_item_refund_id", "settlement_item", ["refund_id"])


def downgrade() -> None:
    op.drop_index("ix_settlement_item_refund_id", table_name="settlement_item")
    op.drop_index("ix_console_session_end_expires_at", table_name="console_session_end")
    op.drop_table("console_session_end")
