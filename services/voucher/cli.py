"""The `voucher` command: serve, db, keys, ledger, jobs, audit, demo."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from services.voucher.apikeys.rules import Role
from services.voucher.clock import system_clock
from services.voucher.settings import Settings, get_settings

app = typer.Typer(
    no_args_is_help=True, help="Voucher subsidy service.", add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema (Alembic migrations).")
keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
ledger_app = typer.Typer(no_args_is_help=True, help="The double-entry ledger.")
jobs_app = typer.Typer(no_args_is_help=True, help="Background jobs (also run by the worker).")
audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit trail.")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(ledger_app, name="ledger")
app.add_typer(jobs_app, name="jobs")
app.add_typer(audit_app, name="audit")

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def _run(work: Callable[[Any], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run `work(session)` in one unit of work against the configured database."""
    from services.voucher.db import Database

    async def main() -> T:
        database = Database(settings or get_settings())
        try:
            async with database.unit_of_work(write=True) as session:
                return await work(session)
        finally:
            await database.dispose()

    return asyncio.run(main())


def _print_error(exc: Any) -> None:
    """A refusal as a script can read it: the code, the reason, and each bad field."""
    typer.echo(f"error: {exc.code}: {exc.detail}", err=True)
    for error in exc.extra.get("errors", []):
        typer.echo(f"  {error['pointer'].lstrip('/')}: {error['message']}", err=True)


def alembic_config(database_url: str | None = None) -> Any:
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"), stdout=sys.stdout)
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url or get_settings().database_url
    return config


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from alembic import command

    _ensure_sqlite_dir(get_settings().database_url)
    command.upgrade(alembic_config(), revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()]) -> None:
    """Revert migrations down to REVISION (e.g. -1 or base)."""
    from alembic import command

    command.downgrade(alembic_config(), revision)
    typer.echo(f"database at {revision}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's migration revision."""
    from alembic import command

    command.current(alembic_config())


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="operator, auditor, enterprise or provider")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "cli",
    principal_name: Annotated[str, typer.Option(help="Operator/auditor name.")] = "Programme office",
    enterprise_id: Annotated[str | None, typer.Option()] = None,
    provider_id: Annotated[str | None, typer.Option()] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1)] = None,
) -> None:
    """Create an API key and print it once (bootstraps the first operator key)."""
    import uuid

    from services.voucher.apikeys import service
    from services.voucher.errors import DomainError

    now = system_clock()

    async def work(session: Any) -> str:
        issued = await service.issue_key(
            session,
            role=role,
            name=name,
            now=now,
            principal_name=principal_name if role in (Role.OPERATOR, Role.AUDITOR) else None,
            enterprise_id=uuid.UUID(enterprise_id) if enterprise_id else None,
            provider_id=uuid.UUID(provider_id) if provider_id else None,
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        )
        return f"{issued.key.prefix}\t{issued.key.id}\n{issued.secret}"

    try:
        typer.echo(_run(work))
    except DomainError as exc:
        _print_error(exc)
        raise typer.Exit(2) from exc


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option()] = "revoked with the CLI",
) -> None:
    """Revoke a key by id."""
    import uuid

    from services.voucher.actor import SYSTEM
    from services.voucher.apikeys import service
    from services.voucher.errors import DomainError

    async def work(session: Any) -> None:
        await service.revoke_key(session, SYSTEM, uuid.UUID(key_id), reason, system_clock())

    try:
        _run(work)
    except DomainError as exc:
        _print_error(exc)
        raise typer.Exit(2) from exc
    typer.echo(f"revoked {key_id}")


@ledger_app.command("reconcile")
def ledger_reconcile() -> None:
    """Recompute every balance from the postings; exit 1 if anything differs."""
    import json

    from services.voucher.ledger import service as ledger

    result = _run(ledger.reconcile)
    typer.echo(
        f"accounts {result.accounts}  postings {result.postings}  transactions {result.transactions}"
    )
    for label, rows in (
        ("balance differs from postings", result.account_differences),
        ("non-negative account below zero", result.negative_balances),
        ("unbalanced journal transaction", result.unbalanced_transactions),
        ("commitment not matched by approved applications", result.commitment_differences),
        ("provider payment not matched by paid settlements", result.settlement_differences),
    ):
        for row in rows:
            typer.echo(f"{label}: {json.dumps(row, default=str)}", err=True)
    if not result.is_clean:
        raise typer.Exit(1)
    typer.echo("ledger reconciles: 0 differences")


@jobs_app.command("run-once")
def jobs_run_once(
    job: Annotated[str, typer.Argument(help="expire-holds, expire-vouchers, end-publicity, purge-idempotency, "
                                           "seal-audit or audit-checkpoint")],
) -> None:
    """Run one job once (for cron). Each job is idempotent; exit 2 for an unknown job."""
    from services.voucher import jobs
    from services.voucher.db import Database

    if job not in jobs.JOBS:
        typer.echo(f"unknown job {job!r}; jobs: {', '.join(jobs.JOBS)}", err=True)
        raise typer.Exit(2)

    async def main() -> int:
        database = Database(get_settings())
        try:
            return await jobs.run_once(database, job, system_clock())
        finally:
            await database.dispose()

    typer.echo(f"{job}: {asyncio.run(main())} processed")


@audit_app.command("verify")
def audit_verify(
    checkpoint_seq: Annotated[int, typer.Option(help="Also check against a kept checkpoint at this position…")] = -1,
    checkpoint_hash: Annotated[str, typer.Option(help="…whose chain hash is this (hex).")] = "",
    skip_ledger: Annotated[bool, typer.Option(help="Do not match ledger journals against their events.")] = False,
) -> None:
    """Seal what is committed, recheck the whole chain, its checkpoints (and a kept one) and the
    ledger against it. Prints every problem; exit 0 when intact, 1 when anything is broken."""
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
               f"journals checked: {result.journals_checked}  head {result.head}")
    for problem in result.problems:
        where = " ".join(f"{k}={problem[k]}" for k in ("seq", "journal_id") if problem.get(k) is not None)
        typer.echo(f"{problem['kind']}: {where} {problem['detail']}", err=True)
    if not result.is_intact:
        raise typer.Exit(1)
    typer.echo("audit chain intact: 0 problems")


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Seal what is committed and sign the chain head; prints the checkpoint to keep."""
    import json

    from services.voucher import jobs
    from services.voucher.audit import repository
    from services.voucher.audit.rules import checkpoint_message
    from services.voucher.db import Database

    async def main() -> dict[str, Any]:
        database = Database(get_settings())
        try:
            await jobs.run_once(database, "audit-checkpoint", system_clock())
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


@app.command("demo")
def demo() -> None:
    """Load the demo programme office and print fresh demo API keys (one per role)."""
    from services.voucher import demo as demo_data

    result = _run(lambda session: demo_data.load(session, system_clock()))
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
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Serve the API (uvloop + httptools) and its offline docs at /docs and /redoc."""
    import uvicorn

    _ensure_sqlite_dir(get_settings().database_url)
    loop = "uvloop" if sys.platform != "win32" else "asyncio"
    typer.echo(f"API on http://{host}:{port}/v1  docs on http://{host}:{port}/docs")
    uvicorn.run(
        "services.voucher.asgi:app",
        host=host,
        port=port,
        workers=workers,
        loop=loop,
        http="httptools",
        log_level="warning",
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
