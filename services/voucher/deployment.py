"""Which environment a database serves.

Production marks the database it starts on (one row, `production_mark`); outside production, a
marked database is refused by every process that would write to it with the published
development keys or load test data into it: the API, the worker, cron's jobs, the demo, the
sandbox. A cron line without `VOUCHER_ENVIRONMENT` had run as development on production's
database and signed its audit checkpoints with the published seed, for good (an independent
review of operations, December 2026). In production, a database used as a sandbox is refused
(sandbox/service.py). A database that cannot be read here (not reachable, not migrated yet) is
left to `/readyz` and to the job itself.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlmodel import col

from services.voucher.db import Database, insert_of
from services.voucher.sandbox import service as sandbox
from services.voucher.tables import ProductionMark

log = logging.getLogger(__name__)


async def marked_at(database: Database) -> datetime | None:
    """When production first started on the database (None: never)."""
    async with database.session(write=False) as session:
        return (await session.execute(select(col(ProductionMark.marked_at)).where(col(ProductionMark.id) == 1))).scalar()


async def mark_as_production(database: Database) -> bool:
    """Mark the database as production's (once; again changes nothing); False, logged, when it
    cannot be written yet (not reachable, or not migrated to 0035: `db upgrade` marks it then)."""
    try:
        async with database.unit_of_work() as session:
            await session.execute(insert_of(session)(ProductionMark).values(id=1, marked_at=datetime.now(UTC))
                                  .on_conflict_do_nothing(index_elements=["id"]))
    except Exception as exc:  # noqa: BLE001 - whatever it is, production still starts
        log.warning("the database could not be marked as production's yet (%s): it is marked when `voucher db "
                    "upgrade` runs in production or the next production process starts", type(exc).__name__)
        return False
    return True


async def refuse_another_environment(database: Database, *, mark: bool = False) -> None:
    """RuntimeError, saying why, when this process must not run on `database`: production on a
    database used as a sandbox, anything else on one production has marked. `mark`: production
    marks the database (a process that starts, not a check on the way)."""
    settings = database.settings
    if settings.environment == "production":
        await sandbox.refuse_a_sandbox_database_in_production(database)
        if mark:
            await mark_as_production(database)
        return
    try:
        at = await marked_at(database)
    except Exception:  # noqa: BLE001 - not reachable or not migrated: /readyz and the job say which
        return
    if at is not None:
        raise RuntimeError(
            f"this database is production's (a production process started on it at {at.isoformat()}); this process "
            f"runs as {settings.environment} and would sign its audit checkpoints and seal its secrets with the "
            "published development keys: run it with VOUCHER_ENVIRONMENT=production and production's keys")
