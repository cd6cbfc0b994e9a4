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
from tests.settlement.test_routes import (  # noqa: F401 (world: the fixture)
    _paid,
    moved,
    redeem,
    refund,
    settled,
    statement,
    utc,
    world,
)
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


@pytest.mark.audit_tampered
@pytest.mark.skipif(ENGINE != "sqlite", reason="UPDATE OR REPLACE is SQLite's")
async def test_an_update_taking_a_sealed_events_seq_is_refused(
        client: httpx.AsyncClient, world: World, database_url: str) -> None:  # noqa: F811
    """UPDATE OR REPLACE resolves a collision as INSERT OR REPLACE does: sealing an unsealed
    event with a sealed one's seq had deleted the sealed one (a review of this migration's first
    form)."""
    sealed = await client.post("/v1/audit/checkpoints", json={}, headers=auth(world.auditor, **{"Idempotency-Key": "c"}))
    assert sealed.status_code == 201, sealed.text
    await submit(client, world)  # events not sealed yet
    engine = create_engine(sync_database_url(database_url))
    try:
        with engine.connect() as conn:
            victim = conn.execute(text("SELECT id, seq, chain_hash FROM audit_event WHERE seq IS NOT NULL "
                                       "ORDER BY seq LIMIT 1")).one()
            unsealed = conn.execute(text("SELECT id FROM audit_event WHERE seq IS NULL LIMIT 1")).scalar_one()
            # refused as a replacement (migration 0016), or as a seal out of its place (0019): either way
            # nothing is deleted
            with pytest.raises(DBAPIError, match="never replaced|never sealed but at the next place"):
                conn.execute(text("UPDATE OR REPLACE audit_event SET seq = :s, chain_hash = :h WHERE id = :u"),
                             {"s": victim.seq, "h": victim.chain_hash, "u": unsealed})
            conn.rollback()
            assert conn.execute(text("SELECT count(*) FROM audit_event WHERE id = :v"), {"v": victim.id}).scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.skipif(ENGINE != "sqlite", reason="UPDATE OR REPLACE is SQLite's")
async def test_a_cancelled_settlement_made_live_again_cannot_take_the_paid_ones_place(
        client: httpx.AsyncClient, world: World, clock: Any, database_url: str) -> None:  # noqa: F811
    voucher = await world.issue(100_000_000)
    captured = await redeem(world, clock, "2026-03-02T01:00:00+00:00", voucher, 1_000_000, "PO-1")
    await refund(world, clock, "2026-03-02T02:00:00+00:00", captured, 1_000)
    clock.current = utc("2026-03-03T01:00:00+00:00")
    cancelled = (await settled(world, "2026-03-02", "2026-03-02"))["id"]
    await moved(world, cancelled, "cancel", "cancelled")
    paid = (await settled(world, "2026-03-02", "2026-03-02"))["id"]
    for action, status in (("submit", "submitted"), ("approve", "approved"), ("pay", "paid")):
        await moved(world, paid, action, status)
    lines = (await statement(world, paid))["lines"]
    engine = create_engine(sync_database_url(database_url))
    try:
        with engine.connect() as conn:
            for sql in ("UPDATE OR REPLACE settlement SET status = 'draft' WHERE id = :c",
                        "UPDATE OR REPLACE settlement_item SET released_at = NULL WHERE settlement_id = :c"):
                # refused as a replacement (0016), or an item's release undone (0020)
                with pytest.raises(DBAPIError, match="never replaced|never changes, but to be released once"):
                    conn.execute(text(sql), {"c": cancelled.replace("-", "")})
                conn.rollback()
    finally:
        engine.dispose()
    assert (await statement(world, paid))["lines"] == lines
    read = await client.get(f"/v1/settlements/{paid}", headers=auth(world.operator))
    assert read.json()["status"] == "paid", read.text
