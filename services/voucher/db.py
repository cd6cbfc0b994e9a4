"""Engine, column types, naming convention and units of work.

Transactions: a request's session commits when the response is a success and rolls back
otherwise (see http/unit_of_work.py); services never commit. On SQLite every writing
transaction starts with BEGIN IMMEDIATE so two writers serialise at BEGIN instead of failing
at COMMIT; on PostgreSQL value moves under row locks or conditional updates.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Select, Table, event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapped
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

from services.voucher import driver
from services.voucher.driver import Batch
from services.voucher.errors import InvalidCursor
from services.voucher.i18n import msg
from services.voucher.pending import take_deferred
from services.voucher.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = SQLModel.metadata
metadata.naming_convention = NAMING_CONVENTION


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a table model (its `__table__`, which SQLModel's types do not declare)."""
    table = sa_inspect(model).local_table
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table


def dialect_name(session: AsyncSession) -> str:
    """The name of the database dialect `session` is bound to ("postgresql" or "sqlite")."""
    if session.bind is None:
        raise RuntimeError("the session is not bound to an engine")
    return session.bind.dialect.name


def insert_of(session: AsyncSession) -> Any:
    """The dialect's own `insert` (with `on_conflict_do_nothing`) for `session`'s database."""
    return pg_insert if dialect_name(session) == "postgresql" else sqlite_insert

#: JSON everywhere, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")
#: A JSON column whose None is SQL NULL (JSONType stores the JSON text `null`), for a column
#: that older rows leave NULL: `IS NULL` then means the same for every row.
JSONNullable = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on both engines.

    SQLite has no time zone type, so UTC is stored naive there; a naive value handed to the
    database is a bug and is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLSTATEs that mean "you lost a race, retrying may work" on PostgreSQL.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57014"}


def is_transient(exc: BaseException) -> bool:
    """Serialization failure, deadlock, lock or statement timeout, or SQLite's busy lock."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in _TRANSIENT_SQLSTATES:
        return True
    return "database is locked" in str(orig) or "database table is locked" in str(orig)


# Connection exceptions (class 08), the server shutting down or starting (57P01–57P03), and no
# connection slots left (53300): the database, not the request.
_UNAVAILABLE_SQLSTATES = {"57P01", "57P02", "57P03", "53300"}


def is_unavailable(exc: BaseException) -> bool:
    """The database could not be reached: the connection was lost mid-request (SQLAlchemy or
    our driver invalidated it), could not be opened, the server is shutting down, or the pool
    had no connection to give in time."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate:
        return sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES
    # psycopg reports a refused or broken connection as an OperationalError without a SQLSTATE
    return isinstance(exc, OperationalError) and type(orig).__module__.startswith("psycopg")


#: A table or column this build reads is not there (PostgreSQL's undefined table and column;
#: SQLite says so in words): the database is not migrated to this build's schema.
_SCHEMA_SQLSTATES = {"42P01", "42703"}
_SQLITE_SCHEMA_MISSING = ("no such table", "no such column", "has no column named")


