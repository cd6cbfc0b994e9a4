"""an announced event is never deleted, and what it says never changes

Every `outbox_event` is what a subscriber is told, through `GET /v1/events` and its webhooks: a
capture, a refund, a settlement paid. With the database's ordinary role, an event could be
rewritten after the fact (another amount, another enterprise, so another tenant's feed), or
deleted, leaving a gap in the feed that subscribers page on; nothing checked. The database now
refuses, on both engines:
- any deletion of an event (and, on PostgreSQL, a TRUNCATE; on SQLite a REPLACE, which deletes
  the row it meets without the DELETE trigger: an insert meeting an event's id or a published
  event's position, an update taking another event's position);
- any update of what it says (type, instant, parties, resource, data, dedupe key), and of its
  position (`seq`) and publication instant once set. Publishing sets both, once, from null: the
  only update the service makes.
On SQLite an insert meeting another event's dedupe key is skipped, as the service's once-only
announcements are (`ON CONFLICT DO NOTHING`; a BEFORE INSERT trigger fires before the conflict
is resolved, so it ignores the row rather than refusing it), never a REPLACE of the first.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0028'
down_revision: str | None = '0027'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SAYS = ("id", "type", "occurred_at", "programme_id", "enterprise_id", "provider_id", "resource_type", "resource_id",
        "data", "dedupe_key")
MESSAGE = ("an announced event is never deleted, and what it says never changes, nor its position and "
           "publication once set")


def _changed(differ: str) -> str:
    says = " OR ".join(f"NEW.{c} {differ} OLD.{c}" for c in SAYS)
    return (f"{says} OR (OLD.seq IS NOT NULL AND NEW.seq {differ} OLD.seq) "
            f"OR (OLD.published_at IS NOT NULL AND NEW.published_at {differ} OLD.published_at)")


def _quoted(text: str) -> str:
    return text.replace("'", "''")


PG_GUARDS = f"""
CREATE TRIGGER outbox_event_fixed BEFORE UPDATE ON outbox_event FOR EACH ROW
    WHEN ({_changed("IS DISTINCT FROM")})
    EXECUTE FUNCTION record_guard_refuse('{_quoted(MESSAGE)}');
CREATE TRIGGER outbox_event_never_deleted BEFORE DELETE ON outbox_event FOR EACH ROW
    EXECUTE FUNCTION record_guard_refuse('{_quoted(MESSAGE)}');
CREATE TRIGGER outbox_event_no_truncate BEFORE TRUNCATE ON outbox_event FOR EACH STATEMENT
    EXECUTE FUNCTION record_guard_refuse('{_quoted(MESSAGE)}');
"""
PG_NAMES = ("outbox_event_fixed", "outbox_event_never_deleted", "outbox_event_no_truncate")

SQLITE_GUARDS = {
    "outbox_event_fixed": f"BEFORE UPDATE ON outbox_event WHEN {_changed('IS NOT')}",
    "outbox_event_never_deleted": "BEFORE DELETE ON outbox_event",
    # A REPLACE deletes the row it meets without firing the DELETE trigger: an insert meeting an
    # event's id or a published event's position, and a publication taking another's position.
    "outbox_event_no_replace": "BEFORE INSERT ON outbox_event WHEN EXISTS (SELECT 1 FROM outbox_event "
                               "WHERE id = NEW.id OR (NEW.seq IS NOT NULL AND seq = NEW.seq))",
    "outbox_event_seq_kept": "BEFORE UPDATE ON outbox_event WHEN NEW.seq IS NOT NULL AND EXISTS "
                             "(SELECT 1 FROM outbox_event WHERE seq = NEW.seq AND id IS NOT NEW.id)",
}
#: An insert meeting another event's dedupe key is skipped, as the service's own once-only
#: announcements are (`ON CONFLICT DO NOTHING`): never a REPLACE of the event announced first.
SQLITE_DEDUPE = ("outbox_event_dedupe_kept", "BEFORE INSERT ON outbox_event WHEN NEW.dedupe_key IS NOT NULL "
                 "AND EXISTS (SELECT 1 FROM outbox_event WHERE dedupe_key = NEW.dedupe_key)")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GUARDS)  # record_guard_refuse() is migration 0020's
    else:
        for name, when in SQLITE_GUARDS.items():
            op.execute(f"CREATE TRIGGER {name} {when} BEGIN SELECT RAISE(ABORT, '{_quoted(MESSAGE)}'); END")
        name, when = SQLITE_DEDUPE
        op.execute(f"CREATE TRIGGER {name} {when} BEGIN SELECT RAISE(IGNORE); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in PG_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON outbox_event")
    else:
        for name in (*SQLITE_GUARDS, SQLITE_DEDUPE[0]):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
