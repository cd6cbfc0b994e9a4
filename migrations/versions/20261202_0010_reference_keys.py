"""contract and invoice numbers compared by a key: what reads as a digit is read as one (O as 0, I and L as 1)

One subsidy per contract and one claim per invoice compared the numbers as typed (normalised);
HZC-2O26-0042 (letter O) got past HZC-2026-0042. Live contract references now hold the key,
and claims get `invoice_key`, which the one-claim-per-invoice unique index uses instead of
`invoice_number` (kept as typed, for display). Look-alike letters of other scripts are refused
by the API from now on; live rows stored before keep their characters and are listed in the
upgrade's log for review. The downgrade puts the typed numbers back.

If two live contract references of one provider, or two standing claims of one provider's
invoice, already have the same key, the upgrade stops and names them: that is one contract or
invoice subsidised twice, for the programme office to resolve (release or reject one) before
upgrading.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 03:00:00.000000
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

log = logging.getLogger("alembic.runtime.migration")

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_CLAIM = sa.text("status <> 'rejected'")


def key(number: str) -> str:
    """The key as of this revision (applications/rules.py `reference_key` may change later)."""
    return number.translate(str.maketrans({"O": "0", "I": "1", "L": "1", "〇": "0", "一": "-", "丨": "1"}))


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
        raise RuntimeError("these live numbers are the same once O is read as 0 and I and L as 1; resolve them "
                           "(release or reject one) and upgrade again: " + "; ".join(clashes_found))
    for row in rows:
        k = key(row[2])
        if k != row[2] or target != column:
            conn.execute(sa.text(f"UPDATE {table} SET {target} = :k WHERE id = :id"), {"k": k, "id": row[0]})  # noqa: S608


def _allowed(c: str) -> bool:
    """The alphabet as of this revision (applications/rules.py `foreign_characters`)."""
    o = ord(c)
    return (0x21 <= o <= 0x7E or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0x20000 <= o <= 0x3134F
            or c in "【】〔〕《》「」『』、·〇")


def _report_foreign() -> None:
    """Live numbers stored before the alphabet: listed for the programme office to review (a
    look-alike letter may be a second subsidy of one contract); nothing is changed."""
    conn = op.get_bind()
    found = [f"contract_reference {row[0]} {row[1]!r}" for row in conn.execute(sa.text(
        "SELECT id, number FROM contract_reference WHERE released_at IS NULL")) if not all(map(_allowed, row[1]))]
    found += [f"claim {row[0]} {row[1]!r}" for row in conn.execute(sa.text(
        "SELECT id, invoice_number FROM claim WHERE status <> 'rejected'")) if not all(map(_allowed, row[1]))]
    if found:
        log.warning("live contract or invoice numbers with letters outside the alphabet now enforced "
                    "(review them: a look-alike may be a second subsidy): %s", "; ".join(found))


def upgrade() -> None:
    _report_foreign()
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
    # The old code compares numbers as typed: put the typed (normalised) numbers back, from the
    # application's contracts or the claim that each reference belongs to.
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT r.id, r.provider_id, r.number, a.contracts, c.contract_number FROM contract_reference r "
        "LEFT JOIN application a ON a.id = r.application_id LEFT JOIN claim c ON c.id = r.claim_id")).all()
    for row_id, provider_id, number, contracts, claim_number in rows:
        typed = claim_number
        if typed is None and contracts is not None:
            listed = json.loads(contracts) if isinstance(contracts, str) else contracts
            typed = next((c["number"] for c in listed
                          if str(c.get("provider_id")).replace("-", "") == str(provider_id).replace("-", "")
                          and key(c["number"]) == number), None)
        if typed is not None and typed != number:
            conn.execute(sa.text("UPDATE contract_reference SET number = :n WHERE id = :id"), {"n": typed, "id": row_id})
