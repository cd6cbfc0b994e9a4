"""Streaming exports for auditors, each described by a manifest.

An export is read in one snapshot of the database, after sealing every committed audit event,
so the file is consistent with itself and with the audit chain head its manifest names. The
manifest row is written before the first byte (dataset, format, filters, who, the chain head,
when) and completed after the last (row count, SHA-256 of exactly the bytes sent, when): a
manifest without `finished_at` is an export that did not complete. Rows are fetched and encoded
a batch at a time and sent in chunks (CSV, JSON Lines), or written a batch at a time to an .xlsx
file on disk that is then sent in chunks, so memory stays flat however large the export.
See docs/decisions.md, "Exports and point-in-time balances".
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher import jobs
from services.voucher.actor import Actor
from services.voucher.audit import service as audit
from services.voucher.clock import Clock
from services.voucher.db import Database
from services.voucher.errors import NotFound, ValidationFailed, field_error
from services.voucher.exports import repository
from services.voucher.exports.layouts import Layout
from services.voucher.exports.rules import (
    CHUNK_BYTES,
    ENCODE_ROWS,
    FETCH_ROWS,
    Dataset,
    Filters,
    Format,
    encoder,
    filter_problems,
    layout,
)
from services.voucher.exports.workbook import WorkbookWriter
from services.voucher.i18n import msg
from services.voucher.ids import uuid7
from services.voucher.tables import ExportManifest


@dataclass(frozen=True)
class Export:
    """An export that has been opened: its manifest and the bytes still to produce."""

    manifest: ExportManifest
    body: AsyncIterator[bytes]


def check_filters(dataset: Dataset, filters: Filters) -> None:
    """422 naming each filter `dataset` does not take or cannot hold."""
    problems = filter_problems(dataset, filters)
    if problems:
        raise ValidationFailed([field_error(name, message, location="query") for name, message in problems])


async def open_export(
    session: AsyncSession, database: Database, actor: Actor, dataset: Dataset, format_: Format,
    filters: Filters, clock: Clock, *, chunk_bytes: int = CHUNK_BYTES, fetch_rows: int = FETCH_ROWS,
) -> Export:
    """Check the filters, seal the audit chain, take the read snapshot on `session` (the
    request's read session, which must stay open while the body is consumed), record the
    manifest in a transaction of its own, and return the body to stream. The head and the
    count of events not yet under it are read in the snapshot: a change committed between the
    seal and the snapshot is in the file, its events after the head, and the manifest says how
    many such events there are (`unsealed_events`)."""
    check_filters(dataset, filters)
    await _release_lapsed(database, clock())
    await audit.seal_pending(database)
    await repository.begin_snapshot(session)
    head = await audit.head(session)
    started_at = clock()
    manifest = ExportManifest(
        id=uuid7(), dataset=dataset.value, format=format_.value, filters=filters.as_record(),
        requested_by=actor.principal_id, chain_seq=head.seq, chain_hash=head.chain_hash,
        unsealed_events=head.unsealed, lapsed_unreleased=await repository.lapsed_unreleased(session, started_at),
        started_at=started_at,
    )
    async with database.unit_of_work() as writer:
        await repository.add_manifest(writer, manifest)
    body = _body(session, database, manifest.id, dataset, format_, filters, clock, chunk_bytes, fetch_rows)
    return Export(manifest, body)


log = logging.getLogger(__name__)

#: How long an export spends releasing what has lapsed before it reads; the rest of a backlog
#: (a worker down for long) is left to the worker.
RELEASE_SECONDS = 5.0
#: The jobs whose work every read already counts as done: holds past their TTL, and holds and
#: balances of vouchers past their validity.
RELEASE_JOBS = ("expire-holds", "expire-vouchers")


async def _release_lapsed(database: Database, now: datetime) -> None:
    """Do now what the expire-holds and expire-vouchers jobs would do next: every read counts a
    hold past its TTL, or on a voucher past its validity, as released (DESIGN §2), but an
    export reads rows and postings as they are, and before the jobs' next run its redemptions
    said `held` where the API said `voided`, and a voucher's postings held value the API showed
    available (an independent review of exports, December 2026). The jobs' own per-item runs
    are used — each item in its own transaction, in the lock order of every value path (a
    first form released 500 holds in one transaction, which deadlocked a hold on another
    voucher) — for at most RELEASE_SECONDS. A run that fails is left to the worker: the export
    goes on."""
    deadline = time.monotonic() + RELEASE_SECONDS
    for job in RELEASE_JOBS:
        while time.monotonic() < deadline:
            try:
                with audit.as_system():  # the worker's work, done early: never the auditor's own
                    done = await jobs.run_once(database, job, now)
            except Exception:  # noqa: BLE001 - the worker runs it again
                log.warning("an export could not run %s first; the worker will", job, exc_info=True)
                break
            if done < jobs.ITEM_BATCH:
                break


T = TypeVar("T")


@dataclass
class _Count:
    rows: int = 0


async def _body(
    session: AsyncSession, database: Database, export_id: uuid.UUID, dataset: Dataset, format_: Format,
    filters: Filters, clock: Clock, chunk_bytes: int, fetch_rows: int,
) -> AsyncIterator[bytes]:
    stmt = repository.statement(dataset, filters)
    shape = layout(dataset, format_, repository.columns(stmt))
    batches = repository.stream(session, stmt, fetch_rows)
    digest, count = hashlib.sha256(), _Count()
    produced = (_workbook(shape, dataset.value, batches, count, chunk_bytes) if format_ is Format.XLSX
                else _text(shape, format_, batches, count, chunk_bytes))
    # Closed with this body, cut off or not, so a workbook's temporary files go at once.
    async with aclosing(produced) as chunks:
        async for chunk in chunks:
            digest.update(chunk)
            yield chunk
    # Every byte has been handed to the server; the response ends only after this commits, so
    # a client that read to the end finds the manifest complete.
    async with database.unit_of_work() as writer_session:
        await repository.finish_manifest(
            writer_session, export_id, row_count=count.rows, sha256=digest.hexdigest(), finished_at=clock()
        )


async def _text(shape: Layout, format_: Format, batches: AsyncIterator[Sequence[Any]], count: _Count,
                chunk_bytes: int) -> AsyncGenerator[bytes, None]:
    """CSV or JSON Lines: encoded a slice at a time and sent as it goes, so the pending bytes
    never exceed about one chunk."""
    writer = encoder(format_, shape)
    buffer = bytearray(writer.preamble())
    async for batch in batches:
        produced = shape.rows(batch)  # a source row may give several rows (line items) or none
        while rows := list(islice(produced, ENCODE_ROWS)):
            count.rows += len(rows)
            buffer += writer.rows(rows)
            if len(buffer) >= chunk_bytes:
                with memoryview(buffer) as view:
                    cut = len(buffer) - len(buffer) % chunk_bytes
                    chunks = [bytes(view[i : i + chunk_bytes]) for i in range(0, cut, chunk_bytes)]
                del buffer[:cut]
                for chunk in chunks:
                    yield chunk
    if buffer:
        yield bytes(buffer)


#: Threads that write workbooks: the work is CPU-bound and would otherwise hold the event loop.
_WORKBOOK_THREADS = ThreadPoolExecutor(thread_name_prefix="voucher-xlsx")


async def _workbook(shape: Layout, sheet_name: str, batches: AsyncIterator[Sequence[Any]], count: _Count,
                    chunk_bytes: int) -> AsyncGenerator[bytes, None]:
    """.xlsx: each fetched batch written to the workbook's temporary files in a worker thread,
    the workbook assembled on disk (in a thread too), then the file sent in chunks. The
    temporary directory goes in every case: at the end, or — when the export is cut off while a
    thread is still at work on it — as soon as that thread is done with it."""
    directory = tempfile.mkdtemp(prefix="voucher-export-")
    running: Future[Any] | None = None

    async def off_the_loop(work: Callable[..., T], *args: Any) -> T:
        nonlocal running
        running = _WORKBOOK_THREADS.submit(work, *args)
        return await asyncio.wrap_future(running)

    def remove(_done: object = None) -> None:
        shutil.rmtree(directory, ignore_errors=True)

    try:
        book = WorkbookWriter(shape, sheet_name, directory)
        async for batch in batches:
            count.rows += await off_the_loop(book.write, shape.rows(batch))
        with await off_the_loop(book.close) as file:
            while chunk := file.read(chunk_bytes):
                yield chunk
    finally:
        if running is not None and not running.done():
            running.add_done_callback(remove)
        else:
            remove()


async def get_manifest(session: AsyncSession, export_id: uuid.UUID) -> ExportManifest:
    found = await repository.manifest(session, export_id)
    if found is None:
        raise NotFound(msg("no export {export_id}", export_id=export_id))
    return found
