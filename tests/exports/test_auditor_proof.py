"""What an auditor proves from the exports alone (an independent review of exports and audit,
December 2026): each test below failed before its fix."""

from __future__ import annotations

import httpx
import pytest

from tests.exports.helpers import export, rows_of


async def test_a_filtered_audit_trail_accounts_for_every_journal_of_the_same_filtered_ledger_export(
    app, client: httpx.AsyncClient, clock
) -> None:
    """Every journal of a filtered ledger-entries export has its `ledger.posted` event in the
    audit-events export with the same filter. The provider filter had matched only events that
    name the provider, and a journal's event names none: its captures', refunds' and payments'
    journals, which post to its payable, were missing from its trail."""
    from tests.exports.history import build_history

    history = await build_history(app, client, clock)
    world = history.world
    missing: dict[str, list[str]] = {}
    for name, value in (("provider_id", world.provider["id"]), ("voucher_id", history.vouchers[0]["id"]),
                        ("programme_id", world.programme["id"]), ("enterprise_id", world.enterprise["id"])):
        entries = rows_of("jsonl", (await export(client, world.auditor, "ledger-entries", **{name: value})).content)
        events = rows_of("jsonl", (await export(client, world.auditor, "audit-events", **{name: value})).content)
        journals = {r["journal_id"] for r in entries}
        assert journals, name
        recorded = {e["journal_id"] for e in events if e["journal_id"]}
        if journals - recorded:
            missing[name] = sorted(journals - recorded)
        listed: set[str] = set()
        cursor = None
        while True:  # the events list filters the same way
            params = {name: value, "limit": 200, **({"cursor": cursor} if cursor else {})}
            page = await client.get("/v1/audit/events", params=params,
                                    headers={"Authorization": f"Bearer {world.auditor}"})
            assert page.status_code == 200, page.text
            listed |= {e["journal_id"] for e in page.json()["items"] if e["journal_id"]}
            cursor = page.json()["next_cursor"]
            if not cursor:
                break
        assert journals <= listed, name
    assert not missing, f"journals without their event in the same-filtered audit trail: {missing}"


async def test_the_manifest_counts_the_events_of_its_snapshot_that_its_head_does_not_cover(
    app, client: httpx.AsyncClient, clock, monkeypatch
) -> None:
    """A hold committed between the export's seal and its snapshot is in the file, its
    `ledger.posted` event after the manifest's head; the manifest had said nothing of it. It now
    counts such events (`unsealed_events`), and the auditor knows which rows wait for a later
    checkpoint. With nothing committed in between, it is 0."""
    from typing import Any

    from services.voucher.exports import repository as export_repository
    from tests.exports.helpers import manifest_of
    from tests.world import build_world

    world = await build_world(app, client)
    voucher = await world.issue(5_000_000)
    quiet = await export(client, world.auditor, "ledger-entries")
    assert (await manifest_of(client, world.auditor, quiet))["unsealed_events"] == 0
    original = export_repository.begin_snapshot
    raced: dict[str, Any] = {}

    async def racing_begin_snapshot(session: Any) -> None:
        if not raced:  # a provider's hold commits between the seal and the snapshot
            raced["hold"] = await world.hold(voucher, 1_000_000, order="PO-RACE")
        await original(session)

    monkeypatch.setattr(export_repository, "begin_snapshot", racing_begin_snapshot)
    response = await export(client, world.auditor, "ledger-entries")
    monkeypatch.setattr(export_repository, "begin_snapshot", original)
    assert response.status_code == 200 and raced["hold"].status_code == 201, raced["hold"].text
    manifest = await manifest_of(client, world.auditor, response)
    journals = {r["journal_id"] for r in rows_of("jsonl", response.content)}
    events = rows_of("jsonl", (await export(client, world.auditor, "audit-events")).content)
    after_head = [e for e in events if e["seq"] is None or e["seq"] > manifest["chain_seq"]]
    uncovered = {e["journal_id"] for e in after_head if e["journal_id"]} & journals
    assert uncovered, "the race put a journal after the head into the file"
    assert manifest["unsealed_events"] >= len(uncovered) and manifest["unsealed_events"] > 0


