"""a programme's money terms never change once it opens, and its status only moves forward

Holds read a programme's rate table, tiers, stacking ceiling and cap from its row, and the
reconciliation judges caps against the same row. The rule that money terms are fixed once a
programme opens was the application's alone: an independent review (December 2026) raised an open
programme's cap tenfold and its rates to 100 % with the database's ordinary role, and every later
grant and redemption followed the new terms while the reconciliation, judging by the same row,
stayed clean. The database now refuses, on both engines:
- a change of a money term (kind, unit, mode, budget, rate table, tiers, stacking ceiling, cap
  and its period and zone, maximum per voucher, voucher validity, expiry disposition), or of the
  programme's id or code, once it is no longer a draft;
- a status that moves other than draft → open → closed → archived;
- deleting a programme that is no longer a draft (and TRUNCATE on PostgreSQL; on SQLite an
  INSERT or UPDATE that takes another programme's id or code, whose REPLACE deletes that
  programme without firing a trigger: a draft renamed over an open programme's id, then opened
  with new terms, had replaced it — a review of this revision).

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-07 18:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0034'
down_revision: str | None = '0033'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: programmes/rules.py's MONEY_TERMS, and what names the programme.
FIXED = ("id", "code", "kind", "unit", "mode", "budget_total", "rate_table", "tiers",
         "stacking_ceiling_bps", "enterprise_cap", "cap_period", "cap_timezone", "max_per_voucher",
         "voucher_validity_days", "expiry_disposition")
FORWARD = (("draft", "open"), ("open", "closed"), ("closed", "archived"))
MESSAGE = ("a programme's money terms never change once it opens, its status moves only forward, and it is "
           "never deleted once open")


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def _terms(differ: str) -> str:
    changed = " OR ".join(f"NEW.{c} {differ} OLD.{c}" for c in FIXED)
    # No subquery (PostgreSQL allows none in a trigger's WHEN): each step spelled out.
    steps = " OR ".join(f"(OLD.status = '{old}' AND NEW.status = '{new}')" for old, new in FORWARD)
    moved = f"(NEW.status {differ} OLD.status AND NOT ({steps}))"
    return f"(OLD.status <> 'draft' AND ({changed})) OR {moved}"


def upgrade() -> None:
    # record_guard_refuse() is migration 0020's.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE TRIGGER programme_terms_fixed BEFORE UPDATE ON programme FOR EACH ROW "
                   f"WHEN ({_terms('IS DISTINCT FROM')}) EXECUTE FUNCTION record_guard_refuse('{_quoted(MESSAGE)}')")
        op.execute("CREATE TRIGGER programme_never_deleted BEFORE DELETE ON programme FOR EACH ROW "
                   f"WHEN (OLD.status <> 'draft') EXECUTE FUNCTION record_guard_refuse('{_quoted(MESSAGE)}')")
        op.execute("CREATE TRIGGER programme_no_truncate BEFORE TRUNCATE ON programme FOR EACH STATEMENT "
                   f"EXECUTE FUNCTION record_guard_refuse('{_quoted(MESSAGE)}')")
    else:
        raise_ = f"BEGIN SELECT RAISE(ABORT, '{_quoted(MESSAGE)}'); END"
        op.execute(f"CREATE TRIGGER programme_terms_fixed BEFORE UPDATE ON programme WHEN {_terms('IS NOT')} {raise_}")
        op.execute(f"CREATE TRIGGER programme_never_deleted BEFORE DELETE ON programme WHEN OLD.status <> 'draft' "
                   f"{raise_}")
        # every unique key: a REPLACE resolving either deletes the row that held it
        replaced = "EXISTS (SELECT 1 FROM programme WHERE id = NEW.id OR code = NEW.code)"
        op.execute(f"CREATE TRIGGER programme_no_replace BEFORE INSERT ON programme WHEN {replaced} {raise_}")
        for number, column in enumerate(("id", "code")):  # UPDATE OR REPLACE resolves a collision the same way
            taken = f"EXISTS (SELECT 1 FROM programme WHERE {column} = NEW.{column} AND id IS NOT OLD.id)"  # noqa: S608
            op.execute(f"CREATE TRIGGER programme_key{number}_kept BEFORE UPDATE OF {column} ON programme "
                       f"WHEN {taken} {raise_}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ("programme_terms_fixed", "programme_never_deleted", "programme_no_truncate"):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON programme")
    else:
        for name in ("programme_terms_fixed", "programme_never_deleted", "programme_no_replace",
                     "programme_key0_kept", "programme_key1_kept"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
