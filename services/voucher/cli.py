"""The `voucher` command: serve, worker, db, keys, ledger, jobs, audit, export, demo."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import re
import stat
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import typer.core

from services.voucher import i18n
from services.voucher.apikeys.rules import Role
from services.voucher.clock import SandboxClock, system_clock
from services.voucher.observability import redact
from services.voucher.settings import Settings, get_settings, sync_database_url

_type_column = typer.core.TyperOption.display_type_rich


def _flag_without_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    """A flag takes no value, so --help shows no type beside it (Typer prints `<bool>`)."""
    return None if self.is_flag else _type_column(self, ctx)


typer.core.TyperOption.display_type_rich = _flag_without_type  # type: ignore[method-assign]
# An argument's name column already says what it is (DATASET, KEY_ID): no `<str>` beside it.
typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]

app = typer.Typer(
    no_args_is_help=True, help="Voucher subsidy service.", add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode="markdown",
)
db_app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", help="Database schema (Alembic migrations).")
keys_app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", help="API keys.")
ledger_app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", help="The double-entry ledger.")
jobs_app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", help="Background jobs (also run by the worker).")
audit_app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", help="The tamper-evident audit trail.")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(ledger_app, name="ledger")
app.add_typer(jobs_app, name="jobs")
app.add_typer(audit_app, name="audit")
secrets_app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown",
                          help="The key that seals webhook signing secrets (VOUCHER_SECRETS_KEY).")
app.add_typer(secrets_app, name="secrets")

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]

#: Every command that opens the database takes it (else DATABASE_URL, else the embedded default).
DatabaseUrl = Annotated[str | None, typer.Option(
    "--database-url", show_default=False, metavar="URL",
    help="The database: postgresql://user:password@host/name or sqlite:///path (default: DATABASE_URL, "
         "else ./var/voucher.db).")]


def _use_database(url: str | None, *, create: bool = False) -> None:
    """Point this command (and the server or worker it starts) at `url`, when given. An SQLite
    file that does not exist is created only by `db upgrade` (`create`): any other command
    stops (exit 2) rather than make an empty database at a mistyped path and then fail on its
    missing tables."""
    named_by = "--database-url" if url else next(
        (name for name in ("DATABASE_URL", "VOUCHER_DATABASE_URL") if os.environ.get(name)), "the default")
    if url:
        os.environ.pop("VOUCHER_DATABASE_URL", None)
        os.environ["DATABASE_URL"] = url
        get_settings.cache_clear()
    if not create:
        path = _sqlite_file(get_settings().database_url)
        if path is not None and not path.exists():
            typer.echo(f"error: there is no database at {path} ({named_by} names an SQLite file that does not "
                       "exist): check the path, or create it with `voucher db upgrade`", err=True)
            raise typer.Exit(EXIT_COULD_NOT_RUN)


def _sqlite_file(url: str) -> Path | None:
    """The file of an SQLite database URL; None for PostgreSQL or an in-memory database."""
    from sqlalchemy.engine import make_url

    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _run(work: Callable[[Any], Awaitable[T]], settings: Settings | None = None, *, read: bool = False) -> T:
    """Run `work(session)` in one unit of work against the configured database; with `read`, in
    a snapshot that writes nothing and so, on SQLite, takes no write lock (the reconciliation
    had run holding it, and every hold and redeem of the service waited, then failed after the
    busy timeout; an independent review, December 2026)."""
    from services.voucher.db import Database

    async def main() -> T:
        database = Database(settings or get_settings())
        try:
            if read:
                async with database.snapshot() as session:
                    return await work(session)
            async with database.unit_of_work(write=True) as session:
                return await work(session)
        finally:
            await database.dispose()

    return asyncio.run(main())


async def _now(session: Any) -> datetime:
    """The service's time: real time, or in sandbox mode the sandbox clock (docs/sandbox.md)."""
    from services.voucher.sandbox import service as sandbox

    if not get_settings().sandbox:
        return system_clock()
    return (await sandbox.read(session, SandboxClock())).now


async def _clock(database: Any) -> Any:
    from services.voucher.sandbox import service as sandbox

    return await sandbox.clock_for(database)


def _language() -> str:
    """The language of what a command says to people: VOUCHER_DEFAULT_LANGUAGE, as the API's."""
    from services.voucher.http.language import language_of_setting

    return language_of_setting(get_settings().default_language)


def _print_error(exc: Any) -> None:
    """A refusal as a script can read it: the code (never translated), the reason and each bad
    field in VOUCHER_DEFAULT_LANGUAGE."""
    from services.voucher.i18n import render

    language = _language()
    typer.echo(f"error: {exc.code}: {exc.detail_in(language)}", err=True)
    for error in render(exc.extra.get("errors", []), language):
        typer.echo(f"  {error['pointer'].lstrip('/')}: {error['message']}", err=True)


def alembic_config(database_url: str | None = None) -> Any:
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"), stdout=sys.stdout)
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url or get_settings().database_url
    return config


def _ensure_sqlite_dir(url: str) -> None:
    path = _sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(metavar="REVISION", help="An Alembic revision; head is the newest.")] = "head", database_url: DatabaseUrl = None) -> None:
    """Apply migrations up to REVISION (default: head)."""
    _use_database(database_url, create=True)
    from alembic import command

    _ensure_sqlite_dir(get_settings().database_url)
    command.upgrade(alembic_config(), revision)
    if get_settings().environment == "production":  # marked as production's from now (deployment.py)
        from services.voucher import deployment

        asyncio.run(_with_database(deployment.mark_as_production))
    typer.echo(f"database at {revision}")