async def test_a_checkpoint_the_auditor_kept_still_pins_the_chain_after_the_signing_key_changes(
    app, client: httpx.AsyncClient, clock
) -> None:
    """The kept checkpoint is the auditor's anchor outside the database. Stored checkpoints signed
    with a retired key (VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS) still verified, but a kept one was
    checked with the current key only: after a change of key every checkpoint the auditor kept
    was refused. A retired key still vouches only for what it signed before the new key's first
    checkpoint."""
    import os
    from datetime import timedelta

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.voucher.audit.rules import checkpoint_message
    from services.voucher.audit.signing import Signer
    from tests.support import assert_problem
    from tests.world import build_world

    world = await build_world(app, client)
    kept = await world.post("/v1/audit/checkpoints", key=world.auditor)
    assert kept.status_code == 201, kept.text
    fields = {k: kept.json()[k] for k in ("seq", "chain_hash", "signed_at", "signature")}
    old = app.state.signer
    # The service changes its key (the old one listed as retired), as an operator does; the app
    # is this test's own, and the check after the test verifies with the new signer.
    app.state.signer = Signer(Ed25519PrivateKey.from_private_bytes(os.urandom(32)), False, (old.public_bytes,))
    for body in ({"checkpoint": fields}, {"checkpoint": {**fields, "key_id": kept.json()["key_id"]}}):
        verified = await world.post("/v1/audit/verifications", body, key=world.auditor)
        assert verified.status_code == 201, verified.text
        assert verified.json()["is_intact"], verified.json()
    clock.advance(seconds=60)
    newer = await world.post("/v1/audit/checkpoints", key=world.auditor)  # the new key's first
    assert newer.status_code == 201, newer.text
    assert (await world.post("/v1/audit/verifications", {"checkpoint": fields},
                             key=world.auditor)).status_code == 201
    # The retired key, leaked, signs a checkpoint dated after the new key's first: refused.
    late = clock() + timedelta(seconds=1)
    forged = {**fields, "signed_at": late.isoformat(),
              "signature": old.sign(checkpoint_message(fields["seq"], fields["chain_hash"], late))}
    refused = await world.post("/v1/audit/verifications", {"checkpoint": forged}, key=world.auditor)
    assert_problem(refused, 422, "checkpoint_signature_invalid")
    wrong_key = {**fields, "key_id": app.state.signer.key_id}
    assert_problem(await world.post("/v1/audit/verifications", {"checkpoint": wrong_key}, key=world.auditor),
                   422, "checkpoint_signature_invalid")


async def test_an_export_shows_a_hold_past_its_ttl_as_released_as_every_read_does(
    app, client: httpx.AsyncClient, clock
) -> None:
    """DESIGN §2: every read counts an expired hold as released. Before the expire-holds job's
    next run, the redemptions export had said `held` while the API said `voided`, and a
    voucher's postings in the ledger-entries export still held the value the API showed
    available. The export posts the releases first."""
    from datetime import timedelta

    from tests.support import auth
    from tests.world import build_world

    world = await build_world(app, client)
    voucher = await world.issue(5_000_000)
    held = await world.hold(voucher, 1_000_000, order="PO-LAPSE")
    assert held.status_code == 201, held.text
    clock.current = clock.current + timedelta(minutes=31)  # past the 30-minute TTL, no job run
    api = await client.get(f"/v1/redemptions/{held.json()['id']}", headers=auth(world.operator))
    assert api.status_code == 200 and api.json()["status"] == "voided", api.text
    balances = (await world.voucher(voucher["id"]))["balances"]
    assert balances["held"] == 0
    rows = rows_of("jsonl", (await export(client, world.auditor, "redemptions")).content)
    [row] = [r for r in rows if r["id"] == held.json()["id"]]
    assert row["status"] == "voided"
    entries = rows_of("jsonl", (await export(client, world.auditor, "ledger-entries",
                                           voucher_id=voucher["id"])).content)
    assert sum(r["amount"] for r in entries if r["account_kind"] == "voucher_held") == 0
    assert abs(sum(r["amount"] for r in entries if r["account_kind"] == "voucher_available")) == balances["available"]
    again = await client.get(f"/v1/redemptions/{held.json()['id']}", headers=auth(world.operator))
    assert again.json()["status"] == "voided" and (await world.voucher(voucher["id"]))["balances"] == balances


