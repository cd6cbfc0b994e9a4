"""contract numbers compared with every bracket and quote mark read as one form

A document number's year is written 〔2026〕 by the standard and typed as (2026), [2026] or
【2026】 just as often; one subsidy per contract compared the keys with the brackets as typed,
and an independent review (December 2026) reserved one contract four times, once per bracket.
The key (applications/rules.py `reference_key`) now reads ( [ { 【 〔 as "(", their closing
marks as ")", < 《 as "<", > 》 as ">" and 「 」 『 』 as a double quote. Live contract references
are re-keyed; if two live references of one provider get the same key, the upgrade stops and
names them: that is one contract subsidised twice, for the programme office to resolve
(release one) before upgrading. Invoice keys need nothing: an invoice's identity is digits.
The downgrade puts the earlier keys back, from the numbers as typed.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 12:00:00.000000
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0026'
down_revision: str | None = '0025'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The key before this revision (migration 0010's): what reads as a digit or a dash.
_EARLIER = {"O": "0", "I": "1", "L": "1", "〇": "0", "一": "-", "丨": "1"}
#: What this revision adds (as of this revision; applications/rules.py may change later).
_BRACKETS = {**dict.fromkeys("([{【〔", "("), **dict.fromkeys(")]}】〕", ")"), **dict.fromkeys("<《", "<"),
             **dict.fromkeys(">》", ">"), **dict.fromkeys("「」『』", '"')}


def earlier_key(number: str) -> str:
    return number.translate(str.maketrans(_EARLIER))


def key(number: str) -> str:
    return number.translate(str.maketrans({**_EARLIER, **_BRACKETS}))


def clashes(rows: Sequence[Sequence[object]]) -> list[str]:
    """Live rows (id, provider_id, stored key, live) of one provider whose keys are one now."""
    seen: dict[tuple[str, str], str] = {}
    found = []
    for row_id, provider_id, number, live in rows:
        if live:
            other = seen.setdefault((str(provider_id), key(str(number))), str(row_id))
            if other != str(row_id):
                found.append(f"contract_reference {other} and {row_id} ({number!r} under provider {provider_id})")
    return found


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT id, provider_id, number, released_at IS NULL AS live FROM contract_reference")).all()
    found = clashes([tuple(r) for r in rows])
    if found:
        raise RuntimeError("these live contract numbers are the same once brackets and quote marks are read as one "
                           "form; resolve them (release one) and upgrade again: " + "; ".join(found))
    for row_id, _provider, number, _live in rows:
        if key(number) != number:
            conn.execute(sa.text("UPDATE contract_reference SET number = :k WHERE id = :id"),
                         {"k": key(number), "id": row_id})


def downgrade() -> None:
    # The earlier code compares the earlier keys: each reference's key again from the number as
    # typed, in the application's contracts or the claim the reference belongs to.
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
                          and key(str(c["number"])) == number), None)
        if typed is not None and earlier_key(typed) != number and key(typed) == number:
            conn.execute(sa.text("UPDATE contract_reference SET number = :n WHERE id = :id"),
                         {"n": earlier_key(typed), "id": row_id})
