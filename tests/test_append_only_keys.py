"""Rows the database keeps as written keep their keys too (migration 0016).

SQLite's INSERT OR REPLACE deletes the row that holds a key the insert takes, without running
its DELETE triggers, so the UPDATE and DELETE guards of the journals, postings, accounts, audit
trail and settlements did not stop it: an independent review replaced a sealed audit event and
the checkpoint that pinned it, and the chain verified intact. On PostgreSQL the two settlement
tables were the only append-only ones that TRUNCATE could empty.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from services.voucher.settings import sync_database_url
from tests.conftest import ENGINE
from tests.console.test_operator import submit
from tests.settlement.test_routes import _paid, statement, world  # noqa: F401 (world: the fixture)
from tests.support import auth
from tests.world import World

#: Every table whose rows are never changed or removed once written (a ledger account's
#: balance and an audit event's seal are changed, by their guarded updates only).
KEPT = ("ledger_transaction", "ledger_posting", "ledger_account", "audit_event", "audit_checkpoint",
        "audit_verification", "application_transition", "settlement", "settlement_item")


async def _history(client: httpx.AsyncClient, world: World, clock: Any) -> None:  # noqa: F811
    """A row in every kept table: a paid settlement (its items, journals and events), an
    application (its transition), a verification and a checkpoint of the chain."""
    await _paid(world, clock)
    await submit(client, world)
    for path, key in (("/v1/audit/verifications", "verify-1"), ("/v1/audit/checkpoints", "checkpoint-1")):
        made = await client.post(path, json={}, headers=auth(world.auditor, **{"Idempotency-Key": key}))
        assert made.status_code == 201, made.text


def _unique_keys(conn: Connection, table: str) -> list[tuple[list[str], str | None]]:
    """Each unique key of `table` (its primary key first) and its partial index's condition."""
    pk = [r[1] for r in conn.execute(text(f"PRAGMA table_info({table})")) if r[5]]
    keys: list[tuple[list[str], str | None]] = [(pk, None)]
    for _, name, unique, origin, _partial in conn.execute(text(f"PRAGMA index_list({table})")).all():
        if unique and origin != "pk":
            columns = [r[2] for r in conn.execute(text(f"PRAGMA index_info('{name}')"))]
            sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": name}).scalar()
            where = re.search(r"\bWHERE\b(.*)$", sql or "", re.S)
            keys.append((columns, where.group(1).strip() if where else None))
    return keys


def _replace(conn: Connection, table: str, row: dict[str, Any]) -> None:
    names = list(row)
    conn.execute(text(f"INSERT OR REPLACE INTO {table} ({', '.join(names)}) "
                      f"VALUES ({', '.join(':' + n for n in names)})"), row)


def _fresh_key(conn: Connection, table: str, pk: str) -> Any:
    current = conn.execute(text(f"SELECT {pk} FROM {table} LIMIT 1")).scalar()
    if isinstance(current, int):
        return conn.execute(text(f"SELECT max({pk}) + 1000 FROM {table}")).scalar()
    return uuid.uuid4().hex if len(str(current)) == 32 else str(uuid.uuid4())


@pytest.mark.audit_tampered
@pytest.mark.skipif(ENGINE != "sqlite", reason="INSERT OR REPLACE is SQLite's")
async def test_no_kept_row_is_replaced_on_any_of_its_keys(
        client: httpx.AsyncClient, world: World, clock: Any, database_url: str) -> None:  # noqa: F811
    await _history(client, world, clock)
    engine = create_engine(sync_database_url(database_url))
    try:
        with engine.connect() as conn:
            for table in KEPT:
                for columns, where in _unique_keys(conn, table):
                    row = conn.execute(text(f"SELECT * FROM {table} WHERE {where or '1'} LIMIT 1")).mappings().first()
                    assert row is not None, f"the history has no {table} row within {where}"
                    before = dict(row)
                    pk = _unique_keys(conn, table)[0][0][0]
                    unsealed = table == "audit_event" and columns != ["seq"]  # a sealed one is refused anyway
                    forged = {**before, **({"seq": None, "chain_hash": None} if unsealed else {})}
                    if columns != [pk]:
                        forged[pk] = _fresh_key(conn, table, pk)  # another row, taking only this key
                    taken = f"{table} on ({', '.join(columns)})"
                    if table == "ledger_account" and columns == ["code"]:
                        _replace(conn, table, forged)  # skipped, as ON CONFLICT (code) DO NOTHING is
                    else:
                        with pytest.raises(DBAPIError):
                            _replace(conn, table, forged)
                            pytest.fail(f"INSERT OR REPLACE into {taken} went through")
                    conn.rollback()
                    kept = conn.execute(text(f"SELECT * FROM {table} WHERE {pk} = :k"), {"k": before[pk]}).mappings()
                    assert [dict(r) for r in kept] == [before], taken
                    assert conn.execute(text(f"SELECT count(*) FROM {table} WHERE {pk} = :k"),
                                        {"k": forged[pk]}).scalar() == (1 if forged[pk] == before[pk] else 0), taken
    finally:
        engine.dispose()


@pytest.mark.skipif(ENGINE != "sqlite", reason="the triggers are SQLite's")
async def test_an_account_made_twice_by_its_code_is_made_once(
        client: httpx.AsyncClient, world: World, clock: Any, database_url: str) -> None:  # noqa: F811
    """Two requests that both find a provider's account missing both insert it, ON CONFLICT
    (code) DO NOTHING (ledger.repository.ensure_accounts): the second insert is skipped, not
    refused, and the account is the first one."""
    await _history(client, world, clock)
    engine = create_engine(sync_database_url(database_url))
    try:
        with engine.connect() as conn:
            account = dict(conn.execute(text("SELECT * FROM ledger_account WHERE provider_id IS NOT NULL LIMIT 1"))
                           .mappings().one())
            again = {**account, "id": uuid.uuid4().hex if len(str(account["id"])) == 32 else str(uuid.uuid4()),
                     "balance": 0}
            names = list(again)
            conn.execute(text(f"INSERT INTO ledger_account ({', '.join(names)}) VALUES "
                              f"({', '.join(':' + n for n in names)}) ON CONFLICT (code) DO NOTHING"), again)
            conn.commit()
            rows = conn.execute(text("SELECT * FROM ledger_account WHERE code = :c"), {"c": account["code"]}).mappings()
            assert [dict(r) for r in rows] == [account]
    finally:
        engine.dispose()


@pytest.mark.skipif(ENGINE != "postgresql", reason="TRUNCATE is PostgreSQL's")
@pytest.mark.parametrize("statement_", ["TRUNCATE settlement_item", "TRUNCATE settlement CASCADE"])
async def test_a_settlement_is_never_truncated(
        world: World, clock: Any, database_url: str, statement_: str) -> None:  # noqa: F811
    settlement = await _paid(world, clock)
    lines = (await statement(world, settlement))["lines"]
    engine = create_engine(sync_database_url(database_url))
    try:
        with engine.connect() as conn, pytest.raises(DBAPIError, match="never"):
            conn.execute(text(statement_))
            conn.commit()
    finally:
        engine.dispose()
    assert (await statement(world, settlement))["lines"] == lines
