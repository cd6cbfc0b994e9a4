"""an invoice is identified as the tax system does, and claimed once whoever files it

A fully digital invoice (数电票) is its 20-digit number, unique nationally; an older VAT invoice
is its invoice code (10 or 12 digits, the new `claim.invoice_code`) and its 8-digit number.
`claim.invoice_key` now holds that identity (`digital:<number>`, `vat:<code>:<number>`), and the
one-claim-per-invoice unique index is on it alone, no longer per provider.

Claims filed before: a number that is 20 digits is a fully digital invoice and gets its national
identity; any other number came without its invoice code, so its identity stays what it was, per
provider (`provider:<provider id>:<key>`). If two standing claims of different providers hold the
same 20-digit number, the upgrade stops and names them: one invoice claimed twice, for the
programme office to resolve (reject one) before upgrading.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 07:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_CLAIM = sa.text("status <> 'rejected'")


def identity(provider_id: object, key: str) -> str:
    if len(key) == 20 and key.isdigit():
        return f"digital:{key}"
    return f"provider:{provider_id}:{key}"


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, provider_id, invoice_key, status <> 'rejected' AS live FROM claim")).all()
    seen: dict[str, str] = {}
    clashes = []
    for row_id, provider_id, key, live in rows:
        new = identity(provider_id, key)
        if live and seen.setdefault(new, str(row_id)) != str(row_id):
            clashes.append(f"claims {seen[new]} and {row_id} (invoice {key})")
    if clashes:
        raise RuntimeError("these standing claims of different providers are one fully digital invoice; reject one "
                           "and upgrade again: " + "; ".join(clashes))
    op.drop_index("uq_claim_live_invoice_key", table_name="claim")
    with op.batch_alter_table("claim") as batch:
        batch.add_column(sa.Column("invoice_code", sa.String(length=64), nullable=True))
        batch.alter_column("invoice_key", existing_type=sa.String(length=64), type_=sa.String(length=160),
                           existing_nullable=False)
    for row_id, provider_id, key, _ in rows:
        conn.execute(sa.text("UPDATE claim SET invoice_key = :k WHERE id = :id"),
                     {"k": identity(provider_id, key), "id": row_id})
    op.create_index("uq_claim_live_invoice_key", "claim", ["invoice_key"], unique=True,
                    sqlite_where=LIVE_CLAIM, postgresql_where=LIVE_CLAIM)


def downgrade() -> None:
    """Back to a key per provider: the number's key (the code is dropped). Two standing claims of
    one provider with one number and different codes cannot be told apart any more: the index
    refuses the downgrade then."""
    conn = op.get_bind()
    op.drop_index("uq_claim_live_invoice_key", table_name="claim")
    for row_id, key in conn.execute(sa.text("SELECT id, invoice_key FROM claim")).all():
        conn.execute(sa.text("UPDATE claim SET invoice_key = :k WHERE id = :id"),
                     {"k": key.rsplit(":", 1)[-1], "id": row_id})
    with op.batch_alter_table("claim") as batch:
        batch.drop_column("invoice_code")
        batch.alter_column("invoice_key", existing_type=sa.String(length=160), type_=sa.String(length=64),
                           existing_nullable=False)
    op.create_index("uq_claim_live_invoice_key", "claim", ["provider_id", "invoice_key"], unique=True,
                    sqlite_where=LIVE_CLAIM, postgresql_where=LIVE_CLAIM)
