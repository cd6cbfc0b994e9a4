"""Statements on the driver connection: the paths that run per request (the value engine, the
Idempotency-Key, the commit) send their SQL here, several statements per round trip.

One definition per statement — a SQLAlchemy Core construct, typed by the tables — and two ways
to run it:
* PostgreSQL: compiled once to psycopg's SQL and sent on the request's own psycopg connection
  (inside the transaction SQLAlchemy began), prepared on first use, a batch of statements in
  pipeline mode: one round trip however many statements, the COMMIT included when asked;
* SQLite: executed one after the other through SQLAlchemy (in-process: nothing to save).

A database error is raised as SQLAlchemy's, so it maps to the same problem as anywhere else,
and a connection lost on the way is invalidated as SQLAlchemy would (docs/decisions.md,
"Value engine").
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import re
import threading
import uuid
import weakref
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import orjson
import psycopg
from prometheus_client import Counter
from psycopg import _queries as psycopg_queries
from psycopg.adapt import Transformer
from psycopg.types.json import Jsonb
from psycopg.waiting import Ready, Wait
from sqlalchemy import JSON, Table, event, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql import Executable, Insert

Params = dict[str, Any]

#: What the service sends to its database, counted where it is sent (here for the driver's
#: batches; db.py for what SQLAlchemy sends): `make bench` divides them by requests.
ROUND_TRIPS = Counter("voucher_db_round_trips", "Round trips to the database (a pipelined batch is one)")
STATEMENTS = Counter("voucher_db_statements", "Statements sent to the database, BEGIN and COMMIT included")


class _Tally:
    """Round trips and statements, gathered in the process and added to their counters at once:
    when a request has been answered and before an exposition (`flush_counts`), or every
    `EVERY` round trips. In multiprocess mode each increment of a counter takes a lock, a
    getpid and a write to its file (about 7 µs; a redeem made six)."""

    EVERY = 256

    def __init__(self) -> None:
        self.trips = self.statements = 0
        self.lock = threading.Lock()

    def add(self, trips: int, statements: int) -> None:
        with self.lock:
            self.trips += trips
            self.statements += statements
            full = self.trips >= self.EVERY
        if full:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            trips, statements, self.trips, self.statements = self.trips, self.statements, 0, 0
        if trips:
            ROUND_TRIPS.inc(trips)
        if statements:
            STATEMENTS.inc(statements)


_TALLY = _Tally()
count = _TALLY.add
flush_counts = _TALLY.flush
atexit.register(flush_counts)  # what a process counted since its last flush

# psycopg caches the parsing of a query's placeholders only for queries of at most 4 KiB and 50
# parameters (so that ORM-generated one-off statements do not fill its cache). Ours are built
# once per shape and run on every request — a batch of writes merged into one statement is
# longer than that — so the limits are raised (the cache stays an LRU of 128 entries).
if hasattr(psycopg_queries, "MAX_CACHED_STATEMENT_LENGTH"):
    psycopg_queries.MAX_CACHED_STATEMENT_LENGTH = max(psycopg_queries.MAX_CACHED_STATEMENT_LENGTH, 65536)
if hasattr(psycopg_queries, "MAX_CACHED_STATEMENT_PARAMS"):
    psycopg_queries.MAX_CACHED_STATEMENT_PARAMS = max(psycopg_queries.MAX_CACHED_STATEMENT_PARAMS, 1000)


@dataclass
class Step:
    """One statement of a batch and, once the batch has run, its result."""

    statement: Executable
    params: Params | list[Params] | None
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def first(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]


class Batch:
    """Statements to send together, in order (the order of their locks too)."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def add(self, statement: Executable, params: Params | list[Params] | None = None) -> Step:
        """Queue a statement; a list of parameter sets runs it once per set (an empty list
        runs nothing)."""
        step = Step(statement, params)
        if not (isinstance(params, list) and not params):
            self.steps.append(step)
        return step

    def extend(self, other: Batch) -> None:
        self.steps.extend(other.steps)

    def __bool__(self) -> bool:
        return bool(self.steps)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    json_params: frozenset[str]
    returns_rows: bool
    #: Values written into the statement itself (`.values(status="held")`), sent as parameters.
    fixed: Params
    #: For `insert_rows`: the same insert for any number of rows as ONE statement on PostgreSQL,
    #: the rows sent as one JSON parameter (one execution and one prepared plan however many).
    bulk_sql: str | None = None


