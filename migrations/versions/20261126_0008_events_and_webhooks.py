"""Events and webhooks: the transactional outbox, endpoints, deliveries and their attempts.

Full keys of every role get the new scopes their role now has (`events:read`;
`webhooks:manage` for enterprises and providers); keys deliberately narrowed stay narrow.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 14:48:34.456726
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

#: What each role held before this revision and what it gains: written out, so this revision
#: means the same whatever later code says about roles.
BEFORE = {
    "operator": {"applications:read", "applications:review", "audit:read", "audit:verify", "claims:read",
                 "claims:review", "enterprises:read", "enterprises:write", "keys:read", "keys:self",
                 "keys:write", "ledger:read", "programmes:read", "programmes:write", "providers:read",
                 "providers:write", "redemptions:read", "settlements:read", "settlements:write",
                 "vouchers:read", "vouchers:write"},
    "auditor": {"applications:read", "audit:read", "audit:verify", "claims:read", "enterprises:read",
                "keys:read", "ledger:read", "programmes:read", "providers:read", "redemptions:read",
                "settlements:read", "vouchers:read"},
    "enterprise": {"applications:read", "applications:write", "claims:read", "claims:write", "enterprises:read",
                   "keys:self", "programmes:read", "redemptions:read", "vouchers:read"},
    "provider": {"keys:self", "programmes:read", "providers:read", "redemptions:read", "redemptions:write",
                 "settlements:confirm", "settlements:read", "vouchers:lookup"},
}
GAINED = {
    "operator": {"events:read"},
    "auditor": {"events:read"},
    "enterprise": {"events:read", "webhooks:manage"},
    "provider": {"events:read", "webhooks:manage"},
}
NEW_SCOPES = {"events:read", "webhooks:manage"}


def _keys() -> tuple[sa.engine.Connection, sa.TableClause, list[tuple[uuid.UUID, set[str], str]]]:
    bind = op.get_bind()
    keys = sa.table(
        "api_key", sa.column("id", sa.Uuid()),
        sa.column("scopes", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")),
    )
    rows = bind.execute(sa.text(
        "SELECT k.id, k.scopes, p.role FROM api_key k JOIN principal p ON p.id = k.principal_id"
    )).all()
    found = []
    for key_id, scopes, role in rows:
        held = set(json.loads(scopes) if isinstance(scopes, str) else scopes)
        found.append((key_id if isinstance(key_id, uuid.UUID) else uuid.UUID(str(key_id)), held, role))
    return bind, keys, found


def _grant_new_scopes() -> None:
    """Keys that held everything their role allowed get what their role now adds; keys that
    were deliberately narrowed stay as they were."""
    bind, keys, found = _keys()
    for key_id, held, role in found:
        if BEFORE[role] <= held and not GAINED[role] <= held:
            bind.execute(keys.update().where(keys.c.id == key_id).values(scopes=sorted(held | GAINED[role])))


def _revoke_new_scopes() -> None:
    """The code before this revision refuses scopes it does not know: take them back."""
    bind, keys, found = _keys()
    for key_id, held, _ in found:
        if held & NEW_SCOPES:
            bind.execute(keys.update().where(keys.c.id == key_id).values(scopes=sorted(held - NEW_SCOPES)))


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('outbox_event',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('programme_id', sa.Uuid(), nullable=True),
    sa.Column('enterprise_id', sa.Uuid(), nullable=True),
    sa.Column('provider_id', sa.Uuid(), nullable=True),
    sa.Column('resource_type', sa.String(length=32), nullable=False),
    sa.Column('resource_id', sa.Uuid(), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('dedupe_key', sa.String(length=160), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('seq IS NULL OR seq > 0', name=op.f('ck_outbox_event_seq_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_event')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_outbox_event_dedupe_key')),
    sa.UniqueConstraint('seq', name=op.f('uq_outbox_event_seq'))
    )
    with op.batch_alter_table('outbox_event', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_event_enterprise_seq', ['enterprise_id', 'seq'], unique=False)
        batch_op.create_index('ix_outbox_event_provider_seq', ['provider_id', 'seq'], unique=False)
        batch_op.create_index('ix_outbox_event_resource', ['resource_id', 'type'], unique=False)
        batch_op.create_index('ix_outbox_event_unpublished', ['id'], unique=False, postgresql_where=sa.text('seq IS NULL'), sqlite_where=sa.text('seq IS NULL'))

    op.create_table('webhook_endpoint',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('enterprise_id', sa.Uuid(), nullable=True),
    sa.Column('provider_id', sa.Uuid(), nullable=True),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('event_types', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('secret', sa.String(length=128), nullable=False),
    sa.Column('previous_secret', sa.String(length=128), nullable=True),
    sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("status IN ('enabled', 'disabled', 'deleted')", name=op.f('ck_webhook_endpoint_status_known')),
    sa.CheckConstraint('(enterprise_id IS NULL) <> (provider_id IS NULL)', name=op.f('ck_webhook_endpoint_one_owner')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_webhook_endpoint_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_webhook_endpoint_provider_id_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint'))
    )
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_endpoint_enterprise_id'), ['enterprise_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_endpoint_provider_id'), ['provider_id'], unique=False)

    op.create_table('webhook_delivery',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('endpoint_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'cancelled')", name=op.f('ck_webhook_delivery_status_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_webhook_delivery_attempts_non_negative')),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoint.id'], name=op.f('fk_webhook_delivery_endpoint_id_webhook_endpoint')),
    sa.ForeignKeyConstraint(['event_id'], ['outbox_event.id'], name=op.f('fk_webhook_delivery_event_id_outbox_event')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery')),
    sa.UniqueConstraint('endpoint_id', 'event_id', name='uq_webhook_delivery_endpoint_event')
    )
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_delivery_due', ['next_attempt_at'], unique=False, postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
        batch_op.create_index('ix_webhook_delivery_endpoint_id_id', ['endpoint_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_delivery_event_id'), ['event_id'], unique=False)

    op.create_table('webhook_attempt',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('delivery_id', sa.Uuid(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['webhook_delivery.id'], name=op.f('fk_webhook_attempt_delivery_id_webhook_delivery')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempt'))
    )
    with op.batch_alter_table('webhook_attempt', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_attempt_delivery_id_number', ['delivery_id', 'number'], unique=True)
    _grant_new_scopes()



def downgrade() -> None:
    _revoke_new_scopes()
    with op.batch_alter_table('webhook_attempt', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_attempt_delivery_id_number')

    op.drop_table('webhook_attempt')
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_delivery_event_id'))
        batch_op.drop_index('ix_webhook_delivery_endpoint_id_id')
        batch_op.drop_index('ix_webhook_delivery_due', postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))

    op.drop_table('webhook_delivery')
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_endpoint_provider_id'))
        batch_op.drop_index(batch_op.f('ix_webhook_endpoint_enterprise_id'))

    op.drop_table('webhook_endpoint')
    with op.batch_alter_table('outbox_event', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_event_unpublished', postgresql_where=sa.text('seq IS NULL'), sqlite_where=sa.text('seq IS NULL'))
        batch_op.drop_index('ix_outbox_event_resource')
        batch_op.drop_index('ix_outbox_event_provider_seq')
        batch_op.drop_index('ix_outbox_event_enterprise_seq')

    op.drop_table('outbox_event')
