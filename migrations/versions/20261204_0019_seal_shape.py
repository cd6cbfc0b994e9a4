"""an audit event is sealed only at the next place in the chain, with a SHA-256 link

The guard let an unsealed event be updated once, from no place to any place: the database's
ordinary role could seal an event itself with a link that is not a hash (`'zz'`) or at the top
of BIGINT, and the sealer and the verification then failed on every run for good, since a
sealed event can never be changed again (an independent review, December 2026). The seal is
now refused unless its `seq` follows a sealed event's (or is the first; places are unique, so
with every seal taking the next place this is one past the highest) and its `chain_hash` is 64
lower-case hexadecimal digits — what the sealer always writes, one event after another.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 20:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What no seal may change (migration 0007's list: the event's content).
CONTENT_COLUMNS = (
    "id, occurred_at, actor_principal_id, actor_role, actor_key_id, action, resource_type, "
    "resource_id, programme_id, enterprise_id, provider_id, voucher_id, before, after, request_id, "
    "idempotency_key, rule_version, journal_id"
)
_NEW = ", ".join("NEW." + c for c in CONTENT_COLUMNS.split(", "))
_OLD = ", ".join("OLD." + c for c in CONTENT_COLUMNS.split(", "))


def _pg_guard(shape: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION audit_event_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.seq IS NOT NULL OR NEW.chain_hash IS NOT NULL THEN
            RAISE EXCEPTION 'audit events are written unsealed; only the sealer places them in the chain'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'audit events are never removed: % refused', TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.seq IS NOT NULL OR NEW.seq IS NULL OR NEW.chain_hash IS NULL
       OR ROW({_NEW}) IS DISTINCT FROM ROW({_OLD}) THEN
        RAISE EXCEPTION 'audit events are sealed once and never changed'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;{shape}
    RETURN NEW;
END
$$;
"""


# The next place: the one after a sealed event (or the first). Places are unique and every seal
# takes the next, so sealed places run 1..n without a gap and this is n + 1. Asked as an equality
# on the unique index, never as max(seq): planned on statistics taken while nothing was sealed,
# max() read every event per seal (1.9 ms of PostgreSQL per event in `make bench`, against 0.07).
PG_SHAPE = """
    IF NEW.chain_hash !~ '^[0-9a-f]{64}$'
       OR NOT (NEW.seq = 1 OR EXISTS (SELECT FROM audit_event WHERE seq = NEW.seq - 1)) THEN
        RAISE EXCEPTION 'audit events are never sealed but at the next place in the chain, with a SHA-256 link'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;"""

SQLITE_SHAPE = (
    "CREATE TRIGGER audit_event_seal_shape BEFORE UPDATE ON audit_event WHEN OLD.seq IS NULL AND ("
    "length(NEW.chain_hash) <> 64 OR NEW.chain_hash GLOB '*[^0-9a-f]*' "
    "OR NOT (NEW.seq = 1 OR EXISTS (SELECT 1 FROM audit_event WHERE seq = NEW.seq - 1))) "
    "BEGIN SELECT RAISE(ABORT, 'audit events are never sealed but at the next place in the chain, with a SHA-256 link'); END"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pg_guard(PG_SHAPE))
    else:
        op.execute(SQLITE_SHAPE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pg_guard(""))
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_event_seal_shape")
