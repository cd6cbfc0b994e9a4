"""Exports stream: a large export leaves the server in many chunks while memory stays far
below the size of the file, over ASGI and over a real socket — an .xlsx too, written to disk a
batch at a time and sent from there; and it is read in one snapshot, so rows committed while it
runs (or between its chain head and its rows) are not in it."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
import threading
import tracemalloc
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from services.voucher.actor import SYSTEM
from services.voucher.audit import service as audit
from services.voucher.exports.rules import CHUNK_BYTES
from services.voucher.exports.workbook import WorkbookWriter
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import AccountKind, transfer
from tests.exports import xlsx
from tests.exports.helpers import load_postings, manifest_of, rows_of, stream_by_hand
from tests.live_server import LiveServer
from tests.support import auth
from tests.world import World, build_world

JOURNALS = 10_000  # 20,000 postings
AT = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client)


@pytest.fixture
async def loaded(app, world: World, request: pytest.FixtureRequest) -> World:
    request.node.add_marker(pytest.mark.ledger_tampered)  # the loaded journals are the test's: `load_postings`
    await load_postings(app, world.programme["id"], world.provider["id"], JOURNALS, at=AT)
    return world


async def _post_late_journal(app, world: World, amount: int) -> uuid.UUID:
    """A real journal (with its audit event), committed now, of a kind the service never posts:
    the reconciliation reports it, and the tests that post it are marked so."""
    async with app.state.database.unit_of_work() as session:
        pid = uuid.UUID(world.programme["id"])
        spent = (await ledger.programme_accounts(session, pid))[AccountKind.PROGRAMME_SPENT]
        payable = (await ledger.ensure_provider_accounts(
            session, uuid.UUID(world.provider["id"]), pid, "CNY", app.state.clock()))[AccountKind.PROVIDER_PAYABLE]
        return await ledger.post(session, kind="late_test", legs=transfer(spent, payable, amount, "CNY"),
                                 now=app.state.clock(), programme_id=pid)


async def test_a_large_export_streams_in_chunks_in_bounded_memory(app, client, loaded: World) -> None:
    # Warm up (imports, compiled statements, pools) so what is measured is the export itself.
    warm = await client.get("/v1/exports/settlements?format=csv", headers=auth(loaded.auditor))
    assert warm.status_code == 200
    digest, sizes = hashlib.sha256(), []

    async def consume(_index: int, chunk: bytes) -> None:  # a client that keeps nothing
        digest.update(chunk)
        sizes.append(len(chunk))

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        status, headers, _ = await stream_by_hand(app, "/v1/exports/ledger-entries", "format=jsonl",
                                                  loaded.auditor, consume, keep=False)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert status == 200
    body_size = sum(sizes)
    assert body_size > 5_000_000
    assert len(sizes) >= body_size // CHUNK_BYTES >= 50
    assert max(sizes) <= CHUNK_BYTES
    # The server holds about one batch of rows and one chunk at a time: a small fraction of the
    # file (holding all rows, or the whole body, would be several times the file's size).
    assert peak < body_size / 2, (peak, body_size)

    manifest = (await client.get(f"/v1/exports/manifests/{headers['export-id']}",
                                 headers=auth(loaded.auditor))).json()
    assert manifest["sha256"] == digest.hexdigest()
    assert manifest["row_count"] > 2 * JOURNALS


XLSX_JOURNALS = 10_000  # 20,000 postings (50,000 had cost CI a minute per database, 30,000 half a minute)


@pytest.mark.ledger_tampered  # the loaded journals are the test's: `load_postings`
async def test_a_large_xlsx_export_is_written_progressively_in_bounded_memory(
    app, client, world: World, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """20,000 rows: the workbook gets them a fetched batch at a time (never all at once) and
    the server's peak allocation stays far below what the rows, or the sheet's XML, take; the
    file is sent in chunks, matches its manifest, holds every row, and leaves no temporary file."""
    await load_postings(app, world.programme["id"], world.provider["id"], XLSX_JOURNALS, at=AT)
    warm = await client.get("/v1/exports/settlements?format=xlsx", headers=auth(world.auditor))
    assert warm.status_code == 200
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the export's files go
    batches: list[int] = []
    real_write = WorkbookWriter.write

    def counting_write(self: WorkbookWriter, rows) -> int:  # type: ignore[no-untyped-def]
        written = real_write(self, rows)
        batches.append(written)
        return written

    monkeypatch.setattr(WorkbookWriter, "write", counting_write)
    digest, sizes, received = hashlib.sha256(), [], tmp_path / "received.xlsx"

    async def consume(_index: int, chunk: bytes) -> None:  # a client that saves the file
        digest.update(chunk)
        sizes.append(len(chunk))
        with received.open("ab") as file:
            file.write(chunk)

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        status, headers, _ = await stream_by_hand(app, "/v1/exports/ledger-entries", "format=xlsx",
                                                  world.auditor, consume, keep=False)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert status == 200
    assert headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert sum(batches) >= 2 * XLSX_JOURNALS and max(batches) <= 1000 and len(batches) >= 20
    [sheet_xml] = xlsx.sheet_xml(received.read_bytes())
    # The sheet's XML (which the workbook is assembled from) is over 15 MB: the server holds
    # about one batch (3.4 MB traced at 20,000 rows as at 30,000), and never the sheet; the
    # batches above show the rows were handed over a fetch at a time.
    assert len(sheet_xml) > 15_000_000
    print(f"xlsx export of {sum(batches)} rows: peak {peak:,} B traced; sheet XML {len(sheet_xml):,} B; "
          f"file {received.stat().st_size:,} B")
    assert peak < 5_000_000, peak
    assert len(sizes) >= 10 and max(sizes) <= CHUNK_BYTES
    manifest = (await client.get(f"/v1/exports/manifests/{headers['export-id']}",
                                 headers=auth(world.auditor))).json()
    assert manifest["sha256"] == digest.hexdigest()
    assert manifest["row_count"] == sheet_xml.count("<row ") - 1 == sum(batches)
    assert list(scratch.iterdir()) == [], "the export's temporary files are gone"


async def test_an_xlsx_export_cut_off_leaves_no_temporary_file_and_no_complete_manifest(
    app, client, world: World, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from services.voucher.exports import service as exports
    from services.voucher.exports.rules import Dataset, Filters, Format

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    async with app.state.database.session(write=False) as session:
        opened = await exports.open_export(session, app.state.database, SYSTEM, Dataset.LEDGER_ENTRIES,
                                           Format.XLSX, Filters(), app.state.clock, chunk_bytes=1024)
        first = await anext(opened.body)
        assert first.startswith(b"PK")  # a zip: the workbook was finished before its first byte
        assert len(list(scratch.iterdir())) == 1  # its directory, while it is sent
        await opened.body.aclose()  # the client went away
        assert list(scratch.iterdir()) == []  # at once, not when a collector gets to it
    manifest = (await client.get(f"/v1/exports/manifests/{opened.manifest.id}", headers=auth(world.auditor))).json()
    assert manifest["is_complete"] is False and manifest["sha256"] is None


async def test_an_xlsx_export_cut_off_mid_batch_removes_its_files_once_the_thread_is_done(
    app, world: World, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """The client goes away while a worker thread is writing a batch: the files stay until that
    thread has finished with them, then go (never removed under it, never left behind)."""
    from services.voucher.exports import service as exports
    from services.voucher.exports.rules import Dataset, Filters, Format

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    writing, finish, removed = threading.Event(), threading.Event(), threading.Event()
    real_write, real_rmtree = WorkbookWriter.write, shutil.rmtree

    def slow_write(self: WorkbookWriter, rows) -> int:  # type: ignore[no-untyped-def]
        writing.set()
        finish.wait(30)
        return real_write(self, rows)

    def watched_rmtree(path, **kwargs) -> None:  # type: ignore[no-untyped-def]
        real_rmtree(path, **kwargs)
        removed.set()

    monkeypatch.setattr(WorkbookWriter, "write", slow_write)
    monkeypatch.setattr(shutil, "rmtree", watched_rmtree)
    async with app.state.database.session(write=False) as session:
        opened = await exports.open_export(session, app.state.database, SYSTEM, Dataset.LEDGER_ENTRIES,
                                           Format.XLSX, Filters(), app.state.clock)
        first = asyncio.ensure_future(anext(opened.body))
        assert await asyncio.to_thread(writing.wait, 30)
        first.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await first
        assert len(list(scratch.iterdir())) == 1 and not removed.is_set()  # the thread still writes there
        finish.set()
        assert await asyncio.to_thread(removed.wait, 30)
    assert list(scratch.iterdir()) == []


async def test_a_large_export_is_complete_and_in_posting_order(client, loaded: World) -> None:
    response = await client.get("/v1/exports/ledger-entries", headers=auth(loaded.auditor))
    rows = rows_of("jsonl", response.content)
    assert len([r for r in rows if r["kind"] == "bulk_test"]) == 2 * JOURNALS
    assert [r["posting_id"] for r in rows] == sorted({r["posting_id"] for r in rows})
    manifest = await manifest_of(client, loaded.auditor, response)
    assert manifest["row_count"] == len(rows)
    assert manifest["sha256"] == hashlib.sha256(response.content).hexdigest()


async def test_rows_committed_while_an_export_streams_are_not_in_it(app, client, loaded: World) -> None:
    late: list[uuid.UUID] = []

    async def meanwhile(index: int, _chunk: bytes) -> None:
        if index == 1:  # the export has begun sending; most rows are still unread
            late.append(await _post_late_journal(app, loaded, 77))

    status, headers, chunks = await stream_by_hand(app, "/v1/exports/ledger-entries", "format=csv",
                                                   loaded.auditor, meanwhile)
    assert status == 200 and len(late) == 1 and len(chunks) > 10
    rows = rows_of("csv", b"".join(chunks))
    assert str(late[0]) not in {r["journal_id"] for r in rows}
    manifest = (await client.get(f"/v1/exports/manifests/{headers['export-id']}",
                                 headers=auth(loaded.auditor))).json()
    assert manifest["row_count"] == len(rows)
    again = rows_of("jsonl", (await client.get("/v1/exports/ledger-entries", headers=auth(loaded.auditor))).content)
    assert len(again) == len(rows) + 2 and str(late[0]) in {r["journal_id"] for r in again}


@pytest.mark.ledger_tampered  # `_post_late_journal`'s journals are the test's
async def test_the_rows_are_read_in_the_snapshot_of_the_chain_head(
    app, client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal committed just after the export read its chain head is in neither the ledger
    nor the audit events of the export: one snapshot for head and rows (REPEATABLE READ on
    PostgreSQL), not a statement each."""
    real_head = audit.head
    late: list[uuid.UUID] = []

    async def head_then_write(session):  # type: ignore[no-untyped-def]
        found = await real_head(session)
        late.append(await _post_late_journal(app, world, 5))
        return found

    monkeypatch.setattr(audit, "head", head_then_write)
    for dataset in ("ledger-entries", "audit-events"):
        response = await client.get(f"/v1/exports/{dataset}", headers=auth(world.auditor))
        assert response.status_code == 200
        rows = rows_of("jsonl", response.content)
        manifest = await manifest_of(client, world.auditor, response)
        if dataset == "ledger-entries":
            assert str(late[-1]) not in {r["journal_id"] for r in rows}
        else:
            assert [r["seq"] for r in rows] == list(range(1, manifest["chain_seq"] + 1))
            assert rows[-1]["chain_hash"] == manifest["chain_hash"]
            assert str(late[-1]) not in {r["journal_id"] for r in rows}
    monkeypatch.undo()
    # Both late journals are there for the next export.
    rows = rows_of("jsonl", (await client.get("/v1/exports/ledger-entries", headers=auth(world.auditor))).content)
    assert {str(j) for j in late} <= {r["journal_id"] for r in rows}


async def test_an_export_over_a_real_socket(database_url: str, loaded: World) -> None:
    with LiveServer(database_url) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            digest, size, pieces = hashlib.sha256(), 0, 0
            async with http.stream("GET", "/v1/exports/ledger-entries", params={"format": "csv"},
                                   headers=auth(loaded.auditor)) as response:
                assert response.status_code == 200
                assert response.headers.get("transfer-encoding") == "chunked"
                export_id = response.headers["export-id"]
                async for piece in response.aiter_raw():
                    digest.update(piece)
                    size += len(piece)
                    pieces += 1
            manifest = (await http.get(f"/v1/exports/manifests/{export_id}", headers=auth(loaded.auditor))).json()
    assert pieces > 10 and size > 3_000_000
    assert manifest["sha256"] == digest.hexdigest()
    assert manifest["row_count"] >= 2 * JOURNALS and manifest["is_complete"]
