"""twenty invoice digits are one invoice, typed as one number or as a 12-digit code and a number

An older electronic VAT invoice has a 12-digit code and an 8-digit number; a fully digital
invoice (数电票) has a 20-digit number. Revision 0024 read twenty digits typed as one number and
starting with 0 or 1 as a code and its number, but a 12-digit code starting with 2 or more was
still kept as `vat:<code>:<number>`, while the same twenty digits typed as one number were
`digital:<digits>`: the same invoice was claimed twice (an independent review of claims,
December 2026). The build now keys the twenty digits alike however they are typed; this revision
gives the claims filed with such a code the `digital:` identity. If two standing claims turn out
to be one invoice, the upgrade stops and names them, for the programme office to resolve
(reject one) first.

The downgrade gives those claims back their `vat:` identity.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07 10:00:00.000000
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0031'
down_revision: str | None = '0030'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def twenty(key: str) -> str | None:
    """The `digital:` identity of a `vat:` one whose 12-digit code starts with 2 or more."""
    code, _, number = key.removeprefix("vat:").partition(":")
    if key.startswith("vat:") and len(code) == 12 and len(number) == 8 and (code + number).isdigit() \
            and code[0] not in "01":
        return f"digital:{code}{number}"
    return None


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, invoice_key, status <> 'rejected' AS live FROM claim")).all()
    standing = {key: str(uuid.UUID(str(row_id))) for row_id, key, live in rows if live}
    clashes = [f"claims {standing[new]} and {uuid.UUID(str(row_id))} (invoice {new})"
               for row_id, key, live in rows if live and (new := twenty(key)) is not None and new in standing]
    if clashes:
        raise RuntimeError("these standing claims are one invoice, typed once as one 20-digit number and once as a "
                           "12-digit code and a number; reject one and upgrade again: " + "; ".join(clashes))
    for row_id, key, _ in rows:
        new = twenty(key)
        if new is not None:
            conn.execute(sa.text("UPDATE claim SET invoice_key = :k WHERE id = :id"), {"k": new, "id": row_id})


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, invoice_key, invoice_code FROM claim "
                                "WHERE invoice_key LIKE 'digital:%' AND invoice_code IS NOT NULL")).all()
    for row_id, key, _ in rows:  # filed with a code: it was `vat:<code>:<number>` before
        digits = key.removeprefix("digital:")
        conn.execute(sa.text("UPDATE claim SET invoice_key = :k WHERE id = :id"),
                     {"k": f"vat:{digits[:12]}:{digits[12:]}", "id": row_id})
