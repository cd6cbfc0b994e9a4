"""audit trail

Audit events (insert-only, sealed once into a hash chain), signed checkpoints of the chain
head, kept verifications, and export manifests. Triggers make events immutable once written
(only the one-time seal may fill `seq` and `chain_hash`) and undeletable, checkpoints and
verifications immutable, and application transitions append-only. Journals already in the
ledger get a backfilled `ledger.posted` event each, so verification holds from the start.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 11:40:49.587530
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


CONTENT_COLUMNS = (
    "id, occurred_at, actor_principal_id, actor_role, actor_key_id, action, resource_type, "
    "resource_id, programme_id, enterprise_id, provider_id, voucher_id, before, after, request_id, "
    "idempotency_key, rule_version, journal_id"
)
IMMUTABLE = ("audit_checkpoint", "audit_verification", "application_transition")
#: What a ledger account is: everything but its balance, which postings move.
ACCOUNT_IDENTITY = (
    "id, code, kind, unit, programme_id, voucher_id, provider_id, enterprise_id, is_non_negative, "
    "is_materialised, created_at"
)

PG_TRIGGERS = f"""
CREATE FUNCTION audit_event_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
       OR ROW({', '.join('NEW.' + c for c in CONTENT_COLUMNS.split(', '))})
          IS DISTINCT FROM ROW({', '.join('OLD.' + c for c in CONTENT_COLUMNS.split(', '))}) THEN
        RAISE EXCEPTION 'audit events are sealed once and never changed'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_event_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_guard();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_guard();
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are never changed or removed: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE FUNCTION ledger_account_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR ROW({', '.join('NEW.' + c for c in ACCOUNT_IDENTITY.split(', '))})
          IS DISTINCT FROM ROW({', '.join('OLD.' + c for c in ACCOUNT_IDENTITY.split(', '))}) THEN
        RAISE EXCEPTION 'a ledger account only ever changes its balance: % refused', TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_account_identity BEFORE UPDATE OR DELETE ON ledger_account
    FOR EACH ROW EXECUTE FUNCTION ledger_account_guard();