_BULK: dict[int, Table] = {}
_GATHERED: set[int] = set()


def insert_rows(table: Table, *, gather: bool = False) -> Insert:
    """`insert(table)` for rows given whole as dicts; several rows in one step become one
    statement on PostgreSQL (jsonb_populate_recordset), not one per row.

    `gather`: for a table whose rows refer to no row written in the same transaction (no
    foreign key) and are read back in an order of their own (the audit trail and the outbox,
    by id): the rows a transaction queues for it are written together, where its first row
    was queued (`pending.take_deferred`), however many other writes were queued between."""
    statement = insert(table)
    _BULK[id(statement)] = table
    if gather:
        _GATHERED.add(id(statement))
    return statement


def gathered(statement: Executable) -> bool:
    return id(statement) in _GATHERED


_COMPILED: dict[tuple[int, str, tuple[str, ...] | None], tuple[Executable, _Compiled]] = {}


def _compile(statement: Executable, dialect: Dialect, params: Params | list[Params] | None = None) -> _Compiled:
    """psycopg's SQL for `statement`, compiled once. A bare `insert(table)` names the columns
    its parameters give (as SQLAlchemy does), so one statement serves rows of any shape."""
    columns = None
    if isinstance(statement, Insert) and params:
        first = params[0] if isinstance(params, list) else params
        columns = tuple(sorted(first))
    key = (id(statement), dialect.name, columns)
    cached = _COMPILED.get(key)
    if cached is not None and cached[0] is statement:
        return cached[1]
    compiled = statement.compile(dialect=dialect, column_keys=list(columns) if columns else None)  # type: ignore[attr-defined]
    json_params = frozenset(
        name for name, bind in compiled.binds.items() if isinstance(bind.type.dialect_impl(dialect), JSON)
    )
    # Only what the statement asks for: SQLAlchemy adds an implicit RETURNING of generated keys
    # to some inserts, which nothing here reads.
    returns = bool(getattr(statement, "returning_column_descriptions", None)) or bool(
        getattr(statement, "is_select", False))
    fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
    bulk = None
    table = _BULK.get(id(statement))
    if table is not None and columns:
        names = ", ".join(f'"{c}"' for c in columns)
        bulk = (f'INSERT INTO "{table.name}" ({names}) SELECT {names} '  # noqa: S608 - the table's own names
                f'FROM jsonb_populate_recordset(NULL::"{table.name}", %(rows)s)')
    result = _Compiled(str(compiled), json_params, returns, fixed, bulk)
    _COMPILED[key] = (statement, result)  # keeps the statement alive, so its id stays its own
    return result


def _pg_params(params: Params, compiled: _Compiled) -> Params:
    if compiled.fixed:
        params = {**compiled.fixed, **params}
    if not compiled.json_params:
        return params
    json_names = compiled.json_params
    return {k: (Jsonb(v, dumps=_dumps) if k in json_names and v is not None else v) for k, v in params.items()}


#: Instants and dataclasses go through `_text`, as with the standard library (an instant in
#: ISO 8601 with its offset; a dataclass refused).
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
#: The leaves orjson writes exactly as `json.dumps(default=_text)` does.
_SAME_TEXT = frozenset({str, int, bool, type(None), uuid.UUID, datetime, Decimal})


