"""Background jobs, each idempotent, each item in a transaction of its own.

Correctness never depends on them (expired holds and vouchers are void when read); they post
to the ledger what reads already assume. One transaction per item keeps locks short (issuance
is not blocked for a whole batch) and a lost race costs one item, retried on the next run.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.applications import service as applications
from services.voucher.audit import service as audit
from services.voucher.audit.signing import Signer
from services.voucher.db import Database, is_transient
from services.voucher.errors import DomainError
from services.voucher.idempotency import service as idempotency
from services.voucher.redemption import service as redemption
from services.voucher.vouchers import service as vouchers

log = logging.getLogger("voucher.jobs")

Finder = Callable[[AsyncSession, datetime], Awaitable[list[uuid.UUID]]]
Worker = Callable[[AsyncSession, uuid.UUID, datetime], Awaitable[int]]

PER_ITEM: dict[str, tuple[Finder, Worker]] = {
    "expire-holds": (redemption.due_holds, redemption.expire_hold),
    "expire-vouchers": (vouchers.due_for_expiry, vouchers.expire_by_id),
    "end-publicity": (applications.due_publicity, applications.complete_publicity),
}
JOBS = (*PER_ITEM, "purge-idempotency", "seal-audit", "audit-checkpoint")


async def run_once(database: Database, job: str, now: datetime) -> int:
    """Run `job` once; the number of items it changed."""
    if job == "purge-idempotency":
        async with database.unit_of_work() as session:
            return await idempotency.purge_expired(session, now)
    if job == "seal-audit":
        return await audit.seal_pending(database)
    if job == "audit-checkpoint":  # seal, then sign the head: one checkpoint per run
        await audit.seal_pending(database)
        async with database.unit_of_work() as session:
            await audit.sign_checkpoint(session, Signer.from_settings(database.settings), now)
        return 1
    find, work = PER_ITEM[job]
    async with database.unit_of_work(write=False) as session:
        due = await find(session, now)
    done = 0
    for item in due:
        try:
            async with database.unit_of_work() as session:
                done += await work(session, item, now)
        except DomainError as exc:  # a refusal of one item must not stop the others
            log.error("%s: %s refused (%s: %s); it stays due", job, item, exc.code, exc.detail)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("%s: %s lost a race; it is retried on the next run", job, item)
    return done
