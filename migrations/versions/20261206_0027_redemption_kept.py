"""a redemption is never deleted, and what it was decided on never changes

An independent review (December 2026), with the database's ordinary role: deleted a captured
redemption (its journals stayed, its value used and its provider's payable owed, and nothing was
left to settle it from — every check passed); rewrote a redemption's line items and computation
(a category outside the programme's scope, read as such by the spending report and the export);
and moved a hold's expiry thirty days on, after which a capture three days past its TTL went
through. The database now refuses, on both engines:
- any deletion of a redemption (and, on PostgreSQL, a TRUNCATE; on SQLite an `INSERT OR
  REPLACE` that meets its id, which deletes it without the DELETE trigger);
- an update of its line items, its computation or its hold's expiry, which the service writes
  once, with the hold; and of the instant it was captured or voided (and why), once set.
The reconciliation reports journals whose redemption is gone (`record_differences`) and the
order and cap counters that differ from their redemptions (`commitment_differences`).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0027'
down_revision: str | None = '0026'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TERMS = ("line_items", "computation", "hold_expires_at")
MESSAGE = ("a redemption is never deleted, and its line items, computation and hold expiry never change, "
           "nor when (and why) it was captured or voided once set")


def _changed(differ: str) -> str:
    terms = " OR ".join(f"NEW.{c} {differ} OLD.{c}" for c in TERMS)
    return (f"{terms} OR (OLD.captured_at IS NOT NULL AND NEW.captured_at {differ} OLD.captured_at) "
            f"OR (OLD.voided_at IS NOT NULL AND (NEW.voided_at {differ} OLD.voided_at "
            f"OR NEW.void_reason {differ} OLD.void_reason))")


def _quoted(text: str) -> str:
    return text.replace("'", "''")


PG_GUARDS = f"""
CREATE TRIGGER redemption_terms_fixed BEFORE UPDATE ON redemption FOR EACH ROW
    WHEN ({_changed("IS DISTINCT FROM")})
    EXECUTE FUNCTION record_guard_refuse('{_quoted(MESSAGE)}');
CREATE TRIGGER redemption_never_deleted BEFORE DELETE ON redemption FOR EACH ROW
    EXECUTE FUNCTION record_guard_refuse('{_quoted(MESSAGE)}');
CREATE TRIGGER redemption_no_truncate BEFORE TRUNCATE ON redemption FOR EACH STATEMENT
    EXECUTE FUNCTION record_guard_refuse('{_quoted(MESSAGE)}');
"""
PG_NAMES = ("redemption_terms_fixed", "redemption_never_deleted", "redemption_no_truncate")

SQLITE_GUARDS = {
    "redemption_terms_fixed": f"BEFORE UPDATE ON redemption WHEN {_changed('IS NOT')}",
    "redemption_never_deleted": "BEFORE DELETE ON redemption",
    "redemption_no_replace": "BEFORE INSERT ON redemption WHEN EXISTS (SELECT 1 FROM redemption WHERE id = NEW.id)",
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GUARDS)  # record_guard_refuse() is migration 0020's
    else:
        for name, when in SQLITE_GUARDS.items():
            op.execute(f"CREATE TRIGGER {name} {when} BEGIN SELECT RAISE(ABORT, '{_quoted(MESSAGE)}'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in PG_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON redemption")
    else:
        for name in SQLITE_GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