def _dumps(value: Any) -> bytes | str:
    """A JSON parameter's text: orjson's, a quarter of `json.dumps`'s time on the engine's rows
    and audit fields, when every leaf is one orjson writes as `json.dumps` would (`_plain`);
    anything else — a float, an enum member, a key that is not text, an integer past 64 bits,
    a lone surrogate — goes to `json.dumps`, so such a value is written, or refused, exactly as
    before (a NaN, say, is not stored as null)."""
    if _plain(value):
        try:
            return orjson.dumps(value, default=_text, option=_ORJSON_OPTIONS)
        except orjson.JSONEncodeError:
            pass
    return json.dumps(value, default=_text, separators=(",", ":"))


def _plain(value: Any) -> bool:
    """Whether `value` is made only of dicts with text keys, lists and `_SAME_TEXT` leaves."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            for key, inner in item.items():
                if type(key) is not str:
                    return False
                pending.append(inner)
        elif kind is list:
            pending.extend(item)
        elif kind not in _SAME_TEXT:
            return False
    return True


def _text(value: Any) -> str:
    """Ids as text, instants in ISO 8601 with their offset: PostgreSQL reads both back."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot go into a JSON parameter")


_FIRST = "voucher_driver_first"


def send_first(session: AsyncSession, batch: Batch, then: Callable[[], None],
               failed: Callable[[Exception], None] | None = None) -> None:
    """Send `batch` at the head of the next batch run in the session's transaction, in the same
    round trip (the Idempotency-Key's claim rides with the value engine's first reads); `then`
    runs once its results are in, before the caller's own results are handed back. `failed`
    sees the error if that round trip fails, and may raise its own instead (the claim's
    lock waited too long: its first request is still running)."""
    session.info[_FIRST] = (batch, then, failed)


async def send_pending(session: AsyncSession) -> None:
    """Send a batch `send_first` queued that no run has taken yet (before a commit)."""
    if _FIRST in session.info:
        await run(session, Batch())


async def run(session: AsyncSession, batch: Batch, *, commit: bool = False) -> Batch:
    """Run `batch` in the session's transaction (beginning it if needed); with `commit`, commit
    the session too — on PostgreSQL the COMMIT goes in the same round trip, and the session's
    own commit that follows finds nothing left to send but still runs its after-commit work.
    Results land on each step."""
    first = session.info.pop(_FIRST, None)
    if first is not None:
        head, then, failed = first
        combined = Batch()
        combined.steps = [*head.steps, *batch.steps]
        try:
            await run(session, combined, commit=False)
        except Exception as exc:
            if failed is not None:
                failed(exc)
            raise
        then()
        if commit:
            await session.commit()
        return batch
    if not batch and commit:
        await session.commit()  # nothing to send first (and no connection taken just for it)
        return batch
    if session.new or session.dirty or session.deleted:
        await session.flush()  # the ORM's pending changes first, as its own statements would
    connection = await _connection(session)
    if connection.dialect.name == "postgresql":
        # A savepoint still open is SQLAlchemy's to release: it commits after the batch then.
        await _run_pg(connection, batch, commit and not session.in_nested_transaction())
    else:
        for step in batch.steps:
            result = await connection.execute(step.statement, step.params)
            step.rows = [tuple(r) for r in result.fetchall()] if result.returns_rows else []
    if commit:
        await session.commit()
    return batch


_CONNECTION = "voucher_driver_connection"


async def _connection(session: AsyncSession) -> AsyncConnection:
    """The session's connection for its current transaction (beginning it if needed), kept on
    the session until the transaction ends: asking SQLAlchemy each time costs a greenlet switch."""
    connection: AsyncConnection | None = session.info.get(_CONNECTION)
    if connection is None or not session.in_transaction():
        connection = session.info[_CONNECTION] = await session.connection()
    return connection


@event.listens_for(Session, "after_transaction_end")
def _forget_connection(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_CONNECTION, None)


