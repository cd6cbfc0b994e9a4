"""applications, eligibility rule versions, contract references

Adds the application lifecycle's tables, the history of every programme's eligibility rules
(backfilled with each existing programme's current rules), the one-subsidy-per-contract
registry, and the cap commitment of approved applications. The one-open-application and
live-contract rules are partial unique indexes, so the database refuses a duplicate even if
the code's check were raced.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 08:41:54.106971
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('eligibility_rule_version',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('programme_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('rules', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_eligibility_rule_version_programme_id_programme')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_eligibility_rule_version')),
    sa.UniqueConstraint('programme_id', 'version', name=op.f('uq_eligibility_rule_version_programme_id_version'))
    )
    op.create_table('application',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('programme_id', sa.Uuid(), nullable=False),
    sa.Column('enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('requested_amount', sa.BigInteger(), nullable=False),
    sa.Column('purpose', sa.String(length=2000), nullable=False),
    sa.Column('contracts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('eligibility_version', sa.Integer(), nullable=False),
    sa.Column('is_eligible', sa.Boolean(), nullable=False),
    sa.Column('eligibility_result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('approved_amount', sa.BigInteger(), nullable=True),
    sa.Column('period_key', sa.String(length=16), nullable=True),
    sa.Column('status_reason', sa.String(length=2000), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('publicity_ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('voucher_id', sa.Uuid(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("status IN ('submitted', 'ineligible', 'under_review', 'approved', 'publicity', 'issued', 'rejected', 'withdrawn')", name=op.f('ck_application_status_known')),
    sa.CheckConstraint('approved_amount IS NULL OR (approved_amount > 0 AND approved_amount <= requested_amount)', name=op.f('ck_application_approved_within_request')),
    sa.CheckConstraint('requested_amount > 0', name=op.f('ck_application_requested_positive')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_application_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_application_programme_id_programme')),
    sa.ForeignKeyConstraint(['voucher_id'], ['voucher.id'], name=op.f('fk_application_voucher_id_voucher')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_application'))
    )
    op.execute(
        "INSERT INTO eligibility_rule_version (id, programme_id, version, rules, published_at) "
        "SELECT id, id, eligibility_version, eligibility_rules, updated_at FROM programme"
    )
    with op.batch_alter_table('application', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_application_enterprise_id'), ['enterprise_id'], unique=False)
        batch_op.create_index('ix_application_programme_id_status', ['programme_id', 'status'], unique=False)
        batch_op.create_index('ix_application_status_publicity_ends_at', ['status', 'publicity_ends_at'], unique=False)
        batch_op.create_index('uq_application_one_open', ['programme_id', 'enterprise_id'], unique=True, sqlite_where=sa.text("status IN ('approved', 'publicity', 'submitted', 'under_review')"), postgresql_where=sa.text("status IN ('approved', 'publicity', 'submitted', 'under_review')"))

    op.create_table('application_transition',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('application_id', sa.Uuid(), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=2000), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('principal_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['application.id'], name=op.f('fk_application_transition_application_id_application')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_application_transition'))
    )
    with op.batch_alter_table('application_transition', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_application_transition_application_id'), ['application_id'], unique=False)

    op.create_table('contract_reference',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('application_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['application_id'], ['application.id'], name=op.f('fk_contract_reference_application_id_application')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_contract_reference_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_contract_reference_provider_id_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contract_reference'))
    )
    with op.batch_alter_table('contract_reference', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contract_reference_application_id'), ['application_id'], unique=False)
        batch_op.create_index('uq_contract_reference_live', ['provider_id', 'number'], unique=True, sqlite_where=sa.text('released_at IS NULL'), postgresql_where=sa.text('released_at IS NULL'))

    with op.batch_alter_table('enterprise_period_usage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('committed', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.drop_constraint(op.f('ck_enterprise_period_usage_non_negative'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_enterprise_period_usage_non_negative'), 'granted >= 0 AND committed >= 0 AND subsidised >= 0 AND subsidised_spend >= 0'
        )

    with op.batch_alter_table('voucher', schema=None) as batch_op:
        batch_op.create_index('uq_voucher_application_id', ['application_id'], unique=True)

    with op.batch_alter_table('programme', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('application_requires_contract', sa.Boolean(), nullable=False, server_default=sa.false())
        )

    # The defaults only filled existing rows; the code always writes both columns.
    with op.batch_alter_table('enterprise_period_usage', schema=None) as batch_op:
        batch_op.alter_column('committed', server_default=None)
    with op.batch_alter_table('programme', schema=None) as batch_op:
        batch_op.alter_column('application_requires_contract', server_default=None)


def downgrade() -> None:
    # Committed budget lives in the append-only ledger; without the applications that explain
    # it, it could never be released. Refuse rather than strand it.
    pending = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM application WHERE status IN ('approved', 'publicity')"
    )).scalar()
    if pending:
        raise RuntimeError(
            f"{pending} approved application(s) hold committed budget; issue or release them before "
            "downgrading below 0003"
        )
    with op.batch_alter_table('voucher', schema=None) as batch_op:
        batch_op.drop_index('uq_voucher_application_id')

    with op.batch_alter_table('programme', schema=None) as batch_op:
        batch_op.drop_column('application_requires_contract')

    with op.batch_alter_table('enterprise_period_usage', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_enterprise_period_usage_non_negative'), type_='check')
        batch_op.create_check_constraint(op.f('ck_enterprise_period_usage_non_negative'), 'granted >= 0 AND subsidised >= 0 AND subsidised_spend >= 0')
        batch_op.drop_column('committed')

    with op.batch_alter_table('contract_reference', schema=None) as batch_op:
        batch_op.drop_index('uq_contract_reference_live', sqlite_where=sa.text('released_at IS NULL'), postgresql_where=sa.text('released_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_contract_reference_application_id'))

    op.drop_table('contract_reference')
    with op.batch_alter_table('application_transition', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_application_transition_application_id'))

    op.drop_table('application_transition')
    with op.batch_alter_table('application', schema=None) as batch_op:
        batch_op.drop_index('uq_application_one_open', sqlite_where=sa.text("status IN ('approved', 'publicity', 'submitted', 'under_review')"), postgresql_where=sa.text("status IN ('approved', 'publicity', 'submitted', 'under_review')"))
        batch_op.drop_index('ix_application_status_publicity_ends_at')
        batch_op.drop_index('ix_application_programme_id_status')
        batch_op.drop_index(batch_op.f('ix_application_enterprise_id'))

    op.drop_table('application')
    op.drop_table('eligibility_rule_version')
