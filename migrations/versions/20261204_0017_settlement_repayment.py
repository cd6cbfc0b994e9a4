"""a settlement may total less than zero: the provider repays the programme

A refund of a capture that was settled and paid leaves the provider owing the programme; until
now only a later settlement's captures could take it back, so a provider with no capture after
it owed it for ever and the programme could never be archived (an independent review, December
2026). A settlement whose refunds exceed its captures is now a repayment statement: its total
is negative, and paying it records the provider's repayment. Only the CHECK on the total
changes: `line_count > 0` stays. The monthly job drafts a repayment for the first month, after a
refund, that no settlement covers: it looks for refunds made since the first uncovered day, by
a new index on `redemption_refund.created_at` (refunds are rare beside redemptions: one more
index entry each).

SQLite cannot drop a CHECK with ALTER TABLE. Rebuilding the table would drop the triggers that
keep a paid settlement unchanged (migrations 0015 and 0016) and is refused by the rows that
refer to it; SQLite documents the other way for removing a CHECK, which leaves the stored rows
as they are: the table's definition in `sqlite_schema` is rewritten in the migration's
transaction and the schema version moved on, so every connection reads the new definition.
The downgrade puts the CHECK back the same way, and refuses while a settlement totals less
than zero (the constraint would not hold): settlements are append-only, a cancelled one
included, so once a repayment statement has been made the schema cannot go below 0017.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 14:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WITH_TOTAL = "CONSTRAINT ck_settlement_totals CHECK (total >= 0 AND line_count > 0)"
WITHOUT = "CONSTRAINT ck_settlement_totals CHECK (line_count > 0)"


def _sqlite_redefine(old: str, new: str) -> None:
    bind = op.get_bind()
    sql = bind.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'settlement'")).scalar_one()
    if old not in sql:
        raise RuntimeError(f"the settlement table's definition does not hold {old!r}; not changed")
    version = bind.execute(sa.text("PRAGMA schema_version")).scalar_one()
    bind.execute(sa.text("PRAGMA writable_schema = ON"))
    try:
        bind.execute(sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'settlement'"),
                     {"sql": sql.replace(old, new)})
        bind.execute(sa.text(f"PRAGMA schema_version = {int(version) + 1}"))
    finally:
        bind.execute(sa.text("PRAGMA writable_schema = OFF"))


def upgrade() -> None:
    op.create_index("ix_redemption_refund_created_at", "redemption_refund", ["created_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE settlement DROP CONSTRAINT ck_settlement_totals, ADD {WITHOUT}")
    else:
        _sqlite_redefine(WITH_TOTAL, WITHOUT)


def downgrade() -> None:
    negative = op.get_bind().execute(sa.text("SELECT count(*) FROM settlement WHERE total < 0")).scalar()
    if negative:
        raise RuntimeError(f"{negative} settlement(s) total less than zero (a provider's repayment); "
                           "they cannot be kept below 0017")
    op.drop_index("ix_redemption_refund_created_at", "redemption_refund")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE settlement DROP CONSTRAINT ck_settlement_totals, ADD {WITH_TOTAL}")
    else:
        _sqlite_redefine(WITHOUT, WITH_TOTAL)