async def test_an_auditor_matches_every_journal_of_the_ledger_export_to_its_event(
    app, client: httpx.AsyncClient, clock
) -> None:
    """A `ledger.posted` event records the journal's kind, time, legs and references
    (programme, voucher, redemption, memo), which verification compares. The ledger-entries
    export had no journal memo, time, programme or voucher, so an auditor could not rebuild from
    the files what the event records, nor prove that a journal was not re-described."""
    import json
    from datetime import datetime
    from typing import Any

    from services.voucher.audit.rules import journal_record
    from tests.world import build_world

    world = await build_world(app, client)
    voucher = await world.issue(5_000_000)
    held = await world.hold(voucher, 1_000_000, order="PO-MATCH", path="/v1/redemptions")
    assert held.status_code == 201, held.text
    entries = rows_of("jsonl", (await export(client, world.auditor, "ledger-entries")).content)
    events = rows_of("jsonl", (await export(client, world.auditor, "audit-events")).content)
    by_journal: dict[str, list[dict[str, Any]]] = {}
    for row in entries:
        by_journal.setdefault(row["journal_id"], []).append(row)
    posted = [e for e in events if e["action"] == "ledger.posted"]
    assert len(posted) == len(by_journal) > 1
    for event in posted:
        rows = by_journal[event["journal_id"]]
        first = rows[0]
        refs = {"programme_id": first["journal_programme_id"], "voucher_id": first["journal_voucher_id"],
                "redemption_id": first["redemption_id"], "memo": first["memo"]}
        rebuilt = journal_record(
            first["kind"], datetime.fromisoformat(first["journal_created_at"]),
            [(r["account_id"], r["amount"], r["unit"], datetime.fromisoformat(r["created_at"])) for r in rows],
            refs if "refs" in event["after"] else None)
        assert json.loads(json.dumps(rebuilt, default=str)) == event["after"], (rebuilt, event["after"])


async def test_an_export_agrees_with_the_api_on_a_hold_its_vouchers_expiry_voided(
        app, client: httpx.AsyncClient, clock) -> None:
    """A claim's hold lives ten years; its voucher's expiry voids it, and every read says so.
    The export released only holds past their TTL, and said `held` until the expire-vouchers
    job ran (a review of the fix above)."""
    import hashlib
    from datetime import timedelta

    from tests.support import auth, fresh_key
    from tests.world import build_world

    world = await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000},
                              tiers=[], voucher_validity_days=1)
    voucher = await world.issue(10_000_000)
    body = {"voucher_id": voucher["id"], "provider_id": world.provider["id"], "contract_number": "HT-X",
            "invoice_number": "44031234", "invoice_code": "3300231130", "invoice_date": "2026-03-01",
            "amount_paid": 2_000_000, "line_items": [{"category": "accelerator:domestic", "amount": 2_000_000,
                                                      "accelerator": "Ascend 910B", "hours_milli": 150_000}],
            "documents": [{"file_name": "x.pdf", "media_type": "application/pdf", "size": 1024,
                           "sha256": hashlib.sha256(b"x").hexdigest()}]}
    filed = await client.post("/v1/claims", json=body, headers=auth(world.enterprise_key, **fresh_key()))
    assert filed.status_code == 201, filed.text
    redemption_id = filed.json()["redemption_id"]
    clock.current = clock.current + timedelta(days=2)  # the voucher expired; no job ran
    api = await client.get(f"/v1/redemptions/{redemption_id}", headers=auth(world.operator))
    assert api.status_code == 200 and api.json()["status"] == "voided", api.text
    rows = rows_of("jsonl", (await export(client, world.auditor, "redemptions")).content)
    [row] = [r for r in rows if r["id"] == redemption_id]
    assert row["status"] == "voided"
    entries = rows_of("jsonl", (await export(client, world.auditor, "ledger-entries",
                                           voucher_id=voucher["id"])).content)
    assert sum(r["amount"] for r in entries if r["account_kind"] == "voucher_held") == 0


async def test_an_export_releasing_lapsed_holds_does_not_deadlock_a_hold_on_another_voucher(
        app, client: httpx.AsyncClient, clock, database_url: str) -> None:
    """The first form of the release took 500 lapsed holds in one transaction: voucher A and its
    enterprise's period usage, then voucher B — while a hold on B held B and waited for the same
    usage row. PostgreSQL found the deadlock and killed one side (a review of the fix). Each
    release now has its own transaction, as in the job."""
    import asyncio
    import uuid

    import pytest
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.conftest import ENGINE
    from tests.test_lock_order import _deadlocks, _until
    from tests.world import build_world

    if ENGINE != "postgresql":
        pytest.skip("PostgreSQL's row locks (SQLite's one writer serialises)")
    world = await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=200_000_000,
                              max_per_voucher=100_000_000, rate_table={"accelerator:domestic": 3000})
    a, b = await world.issue(5_000_000), await world.issue(5_000_000)
    assert (await world.hold(a, 1_000_000, order="PO-A")).status_code == 201
    clock.advance(seconds=60)
    assert (await world.hold(b, 1_000_000, order="PO-B")).status_code == 201
    clock.advance(seconds=31 * 60)  # both lapsed, A's first; no job ran
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as locker, engine.connect() as watcher:
            before = await _deadlocks(watcher)
            await locker.begin()
            await locker.execute(text("SELECT 1 FROM voucher WHERE id = :id FOR UPDATE"), {"id": uuid.UUID(b["id"])})
            new_hold = asyncio.create_task(world.hold(b, 1_000_000, order="PO-B2"))  # waits on B
            await _until(watcher, 1, new_hold)
            exporting = asyncio.create_task(export(client, world.auditor, "redemptions"))  # releases A's, waits on B
            await _until(watcher, 2, exporting)
            await locker.commit()
            held, exported = await asyncio.gather(new_hold, exporting)
            assert held.status_code == 201, held.text
            assert exported.status_code == 200
            assert await _deadlocks(watcher) == before
    finally:
        await engine.dispose()


