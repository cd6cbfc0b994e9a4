"""settlement items join only a draft settlement and never move

A settlement's items are written once, when it is created as a draft; cancelling it releases them
(`released_at`) where they are. Migration 0004 refuses any change to the items of a paid settlement,
but not an item added to a settlement that is no longer a draft, nor an item moved from one
settlement to another (into a paid one, say). Both are now refused by the database too, on both
engines. On PostgreSQL the insert check runs once per statement over the rows it inserted (a
settlement of 100,000 captures inserts them in one statement).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 20:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_TRIGGERS = """
CREATE FUNCTION settlement_item_refuse_misplaced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'a settlement item never moves to another settlement'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF EXISTS (SELECT FROM added JOIN settlement s ON s.id = added.settlement_id WHERE s.status <> 'draft') THEN
        RAISE EXCEPTION 'settlement items are only ever added to a draft settlement, never to a later one'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER settlement_item_draft_only AFTER INSERT ON settlement_item
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION settlement_item_refuse_misplaced();
CREATE TRIGGER settlement_item_never_moves BEFORE UPDATE ON settlement_item
    FOR EACH ROW WHEN (NEW.settlement_id IS DISTINCT FROM OLD.settlement_id)
    EXECUTE FUNCTION settlement_item_refuse_misplaced();
"""

SQLITE_TRIGGERS = (
    "CREATE TRIGGER settlement_item_draft_only BEFORE INSERT ON settlement_item "
    "WHEN (SELECT status FROM settlement WHERE id = NEW.settlement_id) IS NOT 'draft' "
    "BEGIN SELECT RAISE(ABORT, 'settlement items are only ever added to a draft settlement, never to a later one'); "
    "END",
    "CREATE TRIGGER settlement_item_never_moves BEFORE UPDATE ON settlement_item "
    "WHEN NEW.settlement_id IS NOT OLD.settlement_id "
    "BEGIN SELECT RAISE(ABORT, 'a settlement item never moves to another settlement'); END",
)
TRIGGER_NAMES = ("settlement_item_draft_only", "settlement_item_never_moves")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON settlement_item")
        op.execute("DROP FUNCTION IF EXISTS settlement_item_refuse_misplaced()")
    else:
        for name in TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