async def _run_pg(connection: AsyncConnection, batch: Batch, commit: bool) -> None:
    sync = connection.sync_connection
    assert sync is not None  # the session's connection has begun (see _connection)
    # The DBAPI connection is psycopg's here (this runs on PostgreSQL only).
    raw = cast("psycopg.AsyncConnection[Any]", sync.connection.driver_connection)
    try:
        await _exchange_batch(raw, connection.dialect, batch, commit)
    except _Failed as failed:
        if failed.lost:
            # Invalidated now, so the rollback that follows does not fail on it and the pool
            # never hands it out again; and, as SQLAlchemy does on a disconnect, every pooled
            # connection opened before now is replaced at its next checkout (a lost connection
            # usually means a restarted server: the others are dead too).
            sync = connection.sync_connection
            if sync is not None and sync._dbapi_connection is not None:  # noqa: SLF001
                sync.engine.pool._invalidate(sync._dbapi_connection, failed.error, _checkin=False)  # noqa: SLF001
            await connection.invalidate(failed.error)
        raise failed.as_dbapi() from failed.error


class _Failed(Exception):
    """A batch failed: psycopg's error, the SQL of the statement it came from, and whether the
    connection is lost (closed, broken, or its prepared statements no longer to be trusted)."""

    def __init__(self, error: psycopg.Error, sql: str, lost: bool) -> None:
        super().__init__(str(error))
        self.error, self.sql, self.lost = error, sql, lost

    def as_dbapi(self) -> Exception:
        # Raised as SQLAlchemy's, so it maps to the same problem as anywhere else.
        return DBAPIError.instance(self.sql, None, self.error, psycopg.Error, connection_invalidated=self.lost)


async def _exchange_batch(raw: psycopg.AsyncConnection[Any], dialect: Dialect, batch: Batch, commit: bool) -> None:
    """Run `batch` on `raw` in one round trip (with BEGIN first when `raw` is idle outside
    autocommit, COMMIT last when asked); results land on each step. Raises `_Failed`."""
    exchange = _Exchange(raw)
    current: Step | None = None
    writes: list[tuple[str, Params]] = []
    #: Per command sent: the step whose rows it returns (None: a write, BEGIN, COMMIT).
    readers: list[Step | None] = []

    def send_writes() -> None:
        # A run of writes goes as ONE statement (each write a data-modifying CTE of it): every
        # statement sent costs its own executor start in PostgreSQL.
        if len(writes) == 1:
            exchange.execute(*writes[0])
        elif writes:
            exchange.execute(*_merged(writes))
        readers.extend([None] * bool(writes))
        writes.clear()

    try:
        async with raw.lock:
            exchange.begin()
            try:
                if raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE and not raw.autocommit:
                    exchange.command(raw._get_tx_start_command())  # noqa: SLF001 - psycopg's own BEGIN, isolation level included
                    readers.append(None)
                for step in batch.steps:
                    current = step
                    compiled = _compile(step.statement, dialect, step.params)
                    if not compiled.returns_rows:
                        writes.extend(_write_parts(compiled, step.params))
                        continue
                    send_writes()
                    for params in step.params if isinstance(step.params, list) else [step.params or {}]:
                        exchange.execute(compiled.sql, _pg_params(params, compiled))
                        readers.append(step)
                current = None
                send_writes()
                if commit:
                    exchange.command(b"COMMIT")
                    readers.append(None)
                results = await exchange.finish()
            finally:
                exchange.end()
        count(1, len(readers))
        first_error = next((r for r in results if r.status == psycopg.pq.ExecStatus.FATAL_ERROR), None)
        if first_error is not None:
            index = results.index(first_error)
            current = readers[index] if index < len(readers) else None
            raise psycopg.errors.error_from_result(first_error, encoding=raw.pgconn._encoding)  # noqa: SLF001
        for step in batch.steps:
            step.rows = []
        for reader, result in zip(readers, results, strict=True):
            if reader is not None:
                reader.rows.extend(exchange.rows(result))
    except psycopg.Error as exc:
        # A statement the driver prepared is gone (something sent DEALLOCATE): the connection's
        # record of them cannot be trusted, so it goes, and the caller is told to retry.
        lost = (raw.broken or raw.closed or raw.pgconn.status == psycopg.pq.ConnStatus.BAD
                or isinstance(exc, psycopg.errors.InvalidSqlStatementName))
        sql = _compile(current.statement, dialect, current.params).sql if current is not None else "(batch)"
        raise _Failed(exc, sql, lost) from exc