@db_app.command("downgrade", context_settings={"ignore_unknown_options": True})  # -1 is a revision, not an option
def db_downgrade(
    revision: Annotated[str, typer.Argument(metavar="REVISION")],
    drop_data: Annotated[bool, typer.Option("--drop-data", help=(
        "Go below a revision that made a table holding rows, or added a column holding values, and lose "
        "them."))] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Revert migrations down to REVISION (e.g. -1 or base). Refused (exit 2, nothing changed) if
    that would drop a table that holds rows — the ledger, the audit trail, settlements — or a
    column a later revision added that holds values (a settlement's payee account), unless
    --drop-data: undoing a release that holds data is a restore of the backup taken before it."""
    _use_database(database_url)
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    config = alembic_config()
    engine = create_engine(sync_database_url(get_settings().database_url))
    try:
        holding: dict[str, int] = {}
        if not drop_data:  # told to lose the data: nothing to count, and no guard to stop it
            with engine.connect() as connection:
                holding = _tables_a_downgrade_drops(config, connection, revision)
                holding |= _columns_a_downgrade_drops(config, connection, revision)
        if holding:
            listed = ", ".join(f"{table} ({rows:,} rows)" for table, rows in holding.items())
            typer.echo(f"error: going down to {revision} drops tables or columns that hold data: {listed}. "
                       "Nothing was changed. "
                       "To undo an upgrade on a database in use, restore the backup taken before it; "
                       "--drop-data goes down all the same and loses those rows", err=True)
            raise typer.Exit(EXIT_COULD_NOT_RUN)
        command.downgrade(config, revision)
        with engine.connect() as connection:
            now_at = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    typer.echo(f"database at {now_at or 'base (no schema)'}")


_CREATES_TABLE = re.compile(r"""create_table\(\s*['"](\w+)['"]""")
#: Tables whose rows a downgrade may drop unasked: records needed only for a few hours, and only
#: by the code the downgrade takes away (console sessions signed out before their end: the
#: older code does not read them anyway).
_SHORT_LIVED = frozenset({"console_session_end"})


def _undone_revisions(config: Any, connection: Any, revision: str) -> list[tuple[str, str]]:
    """The revisions a downgrade to `revision` undoes, as (file name, source), in the order
    `alembic downgrade` runs them; none on a database with no schema."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return []
    script = ScriptDirectory.from_config(config)
    paths = [Path(step.revision.path)
             for step in script._downgrade_revs(revision, current)]  # noqa: SLF001 (what `alembic downgrade` runs)
    return [(path.name, path.read_text(encoding="utf-8")) for path in paths]


def _tables_a_downgrade_drops(config: Any, connection: Any, revision: str) -> dict[str, int]:
    """The tables the revisions a downgrade to `revision` undoes had made (read from their
    `create_table` calls), with their rows, for those that exist and hold any."""
    from sqlalchemy import func, inspect, select, table

    made = [name for _, source in _undone_revisions(config, connection, revision)
            for name in _CREATES_TABLE.findall(source)]
    existing = set(inspect(connection).get_table_names())
    counts = {name: connection.execute(select(func.count()).select_from(table(name))).scalar_one()
              for name in made if name in existing and name not in _SHORT_LIVED}
    return {name: rows for name, rows in sorted(counts.items()) if rows}


def _added_columns(source: str) -> list[tuple[str, str, str | None]]:
    """The columns a revision's `upgrade` adds to tables it did not make, read from its
    `add_column` calls (in `op.add_column(table, ...)` or a `batch_alter_table(table)` block,
    the table named or a loop over a module's tuple of names): (table, column, the SQL of its
    server default, if it declares one)."""
    tree = ast.parse(source)
    constants: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            names = _strings(node.value)
            if names:
                constants[node.targets[0].id] = names
    upgrade = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "upgrade"), None)
    found: list[tuple[str, str, str | None]] = []

    def visit(node: ast.AST, tables: list[str], bound: dict[str, list[str]]) -> None:
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name):
            bound = {**bound, node.target.id: _strings(node.iter, {**constants, **bound})}
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "batch_alter_table" and call.args):
                    tables = _strings(call.args[0], {**constants, **bound})
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_column":
            on, column = ((_strings(node.args[0], {**constants, **bound}), node.args[1]) if len(node.args) >= 2
                          else (tables, node.args[0] if node.args else None))
            name = _strings(column.args[0]) if isinstance(column, ast.Call) and column.args else []
            if not (on and name and column is not None):  # fail closed: a column the guard cannot name
                raise ValueError(f"cannot read the table or column of add_column at line {node.lineno}")
            found.extend((table, name[0], _server_default(column)) for table in on)
        for child in ast.iter_child_nodes(node):
            visit(child, tables, bound)

    if upgrade is not None:
        visit(upgrade, [], {})
    return found


def _strings(node: ast.expr, names: dict[str, list[str]] | None = None) -> list[str]:
    """The strings an expression of a migration stands for: a literal, a tuple or list of
    them, or a name bound to them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List):
        return [value for element in node.elts for value in _strings(element, names)]
    if isinstance(node, ast.Name) and names:
        return names.get(node.id, [])
    return []


def _server_default(column: ast.expr) -> str | None:
    """The SQL of the server default an `sa.Column(...)` call declares (a string, or
    `sa.false()` / `sa.true()`), or None."""
    given = next((k.value for k in getattr(column, "keywords", []) if k.arg == "server_default"), None)
    if isinstance(given, ast.Call) and isinstance(given.func, ast.Attribute | ast.Name):
        called = given.func.attr if isinstance(given.func, ast.Attribute) else given.func.id
        return {"false": "false", "true": "true"}.get(called)
    text = _strings(given) if given is not None else []
    return "'" + text[0].replace("'", "''") + "'" if text else None


def _columns_a_downgrade_drops(config: Any, connection: Any, revision: str) -> dict[str, int]:
    """The columns the revisions a downgrade to `revision` undoes had added to older tables,
    with the rows that hold a value in them (other than the column's declared default), for
    those that exist and hold any: a settlement's payee account, a usage row's committed
    value, a webhook's older secrets — the table outlives the downgrade, its column does not."""
    from sqlalchemy import JSON, inspect, text

    added: list[tuple[str, str, str | None]] = []
    for name, source in _undone_revisions(config, connection, revision):
        try:
            added += _added_columns(source)
        except ValueError as exc:
            raise ValueError(f"{exc} of {name}: the downgrade guard cannot tell whether "
                             "it holds data (--drop-data goes down without asking)") from exc
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    counts: dict[str, int] = {}
    types: dict[str, dict[str, Any]] = {}
    for table, column, default in added:
        if table not in tables:
            continue
        if table not in types:
            types[table] = {c["name"]: c["type"] for c in inspector.get_columns(table)}
        if column not in types[table]:
            continue
        quoted = connection.dialect.identifier_preparer.quote
        named = f"{quoted(table)}.{quoted(column)}"
        differs = f" AND {named} <> {default}" if default else ""
        if isinstance(types[table][column], JSON):  # JSON's null (how the ORM writes None) holds nothing
            differs += f" AND CAST({named} AS TEXT) <> 'null'"
        # The names and defaults come from our own migrations' source, never from input.
        rows = connection.execute(text(
            f"SELECT count(*) FROM {quoted(table)} WHERE {named} IS NOT NULL{differs}")).scalar_one()  # noqa: S608
        if rows:
            counts[f"{table}.{column}"] = rows
    return dict(sorted(counts.items()))


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the database's migration revision."""
    _use_database(database_url)
    from alembic import command

    command.current(alembic_config())


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="operator, auditor, enterprise or provider")],
    name: Annotated[str, typer.Option(metavar="TEXT", help="What the key is for.")] = "cli",
    principal_name: Annotated[str, typer.Option(metavar="TEXT", help="Operator/auditor name.")] = "Programme office",
    enterprise_id: Annotated[uuid.UUID | None, typer.Option(metavar="UUID", help="The enterprise an enterprise key acts for.")] = None,
    provider_id: Annotated[uuid.UUID | None, typer.Option(metavar="UUID", help="The provider a provider key acts for.")] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, metavar="DAYS", help="The key stops working after this many days.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API key and print it once (bootstraps the first operator key)."""
    _use_database(database_url)

    from services.voucher.apikeys import service
    from services.voucher.errors import DomainError

    async def work(session: Any) -> str:
        now = await _now(session)
        issued = await service.issue_key(
            session,
            role=role,
            name=name,
            now=now,
            principal_name=principal_name if role in (Role.OPERATOR, Role.AUDITOR) else None,
            enterprise_id=enterprise_id,
            provider_id=provider_id,
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        )
        return (f"id      {issued.key.id}\nprefix  {issued.key.prefix}\n"
                f"key     {issued.secret}\n(the key is shown once: store it now; only its hash is kept)")

    try:
        typer.echo(_run(work))
    except DomainError as exc:
        _print_error(exc)
        raise typer.Exit(2) from exc


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[uuid.UUID, typer.Argument(metavar="KEY_ID", help="The key's id (voucher keys list shows it).")],
    reason: Annotated[str, typer.Option(metavar="TEXT", help="Recorded in the audit trail.")] = "revoked with the CLI",
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a key by id."""
    _use_database(database_url)

    from services.voucher.actor import SYSTEM
    from services.voucher.apikeys import service
    from services.voucher.errors import DomainError

    async def work(session: Any) -> None:
        await service.revoke_key(session, SYSTEM, key_id, reason, await _now(session))

    try:
        _run(work)
    except DomainError as exc:
        _print_error(exc)
        raise typer.Exit(2) from exc
    typer.echo(f"revoked {key_id}")


@keys_app.command("list")
def keys_list(
    role: Annotated[Role | None, typer.Option(help="Only keys of this role.")] = None,
    show_revoked: Annotated[bool, typer.Option(help="Include revoked and expired keys.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Every API key (never a secret): id, prefix, role, holder, name, status, expiry. Tab-separated."""
    _use_database(database_url)
    from services.voucher.actor import SYSTEM
    from services.voucher.apikeys import service
    from services.voucher.db import PageRequest, decode_cursor

    async def work(session: Any) -> list[str]:
        now = await _now(session)
        lines, after = [], None
        while True:
            found, cursor = await service.list_keys(session, SYSTEM, PageRequest(limit=500, after=after))
            for key, principal in found:
                status = service.key_status(key, now)
                if (role is None or principal.role == role.value) and (show_revoked or status == "active"):
                    expires = key.expires_at.isoformat() if key.expires_at else "-"
                    lines.append("\t".join([str(key.id), key.prefix, principal.role, principal.name, key.name,
                                            status, expires]))
            if cursor is None:
                return lines
            after = decode_cursor(cursor)

    lines = _run(work, read=True)  # read first: a database that fails prints no header, only the error
    typer.echo("id\tprefix\trole\tholder\tname\tstatus\texpires_at")
    for line in lines:
        typer.echo(line)