""" + "".join(
    f"CREATE TRIGGER {t}_immutable BEFORE UPDATE OR DELETE ON {t} "
    f"FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();\n"
    f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();\n"
    for t in IMMUTABLE
)

SQLITE_TRIGGERS = [
    "CREATE TRIGGER audit_event_written_unsealed BEFORE INSERT ON audit_event "
    "WHEN NEW.seq IS NOT NULL OR NEW.chain_hash IS NOT NULL "
    "BEGIN SELECT RAISE(ABORT, 'audit events are written unsealed; only the sealer places them'); END",
    "CREATE TRIGGER ledger_account_no_delete BEFORE DELETE ON ledger_account "
    "BEGIN SELECT RAISE(ABORT, 'a ledger account only ever changes its balance'); END",
    "CREATE TRIGGER ledger_account_identity BEFORE UPDATE ON ledger_account WHEN "
    + " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in ACCOUNT_IDENTITY.split(", "))
    + " BEGIN SELECT RAISE(ABORT, 'a ledger account only ever changes its balance'); END",
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit events are never removed'); END",
    "CREATE TRIGGER audit_event_seal_once BEFORE UPDATE ON audit_event WHEN "
    "OLD.seq IS NOT NULL OR NEW.seq IS NULL OR NEW.chain_hash IS NULL OR "
    + " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in CONTENT_COLUMNS.split(", "))
    + " BEGIN SELECT RAISE(ABORT, 'audit events are sealed once and never changed'); END",
] + [
    f"CREATE TRIGGER {t}_no_{event.lower()} BEFORE {event} ON {t} "
    f"BEGIN SELECT RAISE(ABORT, '{t} rows are never changed or removed'); END"
    for t in IMMUTABLE for event in ("UPDATE", "DELETE")
]


def _backfill_ledger_events() -> None:
    """One `ledger.posted` event per journal already in the ledger, recording it as the service
    does (audit.rules.journal_record: kind, time, and [account, amount, unit, time] per
    posting, sorted), so the first verification finds no orphan."""
    bind = op.get_bind()
    journals = bind.execute(sa.text(
        "SELECT t.id, t.kind, t.programme_id, t.voucher_id, t.created_at, p.account_id, p.amount, p.unit, "
        "p.created_at AS posted_at "
        "FROM ledger_transaction t JOIN ledger_posting p ON p.transaction_id = t.id ORDER BY t.id, p.id"
    )).all()
    events: dict[object, dict[str, object]] = {}
    for row in journals:
        event = events.setdefault(row.id, {
            "journal": row, "legs": [],
        })
        event["legs"].append([str(uuid.UUID(str(row.account_id))), int(row.amount), row.unit,  # type: ignore[union-attr]
                              _stamp(row.posted_at)])
    table = sa.table(
        "audit_event", sa.column("id", sa.Uuid()), sa.column("occurred_at", sa.DateTime(timezone=True)),
        sa.column("actor_role", sa.String()), sa.column("action", sa.String()),
        sa.column("resource_type", sa.String()), sa.column("resource_id", sa.Uuid()),
        sa.column("programme_id", sa.Uuid()), sa.column("voucher_id", sa.Uuid()),
        sa.column("after", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")),
        sa.column("journal_id", sa.Uuid()),
    )
    rows = []
    for journal_id, event in events.items():
        row = event["journal"]
        rows.append({
            "id": _uuid7(), "occurred_at": _as_time(row.created_at), "actor_role": "system",  # type: ignore[attr-defined]
            "action": "ledger.posted", "resource_type": "ledger_transaction",
            "resource_id": _as_uuid(journal_id), "programme_id": _as_uuid(row.programme_id),  # type: ignore[attr-defined]
            "voucher_id": _as_uuid(row.voucher_id),  # type: ignore[attr-defined]
            "after": {"kind": row.kind, "at": _stamp(row.created_at), "legs": sorted(event["legs"]),  # type: ignore[attr-defined,arg-type]
                      "backfilled": True},
            "journal_id": _as_uuid(journal_id),
        })
    if rows:
        op.bulk_insert(table, rows)


NEW_SCOPES = ("audit:read", "audit:verify")
#: What operators and auditors held before this revision (0006's roles), written out so that
#: this revision means the same whatever later code says about roles.
BEFORE = {
    "operator": {"applications:read", "applications:review", "claims:read", "claims:review", "enterprises:read",
                 "enterprises:write", "keys:read", "keys:self", "keys:write", "ledger:read", "programmes:read",
                 "programmes:write", "providers:read", "providers:write", "redemptions:read", "settlements:read",
                 "settlements:write", "vouchers:read", "vouchers:write"},
    "auditor": {"applications:read", "claims:read", "enterprises:read", "keys:read", "ledger:read",
                "programmes:read", "providers:read", "redemptions:read", "settlements:read", "vouchers:read"},
}


def _grant_audit_scopes() -> None:
    """Keys that held everything their role allowed (operators' and auditors' full keys) get
    the two audit scopes their role now has; keys deliberately narrowed stay as they were.
    What each role held before is written out (BEFORE), as 0008 does: compared with today's
    roles, which hold scopes later revisions added, no key of 0006 counted as full, and an
    office's full key came out of the upgrade narrowed (an independent review of keys, December
    2026). A database already past this revision keeps what it did: a full key it narrowed is
    replaced with `voucher keys create`."""
    bind = op.get_bind()
    keys = sa.table(
        "api_key", sa.column("id", sa.Uuid()),
        sa.column("scopes", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")),
    )
    rows = bind.execute(sa.text(
        "SELECT k.id, k.scopes, p.role FROM api_key k JOIN principal p ON p.id = k.principal_id "
        "WHERE p.role IN ('operator', 'auditor')"
    )).all()
    for key_id, scopes, role in rows:
        held = set(json.loads(scopes) if isinstance(scopes, str) else scopes)
        added = set(NEW_SCOPES)
        before = BEFORE[role]
        if before <= held and not added <= held:
            bind.execute(keys.update().where(keys.c.id == _as_uuid(key_id)).values(scopes=sorted(held | added)))


def _as_uuid(value: object) -> uuid.UUID | None:
    return None if value is None else value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _as_time(value: object) -> datetime:
    """SQLite hands back its stored (naive UTC) text; PostgreSQL an aware datetime."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value  # type: ignore[return-value]


def _stamp(value: object) -> str:
    """A time as audit events write it: RFC 3339 UTC with microseconds."""
    moment = _as_time(value)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _uuid7() -> uuid.UUID:
    millis = time.time_ns() // 1_000_000
    value = (millis << 80) | (0x7 << 76) | (secrets.randbits(12) << 64) | (0b10 << 62) | secrets.randbits(62)
    return uuid.UUID(int=value)