def check_reads_only(batch: Batch) -> None:
    """A batch sent outside any transaction may be sent twice (`Reads` retries one whose idle
    connection had died): SELECTs only, never a write."""
    if not all(getattr(step.statement, "is_select", False) for step in batch.steps):
        raise TypeError("a read outside a transaction runs SELECTs only")


#: `Reads`: how long a connect may take, and how long a read waits for a free connection, before
#: it is refused as unavailable (503) rather than left hanging.
CONNECT_TIMEOUT, WAIT_TIMEOUT = 5, 30.0


class Reads:
    """PostgreSQL: the driver's own few autocommit connections, for reads that need no
    transaction (a voucher with its balances is one statement). Such a read takes no SQLAlchemy
    session or pooled connection: checking one out and back in cost more than the statement.

    A small pool of our own rather than psycopg_pool's: that one retries a failed connect in the
    background and keeps the caller waiting for its timeout, where a read must fail at once
    with a 503 when the server is down. At most `size` connections at a time (others wait their
    turn); idle ones are kept up to `size`; a lost one is dropped, and a read whose reused
    connection turns out to be dead is run once more on a new one (a read changes nothing)."""

    def __init__(self, conninfo: str, *, size: int, options: str, dialect: Dialect) -> None:
        self.conninfo, self.options, self.dialect = conninfo, options, dialect
        self.size = size
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _slots_here(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            # Connections belong to the loop that opened them (tests run several loops).
            self._idle.clear()
            self._slots, self._loop = asyncio.Semaphore(self.size), loop
        return self._slots

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, prepare_threshold=None,
                                                     options=self.options, connect_timeout=CONNECT_TIMEOUT)

    async def run(self, batch: Batch) -> Batch:
        check_reads_only(batch)
        slots = self._slots_here()
        try:
            async with asyncio.timeout(WAIT_TIMEOUT):
                await slots.acquire()
        except TimeoutError as exc:
            raise PoolTimeout(f"no read connection free within {WAIT_TIMEOUT:g} s") from exc
        try:
            return await self._run(batch)
        finally:
            slots.release()

    async def _run(self, batch: Batch) -> Batch:
        reused = bool(self._idle)
        raw: psycopg.AsyncConnection[Any] | None = self._idle.pop() if reused else await self._open()
        try:
            for attempt in (1, 2):
                assert raw is not None
                try:
                    await _exchange_batch(raw, self.dialect, batch, False)
                    break
                except _Failed as failed:
                    if failed.lost:
                        await raw.close()
                        raw = None
                    if not (failed.lost and reused and attempt == 1):
                        raise failed.as_dbapi() from failed.error
                    raw = await self._open()  # the idle one had died: once more, on a new one
            kept, raw = raw, None
            assert kept is not None
            await self._put_back(kept)
            return batch
        finally:
            if raw is not None:  # a failed statement (the connection is fine) or an interruption
                if raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE and not raw.closed:
                    await self._put_back(raw)
                else:
                    await raw.close()

    async def _put_back(self, raw: psycopg.AsyncConnection[Any]) -> None:
        if len(self._idle) < self.size and raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self._idle.append(raw)
        else:
            await raw.close()

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await self._connect()
        except psycopg.Error as exc:
            raise DBAPIError.instance("(connect)", None, exc, psycopg.Error, connection_invalidated=True) from exc

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for raw in idle:
            try:
                await raw.close()
            except RuntimeError:  # opened on a loop that has ended
                pass