@ledger_app.command("reconcile")
def ledger_reconcile(database_url: DatabaseUrl = None) -> None:
    """Recompute every balance from the postings; exit 1 if anything differs."""
    _use_database(database_url)
    import json

    from services.voucher.ledger import service as ledger

    result = _run(ledger.reconcile, read=True)
    typer.echo(
        f"accounts {result.accounts}  postings {result.postings}  transactions {result.transactions}"
    )
    for label, rows in (
        ("balance differs from postings", result.account_differences),
        ("non-negative account below zero", result.negative_balances),
        ("unbalanced journal transaction", result.unbalanced_transactions),
        ("commitment or funding not matched by approved applications or the budget", result.commitment_differences),
        ("provider payment not matched by paid settlements", result.settlement_differences),
        ("clawback owed, or a reversal of its entries, not matched by the ledger", result.clawback_differences),
        ("record not matched by the ledger", result.record_differences),
    ):
        for row in rows:
            typer.echo(f"{label}: {json.dumps(row, default=str)}", err=True)
    for row in result.captures_to_settle_again:  # work left, not a difference
        typer.echo(f"to settle again (its settlement was cancelled): {json.dumps(row, default=str)}", err=True)
    if not result.is_clean:
        raise typer.Exit(1)
    typer.echo("ledger reconciles: 0 differences")


