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

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import JSON
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import Executable, Insert

Params = dict[str, Any]


@dataclass
class Step:
    """One statement of a batch and, once the batch has run, its result."""

    statement: Executable
    params: Params | list[Params] | None
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rowcount: int = -1

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
    returns = bool(getattr(compiled, "returning", None)) or bool(getattr(statement, "is_select", False))
    fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
    result = _Compiled(str(compiled), json_params, returns, fixed)
    _COMPILED[key] = (statement, result)  # keeps the statement alive, so its id stays its own
    return result


def _pg_params(params: Params, compiled: _Compiled) -> Params:
    if compiled.fixed:
        params = {**compiled.fixed, **params}
    if not compiled.json_params:
        return params
    json_names = compiled.json_params
    return {k: (Jsonb(v, dumps=_dumps) if k in json_names and v is not None else v) for k, v in params.items()}


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


async def run(session: AsyncSession, batch: Batch, *, commit: bool = False) -> Batch:
    """Run `batch` in the session's transaction (beginning it if needed); with `commit`, commit
    the session too — on PostgreSQL the COMMIT goes in the same round trip, and the session's
    own commit that follows finds nothing left to send but still runs its after-commit work.
    Results land on each step."""
    if not batch and commit:
        await session.commit()  # nothing to send first (and no connection taken just for it)
        return batch
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        # A savepoint still open is SQLAlchemy's to release: it commits after the batch then.
        await _run_pg(connection, batch, commit and not session.in_nested_transaction())
    else:
        for step in batch.steps:
            result = await connection.execute(step.statement, step.params)
            step.rowcount = result.rowcount
            step.rows = [tuple(r) for r in result.fetchall()] if result.returns_rows else []
    if commit:
        await session.commit()
    return batch


async def _run_pg(connection: AsyncConnection, batch: Batch, commit: bool) -> None:
    raw: psycopg.AsyncConnection[Any] = (await connection.get_raw_connection()).driver_connection  # type: ignore[assignment]
    dialect = connection.dialect
    cursors: list[psycopg.AsyncCursor[Any]] = []
    current: Step | None = None
    try:
        async with raw.pipeline() as pipeline:
            for step in batch.steps:
                current = step
                compiled = _compile(step.statement, dialect, step.params)
                cursor = raw.cursor(row_factory=tuple_row)
                cursors.append(cursor)
                if isinstance(step.params, list):
                    await cursor.executemany(
                        compiled.sql, [_pg_params(p, compiled) for p in step.params],
                        returning=compiled.returns_rows)
                else:
                    await cursor.execute(compiled.sql, _pg_params(step.params or {}, compiled),
                                         prepare=True)
            current = None
            if commit:
                # As a statement, not raw.commit(): that looks at the transaction status, which
                # the queued BEGIN has not changed yet.
                cursor = raw.cursor()
                cursors.append(cursor)
                await cursor.execute(b"COMMIT")
            await pipeline.sync()
            for step, cursor in zip(batch.steps, cursors, strict=False):
                step.rowcount = cursor.rowcount
                step.rows = await _all_rows(cursor) if _compile(step.statement, dialect, step.params).returns_rows else []
    except psycopg.Error as exc:
        lost = raw.broken or raw.closed
        if lost:
            # Invalidated now, so the rollback that follows does not fail on it and the pool
            # never hands it out again.
            await connection.invalidate(exc)
        sql = _compile(current.statement, dialect, current.params).sql if current is not None else "(batch)"
        raise DBAPIError.instance(sql, None, exc, psycopg.Error, connection_invalidated=lost) from exc
    finally:
        for cursor in cursors:
            await cursor.close()


async def _all_rows(cursor: psycopg.AsyncCursor[Any]) -> list[tuple[Any, ...]]:
    """Every row of every result the cursor holds (executemany with RETURNING holds several)."""
    rows: list[tuple[Any, ...]] = []
    while True:
        if cursor.pgresult is not None and cursor.description is not None:
            rows.extend(await cursor.fetchall())
        if not cursor.nextset():
            return rows


def one_statement(statement: Executable, params: Params | list[Params] | None = None) -> Batch:
    batch = Batch()
    batch.add(statement, params)
    return batch


def rows_of(steps: Sequence[Step]) -> list[list[tuple[Any, ...]]]:
    return [s.rows for s in steps]