#: Statements prepared on each connection, by (SQL, parameter types), as psycopg keys its own.
_PREPARED: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], dict[tuple[bytes, tuple[int, ...]], bytes]] = (
    weakref.WeakKeyDictionary())
#: Past this many on one connection, new shapes run unnamed (parsed each time) instead.
MAX_PREPARED = 1000
_NAMES = itertools.count()


class _Exchange:
    """One round trip on libpq's pipeline, below psycopg's cursors: every command goes into
    libpq's buffer, then one flush sends them all, and their results are read as they come,
    up to the pipeline's sync. (psycopg's own pipeline flushes the socket and turns the event
    loop once per command; a batch of eleven paid eleven sends and as many wake-ups of the
    server.) Parameters are dumped and rows loaded by psycopg's own adapters, with the
    connection's configuration, so values come and go exactly as through a cursor."""

    def __init__(self, raw: psycopg.AsyncConnection[Any]) -> None:
        self.raw = raw
        self.pgconn = raw.pgconn
        self.transformer = Transformer(raw)
        self.prepared = _PREPARED.setdefault(raw, {})
        #: (key, name) of each statement this exchange prepares, kept once its PREPARE succeeds.
        self.preparing: list[tuple[int, tuple[bytes, tuple[int, ...]], bytes]] = []
        self.sent = 0  # commands whose results are read (a PREPARE's included)
        self.in_pipeline = False

    def begin(self) -> None:
        if self.raw.closed or self.raw.broken:
            raise psycopg.OperationalError("the connection is closed")
        self.pgconn.enter_pipeline_mode()
        self.in_pipeline = True

    def command(self, sql: bytes) -> None:
        self.pgconn.send_query_params(sql, None)
        self.sent += 1

    def execute(self, sql: str, params: Params | Sequence[Any]) -> None:
        query = psycopg_queries.PostgresQuery(self.transformer)
        query.convert(sql, params)
        key = (query.query, query.types)
        name = self.prepared.get(key)
        if name is None and len(self.prepared) + len(self.preparing) < MAX_PREPARED:
            name = next((n for _, k, n in self.preparing if k == key), None)
            if name is None:
                name = f"_voucher_{next(_NAMES)}".encode()  # never reused in this process
                self.pgconn.send_prepare(name, query.query, param_types=query.types)
                self.preparing.append((self.sent, key, name))
                self.sent += 1
        if name is None:
            self.pgconn.send_query_params(query.query, query.params, param_types=query.types,
                                          param_formats=query.formats)
        else:
            self.pgconn.send_query_prepared(name, query.params, param_formats=query.formats)
        self.sent += 1

    async def finish(self) -> list[psycopg.pq.abc.PGresult]:
        """Send everything, read every command's result; each PREPARE's result is taken out."""
        self.pgconn.pipeline_sync()
        results = await self.raw.wait(_communicate(self.pgconn))
        prepares = {index for index, _, _ in self.preparing}
        for index, key, name in self.preparing:
            if results[index].status == psycopg.pq.ExecStatus.COMMAND_OK:
                self.prepared[key] = name
            elif results[index].status == psycopg.pq.ExecStatus.FATAL_ERROR:
                raise psycopg.errors.error_from_result(results[index], encoding=self.pgconn._encoding)  # noqa: SLF001
        return [r for i, r in enumerate(results) if i not in prepares]

    def end(self) -> None:
        if self.in_pipeline:
            self.in_pipeline = False
            if self.pgconn.status == psycopg.pq.ConnStatus.OK:
                try:
                    self.pgconn.exit_pipeline_mode()
                except psycopg.Error:
                    # Results still unread (the exchange was interrupted): nothing can use this
                    # connection now, and the caller's error makes it go.
                    self.pgconn.finish()

    def rows(self, result: psycopg.pq.abc.PGresult) -> list[tuple[Any, ...]]:
        if result.status != psycopg.pq.ExecStatus.TUPLES_OK or not result.ntuples:
            return []
        self.transformer.set_pgresult(result)
        return self.transformer.load_rows(0, result.ntuples, tuple)


