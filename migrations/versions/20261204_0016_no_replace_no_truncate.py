"""append-only rows cannot be replaced (SQLite) nor truncated (PostgreSQL settlements)

SQLite's `INSERT OR REPLACE` (and `REPLACE`, and `UPDATE OR REPLACE`) resolves a key collision
by deleting the row that holds the key, and it runs no DELETE trigger while doing so unless the connection turned
`recursive_triggers` on — which a connection of its own need not. So every row the earlier
migrations guard with BEFORE UPDATE and BEFORE DELETE triggers (journals, postings, accounts,
audit events, checkpoints, verifications, application transitions, settlements and their
items) could be rewritten by one statement: an independent review (December 2026) replaced a
sealed audit event and the checkpoint that pinned it, and the chain verified intact. Here each
of those tables refuses an insert that takes a key an existing row holds, on every unique key
(a partial one where the existing row and the new one are both within it), before any conflict
is resolved, and an update that takes such a key from another row (a review of the first form
of this migration deleted a sealed event, a paid settlement and its items with UPDATE OR
REPLACE). A plain insert that collides was refused already (by the key itself) and still is;
only the message differs. One key is different: a ledger account is created by
`INSERT ... ON CONFLICT (code) DO NOTHING` (ledger/repository.py), so an insert that takes an
existing account's code is skipped (`RAISE(IGNORE)`: what DO NOTHING does), never replaces it.

On PostgreSQL every append-only table refused TRUNCATE except the two settlement tables: they
do now (the review emptied a paid settlement's items).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 06:00:00.000000
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Per table, each unique key as (columns, the partial index's condition or None, its columns
#: written `{row}column`: read on the existing row and on the NEW one).
UNIQUE_KEYS: dict[str, list[tuple[tuple[str, ...], str | None]]] = {
    "ledger_transaction": [(("id",), None)],
    "ledger_posting": [(("id",), None)],
    "ledger_account": [(("id",), None)],
    "audit_event": [(("id",), None), (("journal_id",), "{row}journal_id IS NOT NULL"),
                    (("seq",), "{row}seq IS NOT NULL")],
    "audit_checkpoint": [(("id",), None)],
    "audit_verification": [(("id",), None)],
    "application_transition": [(("id",), None)],
    "settlement": [(("id",), None),
                   (("provider_id", "programme_id", "period_start", "period_end"), "{row}status <> 'cancelled'")],
    "settlement_item": [(("id",), None),
                        (("redemption_id",), "{row}kind = 'capture' AND {row}released_at IS NULL"),
                        (("refund_id",), "{row}released_at IS NULL")],
}
PG_TRUNCATE = ("settlement", "settlement_item")


def _taken(table: str, columns: Sequence[str], partial: str | None) -> str:
    match = " AND ".join(f"{column} = NEW.{column}" for column in columns)
    if partial is None:
        return f"EXISTS (SELECT 1 FROM {table} WHERE {match})"  # noqa: S608 (names from UNIQUE_KEYS)
    new, old = partial.format(row="NEW."), partial.format(row="")
    return f"(({new}) AND EXISTS (SELECT 1 FROM {table} WHERE {match} AND ({old})))"  # noqa: S608


def sqlite_triggers() -> list[str]:
    statements = []
    for table, keys in UNIQUE_KEYS.items():
        taken = " OR ".join(_taken(table, columns, partial) for columns, partial in keys)
        statements.append(
            f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} WHEN {taken} "
            f"BEGIN SELECT RAISE(ABORT, '{table} rows are never replaced: an insert may not take the key of "
            "a row that exists'); END")
    # UPDATE OR REPLACE resolves a collision the same way: an update that takes another row's
    # key (sealing an event with a sealed one's seq; a cancelled settlement made live again
    # over the one that replaced it, or its items) would delete that row. Each key's trigger
    # runs only when an update sets one of the columns the key or its condition reads.
    for table, keys in UNIQUE_KEYS.items():
        for number, (columns, partial) in enumerate(keys):
            read = sorted({*columns, *re.findall(r"\{row\}(\w+)", partial or "")})
            match = " AND ".join(f"{column} = NEW.{column}" for column in columns)
            other = f"EXISTS (SELECT 1 FROM {table} WHERE {match} AND id IS NOT OLD.id"  # noqa: S608
            taken = (f"{other})" if partial is None else
                     f"({partial.format(row='NEW.')}) AND {other} AND ({partial.format(row='')}))")
            statements.append(
                f"CREATE TRIGGER {table}_key{number}_kept BEFORE UPDATE OF {', '.join(read)} ON {table} "
                f"WHEN {taken} BEGIN SELECT RAISE(ABORT, '{table} rows are never replaced: an update may not "
                "take the key of another row'); END")
    statements.append(
        "CREATE TRIGGER ledger_account_code_kept BEFORE INSERT ON ledger_account "
        "WHEN EXISTS (SELECT 1 FROM ledger_account WHERE code = NEW.code) "
        "AND NOT EXISTS (SELECT 1 FROM ledger_account WHERE id = NEW.id) "  # that one is refused, whatever
        "BEGIN SELECT RAISE(IGNORE); END")
    return statements


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in PG_TRUNCATE:
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION settlement_refuse_change()")
    else:
        for statement in sqlite_triggers():
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in PG_TRUNCATE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    else:
        for table, keys in UNIQUE_KEYS.items():
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
            for number in range(len(keys)):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_key{number}_kept")
        op.execute("DROP TRIGGER IF EXISTS ledger_account_code_kept")