def _job_names() -> str:
    from services.voucher import jobs

    return ", ".join(jobs.JOBS)


@jobs_app.command("run-once")
def jobs_run_once(
    job: Annotated[str, typer.Argument(metavar="JOB", help="One of: expire-holds, expire-vouchers, end-publicity, "
                                           "create-settlements, announce-expiring, publish-events, "
                                           "deliver-webhooks, seal-audit, audit-checkpoint, purge-idempotency")],
    database_url: DatabaseUrl = None,
) -> None:
    """Run one job once (for cron). Each job is idempotent; exit 2 for an unknown job, 1 if it failed."""
    _use_database(database_url)
    from services.voucher import jobs
    from services.voucher.db import Database

    if job not in jobs.JOBS:
        typer.echo(f"unknown job {job!r}; jobs: {_job_names()}", err=True)
        raise typer.Exit(2)
    i18n.show_instants_in(get_settings().default_timezone)

    async def main() -> int:
        from sqlalchemy.exc import DBAPIError

        database = Database(get_settings())
        try:
            await _refuse_a_database_the_jobs_must_not_run_on(database)
            now = (await _clock(database))()
            try:
                return await jobs.run_once(database, job, now)
            except (DBAPIError, OSError):
                raise  # the database could not be used: exit 2, as for any command
            except Exception as exc:  # noqa: BLE001 - the job failed: said in one line, exit 1 (as documented)
                typer.echo(f"error: job {job} failed: {_one_line(exc)}", err=True)
                raise typer.Exit(1) from None
        finally:
            await database.dispose()

    typer.echo(f"{job}: {asyncio.run(main())} processed")


async def _with_database(work: Callable[[Any], Awaitable[Any]]) -> Any:
    """`work(database)` on the configured database, disposed of after."""
    from services.voucher.db import Database

    database = Database(get_settings())
    try:
        return await work(database)
    finally:
        await database.dispose()


async def _refuse_another_environment(database: Any, *, mark: bool = False) -> None:
    """Exit 2, saying why, in production on a database whose sandbox clock was moved, or
    outside production on a database production has marked (deployment.py); `mark`: a
    production process starting marks it."""
    from services.voucher import deployment

    try:
        await deployment.refuse_another_environment(database, mark=mark)
    except RuntimeError as refused:
        typer.echo(f"error: {refused}", err=True)
        raise typer.Exit(2) from None


async def _refuse_a_database_the_jobs_must_not_run_on(database: Any) -> None:
    """Exit 2, saying why, when a job run from the command line (the worker, or cron's
    `voucher jobs run-once`) must not run: production on a database whose sandbox clock was
    moved, or a database at another revision than this build's."""
    from services.voucher import observability

    await _refuse_another_environment(database, mark=True)
    try:
        found = await observability.database_heads(database)
    except Exception:  # noqa: BLE001 - the job itself will say the database does not answer
        return
    wanted = observability.migration_heads()
    if found != wanted:
        typer.echo(f"error: the database is at revision {sorted(found) or 'none'} but this build needs "
                   f"{sorted(wanted)}: run `voucher db upgrade`, or use the build the database was migrated for",
                   err=True)
        raise typer.Exit(2)


@jobs_app.command("list")
def jobs_list() -> None:
    """Every job and how often the worker runs it."""
    from services.voucher import jobs

    for job, every in jobs.SCHEDULE.items():
        typer.echo(f"{job}\t{'every round' if every is None else f'every {every:g} s'}")