def is_schema_missing(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate:
        return sqlstate in _SCHEMA_SQLSTATES
    return type(orig).__name__ == "OperationalError" and any(
        words in str(orig) for words in _SQLITE_SCHEMA_MISSING)


def is_data_error(exc: BaseException) -> bool:
    """The database refused a value itself (SQLSTATE class 22: NUL in text, out of range…),
    or the driver did before sending it."""
    if isinstance(exc, DataError):
        return True
    if isinstance(exc, OverflowError) and "SQLite INTEGER" in str(exc):
        return True  # aiosqlite raises the driver's own refusal unwrapped
    if isinstance(exc, DBAPIError):
        orig = getattr(exc, "orig", None)
        sqlstate = getattr(orig, "sqlstate", None) or ""
        if sqlstate.startswith("22") or isinstance(orig, OverflowError):
            return True
    cause = getattr(exc, "orig", None) or exc.__cause__
    return isinstance(cause, ValueError | OverflowError) and (
        "NUL" in str(cause) or "out of range" in str(cause) or "too large" in str(cause)
    )


def is_integrity_error(exc: BaseException) -> bool:
    return isinstance(exc, IntegrityError)


#: A lock wait longer than this is a lost race (409), not a hung request; times come back in UTC.
_OPTIONS = "-c lock_timeout=10000 -c statement_timeout=60000 -c TimeZone=UTC"


class Database:
    """One engine per process; sessions for reads and for writes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.is_sqlite = settings.is_sqlite
        # Statement parameters are never put in logs or error messages: they hold webhook signing
        # secrets and key hashes, and SQLAlchemy's echo logs them past the redacting handler (an
        # independent review, December 2026).
        kwargs: dict[str, Any] = {"echo": settings.database_echo, "hide_parameters": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(
                pool_size=settings.database_pool_size,
                max_overflow=settings.database_pool_size,
                # No ping per checkout (a round trip per request): a connection that died in the
                # pool fails its first statement, is invalidated there, and the request is told
                # to retry (503) with nothing changed.
                pool_pre_ping=False,
                # A lock wait longer than this is a lost race (409), not a hung request. Times
                # come back in UTC whatever the server's default time zone.
                connect_args={"options": _OPTIONS,
                              # psycopg prepares nothing of its own: when it has, a ROLLBACK, DROP or
                              # ALTER makes it send DEALLOCATE ALL, which would drop the statements
                              # the driver prepared on the same connection (driver.py, _Exchange).
                              "prepare_threshold": None},
            )
        self.engine: AsyncEngine = create_async_engine(settings.database_url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        else:
            _count_round_trips(self.engine)
        self.write_engine = self.engine.execution_options(voucher_write=True)
        self._writer = TaskLock()
        #: Copied into every session's `info` (sessions read it; main.py adds the key cache).
        self.info: dict[str, Any] = {"audit_disabled": not settings.audit_events_enabled}
        info = self.info
        # Reads on PostgreSQL run in autocommit: under READ COMMITTED a read transaction gives
        # its statements nothing a statement does not already have (each sees what has committed
        # when it starts), and it costs a BEGIN and a ROLLBACK — two of a voucher read's round
        # trips. `snapshot()` opens a real transaction where one instant is needed.
        read_engine = self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._read_sessions = async_sessionmaker(read_engine, expire_on_commit=False, info=info)
        self._write_sessions = async_sessionmaker(self.write_engine, expire_on_commit=False, info=info)
        #: PostgreSQL: the driver's connections for one-statement reads outside any transaction —
        #: half as many as the pool keeps (a read holds one for a fraction of a millisecond), so a
        #: process opens at most 2.5 × VOUCHER_DATABASE_POOL_SIZE connections in all.
        self.reads = None if self.is_sqlite else driver.Reads(
            self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
            size=max(2, settings.database_pool_size // 2), options=_OPTIONS, dialect=self.engine.dialect)

    async def read(self, batch: Batch) -> Batch:
        """Run a batch of reads that needs no transaction: on PostgreSQL on the driver's own
        autocommit connections (no session, no SQLAlchemy connection); on SQLite in a read
        session of its own."""
        if self.reads is not None:
            return await self.reads.run(batch)
        driver.check_reads_only(batch)
        async with self.session(write=False) as session:
            return await driver.run(session, batch)

    def session(self, *, write: bool) -> AsyncSession:
        return (self._write_sessions if write else self._read_sessions)()

    @asynccontextmanager
    async def unit_of_work(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A transaction of its own: commits if the block succeeds, rolls back if it raises."""
        async with self.writer(write), self.session(write=write) as session:
            await session.begin()  # now, so work tied to the transaction (on_commit) waits for it
            yield session
            await self.commit(session)

    @asynccontextmanager
    async def writer(self, write: bool = True) -> AsyncIterator[None]:
        """On SQLite, the process's one writer: write units queue here, first come first served,
        instead of polling SQLite's busy handler (which favours no one and lets an unlucky
        request wait seconds). Re-entrant for the task that holds it. Elsewhere, nothing."""
        if not (write and self.is_sqlite):
            yield
            return
        async with self._writer:
            yield

    async def commit(self, session: AsyncSession, batch: Batch | None = None) -> None:
        """Commit `session`'s transaction: its ORM changes, the writes deferred on it (audit
        events, the value engine's rows) and `batch` (the Idempotency-Key's answer) go with the
        COMMIT — one round trip on PostgreSQL for all of them."""
        if session.new or session.dirty or session.deleted:
            await session.flush()
        writes = take_deferred(session)
        if batch is not None:
            writes.extend(batch)
        await driver.run(session, writes, commit=True)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction that sees one instant throughout (REPEATABLE READ on
        PostgreSQL; a SQLite read transaction already does): for verifications and exports
        that read many tables while writes go on."""
        async with self.session(write=False) as session, session.begin():
            if not self.is_sqlite:
                await session.connection(
                    execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
                )
            yield session

    @staticmethod
    async def in_transaction(session: AsyncSession, isolation: str = "READ COMMITTED") -> None:
        """Make a read session's next statements run inside a transaction (a server-side cursor
        — streaming a large result — needs one; reads are otherwise autocommit on PostgreSQL),
        at `isolation` (REPEATABLE READ: every statement sees one instant). A session already
        in a transaction of its own keeps it."""
        if dialect_name(session) != "postgresql":
            return
        if session.in_transaction():
            connection = await session.connection()
            if not connection.sync_connection.connection.driver_connection.autocommit:  # type: ignore[union-attr]
                return
            await session.rollback()
        await session.connection(execution_options={"isolation_level": isolation})

    async def dispose(self) -> None:
        if self.reads is not None:
            await self.reads.close()
        await self.engine.dispose()


class TaskLock:
    """An asyncio lock that queues waiters first in, first out (asyncio.Lock does) and lets the
    task holding it take it again (a write unit that opens another, e.g. sealing the audit
    chain before a request's own transaction begins)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if self._owner is task and task is not None:
            self._depth += 1
            return
        await self._lock.acquire()
        self._owner, self._depth = task, 1

    async def __aexit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()


def _count_round_trips(engine: AsyncEngine) -> None:
    """What SQLAlchemy sends, counted like the driver's batches (driver.ROUND_TRIPS): each
    statement is a round trip, and so is the BEGIN psycopg sends before the first statement of
    a transaction, and a COMMIT or ROLLBACK that has a transaction to end."""

    def busy(conn: Any) -> bool:
        # A connection lost mid-transaction is invalidated: asking it anything raises, and
        # nothing more is sent on it. Counting must never break the rollback that follows.
        if conn.invalidated:
            return False
        raw = conn.connection.driver_connection
        if raw.closed or raw.broken:
            return False
        return bool(raw.info.transaction_status != raw.info.transaction_status.IDLE)

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _statement(conn: Any, *_: Any) -> None:
        trips = 1 if busy(conn) or conn.invalidated or conn.connection.driver_connection.autocommit else 2
        driver.count(trips, trips)

    @event.listens_for(engine.sync_engine, "commit")
    @event.listens_for(engine.sync_engine, "rollback")
    def _end(conn: Any) -> None:
        if busy(conn):
            driver.count(1, 1)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=30000",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("voucher_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# -- cursor pagination ----------------------------------------------------------------------
#
# Every list is ordered by its time-ordered primary key, so "after this id" is a stable cursor:
# no row is repeated, and rows made later appear on later pages. An id is taken when a row is
# made, not when its transaction commits, so a row that commits after a later row's page was
# read lands behind the cursor (docs/decisions.md, "Ids and pagination").

_CURSOR_VERSION = "c1:"


@dataclass(frozen=True)
class PageRequest:
    limit: int
    after: uuid.UUID | None = None


def encode_cursor(last_id: uuid.UUID) -> str:
    raw = (_CURSOR_VERSION + last_id.hex).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith(_CURSOR_VERSION):
            raise ValueError(raw)
        return uuid.UUID(hex=raw[len(_CURSOR_VERSION) :])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor(
            msg("the cursor is not one this service issued; start again without `cursor`")
        ) from exc


# Lists keyed by an auto-numbered integer (ledger postings) page "after this number" the same
# way, with a cursor of their own version, so one list's cursor is refused by the other.

_INT_CURSOR_VERSION = "n1:"


@dataclass(frozen=True)
class IntPageRequest:
    limit: int
    after: int | None = None


def encode_int_cursor(last_id: int) -> str:
    raw = f"{_INT_CURSOR_VERSION}{last_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_int_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith(_INT_CURSOR_VERSION):
            raise ValueError(raw)
        digits = raw[len(_INT_CURSOR_VERSION) :]
        if not re.fullmatch(r"[0-9]{1,19}", digits) or int(digits) > 2**63 - 1:
            raise ValueError(raw)
        return int(digits)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor(
            msg("the cursor is not one this service issued; start again without `cursor`")
        ) from exc


async def paginate(
    session: AsyncSession, stmt: Select[Any], id_column: Mapped[uuid.UUID], page: PageRequest, *,
    whole_rows: bool = False,
) -> tuple[Sequence[Any], str | None]:
    """Run `stmt` (already filtered) one page at a time, ordered by `id_column`: its first
    column's objects, or with `whole_rows` its rows (the first column still the paged object)."""
    if page.after is not None:
        stmt = stmt.where(id_column > page.after)
    result = await session.execute(stmt.order_by(id_column).limit(page.limit + 1))
    rows: Sequence[Any] = result.all() if whole_rows else result.scalars().all()
    if len(rows) > page.limit:
        rows = rows[: page.limit]
        return rows, encode_cursor((rows[-1][0] if whole_rows else rows[-1]).id)
    return rows, None
