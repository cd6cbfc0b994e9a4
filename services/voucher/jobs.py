"""Background jobs, each idempotent and safe with several workers at once; and the worker loop.

Correctness never depends on them (expired holds and vouchers are void when read); they post
to the ledger what reads already assume, publish and deliver events, and seal the audit chain.
Per-item jobs give each item a transaction of its own: locks stay short and a lost race costs
one item, retried on the next run. Several workers are safe: items are re-checked under their
row lock; the publisher and the sealer take an advisory lock (PostgreSQL) or the write lock
(SQLite); webhook senders claim deliveries with SKIP LOCKED and a lease; announcements that
must happen once carry a unique dedupe key. On SQLite run one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher import deployment, driver, metrics, observability
from services.voucher.applications import service as applications
from services.voucher.audit import service as audit
from services.voucher.audit.signing import Signer
from services.voucher.clock import Clock, SandboxClock
from services.voucher.console import ended as console_ended
from services.voucher.db import Database, is_transient
from services.voucher.errors import DomainError, SettlementExists
from services.voucher.events import service as events
from services.voucher.idempotency import service as idempotency
from services.voucher.redemption import service as redemption
from services.voucher.sandbox import service as sandbox
from services.voucher.settlement import service as settlement
from services.voucher.vouchers import service as vouchers
from services.voucher.webhooks import service as webhooks

log = logging.getLogger("voucher.jobs")

Finder = Callable[[AsyncSession, datetime, int], Awaitable[list[Any]]]
ItemWork = Callable[..., Awaitable[int]]

PER_ITEM: dict[str, tuple[Finder, ItemWork]] = {
    "expire-holds": (redemption.due_holds, redemption.expire_hold),
    "expire-vouchers": (vouchers.due_for_expiry, vouchers.expire_by_id),
    "end-publicity": (applications.due_publicity, applications.complete_publicity),
    "create-settlements": (settlement.due_monthly, settlement.create_monthly),
}

#: How many items one run of a per-item job takes (the rest wait for the next run).
ITEM_BATCH = 500
#: The jobs that take at most ITEM_BATCH items a run, and run again at once while a run takes a
#: whole batch: the per-item ones, and the expiry warnings (held to 500 an hour, a programme
#: whose vouchers share a year-end expiry had been warned late, and past about 84,000 of them in
#: one week some vouchers expired unwarned; an independent review, December 2026).
BATCHED = frozenset(PER_ITEM) | {"announce-expiring"}
#: After a sandbox clock move, at most this many runs of each per-item job (more items than
#: that are left to the worker).
BATCHES_ON_CLOCK_MOVE = 20

#: Every job, in the order a worker round runs them, with its default interval in seconds
#: (None: every round). Value first — publicity's end first, so that a voucher it issues with
#: its validity already over (a worker down for weeks, a sandbox clock moved by a month) is
#: expired in the same round — then what announces it, then the audit.
SCHEDULE: dict[str, float | None] = {
    "end-publicity": None,
    "expire-holds": None,
    "expire-vouchers": None,
    "create-settlements": 3600,
    "announce-expiring": 3600,
    "publish-events": None,
    "deliver-webhooks": None,
    "seal-audit": None,
    "audit-checkpoint": 3600,
    "purge-idempotency": 3600,
}
JOBS = tuple(SCHEDULE)
#: What a move of the sandbox clock runs at once, in this order (sandbox/routes.py): whatever
#: the new time made due. Webhook deliveries, sealing and checkpoints stay with the worker.
DUE_ON_CLOCK_MOVE = ("end-publicity", "expire-holds", "expire-vouchers", "create-settlements", "announce-expiring",
                     "publish-events", "purge-idempotency")


async def run_once(database: Database, job: str, now: datetime) -> int:
    """Run `job` once; the number of items it changed."""
    if job == "purge-idempotency":  # and the console's ended sessions, in real time as they end
        async with database.unit_of_work() as session:
            purged = await idempotency.purge_expired(session, now)
        return purged + await console_ended.purge(database, datetime.now(UTC))
    if job == "seal-audit":
        return await audit.seal_pending(database)
    if job == "audit-checkpoint":  # seal, then sign the head: one checkpoint per run
        await audit.seal_pending(database)
        async with database.unit_of_work() as session:
            await audit.sign_checkpoint(session, Signer.from_settings(database.settings), now)
        return 1
    if job == "announce-expiring":
        return await events.announce_expiring(database, now, database.settings.voucher_expiring_days, ITEM_BATCH)
    if job == "publish-events":
        return await events.publish_pending(database, now)
    if job == "deliver-webhooks":
        tally: dict[str, int] = {}
        sent = await webhooks.deliver_due(database, now, tally=tally)
        database.info[TAKEN] = tally.get("taken", 0)
        metrics.webhooks_behind(await webhooks.behind_seconds(database, now))
        return sent
    find, work = PER_ITEM[job]
    async with database.unit_of_work(write=False) as session:
        due = await find(session, now, ITEM_BATCH)
    done, failed = 0, None
    for item in due:
        args = item if isinstance(item, tuple) else (item,)
        try:
            async with database.unit_of_work() as session:
                done += await work(session, *args, now)
        except SettlementExists:  # another worker made it first: nothing left to do
            continue
        except DomainError as exc:  # a refusal of one item must not stop the others
            log.error("%s: %s refused (%s: %s); it stays due", job, _name(item), exc.code, exc.detail)
        except Exception as exc:
            if is_transient(exc):
                log.warning("%s: %s lost a race; it is retried on the next run", job, _name(item))
                continue
            # Unexpected (a bug, a row changed behind the service): the items behind it still
            # run — found first every run, it had held up every one of them for good — and the
            # run then fails with it, so that it is logged, counted and alerted on.
            log.exception("%s: %s failed; it stays due, the other items go on", job, _name(item))
            failed = failed or exc
    if failed is not None:
        log.error("%s: %d of %d items done before the failure is raised", job, done, len(due))
        raise failed
    return done


async def run_due(database: Database, now: datetime) -> dict[str, int]:
    """Every job of DUE_ON_CLOCK_MOVE at `now`, a per-item one again while it takes a whole
    batch (a move of a year may make thousands of vouchers due; at most BATCHES_ON_CLOCK_MOVE
    batches, the rest left to the worker); one that fails is logged and the others run."""
    done: dict[str, int] = {}
    for job in DUE_ON_CLOCK_MOVE:
        done[job] = 0
        try:
            for _ in range(BATCHES_ON_CLOCK_MOVE if job in BATCHED else 1):
                ran = await run_once(database, job, now)
                done[job] += ran
                if ran < ITEM_BATCH:  # all done, or some refused (they would come first again)
                    break
        except Exception:
            log.exception("job %s failed after the sandbox clock moved; the worker runs it again", job)
    return done


#: `database.info` key: how many sends the last delivery run's receivers took (2xx).
TAKEN = "deliver-webhooks:taken"


def left_work(database: Database, job: str, done: int) -> bool:
    """Whether a run of `job` that changed `done` items stopped at its batch's end, not for want of
    work: the worker's loop then runs again at once instead of waiting out its interval (webhook
    sends had been held to 100 per run plus 5 s, about 15 a second, whatever the backlog; an
    independent review). A delivery run counts only when receivers took at least half its
    batch: sends never made (a secret the service cannot open, retried every 30 s for as long as
    its key is missing) or not taken had the loop claim them back to back (a review of this
    change). The publisher and the sealer go on until nothing is left by themselves."""
    if job == "deliver-webhooks":
        batch = database.settings.webhook_batch_size
        return done >= batch and 2 * int(database.info.get(TAKEN, 0)) >= batch
    return job in BATCHED and done >= ITEM_BATCH


def _name(item: object) -> str:
    return "/".join(map(str, item)) if isinstance(item, tuple) else str(item)


#: The job a worker runs in a loop of its own: its sends wait on other parties' servers (up to
#: about two timeouts a run), and the value, publishing and audit jobs must not wait behind them.
APART = ("deliver-webhooks",)


@dataclass
class JobWorker:
    """`voucher worker`: every job on its interval until stopped; a failing job is logged and
    counted, and the others go on. Webhook delivery runs in a loop of its own beside the others."""

    database: Database
    clock: Clock
    interval: float
    only: tuple[str, ...] = JOBS
    last_ok: dict[str, float] = field(default_factory=dict)
    last_run: dict[str, float] = field(default_factory=dict)
    #: The jobs that failed in the last round (`voucher worker --once` exits 1), and whether it
    #: ran none at all, the database being unreadable or not this build's (it exits 2).
    failed: list[str] = field(default_factory=list)
    skipped: bool = False

    def due(self, job: str, at: float) -> bool:
        every = SCHEDULE[job]
        return job not in self.last_run or every is None or at - self.last_run[job] >= every

    async def round(self, stop: asyncio.Event | None = None, jobs: tuple[str, ...] | None = None) -> dict[str, int]:
        """Each of `jobs` (default: every one this worker runs) that is due, in order; once
        `stop` is set, none after the current one."""
        done: dict[str, int] = {}
        self.failed, self.skipped = [], True
        if isinstance(self.clock, SandboxClock):  # the time another process may have moved it to
            try:
                await sandbox.refresh(self.database, self.clock)
            except Exception:
                log.exception("the sandbox clock could not be read; this round is skipped")
                return done
        chosen = self.only if jobs is None else jobs
        if not await self._schema_is_this_builds(chosen):
            return done
        self.skipped = False
        for job in chosen:
            if stop is not None and stop.is_set():
                break
            at = time.monotonic()
            if not self.due(job, at):
                continue
            self.last_run[job] = at
            started = time.perf_counter()
            try:
                done[job] = await run_once(self.database, job, self.clock())
            except Exception:
                log.exception("job %s failed; it runs again next round", job)
                self.failed.append(job)
                metrics.job_ran(job, "error", time.perf_counter() - started)
                del self.last_run[job]  # an hourly job too: not an hour later
                continue
            lag = at - self.last_ok[job] if job in self.last_ok else None
            self.last_ok[job] = at
            metrics.job_ran(job, "ok", time.perf_counter() - started, done[job], lag)
        driver.flush_counts()  # the round's round trips (a request's are added when it is answered)
        return done

    async def _schema_is_this_builds(self, jobs: tuple[str, ...]) -> bool:
        """Whether the database is migrated to this build's head. A worker left running across
        an upgrade (or a downgrade) runs no job against a schema it was not written for: each
        round it logs why and counts each job as failed (alerts on job errors fire), until it is
        restarted with the build the database was migrated for."""
        try:
            found = await observability.database_heads(self.database)
        except Exception:  # noqa: BLE001 - whatever the driver raises: the database does not answer
            log.exception("the database's migration revision could not be read; this round is skipped")
        else:
            wanted = observability.migration_heads()
            if found != wanted:
                log.error("the database is at revision %s but this worker's build needs %s: no job runs until "
                          "they match (restart the worker with the build the database was migrated for, or run "
                          "`voucher db upgrade`)", sorted(found) or "none", sorted(wanted))
            else:
                try:  # production on a database used as a sandbox, or another on production's: nothing runs
                    await deployment.refuse_another_environment(self.database)
                    return True
                except RuntimeError as refused:
                    log.error("%s; no job runs", refused)
        for job in jobs:
            metrics.job_ran(job, "error", 0.0)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every `interval` until `stop` is set, which ends each loop after its current job."""
        observability.migration_heads()  # this build's, read at start-up: what each round compares with
        log.info("worker started: jobs %s every %.1f s", ", ".join(self.only), self.interval)
        apart = tuple(job for job in self.only if job in APART)
        rest = tuple(job for job in self.only if job not in APART)
        async with asyncio.TaskGroup() as loops:  # one loop failing stops the other, not leaves it unwatched
            for jobs in (rest, apart):
                if jobs:
                    loops.create_task(self._loop(stop, jobs))
        log.info("worker stopped")

    async def _loop(self, stop: asyncio.Event, jobs: tuple[str, ...]) -> None:
        while not stop.is_set():
            done = await self.round(stop, jobs)
            if any(left_work(self.database, job, count) for job, count in done.items()):
                await asyncio.sleep(0)  # the other loop and the stop get their turn
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            except TimeoutError:
                pass


@contextlib.asynccontextmanager
async def in_process(database: Database, clock: Clock) -> AsyncIterator[JobWorker | None]:
    """The worker inside the API process, when VOUCHER_WORKER_IN_PROCESS is set (`make run`: one
    process, nothing else to start). Stopped, after its current job, when the server stops."""
    if not database.settings.worker_in_process:
        yield None
        return
    runner = JobWorker(database, clock, database.settings.worker_interval_seconds)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop), name="voucher-worker")
    try:
        yield runner
    finally:
        stop.set()
        await task