async def test_the_export_description_lists_every_ledger_entries_column(app, client: httpx.AsyncClient) -> None:
    from tests.world import build_world

    world = await build_world(app, client)
    voucher = await world.issue(5_000_000)
    assert (await world.hold(voucher, 1_000_000, order="PO-DOC")).status_code == 201
    [row, *_] = rows_of("jsonl", (await export(client, world.auditor, "ledger-entries")).content)
    document = (await client.get("/openapi.json")).json()
    [operation] = [op for path, ops in document["paths"].items() if path.startswith("/v1/exports/{")
                   for op in ops.values()]
    described = operation["description"].split("* `ledger-entries`")[1].split("* `")[0]
    assert [column for column in row if f"`{column}`" not in described] == []


async def test_an_exports_release_of_lapsed_holds_is_recorded_as_the_system(
    app, client: httpx.AsyncClient, clock
) -> None:
    """The release ran inside the auditor's request, so its `hold.expired` event named the
    auditor's key as who voided the hold: a read-only key recorded as moving value (a review of
    the release)."""
    from tests.world import build_world

    world = await build_world(app, client)
    voucher = await world.issue(5_000_000)
    held = await world.hold(voucher, 1_000_000, order="PO-LAPSE")
    assert held.status_code == 201, held.text
    clock.advance(seconds=31 * 60)  # past the TTL; no job ran
    assert (await export(client, world.auditor, "redemptions")).status_code == 200
    events = rows_of("jsonl", (await export(client, world.auditor, "audit-events")).content)
    expired = [e for e in events if e["action"] == "hold.expired"]
    assert [(e["actor_role"], e["actor_key_id"]) for e in expired] == [("system", None)], expired


async def test_the_manifest_counts_the_lapses_its_file_still_shows_held(
    app, client: httpx.AsyncClient, clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release an export posts first is cut off after a few seconds, or on a failure, and
    the export goes on: its file then shows held what every read shows released, and the
    manifest had said nothing of it (an independent review, December 2026). Here the release is
    given no time at all: the manifest counts the lapsed hold and the voucher past its
    validity; once the worker has released them, the next manifest counts none."""
    from datetime import timedelta

    from services.voucher import jobs
    from services.voucher.exports import service
    from tests.support import auth
    from tests.world import build_world

    world = await build_world(app, client, voucher_validity_days=1)
    voucher = await world.issue(5_000_000)
    await world.issue(5_000_000)  # a second voucher, unused: past its validity too
    held = await world.hold(voucher, 1_000_000, order="PO-LAPSE")
    assert held.status_code == 201, held.text
    fresh = await export(client, world.auditor, "redemptions")
    manifest = (await client.get(f"/v1/exports/manifests/{fresh.headers['export-id']}", headers=auth(world.auditor)))
    assert manifest.json()["lapsed_unreleased"] == 0
    clock.current = clock.current + timedelta(days=1, minutes=1)  # the hold's TTL and both validities past
    monkeypatch.setattr(service, "RELEASE_SECONDS", 0.0)
    cut = await export(client, world.auditor, "redemptions")
    [row] = [r for r in rows_of("jsonl", cut.content) if r["id"] == held.json()["id"]]
    assert row["status"] == "held"  # as the manifest warns
    manifest = (await client.get(f"/v1/exports/manifests/{cut.headers['export-id']}", headers=auth(world.auditor)))
    assert manifest.json()["lapsed_unreleased"] == 3, manifest.json()  # the hold, and both vouchers
    for job in ("expire-holds", "expire-vouchers"):
        await jobs.run_once(app.state.database, job, clock())
    done = await export(client, world.auditor, "redemptions")
    manifest = (await client.get(f"/v1/exports/manifests/{done.headers['export-id']}", headers=auth(world.auditor)))
    assert manifest.json()["lapsed_unreleased"] == 0