def _communicate(pgconn: psycopg.pq.abc.PGconn) -> Generator[Wait, Ready | int, list[psycopg.pq.abc.PGresult]]:
    """Flush the pipeline, then one result per command up to the sync (a command's error
    aborts the ones after it: their results say so, and the first error is raised by the caller)."""
    while pgconn.flush():
        ready = yield Wait.RW
        if ready & Ready.R:
            pgconn.consume_input()  # the server may be waiting for us to read before it reads on
    results: list[psycopg.pq.abc.PGresult] = []
    pending: psycopg.pq.abc.PGresult | None = None
    while True:
        while pgconn.is_busy():
            yield Wait.R
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:  # the end of one command's results
            if pending is not None:
                results.append(pending)
                pending = None
            continue
        status = result.status
        if status == psycopg.pq.ExecStatus.PIPELINE_SYNC:
            return results
        if status in (psycopg.pq.ExecStatus.COPY_IN, psycopg.pq.ExecStatus.COPY_OUT, psycopg.pq.ExecStatus.COPY_BOTH):
            raise psycopg.NotSupportedError("COPY cannot run in the driver's pipeline")
        pending = result  # one result per command here (no multi-statement strings)


def _write_parts(compiled: _Compiled, params: Params | list[Params] | None) -> list[tuple[str, Params]]:
    """A write as (SQL, parameters) statements: many rows of an `insert_rows` as one."""
    if not isinstance(params, list):
        return [(compiled.sql, _pg_params(params or {}, compiled))]
    if compiled.bulk_sql and len(params) > 1 and _same_keys(params):
        return [(compiled.bulk_sql, {"rows": Jsonb(params, dumps=_dumps)})]
    return [(compiled.sql, _pg_params(p, compiled)) for p in params]


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class _Shape:
    """A merged statement: its SQL, with positional placeholders, and per write the names of
    its parameters in the order they appear."""

    sql: str
    names: tuple[tuple[str, ...], ...]


def _merged(writes: list[tuple[str, Params]]) -> tuple[str, list[Any]]:
    """Several writes as one statement of data-modifying CTEs, their parameters sent by
    position (no renaming per request: the shape is built once).

    Each CTE runs exactly once, on the statement's snapshot; none sees another's rows, and no
    two may change the same row (callers net their moves per row first). Foreign keys between
    them are checked at the end of the statement, so one may insert rows another refers to."""
    key = tuple(sql for sql, _ in writes)
    shape = _MERGED.get(key)
    if shape is None:
        parts = [f"w{index} AS ({_PLACEHOLDER.sub('%s', sql)})" for index, sql in enumerate(key)]
        shape = _Shape("WITH " + ",\n".join(parts) + "\nSELECT 1",
                       tuple(tuple(m.group(1) for m in _PLACEHOLDER.finditer(sql)) for sql in key))
        if len(_MERGED) < MAX_PREPARED:  # the shapes a process writes are few; never unbounded
            _MERGED[key] = shape
    try:
        return shape.sql, [params[name] for names, (_, params) in zip(shape.names, writes, strict=True)
                           for name in names]
    except KeyError as missing:  # as psycopg says it of a statement sent alone
        raise psycopg.ProgrammingError(f"query parameter missing: {missing.args[0]}") from None


#: A merged statement by the SQL of its writes: built once per shape (the same string each
#: time, so psycopg's parse of it is cached too).
_MERGED: dict[tuple[str, ...], _Shape] = {}


def _same_keys(rows: list[Params]) -> bool:
    first = rows[0].keys()
    return all(r.keys() == first for r in rows)


def one_statement(statement: Executable, params: Params | list[Params] | None = None) -> Batch:
    batch = Batch()
    batch.add(statement, params)
    return batch


def rows_of(steps: Sequence[Step]) -> list[list[tuple[Any, ...]]]:
    return [s.rows for s in steps]
