"""an older invoice's code and number typed as one 20-digit number are that invoice

An older electronic VAT invoice has a 12-digit code, starting with 0 or 1, and an 8-digit number;
a fully digital invoice's 20-digit number starts with its year (21 onward). The service read
twenty digits as a fully digital invoice whatever they started with, so the same older invoice
was `vat:<code>:<number>` typed with its code and `digital:<20 digits>` typed as one number, and
was claimed twice (an independent review of claims, December 2026). The build now reads twenty
digits starting with 0 or 1 as the code and the number; this revision gives the claims filed
before it the same identity, so a standing claim still blocks the same invoice typed the other
way. If two standing claims turn out to be one invoice, the upgrade stops and names them: an
invoice already claimed twice, for the programme office to resolve (reject one) first.

The downgrade gives those claims back their `digital:` identity.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 09:00:00.000000
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0024'
down_revision: str | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def legacy(key: str) -> str | None:
    """The `vat:` identity of a `digital:` one that is an older code and number run together."""
    number = key.removeprefix("digital:")
    if key.startswith("digital:") and len(number) == 20 and number.isdigit() and number[0] in "01":
        return f"vat:{number[:12]}:{number[12:]}"
    return None


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, invoice_key, status <> 'rejected' AS live FROM claim")).all()
    standing = {key: str(uuid.UUID(str(row_id))) for row_id, key, live in rows if live}
    clashes = [f"claims {standing[new]} and {uuid.UUID(str(row_id))} (invoice {new})"
               for row_id, key, live in rows if live and (new := legacy(key)) is not None and new in standing]
    if clashes:
        raise RuntimeError("these standing claims are one invoice, typed once with its code and once as one number; "
                           "reject one and upgrade again: " + "; ".join(clashes))
    for row_id, key, _ in rows:
        new = legacy(key)
        if new is not None:
            conn.execute(sa.text("UPDATE claim SET invoice_key = :k WHERE id = :id"), {"k": new, "id": row_id})


def downgrade() -> None:
    conn = op.get_bind()
    for row_id, key in conn.execute(sa.text("SELECT id, invoice_key FROM claim WHERE invoice_key LIKE 'vat:%'")).all():
        code, _, number = key.removeprefix("vat:").partition(":")
        if len(code) == 12 and code[0] in "01" and len(number) == 8:
            was = conn.execute(sa.text("SELECT invoice_code FROM claim WHERE id = :id"), {"id": row_id}).scalar()
            if was is None:  # filed as one number: it was `digital:` before
                conn.execute(sa.text("UPDATE claim SET invoice_key = :k WHERE id = :id"),
                             {"k": f"digital:{code}{number}", "id": row_id})