def upgrade() -> None:
    op.create_table('audit_checkpoint',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('chain_hash', sa.String(length=64), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoint'))
    )
    with op.batch_alter_table('audit_checkpoint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_checkpoint_seq'), ['seq'], unique=False)

    op.create_table('audit_event',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_principal_id', sa.Uuid(), nullable=True),
    sa.Column('actor_role', sa.String(length=16), nullable=False),
    sa.Column('actor_key_id', sa.Uuid(), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('resource_type', sa.String(length=32), nullable=False),
    sa.Column('resource_id', sa.Uuid(), nullable=False),
    sa.Column('programme_id', sa.Uuid(), nullable=True),
    sa.Column('enterprise_id', sa.Uuid(), nullable=True),
    sa.Column('provider_id', sa.Uuid(), nullable=True),
    sa.Column('voucher_id', sa.Uuid(), nullable=True),
    sa.Column('before', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('after', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('rule_version', sa.Integer(), nullable=True),
    sa.Column('journal_id', sa.Uuid(), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.Column('chain_hash', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_event')),
    sa.UniqueConstraint('journal_id', name=op.f('uq_audit_event_journal_id')),
    sa.CheckConstraint('seq IS NULL OR seq > 0', name=op.f('ck_audit_event_seq_positive')),
    sa.UniqueConstraint('seq', name=op.f('uq_audit_event_seq'))
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_enterprise_id'), ['enterprise_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_occurred_at'), ['occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_provider_id'), ['provider_id'], unique=False)
        batch_op.create_index('ix_audit_event_resource', ['resource_type', 'resource_id'], unique=False)
        batch_op.create_index('ix_audit_event_unsealed', ['id'], unique=False, postgresql_where=sa.text('seq IS NULL'), sqlite_where=sa.text('seq IS NULL'))
        batch_op.create_index(batch_op.f('ix_audit_event_voucher_id'), ['voucher_id'], unique=False)

    op.create_table('audit_verification',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('requested_by', sa.Uuid(), nullable=True),
    sa.Column('from_seq', sa.BigInteger(), nullable=False),
    sa.Column('to_seq', sa.BigInteger(), nullable=False),
    sa.Column('is_intact', sa.Boolean(), nullable=False),
    sa.Column('events_checked', sa.BigInteger(), nullable=False),
    sa.Column('journals_checked', sa.BigInteger(), nullable=False),
    sa.Column('problems', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_verification'))
    )
    op.create_table('export_manifest',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('dataset', sa.String(length=32), nullable=False),
    sa.Column('format', sa.String(length=8), nullable=False),
    sa.Column('filters', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('requested_by', sa.Uuid(), nullable=True),
    sa.Column('chain_seq', sa.BigInteger(), nullable=False),
    sa.Column('chain_hash', sa.String(length=64), nullable=False),
    sa.Column('row_count', sa.BigInteger(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_export_manifest'))
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
    _backfill_ledger_events()
    _grant_audit_scopes()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_guard ON audit_event")
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
        for table in IMMUTABLE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS audit_event_guard()")
        op.execute("DROP TRIGGER IF EXISTS ledger_account_identity ON ledger_account")
        op.execute("DROP FUNCTION IF EXISTS ledger_account_guard()")
        op.execute("DROP FUNCTION IF EXISTS audit_refuse_change()")
    else:
        for name in ("audit_event_no_delete", "audit_event_seal_once", "audit_event_written_unsealed",
                     "ledger_account_no_delete", "ledger_account_identity"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        for table in IMMUTABLE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    op.drop_table('export_manifest')
    op.drop_table('audit_verification')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_voucher_id'))
        batch_op.drop_index('ix_audit_event_unsealed', postgresql_where=sa.text('seq IS NULL'), sqlite_where=sa.text('seq IS NULL'))
        batch_op.drop_index('ix_audit_event_resource')
        batch_op.drop_index(batch_op.f('ix_audit_event_provider_id'))
        batch_op.drop_index(batch_op.f('ix_audit_event_programme_id'))
        batch_op.drop_index(batch_op.f('ix_audit_event_occurred_at'))
        batch_op.drop_index(batch_op.f('ix_audit_event_enterprise_id'))
        batch_op.drop_index(batch_op.f('ix_audit_event_action'))

    op.drop_table('audit_event')
    with op.batch_alter_table('audit_checkpoint', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_checkpoint_seq'))

    op.drop_table('audit_checkpoint')
