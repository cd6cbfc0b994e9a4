"""value path: only the indexes a query uses, partial indexes for live holds, HOT-friendly
fill factors, one balance check per statement, and idempotency records written whole

Each index below is kept for a named query (docs/decisions.md, "Indexes on the value path");
the ones dropped served none. A redeem wrote ~106 index entries; audit and outbox rows now get
entries only in the indexes their lifecycle needs at each moment (unsealed / sealed,
unpublished / published). Holds past their TTL are found through partial indexes on the live
holds (status 'held') only, so those checks cost the same whatever the history.

The per-posting deferred balance trigger becomes one check per INSERT statement on
ledger_posting (a transition table): a journal's postings are written in one statement.

Idempotency records are now inserted complete, with their answer, in the request's own
transaction: claims left `in_progress` by the old protocol belong to requests that never
committed anything, and are removed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 00:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HELD = sa.text("status = 'held'")
SEALED, UNSEALED = sa.text("seq IS NOT NULL"), sa.text("seq IS NULL")

#: Rows updated in place keep room on their page, so the update can be HOT (no index entries).
FILL_FACTORS = {"ledger_account": 80, "enterprise_period_usage": 80, "order_subsidy": 90, "voucher": 90,
                "redemption": 90}

BALANCE_CHECK = """
CREATE OR REPLACE FUNCTION ledger_check_balanced_statement() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    off record;
BEGIN
    SELECT p.transaction_id, p.unit, sum(p.amount) AS total INTO off
      FROM ledger_posting p
     WHERE p.transaction_id IN (SELECT DISTINCT transaction_id FROM new_postings)
     GROUP BY p.transaction_id, p.unit
    HAVING sum(p.amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal transaction % does not balance: % %', off.transaction_id,
            off.total, off.unit USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
"""


def _partial(**where: sa.TextClause) -> dict[str, sa.TextClause]:
    return {"postgresql_where": where["where"], "sqlite_where": where["where"]}


def _replace_uniques(table: str, drop: Sequence[str], add: Sequence[tuple[str, str]]) -> None:
    """Drop unique constraints and create unique constraints. SQLite rebuilds the table for
    that, which drops its triggers: they are read first and put back exactly."""
    if op.get_bind().dialect.name == "postgresql":
        for name in drop:
            op.drop_constraint(name, table, type_="unique")
        for name, column in add:
            op.create_unique_constraint(name, table, [column])
        return
    triggers = [row[0] for row in op.get_bind().execute(sa.text(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t ORDER BY name"), {"t": table})]
    with op.batch_alter_table(table, schema=None, recreate="always") as batch_op:
        for name in drop:
            batch_op.drop_constraint(name, type_="unique")
        for name, column in add:
            batch_op.create_unique_constraint(name, [column])
    for statement in triggers:
        op.execute(statement)


def upgrade() -> None:
    is_pg = op.get_bind().dialect.name == "postgresql"
    op.execute("DELETE FROM idempotency_record WHERE state <> 'completed'")

    # redemption: holds past their TTL are looked for among the live holds only.
    op.drop_index('ix_redemption_hold_expires_at', table_name='redemption')  # job: live holds by expiry
    op.drop_index('ix_redemption_programme_id', table_name='redemption')  # settlement: see below
    op.create_index('ix_redemption_live_hold_expires_at', 'redemption', ['hold_expires_at'], **_partial(where=HELD))
    op.create_index('ix_redemption_live_voucher_id', 'redemption', ['voucher_id'], **_partial(where=HELD))
    op.create_index('ix_redemption_live_enterprise_id_period_key', 'redemption', ['enterprise_id', 'period_key'],
                    **_partial(where=HELD))
    op.create_index('ix_redemption_provider_id_programme_id_captured_at', 'redemption',
                    ['provider_id', 'programme_id', 'captured_at'],
                    **_partial(where=sa.text("captured_at IS NOT NULL")))

    # ledger_transaction: no query filters journals by anything but their id.
    for column in ('kind', 'programme_id', 'voucher_id', 'redemption_id', 'created_at'):
        op.drop_index(f'ix_ledger_transaction_{column}', table_name='ledger_transaction')

    # audit_event: the events page by id; filters by resource or voucher have an index, the
    # rest scan in id order (docs/decisions.md). seq and journal_id entries only where set.
    for column in ('occurred_at', 'action', 'programme_id', 'enterprise_id', 'provider_id', 'voucher_id'):
        op.drop_index(f'ix_audit_event_{column}', table_name='audit_event')
    _replace_uniques('audit_event', ['uq_audit_event_journal_id', 'uq_audit_event_seq'], [])
    op.create_index('uq_audit_event_journal_id', 'audit_event', ['journal_id'], unique=True,
                    **_partial(where=sa.text("journal_id IS NOT NULL")))
    op.create_index('uq_audit_event_seq', 'audit_event', ['seq'], unique=True, **_partial(where=SEALED))
    op.create_index('ix_audit_event_voucher_id', 'audit_event', ['voucher_id'],
                    **_partial(where=sa.text("voucher_id IS NOT NULL")))

    # outbox_event: subscribers page on seq (published events only); dedupe keys only where set.
    op.drop_index('ix_outbox_event_enterprise_seq', table_name='outbox_event')
    op.drop_index('ix_outbox_event_provider_seq', table_name='outbox_event')
    _replace_uniques('outbox_event', ['uq_outbox_event_dedupe_key', 'uq_outbox_event_seq'], [])
    op.create_index('uq_outbox_event_dedupe_key', 'outbox_event', ['dedupe_key'], unique=True,
                    **_partial(where=sa.text("dedupe_key IS NOT NULL")))
    op.create_index('uq_outbox_event_seq', 'outbox_event', ['seq'], unique=True, **_partial(where=SEALED))
    op.create_index('ix_outbox_event_enterprise_seq', 'outbox_event', ['enterprise_id', 'seq'],
                    **_partial(where=sa.text("seq IS NOT NULL AND enterprise_id IS NOT NULL")))
    op.create_index('ix_outbox_event_provider_seq', 'outbox_event', ['provider_id', 'seq'],
                    **_partial(where=sa.text("seq IS NOT NULL AND provider_id IS NOT NULL")))

    if is_pg:
        for table, fill in FILL_FACTORS.items():
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {fill})")
        op.execute("DROP TRIGGER IF EXISTS ledger_posting_balanced ON ledger_posting")
        op.execute(BALANCE_CHECK)
        op.execute("CREATE TRIGGER ledger_posting_balanced AFTER INSERT ON ledger_posting "
                   "REFERENCING NEW TABLE AS new_postings FOR EACH STATEMENT "
                   "EXECUTE FUNCTION ledger_check_balanced_statement()")


def downgrade() -> None:
    is_pg = op.get_bind().dialect.name == "postgresql"
    if is_pg:
        op.execute("DROP TRIGGER IF EXISTS ledger_posting_balanced ON ledger_posting")
        op.execute("DROP FUNCTION IF EXISTS ledger_check_balanced_statement()")
        op.execute("CREATE CONSTRAINT TRIGGER ledger_posting_balanced AFTER INSERT ON ledger_posting "
                   "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced()")
        for table in FILL_FACTORS:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")

    for name in ('ix_outbox_event_provider_seq', 'ix_outbox_event_enterprise_seq', 'uq_outbox_event_seq',
                 'uq_outbox_event_dedupe_key'):
        op.drop_index(name, table_name='outbox_event')
    _replace_uniques('outbox_event', [], [('uq_outbox_event_dedupe_key', 'dedupe_key'), ('uq_outbox_event_seq', 'seq')])
    op.create_index('ix_outbox_event_enterprise_seq', 'outbox_event', ['enterprise_id', 'seq'])
    op.create_index('ix_outbox_event_provider_seq', 'outbox_event', ['provider_id', 'seq'])

    for name in ('ix_audit_event_voucher_id', 'uq_audit_event_seq', 'uq_audit_event_journal_id'):
        op.drop_index(name, table_name='audit_event')
    _replace_uniques('audit_event', [], [('uq_audit_event_journal_id', 'journal_id'), ('uq_audit_event_seq', 'seq')])
    for column in ('occurred_at', 'action', 'programme_id', 'enterprise_id', 'provider_id', 'voucher_id'):
        op.create_index(f'ix_audit_event_{column}', 'audit_event', [column])

    for column in ('kind', 'programme_id', 'voucher_id', 'redemption_id', 'created_at'):
        op.create_index(f'ix_ledger_transaction_{column}', 'ledger_transaction', [column])

    for name in ('ix_redemption_provider_id_programme_id_captured_at', 'ix_redemption_live_enterprise_id_period_key',
                 'ix_redemption_live_voucher_id', 'ix_redemption_live_hold_expires_at'):
        op.drop_index(name, table_name='redemption')
    op.create_index('ix_redemption_programme_id', 'redemption', ['programme_id'])
    op.create_index('ix_redemption_hold_expires_at', 'redemption', ['hold_expires_at'])
