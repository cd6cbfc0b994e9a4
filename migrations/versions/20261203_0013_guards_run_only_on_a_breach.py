"""the row guards on ledger accounts and audit events run their function only on a breach

Every balance move updates a ledger account row, and every value operation inserts audit
events. Their guards (0007) called a PL/pgSQL function for each such row, only to find nothing
wrong: 4 calls per redeem. On PostgreSQL the breach is now the trigger's WHEN condition, which
the executor evaluates itself; the function runs (and raises) only when the condition holds.
What is refused, and with which message, is unchanged:

- an update of a ledger account that changes anything but its balance (WHEN), and every
  delete of one (a trigger of its own, without condition). The update guard fires AFTER the
  row, not before: PostgreSQL locks a row before handing it to a BEFORE UPDATE row trigger,
  whatever the trigger's WHEN says, which is a second tuple lock on every balance move. An
  AFTER row trigger whose WHEN is false queues nothing; when it is true the statement fails at
  its end and is undone whole, as before;
- an audit event inserted with its seal filled in (WHEN); updates and deletes of audit events
  keep the unconditional guard, as before.

SQLite's guards were WHEN-gated from the start: nothing changes there.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 06:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What a ledger account is: everything but its balance (as in 0007).
ACCOUNT_IDENTITY = ("id", "code", "kind", "unit", "programme_id", "voucher_id", "provider_id", "enterprise_id",
                    "is_non_negative", "is_materialised", "created_at")


def _row(prefix: str) -> str:
    return "ROW(" + ", ".join(f"{prefix}.{c}" for c in ACCOUNT_IDENTITY) + ")"


UPGRADE = [
    "DROP TRIGGER ledger_account_identity ON ledger_account",
    "CREATE TRIGGER ledger_account_identity AFTER UPDATE ON ledger_account FOR EACH ROW "
    f"WHEN ({_row('NEW')} IS DISTINCT FROM {_row('OLD')}) EXECUTE FUNCTION ledger_account_guard()",
    "CREATE TRIGGER ledger_account_no_delete BEFORE DELETE ON ledger_account FOR EACH ROW "
    "EXECUTE FUNCTION ledger_account_guard()",
    "DROP TRIGGER audit_event_guard ON audit_event",
    "CREATE TRIGGER audit_event_written_unsealed BEFORE INSERT ON audit_event FOR EACH ROW "
    "WHEN (NEW.seq IS NOT NULL OR NEW.chain_hash IS NOT NULL) EXECUTE FUNCTION audit_event_guard()",
    "CREATE TRIGGER audit_event_guard BEFORE UPDATE OR DELETE ON audit_event FOR EACH ROW "
    "EXECUTE FUNCTION audit_event_guard()",
]

DOWNGRADE = [
    "DROP TRIGGER ledger_account_no_delete ON ledger_account",
    "DROP TRIGGER ledger_account_identity ON ledger_account",
    "CREATE TRIGGER ledger_account_identity BEFORE UPDATE OR DELETE ON ledger_account FOR EACH ROW "
    "EXECUTE FUNCTION ledger_account_guard()",
    "DROP TRIGGER audit_event_written_unsealed ON audit_event",
    "DROP TRIGGER audit_event_guard ON audit_event",
    "CREATE TRIGGER audit_event_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_event FOR EACH ROW "
    "EXECUTE FUNCTION audit_event_guard()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in DOWNGRADE:
            op.execute(statement)
