"""Streaming exports for auditors, each described by a manifest.

An export is read in one snapshot of the database, after sealing every committed audit event,
so the file is consistent with itself and with the audit chain head its manifest names. The
manifest row is written before the first byte (dataset, format, filters, who, the chain head,
when) and completed after the last (row count, SHA-256 of exactly the bytes sent, when): a
manifest without `finished_at` is an export that did not complete. Rows are fetched and encoded
a batch at a time and sent in chunks, so memory stays flat however large the export.
See docs/decisions.md, "Exports and point-in-time balances".
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher.actor import Actor
from services.voucher.audit import service as audit
from services.voucher.clock import Clock
from services.voucher.db import Database
from services.voucher.errors import NotFound, ValidationFailed, field_error
from services.voucher.exports import repository
from services.voucher.exports.rules import (
    CHUNK_BYTES,
    ENCODE_ROWS,
    FETCH_ROWS,
    Dataset,
    Filters,
    Format,
    encoder,
    filter_problems,
)
from services.voucher.ids import uuid7
from services.voucher.tables import ExportManifest


@dataclass(frozen=True)
class Export:
    """An export that has been opened: its manifest and the bytes still to produce."""

    manifest: ExportManifest
    body: AsyncIterator[bytes]


async def open_export(
    session: AsyncSession, database: Database, actor: Actor, dataset: Dataset, format_: Format,
    filters: Filters, clock: Clock, *, chunk_bytes: int = CHUNK_BYTES, fetch_rows: int = FETCH_ROWS,
) -> Export:
    """Check the filters, seal the audit chain, take the read snapshot on `session` (the
    request's read session, which must stay open while the body is consumed), record the
    manifest in a transaction of its own, and return the body to stream."""
    problems = filter_problems(dataset, filters)
    if problems:
        raise ValidationFailed([field_error(name, message, location="query") for name, message in problems])
    await audit.seal_pending(database)
    await repository.begin_snapshot(session)
    head = await audit.head(session)
    manifest = ExportManifest(
        id=uuid7(), dataset=dataset.value, format=format_.value, filters=filters.as_record(),
        requested_by=actor.principal_id, chain_seq=head.seq, chain_hash=head.chain_hash, started_at=clock(),
    )
    async with database.unit_of_work() as writer:
        await repository.add_manifest(writer, manifest)
    body = _body(session, database, manifest.id, dataset, format_, filters, clock, chunk_bytes, fetch_rows)
    return Export(manifest, body)


async def _body(
    session: AsyncSession, database: Database, export_id: uuid.UUID, dataset: Dataset, format_: Format,
    filters: Filters, clock: Clock, chunk_bytes: int, fetch_rows: int,
) -> AsyncIterator[bytes]:
    stmt = repository.statement(dataset, filters)
    writer = encoder(format_, repository.columns(stmt))
    digest = hashlib.sha256()
    row_count = 0
    buffer = bytearray(writer.preamble())
    async for rows in repository.stream(session, stmt, fetch_rows):
        row_count += len(rows)
        # Encode a slice at a time so the pending bytes never exceed about one chunk.
        for start in range(0, len(rows), ENCODE_ROWS):
            buffer += writer.rows(rows[start : start + ENCODE_ROWS])
            if len(buffer) >= chunk_bytes:
                with memoryview(buffer) as view:
                    cut = len(buffer) - len(buffer) % chunk_bytes
                    chunks = [bytes(view[i : i + chunk_bytes]) for i in range(0, cut, chunk_bytes)]
                del buffer[:cut]
                for chunk in chunks:
                    digest.update(chunk)
                    yield chunk
    if buffer:
        chunk = bytes(buffer)
        digest.update(chunk)
        yield chunk
    # Every byte has been handed to the server; the response ends only after this commits, so
    # a client that read to the end finds the manifest complete.
    async with database.unit_of_work() as writer_session:
        await repository.finish_manifest(
            writer_session, export_id, row_count=row_count, sha256=digest.hexdigest(), finished_at=clock()
        )


async def get_manifest(session: AsyncSession, export_id: uuid.UUID) -> ExportManifest:
    found = await repository.manifest(session, export_id)
    if found is None:
        raise NotFound(f"no export {export_id}")
    return found
