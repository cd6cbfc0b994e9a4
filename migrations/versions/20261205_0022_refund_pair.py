"""a refund carries its redemption's provider and programme, and the settlement job reads a pair's refunds by them

The monthly settlement job looks, every hour and for every provider and programme, for a refund
of a settled capture that no settlement has taken back yet (0017). Refunds were indexed by time
only, so each pair's look walked every pair's refunds since its first uncovered day — or since
the first day of a settlement it cancelled, however long ago — joining each to its redemption
to find the pair: the hourly cost grew with the number of pairs times every refund made since.
A refund now records its redemption's provider and programme, and the index on time becomes one
on (provider, programme, time): each look reads only its own pair's refunds, as does a
settlement's draft (refunds made before its end). It is the same one index entry per refund.

The database refuses a refund whose provider or programme is not its redemption's, and any
change of what a refund is once written, all but its time (the service never makes one): a copy
that could drift would let the job miss a refund the provider must repay. Existing refunds are
given their redemption's.

On SQLite the table is copied to make the columns NOT NULL (Alembic's batch mode: it has no
trigger of its own before this migration, and migrations run with foreign keys unchecked). The
downgrade drops the guards, the columns and the index, and puts the index on time back.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAIR_INDEX = "ix_redemption_refund_provider_id_programme_id_created_at"
TIME_INDEX = "ix_redemption_refund_created_at"
#: What a refund is: never changed once made. Its time is left out, as a redemption's capture
#: time is (0020): the suite dates rows into the past to stand for time passing.
COLUMNS = ("id", "redemption_id", "provider_id", "programme_id", "amount", "reason", "destination")
PAIR_MESSAGE = "a refund's provider and programme are its redemption's"
FIXED_MESSAGE = "a refund never changes once made"

_NOT_ITS_PAIR = ("NOT EXISTS (SELECT 1 FROM redemption r WHERE r.id = NEW.redemption_id "
                 "AND r.provider_id = NEW.provider_id AND r.programme_id = NEW.programme_id)")


def _changed(differ: str) -> str:
    return " OR ".join(f"NEW.{c} {differ} OLD.{c}" for c in COLUMNS)


# PostgreSQL allows no subquery in a trigger's WHEN: the pair is checked in the function.
PG_GUARDS = f"""
CREATE FUNCTION redemption_refund_pair_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {_NOT_ITS_PAIR} THEN
        RAISE EXCEPTION '{PAIR_MESSAGE.replace("'", "''")}' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER redemption_refund_pair BEFORE INSERT ON redemption_refund FOR EACH ROW
    EXECUTE FUNCTION redemption_refund_pair_check();
CREATE TRIGGER redemption_refund_fixed BEFORE UPDATE ON redemption_refund FOR EACH ROW
    WHEN ({_changed("IS DISTINCT FROM")})
    EXECUTE FUNCTION record_guard_refuse('{FIXED_MESSAGE.replace("'", "''")}');
"""
SQLITE_GUARDS = (
    f"CREATE TRIGGER redemption_refund_pair BEFORE INSERT ON redemption_refund WHEN {_NOT_ITS_PAIR} "
    f"BEGIN SELECT RAISE(ABORT, '{PAIR_MESSAGE.replace(chr(39), chr(39) * 2)}'); END",
    f"CREATE TRIGGER redemption_refund_fixed BEFORE UPDATE ON redemption_refund WHEN {_changed('IS NOT')} "
    f"BEGIN SELECT RAISE(ABORT, '{FIXED_MESSAGE.replace(chr(39), chr(39) * 2)}'); END",
    # INSERT OR REPLACE resolves a taken id by deleting the row, past the update guard (as 0016
    # refuses for the other kept tables; a review of this migration replaced a refund's amount).
    "CREATE TRIGGER redemption_refund_no_replace BEFORE INSERT ON redemption_refund "  # noqa: S608 (constants)
    "WHEN EXISTS (SELECT 1 FROM redemption_refund WHERE id = NEW.id) "
    f"BEGIN SELECT RAISE(ABORT, '{FIXED_MESSAGE.replace(chr(39), chr(39) * 2)}'); END",
)
GUARDS = ("redemption_refund_pair", "redemption_refund_fixed")
SQLITE_ONLY = ("redemption_refund_no_replace",)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("redemption_refund") as batch:
        batch.add_column(sa.Column("provider_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("programme_id", sa.Uuid(), nullable=True))
    op.execute("UPDATE redemption_refund SET "
               "provider_id = (SELECT r.provider_id FROM redemption r WHERE r.id = redemption_refund.redemption_id), "
               "programme_id = (SELECT r.programme_id FROM redemption r WHERE r.id = redemption_refund.redemption_id)")
    with op.batch_alter_table("redemption_refund") as batch:
        batch.alter_column("provider_id", existing_type=sa.Uuid(), nullable=False)
        batch.alter_column("programme_id", existing_type=sa.Uuid(), nullable=False)
        batch.drop_index(TIME_INDEX)
        batch.create_index(PAIR_INDEX, ["provider_id", "programme_id", "created_at"])
    if postgresql:
        op.execute(PG_GUARDS)
    else:
        for statement in SQLITE_GUARDS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON redemption_refund")
        op.execute("DROP FUNCTION IF EXISTS redemption_refund_pair_check()")
    else:
        for name in (*GUARDS, *SQLITE_ONLY):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    # Not a batch alteration: SQLite drops a column in place once nothing indexes it.
    op.drop_index(PAIR_INDEX, "redemption_refund")
    op.create_index(TIME_INDEX, "redemption_refund", ["created_at"])
    op.drop_column("redemption_refund", "programme_id")
    op.drop_column("redemption_refund", "provider_id")
