"""Alembic environment: the only way the schema is made, on SQLite and PostgreSQL alike.

The URL is, in order: `config.attributes["database_url"]` (set by the CLI and tests), then the
service's settings (DATABASE_URL). Migrations run through the synchronous drivers.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from services.voucher import tables  # noqa: F401  (registers every table on the metadata)
from services.voucher.db import metadata
from services.voucher.settings import Settings, sync_database_url

config = context.config
#: The advisory lock an upgrade or downgrade holds on PostgreSQL for its whole transaction.
MIGRATION_LOCK = 0x766F756368657200  # "voucher\0"


def _url() -> str:
    url = config.attributes.get("database_url") or Settings().database_url
    return sync_database_url(url)


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # type: ignore[attr-defined]
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":  # type: ignore[attr-defined]
            # Two upgrades at once (two containers starting) had raced to create the same
            # objects and one failed: the second now waits here, then finds the schema at head.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})  # type: ignore[attr-defined]
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
