"""The driver (services/voucher/driver.py): what a batch returns, and, on PostgreSQL, its own
exchange on libpq's pipeline — statements prepared once per connection and kept there, errors
raised whichever command failed, a connection whose prepared statements were dropped replaced."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum

import psycopg
import pytest
from sqlalchemy import func, literal, literal_column, select, text, update
from sqlalchemy.exc import DBAPIError

from services.voucher import driver, metrics
from services.voucher.db import Database, is_unavailable
from services.voucher.settings import Settings
from services.voucher.tables import LedgerAccount
from tests.conftest import ENGINE

postgres_only = pytest.mark.skipif(ENGINE != "postgresql", reason="the driver's own exchange runs on PostgreSQL")


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings)
    yield db
    await db.dispose()


def _reads() -> driver.Batch:
    batch = driver.Batch()
    batch.add(select(literal(7).label("n"), literal("七").label("word")))
    batch.add(select(LedgerAccount.id, LedgerAccount.code, LedgerAccount.balance, LedgerAccount.created_at)
              .where(LedgerAccount.code == "programme:none:budget"))
    return batch


async def test_a_batch_gives_each_step_its_rows_with_their_types(database: Database) -> None:
    async with database.unit_of_work() as session:
        first = _reads()
        account = (await session.execute(select(LedgerAccount.id, LedgerAccount.code).limit(1))).first()
        if account is not None:
            first.add(select(LedgerAccount.id, LedgerAccount.balance, LedgerAccount.created_at)
                      .where(LedgerAccount.id == account[0]))
        await driver.run(session, first)
    assert first.steps[0].rows == [(7, "七")]
    assert first.steps[1].rows == []
    if account is not None:
        (row,) = first.steps[2].rows
        assert isinstance(row[0], uuid.UUID) and row[0] == account[0]
        assert isinstance(row[1], int) and isinstance(row[2], datetime) and row[2].tzinfo is not None


async def test_writes_between_reads_run_in_order_and_a_list_of_parameters_runs_each(database: Database) -> None:
    async with database.unit_of_work() as session:
        await session.execute(text("CREATE TEMPORARY TABLE driver_probe (n integer)"))
        batch = driver.Batch()
        batch.add(text("INSERT INTO driver_probe (n) VALUES (:n)"), [{"n": 1}, {"n": 2}])
        counted = batch.add(select(literal_column("(SELECT count(*) FROM driver_probe)")))
        batch.add(text("INSERT INTO driver_probe (n) VALUES (:n)"), {"n": 3})
        summed = batch.add(select(literal_column("(SELECT sum(n) FROM driver_probe)")))
        await driver.run(session, batch)
        assert counted.scalar() == 2
        assert summed.scalar() == 6


@postgres_only
async def test_a_statement_is_prepared_once_per_connection_and_survives_a_rollback(database: Database) -> None:
    async with database.session(write=True) as session:
        for _ in range(3):
            await driver.run(session, _reads())
            await session.rollback()  # psycopg sends ROLLBACK: it must not drop the driver's statements
        # Statements the ORM runs many times are not prepared by psycopg (it would then answer a
        # ROLLBACK with DEALLOCATE ALL).
        for _ in range(8):
            await session.execute(select(LedgerAccount.id).limit(1))
        await session.rollback()
        await driver.run(session, _reads())
        names = [r[0] for r in (await session.execute(text("SELECT name FROM pg_prepared_statements"))).all()]
        await session.rollback()
    ours = [n for n in names if n.startswith("_voucher_")]
    assert len(ours) == 2, names  # the two shapes of _reads(), once each, however many runs
    assert not [n for n in names if n.startswith("_pg3_")], names


@postgres_only
async def test_a_failing_command_raises_whichever_it_was_and_the_connection_stays_usable(database: Database) -> None:
    async with database.session(write=True) as session:
        # An error while preparing (an unknown column), after a read that succeeded.
        batch = _reads()
        batch.add(select(literal_column("no_such_column")))
        with pytest.raises(DBAPIError, match="no_such_column"):
            await driver.run(session, batch)
        await session.rollback()
        # An error while executing a write merged into one statement with another.
        batch = driver.Batch()
        batch.add(update(LedgerAccount).where(LedgerAccount.code == "nothing").values(balance=LedgerAccount.balance + 1))
        batch.add(text("INSERT INTO ledger_account (id) VALUES (NULL)"))
        with pytest.raises(DBAPIError) as raised:
            await driver.run(session, batch)
        assert not raised.value.connection_invalidated
        await session.rollback()
        again = await driver.run(session, _reads())
        assert again.steps[0].rows == [(7, "七")]
        await session.rollback()


@postgres_only
async def test_prepared_statements_dropped_under_the_driver_replace_the_connection_with_a_503(
    database: Database,
) -> None:
    async with database.session(write=True) as session:
        await driver.run(session, _reads())
        await session.rollback()
        await session.execute(text("DEALLOCATE ALL"))
        await session.rollback()
        with pytest.raises(DBAPIError) as raised:
            await driver.run(session, _reads())
        assert raised.value.connection_invalidated
        assert is_unavailable(raised.value)  # the API answers 503 with Retry-After: nothing changed
        await session.rollback()
    async with database.session(write=True) as session:  # a new connection prepares afresh
        again = await driver.run(session, _reads())
        assert again.steps[0].rows == [(7, "七")]
        await session.rollback()


# -- reads outside any transaction (Database.read) ------------------------------------------------


async def test_a_read_outside_a_transaction_gives_the_same_rows_as_one_inside(database: Database) -> None:
    outside = await database.read(_reads())
    async with database.unit_of_work(write=False) as session:
        inside = await driver.run(session, _reads())
    assert [s.rows for s in outside.steps] == [s.rows for s in inside.steps]
    assert outside.steps[0].rows == [(7, "七")]


@postgres_only
async def test_reads_reuse_their_connection_and_prepare_once(database: Database) -> None:
    assert database.reads is not None
    pids = set()
    for _ in range(3):
        step = (await database.read(driver.one_statement(select(func.pg_backend_pid())))).steps[0]
        pids.add(step.scalar())
    assert len(pids) == 1  # one connection, kept between reads
    (raw,) = database.reads._idle
    assert len(driver._PREPARED[raw]) == 1  # noqa: SLF001


@postgres_only
async def test_a_read_whose_idle_connection_died_runs_again_on_a_new_one(database: Database) -> None:
    assert database.reads is not None
    first = (await database.read(driver.one_statement(select(func.pg_backend_pid())))).steps[0].scalar()
    async with database.unit_of_work(write=False) as session:  # the server ends that connection
        await session.execute(select(func.pg_terminate_backend(first)))
    second = (await database.read(driver.one_statement(select(func.pg_backend_pid())))).steps[0].scalar()
    assert second != first


@postgres_only
async def test_a_read_while_the_server_cannot_be_reached_is_unavailable_at_once(settings: Settings) -> None:
    unreachable = settings.model_copy(update={"database_url": "postgresql+psycopg://voucher:voucher@127.0.0.1:1/none"})
    db = Database(unreachable)
    try:
        with pytest.raises(DBAPIError) as raised:
            await db.read(_reads())
        assert is_unavailable(raised.value)  # a 503 with Retry-After, not a wait for a pool's timeout
        assert db.reads is not None and db.reads._idle == []  # noqa: SLF001
    finally:
        await db.dispose()


@postgres_only
async def test_a_failing_read_keeps_its_connection_usable(database: Database) -> None:
    pid = select(func.pg_backend_pid())
    before = (await database.read(driver.one_statement(pid))).steps[0].scalar()
    with pytest.raises(DBAPIError) as raised:
        await database.read(driver.one_statement(select(literal_column("1/0"))))
    assert not raised.value.connection_invalidated
    assert (await database.read(_reads())).steps[0].rows == [(7, "七")]
    assert (await database.read(driver.one_statement(pid))).steps[0].scalar() == before


async def test_a_read_is_never_a_write(database: Database) -> None:
    batch = driver.one_statement(update(LedgerAccount).values(balance=LedgerAccount.balance))
    with pytest.raises(TypeError):
        await database.read(batch)  # a read may be sent twice; a write must not be


@postgres_only
async def test_a_read_waiting_for_a_free_connection_is_unavailable_not_hung(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    assert database.reads is not None
    monkeypatch.setattr(driver, "WAIT_TIMEOUT", 0.2)
    slots = database.reads._slots_here()  # noqa: SLF001
    for _ in range(database.reads.size):
        await slots.acquire()  # every connection busy
    try:
        with pytest.raises(Exception) as raised:
            await database.read(_reads())
        assert is_unavailable(raised.value)
    finally:
        for _ in range(database.reads.size):
            slots.release()
    assert (await database.read(_reads())).steps[0].rows == [(7, "七")]


class _Colour(StrEnum):
    RED = "red"


class _Kind(IntEnum):
    PLAIN = 1


class _Plain(Enum):
    ONE = 1


@dataclass
class _Point:
    x: int
    y: int


@pytest.mark.parametrize("value", [
    {"id": uuid.UUID(int=7), "at": datetime(2026, 12, 2, 8, 0, 0, 5, tzinfo=UTC), "n": 12, "flag": None},
    {"at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=8))), "naive": datetime(2026, 1, 1, 9, 30)},
    {"amount": Decimal("0.35"), 1: "a key that is not text", "nested": [{"x": [1, 2, {"y": "是"}]}]},
    {"big": 2**70, "text": "fits nowhere but in text"},
    {"surrogate": "\ud800"},
    [{"category": "accelerator:domestic", "amount": 1}],
    {"ratio": 0.25, "not_a_number": float("nan"), "too_big": float("inf"), "tuple": (1, 2)},
    {"status": _Colour.RED, "kind": _Kind.PLAIN, "held": True},
    {3: "an int key", None: "no key", 2.5: "a float key"},
])
def test_a_json_parameter_is_the_text_the_standard_library_writes(value: object) -> None:
    """orjson writes the engine's JSON parameters when every leaf is one it writes the same
    way; anything else goes to `json.dumps`: the text always parses to what the standard
    library's parses to, and a value orjson would write differently (a NaN as null, an enum
    member by value) is written by `json.dumps` itself."""
    expected = json.dumps(value, default=driver._text, separators=(",", ":"))  # noqa: SLF001
    written = driver._dumps(value)  # noqa: SLF001
    if driver._plain(value):  # noqa: SLF001
        assert json.loads(written) == json.loads(expected)
    else:
        assert written == expected


@pytest.mark.parametrize("value", [
    {"when": date(2026, 1, 1)}, {"record": _Point(1, 2)}, {"plain_enum": _Plain.ONE}, {"set": {1}},
    {uuid.UUID(int=3): "a uuid key"},
])
def test_a_value_json_cannot_hold_is_refused_as_before(value: object) -> None:
    with pytest.raises(TypeError):
        json.dumps(value, default=driver._text)  # noqa: SLF001
    with pytest.raises(TypeError):
        driver._dumps(value)  # noqa: SLF001


def test_round_trips_reach_their_counters_at_a_flush_or_once_enough_have_gathered() -> None:
    driver.flush_counts()
    trips, statements = driver.ROUND_TRIPS._value.get(), driver.STATEMENTS._value.get()  # noqa: SLF001
    driver.count(1, 4)
    assert driver.ROUND_TRIPS._value.get() == trips  # noqa: SLF001 - gathered, not yet added
    metrics.exposition()  # a scrape adds what has gathered first
    assert driver.ROUND_TRIPS._value.get() == trips + 1  # noqa: SLF001
    assert driver.STATEMENTS._value.get() == statements + 4  # noqa: SLF001
    for _ in range(driver._Tally.EVERY):  # noqa: SLF001
        driver.count(1, 1)
    assert driver.ROUND_TRIPS._value.get() == trips + 1 + driver._Tally.EVERY  # noqa: SLF001


async def test_the_rows_of_a_gathered_insert_go_together_where_the_first_was_queued(database: Database) -> None:
    """Audit and outbox events queued between other writes are written by one statement each
    (they refer to no other row and are read back by id); every other write keeps its place."""
    from services.voucher import pending
    from services.voucher.audit import repository as audit_rows
    from services.voucher.events import repository as event_rows
    from services.voucher.ledger import repository as ledger_rows

    session = database.session(write=True)
    try:
        await session.begin()
        queued = [(audit_rows._INSERT, {"n": 1}), (event_rows._INSERT, {"n": 2}),  # noqa: SLF001
                  (ledger_rows._INSERT_TRANSACTION, {"n": 3}), (audit_rows._INSERT, {"n": 4}),  # noqa: SLF001
                  (ledger_rows._INSERT_TRANSACTION, {"n": 5}), (event_rows._INSERT, {"n": 6})]  # noqa: SLF001
        for statement, params in queued:
            assert pending.defer(session, statement, params)
        nested = await session.begin_nested()  # rows queued in a savepoint rolled back are dropped
        assert pending.defer(session, audit_rows._INSERT, {"n": 7})  # noqa: SLF001
        await nested.rollback()
        assert pending.defer(session, audit_rows._INSERT, {"other": 8})  # noqa: SLF001 - another shape keeps its place
        steps = pending.take_deferred(session).steps
        assert [(s.statement, s.params) for s in steps] == [
            (audit_rows._INSERT, [{"n": 1}, {"n": 4}]), (event_rows._INSERT, [{"n": 2}, {"n": 6}]),  # noqa: SLF001
            (ledger_rows._INSERT_TRANSACTION, [{"n": 3}, {"n": 5}]),  # noqa: SLF001 - in their order, one run now
            (audit_rows._INSERT, [{"other": 8}]),  # noqa: SLF001
        ]
    finally:
        await session.close()


def test_a_merged_write_missing_a_parameter_is_refused_as_a_database_programming_error() -> None:
    writes = [("INSERT INTO t (a) VALUES (%(a)s)", {"a": 1}), ("UPDATE u SET b = %(b)s", {})]
    with pytest.raises(psycopg.ProgrammingError, match="query parameter missing: b"):
        driver._merged(writes)  # noqa: SLF001
    sql, values = driver._merged([writes[0], ("UPDATE u SET b = %(b)s WHERE c = %(c)s", {"c": 3, "b": 2})])  # noqa: SLF001
    assert values == [1, 2, 3]
    assert "%(" not in sql