@app.command("worker")
def worker(
    interval: Annotated[float | None, typer.Option(metavar="SECONDS", min=0.001, help="Seconds between rounds "
                                                        "(default VOUCHER_WORKER_INTERVAL_SECONDS, 5).")] = None,
    job: Annotated[list[str] | None, typer.Option(metavar="JOB", help="Run only this job (repeatable).")] = None,
    once: Annotated[bool, typer.Option(help="Run one round and exit: 0 if every job ran, 1 if one failed, 2 if none "
                                            "could run (the database is at another revision, or a moved sandbox in "
                                            "production).")] = False,
    metrics_port: Annotated[int | None, typer.Option(
        metavar="PORT", min=1, max=65535, envvar="VOUCHER_WORKER_METRICS_PORT",
        help="Serve this worker's metrics (its jobs, webhook deliveries, expired holds) at "
             "http://HOST:PORT/metrics, with VOUCHER_METRICS_TOKEN as for the API's; production needs the token. "
             "Off by default.")] = None,
    metrics_host: Annotated[str, typer.Option(metavar="HOST", envvar="VOUCHER_WORKER_METRICS_HOST",
                                              help="Address the metrics listen on.")] = "127.0.0.1",
    database_url: DatabaseUrl = None,
) -> None:
    """Run the periodic jobs until SIGTERM/SIGINT. Several workers may run against PostgreSQL;
    run one on SQLite."""
    _use_database(database_url)
    import signal

    from services.voucher import jobs
    from services.voucher.db import Database
    from services.voucher.observability import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    i18n.show_instants_in(settings.default_timezone)  # what its jobs write for people, as the API would
    chosen = tuple(job or jobs.JOBS)
    unknown = [j for j in chosen if j not in jobs.JOBS]
    if unknown:
        typer.echo(f"unknown job(s) {', '.join(unknown)}; jobs: {_job_names()}", err=True)
        raise typer.Exit(2)

    token = settings.metrics_token.get_secret_value() if settings.metrics_token is not None else None
    if metrics_port is not None and token is None and settings.environment == "production":
        typer.echo("error: --metrics-port in production needs VOUCHER_METRICS_TOKEN (scrapers send it as "
                   "Authorization: Bearer <token>)", err=True)
        raise typer.Exit(2)

    async def main() -> list[str]:
        database = Database(settings)
        stop_metrics = None
        try:
            if once:  # cron's form: a database the jobs must not run on is an error, as for `jobs run-once`
                await _refuse_a_database_the_jobs_must_not_run_on(database)
            else:
                await _refuse_another_environment(database, mark=True)
            if metrics_port is not None:
                from services.voucher import metrics

                try:
                    stop_metrics = metrics.serve(metrics_host, metrics_port, token)
                except OSError as exc:
                    typer.echo(f"error: cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror or exc}",
                               err=True)
                    raise typer.Exit(2) from None
            runner = jobs.JobWorker(database, await _clock(database),
                                    interval if interval is not None else settings.worker_interval_seconds, chosen)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            if once:
                done = await runner.round()
                if runner.skipped:
                    typer.echo("error: no job ran: the database could not be read or is not this build's "
                               "(see the log)", err=True)
                    raise typer.Exit(2)
                typer.echo(" ".join(f"{name}={count}" for name, count in done.items()))
                return runner.failed
            await runner.run(stop)
            return []
        finally:
            if stop_metrics is not None:
                stop_metrics()
            await database.dispose()

    failed = asyncio.run(main())
    if failed:
        typer.echo(f"error: job(s) failed: {', '.join(failed)} (see the log)", err=True)
        raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify(
    checkpoint_seq: Annotated[int, typer.Option(metavar="SEQ", help="Also check against a kept checkpoint at this position…")] = -1,
    checkpoint_hash: Annotated[str, typer.Option(metavar="HEX", help="…whose chain hash is this (hex).")] = "",
    skip_ledger: Annotated[bool, typer.Option(help="Do not match ledger journals against their events.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Seal what is committed, recheck the whole chain, its checkpoints (and a kept one) and the
    ledger against it. Prints every problem; exit 0 when intact, 1 when anything is broken."""
    _use_database(database_url)
    from services.voucher.audit import service as audit
    from services.voucher.audit.signing import Signer
    from services.voucher.db import Database

    settings = get_settings()
    if (checkpoint_seq >= 0) != (len(checkpoint_hash) == 64):
        typer.echo("--checkpoint-seq and --checkpoint-hash (64 hex digits) go together", err=True)
        raise typer.Exit(2)
    kept = audit.Pin(checkpoint_seq, checkpoint_hash) if checkpoint_seq >= 0 else None

    async def main() -> audit.Verification:
        database = Database(settings)
        try:
            await audit.seal_pending(database)
            async with database.snapshot() as session:
                return await audit.verify(session, Signer.from_settings(settings), kept, check_ledger=not skip_ledger)
        finally:
            await database.dispose()

    result = asyncio.run(main())
    typer.echo(f"events 1..{result.to_seq} checked: {result.events_checked}  "
               f"journals checked: {result.journals_checked}  accounts checked: {result.accounts_checked}  "
               f"head {result.head}")
    for problem in result.problems:
        where = " ".join(f"{k}={problem[k]}" for k in ("seq", "journal_id", "account_id") if problem.get(k) is not None)
        typer.echo(f"{problem['kind']}: {where} {problem['detail']}", err=True)
    if not result.is_intact:
        raise typer.Exit(1)
    typer.echo("audit chain intact: 0 problems")


@audit_app.command("checkpoint")
def audit_checkpoint(database_url: DatabaseUrl = None) -> None:
    """Seal what is committed and sign the chain head; prints the checkpoint to keep."""
    _use_database(database_url)
    import json

    from services.voucher import jobs
    from services.voucher.audit import repository
    from services.voucher.audit.rules import checkpoint_message
    from services.voucher.db import Database

    async def main() -> dict[str, Any]:
        database = Database(get_settings())
        try:
            # signed with the published seed outside production: never on production's database
            await _refuse_another_environment(database)
            await jobs.run_once(database, "audit-checkpoint", (await _clock(database))())
            async with database.unit_of_work(write=False) as session:
                row = (await repository.all_checkpoints(session))[-1]
            return {"seq": row.seq, "chain_hash": row.chain_hash, "signed_at": row.signed_at.isoformat(),
                    "key_id": row.key_id, "signature": row.signature,
                    "message": checkpoint_message(row.seq, row.chain_hash, row.signed_at).decode()}
        finally:
            await database.dispose()

    typer.echo(json.dumps(asyncio.run(main()), ensure_ascii=False))


@audit_app.command("keygen")
def audit_keygen() -> None:
    """Print a new checkpoint signing key for VOUCHER_AUDIT_SIGNING_KEY (keep it secret, back it up)."""
    from services.voucher.audit.signing import new_seed

    typer.echo(new_seed())


@secrets_app.command("keygen")
def secrets_keygen() -> None:
    """Print a new key for VOUCHER_SECRETS_KEY (keep it secret, and with your database backups:
    without it the webhook secrets in them cannot be read)."""
    from services.voucher.secretbox import new_key

    typer.echo(new_key())


@secrets_app.command("reseal")
def secrets_reseal(database_url: DatabaseUrl = None) -> None:
    """Seal every stored secret under the current VOUCHER_SECRETS_KEY: those kept before sealing
    existed and those sealed under a key now in VOUCHER_SECRETS_RETIRED_KEYS. Prints what it
    changed as JSON; exits 1 (changing the rest) if a secret opens under no configured key."""
    _use_database(database_url)
    import json

    from services.voucher import secretbox
    from services.voucher.idempotency import service as idempotency
    from services.voucher.webhooks import service as webhooks

    box = secretbox.keyring(get_settings())
    # sealed with the published key outside production: never on production's database
    asyncio.run(_with_database(_refuse_another_environment))

    async def work(session: Any) -> dict[str, Any]:
        endpoints, unreadable = await webhooks.reseal(session, box)
        answers, unopened = await idempotency.reseal(session, box)
        return {"key_id": box.current_id, "webhook_endpoints": endpoints, "stored_answers": answers,
                "unreadable": unreadable + unopened}

    result = _run(work)
    typer.echo(json.dumps(result, ensure_ascii=False))
    if result["unreadable"]:
        raise typer.Exit(1)


@app.command("export")
def export(
    dataset: Annotated[str, typer.Argument(metavar="DATASET", help="ledger-entries, redemptions, redemption-line-items, "
                                                                  "settlements, settlement-items, audit-events or "
                                                                  "audit-event-changes")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE",
                                         help="File to write ('-' for stdout; not for xlsx).")] = Path("-"),
    format: Annotated[str, typer.Option("--format", metavar="FORMAT", help="jsonl, csv or xlsx")] = "jsonl",  # noqa: A002
    programme_id: Annotated[uuid.UUID | None, typer.Option(metavar="UUID", help="Only this programme's rows.")] = None,
    enterprise_id: Annotated[uuid.UUID | None, typer.Option(metavar="UUID", help="Only this enterprise's rows.")] = None,
    provider_id: Annotated[uuid.UUID | None, typer.Option(metavar="UUID", help="Only this provider's rows.")] = None,
    voucher_id: Annotated[uuid.UUID | None, typer.Option(metavar="UUID", help="Only this voucher's rows.")] = None,
    since: Annotated[str | None, typer.Option(metavar="TIME", help="RFC 3339; rows at or after.")] = None,
    until: Annotated[str | None, typer.Option(metavar="TIME", help="RFC 3339; rows before.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Stream an export from one snapshot, as the API does, and print its manifest (row count,
    SHA-256, audit chain head) on stderr. Exit 2 for bad arguments."""
    _use_database(database_url)
    import json
    from datetime import datetime

    from services.voucher.actor import SYSTEM
    from services.voucher.db import Database
    from services.voucher.errors import DomainError
    from services.voucher.exports import service as exports
    from services.voucher.exports.rules import Dataset, Filters, Format

    try:
        chosen, fmt = Dataset(dataset), Format(format)
        filters = Filters(
            programme_id=programme_id,
            enterprise_id=enterprise_id,
            provider_id=provider_id,
            voucher_id=voucher_id,
            since=datetime.fromisoformat(since) if since else None,
            until=datetime.fromisoformat(until) if until else None,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for moment in (filters.since, filters.until):
        if moment is not None and moment.tzinfo is None:
            typer.echo("error: --since/--until need a time zone (e.g. 2026-03-01T00:00:00+08:00)", err=True)
            raise typer.Exit(2)
    if fmt is Format.XLSX and str(output) == "-":
        from services.voucher.i18n import msg

        problem = msg("an xlsx export is a file, not a stream: give one with --output FILE")
        typer.echo(f"error: {problem.render(_language())}", err=True)
        raise typer.Exit(2)

    # A regular file is written beside itself and put in its place only once whole: a refused or
    # failed export had left last month's file empty, or half written (an independent review,
    # December 2026). The new file takes the old one's permissions (an export of every tenant's
    # ledger kept `chmod 600`), a symlink's target is what is written, and what is not a regular
    # file (a pipe to gzip or gpg) is written to directly, as a directory the operator may not
    # write beside the file is (a review of that fix).
    to_stdout = str(output) == "-"
    target = output.resolve() if not to_stdout else output
    existing = target.stat() if not to_stdout and target.exists() else None
    in_place = existing is not None and not stat.S_ISREG(existing.st_mode)
    partial = None if to_stdout or in_place else target.with_name(f".{target.name}.{os.getpid()}.partial")

    def opened_sink() -> Any:
        nonlocal partial
        if to_stdout:
            return sys.stdout.buffer
        if partial is not None:
            try:  # a new file as open() makes one (the umask applies); a replacement private until it has the old mode
                handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if existing is None else 0o600)
            except PermissionError:
                if existing is None:
                    raise
                partial = None  # the file may be writable where its directory is not
            else:
                if existing is not None:
                    os.fchmod(handle, stat.S_IMODE(existing.st_mode))
                return os.fdopen(handle, "wb")
        return target.open("wb")

    async def main() -> dict[str, Any]:
        database = Database(get_settings())
        try:
            sink = opened_sink()
        except OSError as exc:
            typer.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None
        finished = False
        try:
            async with database.session(write=False) as session:  # the export takes its own snapshot
                opened = await exports.open_export(session, database, SYSTEM, chosen, fmt, filters,
                                                   await _clock(database))
                async for chunk in opened.body:
                    sink.write(chunk)
            async with database.unit_of_work(write=False) as session:
                manifest = await exports.get_manifest(session, opened.manifest.id)
            if sink is not sys.stdout.buffer:
                sink.close()
            if partial is not None:
                try:
                    os.replace(partial, target)
                except OSError as exc:
                    typer.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
                    raise typer.Exit(2) from None
            finished = True
            return {"export_id": str(manifest.id), "dataset": manifest.dataset, "format": manifest.format,
                    "row_count": manifest.row_count, "sha256": manifest.sha256,
                    "chain_seq": manifest.chain_seq, "chain_hash": manifest.chain_hash,
                    "unsealed_events": manifest.unsealed_events, "lapsed_unreleased": manifest.lapsed_unreleased}
        finally:
            if sink is not sys.stdout.buffer and not finished:
                sink.close()
                if partial is not None:
                    partial.unlink(missing_ok=True)
            await database.dispose()

    try:
        typer.echo(json.dumps(asyncio.run(main())), err=True)
    except DomainError as exc:
        _print_error(exc)
        raise typer.Exit(2) from exc


@app.command("demo")
def demo(database_url: DatabaseUrl = None) -> None:
    """Load the demo programme office and print fresh demo API keys (one per role). Refused in
    production: it opens two programmes with budgets and makes full-power keys."""
    _use_database(database_url)
    if get_settings().environment == "production":
        typer.echo("error: the demo is never loaded in production (VOUCHER_ENVIRONMENT=production): it would open "
                   "two funded programmes and make full-power keys in the real audit trail", err=True)
        raise typer.Exit(EXIT_COULD_NOT_RUN)
    from services.voucher import demo as demo_data

    asyncio.run(_with_database(_refuse_another_environment))  # a shell without VOUCHER_ENVIRONMENT, say

    async def load(session: Any) -> Any:
        return await demo_data.load(session, await _now(session))

    result = _run(load)
    typer.echo("Demo loaded:")
    typer.echo(f"  compute programme  {result.compute_programme.id}  ({result.compute_programme.code})")
    typer.echo(f"  model programme    {result.model_programme.id}  ({result.model_programme.code})")
    typer.echo(f"  enterprise         {result.enterprise.id}  USCC {result.enterprise.uscc}")
    typer.echo(f"  provider           {result.provider.id}  USCC {result.provider.uscc}")
    typer.echo(f"  voucher            {result.voucher.code}  (¥1,000,000.00 compute voucher of the SME)")
    typer.echo("Demo API keys (shown once; running the demo again replaces them):")
    for role, key in result.keys.items():
        typer.echo(f"  {role:<11} {key}")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, metavar="N", help="Server processes. On Linux each listens on a socket of its own "
                                                        "(SO_REUSEPORT): the kernel spreads connections over them.")] = 1,
    forwarded_allow_ips: Annotated[str | None, typer.Option(metavar="ADDRESSES", 
        help="Proxies (addresses or CIDRs, comma-separated) whose X-Forwarded-For names the client: "
             "the failed-login throttle counts by the client's address (docs/security.md)")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Serve the API (uvloop + httptools) and its offline docs at /docs and /redoc."""
    _use_database(database_url)
    from services.voucher import serving

    settings = get_settings()  # an SQLite file exists by now (`_use_database`), and so does its directory
    loop = "uvloop" if sys.platform != "win32" else "asyncio"
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        typer.echo("warning: several workers without PROMETHEUS_MULTIPROC_DIR: each /metrics scrape sees one "
                   "worker's counts (set it to an empty directory)", err=True)
    if workers > 1 and settings.console_secret is None and settings.environment != "production":
        typer.echo("warning: several workers without VOUCHER_CONSOLE_SECRET: each worker makes its own, so a "
                   "console session works on one worker only (set one of 32+ characters)", err=True)
    if forwarded_allow_ips is not None and "*" in forwarded_allow_ips.split(","):
        typer.echo("warning: --forwarded-allow-ips '*' believes X-Forwarded-For from anyone, so a client names the "
                   "address the failed-login throttle counts; name your proxies' addresses", err=True)
    if workers > 1 and settings.rate_limit_storage.startswith("memory://"):
        typer.echo(f"warning: several workers with VOUCHER_RATE_LIMIT_STORAGE=memory://: each worker counts its own "
                   f"rate limits and failed logins, so a principal gets {workers} × its allowance (set it to a "
                   "redis:// URL every worker shares; docs/security.md)", err=True)
    _ready_to_serve(settings, host, port)
    typer.echo(f"API on http://{host}:{port}/v1  docs on http://{host}:{port}/docs")
    serving.run(
        "services.voucher.asgi:app",
        host=host,
        port=port,
        workers=workers,
        loop=loop,
        http="httptools",
        log_level="warning",
        # Only the named proxies are believed; by default no forwarded header is (the peer is the client).
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips or "",
    )


def _ready_to_serve(settings: Settings, host: str, port: int) -> None:
    """Stop (exit 2) before serving a database that was never migrated — every request would
    fail on a missing table — or on a port another process holds; warn of a database at another
    revision (a rolling deployment may start a server before `db upgrade`: /readyz answers 503
    until it has run) or one that does not answer yet (a container started before its database)."""
    import socket

    from services.voucher.db import Database
    from services.voucher.observability import database_heads, known_revisions, migration_heads

    async def heads() -> frozenset[str]:
        database = Database(settings)
        try:
            return await database_heads(database)
        finally:
            await database.dispose()

    try:
        found: frozenset[str] | None = asyncio.run(heads())
    except Exception as exc:  # noqa: BLE001 - a database not up yet is the readiness probe's to report
        typer.echo(f"warning: {_one_line(exc)}; /readyz answers 503 until it answers", err=True)
        found = None
    wanted = migration_heads()
    if found is not None and not found:
        typer.echo(f"error: the database {_where()} has never been migrated: run `voucher db upgrade` before "
                   "serving it", err=True)
        raise typer.Exit(EXIT_COULD_NOT_RUN)
    if found is not None and found != wanted:
        # A database newer than the build is not upgraded by it (`db upgrade` fails on a revision
        # it does not know; an independent review): the build is what must change.
        remedy = ("this build is older than the database: run the build that migrated it"
                  if found - known_revisions() else "/readyz answers 503 until `voucher db upgrade` has run")
        typer.echo(f"warning: the database is at revision {', '.join(sorted(found))}, this build needs "
                   f"{', '.join(sorted(wanted))}: {remedy}", err=True)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as exc:
            typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc} (is the service already "
                       "running? choose another --port)", err=True)
            raise typer.Exit(EXIT_COULD_NOT_RUN) from None


#: Exit codes, for scripts and cron: 0 done (a check found nothing), 1 a check found a problem
#: (the ledger differs, the audit chain is broken), 2 the command could not run (bad arguments,
#: no database, a refusal).
EXIT_PROBLEM, EXIT_COULD_NOT_RUN = 1, 2


def _one_line(exc: BaseException) -> str:
    """What went wrong, in one line, with no password in it."""
    from sqlalchemy.exc import DBAPIError, NoSuchModuleError, OperationalError, ProgrammingError

    settings_error = _settings_error(exc)
    if settings_error is not None:
        return settings_error
    where = _where()
    # Redacted as log lines are: a rate-limit storage URL that did not parse was printed with
    # its password (`Unable to parse storage uri redis://:s3cret@…`; an independent review).
    first = redact((str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0])
    if isinstance(exc, OperationalError | ProgrammingError) and ("no such table" in first or "does not exist" in first):
        return f"the database {where} has no schema or is not this service's: run `voucher db upgrade` ({first})"
    if isinstance(exc, DBAPIError | NoSuchModuleError | OSError | ConnectionError):
        return f"cannot open the database {where}: {first}"
    return f"{type(exc).__name__}: {first}"


def _where() -> str:
    """The configured database, as an operator would recognise it, without its password."""
    url = os.environ.get("DATABASE_URL") or os.environ.get("VOUCHER_DATABASE_URL") or ""
    # SQLAlchemy's own reading of the URL, so a password with no user name, or holding "/", is
    # masked too (a review); a URL it cannot read is masked by the pattern below.
    from sqlalchemy.engine import make_url

    with contextlib.suppress(Exception):
        url = make_url(url).render_as_string(hide_password=True) if url else url
    url = re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)
    # libpq also takes the password as a query parameter (?password=…): masked too (a review).
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE) or "the default database"


def _settings_error(exc: BaseException) -> str | None:
    """A setting the environment gives that the service refuses, named as the operator sets it
    (`VOUCHER_...`) with the reason: never pydantic's count of errors alone."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from services.voucher.settings import Settings

    if isinstance(exc, SettingsError):  # a value that is not even JSON, for a setting that takes JSON
        named = re.search(r'field "([^"]+)"', str(exc))
        name = f"VOUCHER_{named.group(1).upper()}" if named else "a VOUCHER_ setting"
        return f"{name} cannot be read: {str(exc.__cause__ or exc).splitlines()[0]}"
    if not isinstance(exc, ValidationError) or exc.title != Settings.__name__:
        return None
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        field = str(error["loc"][0]) if error.get("loc") else ""
        name = "DATABASE_URL" if field == "database_url" else f"VOUCHER_{field.upper()}"
        reason = str(error.get("msg", "")).removeprefix("Value error, ")
        parts.append(reason if not field or reason.startswith(("VOUCHER_", "DATABASE_URL")) else f"{name}: {reason}")
    return "refused setting: " + "; ".join(parts)


def main() -> None:
    """The `voucher` command. An error no command handled is one line on stderr and exit 2 (the
    traceback too with VOUCHER_LOG_LEVEL=DEBUG), never a traceback that a cron job reads as exit 1."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - the last line of defence of a command-line tool
        if os.environ.get("VOUCHER_LOG_LEVEL", "").upper() == "DEBUG":
            import traceback

            traceback.print_exc()
        typer.echo(f"error: {_one_line(exc)}", err=True)
        raise SystemExit(EXIT_COULD_NOT_RUN) from None


if __name__ == "__main__":
    main()
