"""contract and invoice numbers compared by a key: letters that read as digits (O as 0, I as 1)

One subsidy per contract and one claim per invoice compared the numbers as typed (normalised);
HZC-2O26-0042 (letter O) got past HZC-2026-0042. Live contract references now hold the key,
and claims get `invoice_key`, which the one-claim-per-invoice unique index uses instead of
`invoice_number` (kept as typed, for display). Look-alike letters of other scripts are refused
by the API from now on; rows stored before keep their characters.

If two live contract references of one provider, or two standing claims of one provider's
invoice, already have the same key, the upgrade stops and names them: that is one contract or
invoice subsidised twice, for the programme office to resolve (release or reject one) before
upgrading.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 03:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_CLAIM = sa.text("status <> 'rejected'")


def key(number: str) -> str:
    """The key as of this revision (applications/rules.py `reference_key` may change later)."""
    return number.translate(str.maketrans({"O": "0", "I": "1"}))


def clashes(table: str, rows: Sequence[Sequence[object]]) -> list[str]:
    """Live rows (id, provider_id, number, live) of one provider whose numbers share a key."""
    seen: dict[tuple[str, str], str] = {}
    found = []
    for row_id, provider_id, number, live in rows:
        if live:
            k = key(str(number))
            other = seen.setdefault((str(provider_id), k), str(row_id))
            if other != str(row_id):
                found.append(f"{table} {other} and {row_id} ({number!r} under provider {provider_id})")
    return found


def _rekey(table: str, column: str, target: str, live: str) -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text(f"SELECT id, provider_id, {column}, {live} AS live FROM {table}")).all()  # noqa: S608
    clashes_found = clashes(table, [tuple(r) for r in rows])
    if clashes_found:
        raise RuntimeError("these live numbers are the same once O is read as 0 and I as 1; resolve them "
                           "(release or reject one) and upgrade again: " + "; ".join(clashes_found))
    for row in rows:
        k = key(row[2])
        if k != row[2] or target != column:
            conn.execute(sa.text(f"UPDATE {table} SET {target} = :k WHERE id = :id"), {"k": k, "id": row[0]})  # noqa: S608


def upgrade() -> None:
    _rekey("contract_reference", "number", "number", "released_at IS NULL")
    with op.batch_alter_table("claim") as batch:
        batch.add_column(sa.Column("invoice_key", sa.String(length=64), nullable=True))
    _rekey("claim", "invoice_number", "invoice_key", "status <> 'rejected'")
    op.drop_index("uq_claim_live_invoice", table_name="claim")
    with op.batch_alter_table("claim") as batch:
        batch.alter_column("invoice_key", existing_type=sa.String(length=64), nullable=False)
    op.create_index("uq_claim_live_invoice_key", "claim", ["provider_id", "invoice_key"], unique=True,
                    sqlite_where=LIVE_CLAIM, postgresql_where=LIVE_CLAIM)


def downgrade() -> None:
    op.drop_index("uq_claim_live_invoice_key", table_name="claim")
    op.create_index("uq_claim_live_invoice", "claim", ["provider_id", "invoice_number"], unique=True,
                    sqlite_where=LIVE_CLAIM, postgresql_where=LIVE_CLAIM)
    with op.batch_alter_table("claim") as batch:
        batch.drop_column("invoice_key")
    # contract_reference.number keeps its keys: the old comparison of them is as strict as before.
