"""The database itself keeps the ledger honest (DESIGN invariant 1), and reconciliation
(invariant 6) notices when anything is rewritten behind the service's back."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from services.voucher.settings import get_settings, sync_database_url
from tests.conftest import ENGINE
from tests.support import assert_problem, auth
from tests.world import World, build_world


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    world = await build_world(app, client)
    voucher = await world.issue(1_000_000)
    response = await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")
    assert response.status_code == 201
    return world


@pytest.fixture
def raw(database_url: str):
    engine = create_engine(sync_database_url(database_url))
    yield engine
    engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_posting SET amount = amount + 1",
        "DELETE FROM ledger_posting",
        "UPDATE ledger_transaction SET memo = 'rewritten'",
        "DELETE FROM ledger_transaction",
    ],
)
async def test_ledger_rows_cannot_be_updated_or_deleted(world: World, raw, statement: str) -> None:
    with raw.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text(statement))
        conn.commit()
    assert (await world.reconciliation())["is_clean"]


@pytest.mark.skipif(ENGINE != "postgresql", reason="TRUNCATE and deferred triggers are PostgreSQL's")
async def test_truncate_is_refused(world: World, raw) -> None:
    with raw.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("TRUNCATE ledger_posting CASCADE"))
        conn.commit()


@pytest.mark.skipif(ENGINE != "postgresql", reason="the balance trigger is PostgreSQL's")
async def test_an_unbalanced_transaction_is_refused_by_the_database(world: World, raw) -> None:
    """One check per INSERT statement (migration 0009): a journal's postings are written in one
    statement, and a statement that leaves any journal it touched unbalanced is refused."""
    now = datetime.now(UTC)
    tx = uuid.uuid4()
    with raw.connect() as conn:
        account, other = conn.execute(text("SELECT id FROM ledger_account ORDER BY id LIMIT 2")).scalars().all()
        conn.execute(text("INSERT INTO ledger_transaction (id, kind, memo, created_at) "
                          "VALUES (:id, 'forged', '', :now)"), {"id": tx, "now": now})
        with pytest.raises(DBAPIError, match="does not balance"):
            conn.execute(text("INSERT INTO ledger_posting (transaction_id, account_id, amount, unit, created_at) "
                              "VALUES (:tx, :acc, 500, 'CNY', :now)"), {"tx": tx, "acc": account, "now": now})
        conn.rollback()
        # Balanced, but only by a second statement: the first is refused on its own.
        conn.execute(text("INSERT INTO ledger_transaction (id, kind, memo, created_at) "
                          "VALUES (:id, 'forged', '', :now)"), {"id": tx, "now": now})
        with pytest.raises(DBAPIError, match="does not balance"):
            for acc, amount in ((account, 500), (other, -500)):
                conn.execute(text("INSERT INTO ledger_posting (transaction_id, account_id, amount, unit, created_at) "
                                  "VALUES (:tx, :acc, :amount, 'CNY', :now)"),
                             {"tx": tx, "acc": acc, "amount": amount, "now": now})
        conn.rollback()
        # Both legs in one statement: accepted (then rolled back, this is a test).
        conn.execute(text("INSERT INTO ledger_transaction (id, kind, memo, created_at) "
                          "VALUES (:id, 'forged', '', :now)"), {"id": tx, "now": now})
        conn.execute(text("INSERT INTO ledger_posting (transaction_id, account_id, amount, unit, created_at) "
                          "VALUES (:tx, :a, 500, 'CNY', :now), (:tx, :b, -500, 'CNY', :now)"),
                     {"tx": tx, "a": account, "b": other, "now": now})
        conn.rollback()


async def test_a_negative_balance_is_refused_by_the_database(world: World, raw) -> None:
    with raw.connect() as conn, pytest.raises(DBAPIError):
        conn.execute(text("UPDATE ledger_account SET balance = -1 WHERE kind = 'voucher_available'"))
        conn.commit()


async def test_reconciliation_reports_a_tampered_balance(world: World, raw, database_url, monkeypatch) -> None:
    with raw.connect() as conn:
        conn.execute(text("UPDATE ledger_account SET balance = balance + 7 WHERE kind = 'voucher_used'"))
        conn.commit()
    try:
        await _tampered_is_reported(world, database_url, monkeypatch)
    finally:
        with raw.connect() as conn:  # put it back so the fixture's own reconciliation passes
            conn.execute(text("UPDATE ledger_account SET balance = balance - 7 WHERE kind = 'voucher_used'"))
            conn.commit()


async def _tampered_is_reported(world: World, database_url: str, monkeypatch) -> None:
    report = await world.reconciliation()
    assert not report["is_clean"]
    [difference] = report["account_differences"]
    assert (difference["balance"], difference["postings"]) == (300_007, 300_000)
    # the CLI says the same, with an exit code scripts can use
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        from services.voucher.cli import app as cli

        # the CLI runs its own event loop, so not on this test's
        result = await asyncio.to_thread(CliRunner().invoke, cli, ["ledger", "reconcile"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "balance differs from postings" in result.output


async def test_reconciliation_cli_is_clean_on_a_clean_ledger(world: World, database_url, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        from services.voucher.cli import app as cli

        # the CLI runs its own event loop, so not on this test's
        result = await asyncio.to_thread(CliRunner().invoke, cli, ["ledger", "reconcile"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "0 differences" in result.output


async def test_reconciliation_is_for_operators_and_auditors(world: World) -> None:
    ok = await world.client.get("/v1/ledger/reconciliation", headers=auth(world.operator))
    assert ok.status_code == 200 and ok.json()["postings"] > 0
    for key in (world.provider_key, world.enterprise_key):
        assert_problem(await world.client.get("/v1/ledger/reconciliation", headers=auth(key)), 403,
                       "insufficient_scope")
