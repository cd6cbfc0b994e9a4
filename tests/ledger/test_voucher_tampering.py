"""A voucher row and an export's manifest changed behind the service (an independent review,
December 2026): the database refuses it (migration 0025), and the reconciliation reports a
voucher changed with the guard out of the way — before and after the change is undone."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from services.voucher.db import table_of
from services.voucher.tables import ExportManifest, Voucher
from tests.conftest import ENGINE
from tests.support import auth, create, enterprise_payload
from tests.world import World, build_world

V = table_of(Voucher)
ACCOUNTS = ("available_account_id", "held_account_id", "used_account_id")


async def _pair(app: Any, client: httpx.AsyncClient) -> tuple[World, dict[str, Any], dict[str, Any]]:
    """The world's enterprise's voucher, and another enterprise's."""
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])
    other = await create(client, world.operator, "/v1/enterprises", enterprise_payload())
    mine = await world.issue(100_000)
    theirs = await world.issue(1_000_000, enterprise_id=other["id"])
    return world, mine, theirs


async def _accounts(app: Any, voucher: dict[str, Any]) -> dict[str, uuid.UUID]:
    async with app.state.database.unit_of_work(write=False) as session:
        row = (await session.execute(select(*(V.c[c] for c in ACCOUNTS)).where(
            V.c.id == uuid.UUID(voucher["id"])))).one()
    return dict(row._mapping)


async def _behind_the_service(app: Any, voucher: dict[str, Any], **values: Any) -> None:
    """The change made with the guard out of the way (the table's owner can), as the review did."""
    async with app.state.database.unit_of_work() as session:
        if ENGINE == "postgresql":
            await session.execute(text("ALTER TABLE voucher DISABLE TRIGGER voucher_identity_fixed"))
        else:
            await session.execute(text("DROP TRIGGER IF EXISTS voucher_identity_fixed"))
        await session.execute(update(V).where(V.c.id == uuid.UUID(voucher["id"])).values(**values))
        if ENGINE == "postgresql":
            await session.execute(text("ALTER TABLE voucher ENABLE TRIGGER voucher_identity_fixed"))


def _what(recon: dict[str, Any]) -> set[str]:
    return {d["what"] for d in recon["record_differences"]}


async def test_the_database_refuses_to_change_what_a_voucher_is(app, client: httpx.AsyncClient) -> None:
    world, mine, theirs = await _pair(app, client)
    their_accounts = await _accounts(app, theirs)
    attempts = [dict(their_accounts), {"face_value": 10_000_000}, {"enterprise_id": uuid.uuid4()},
                {"code": "CV-XXXX-XXXX-XXXX-X"}, {"unit": "TOKEN"}, {"programme_id": uuid.uuid4()}]
    for values in attempts:
        with pytest.raises(DBAPIError, match="a voucher's code, parties, face value"):
            async with app.state.database.unit_of_work() as session:
                await session.execute(update(V).where(V.c.id == uuid.UUID(mine["id"])).values(**values))
    revoked = await world.post(f"/v1/vouchers/{theirs['id']}/revoke", {"reason": "check"}, key=world.operator)
    assert revoked.status_code == 200, revoked.text
    with pytest.raises(DBAPIError, match="an expired or revoked voucher stays so"):  # final
        async with app.state.database.unit_of_work() as session:
            await session.execute(update(V).where(V.c.id == uuid.UUID(theirs["id"])).values(status="active"))
    if ENGINE == "sqlite":  # a REPLACE that meets a voucher's id, or its code under a new id, deletes it
        for new_id in (uuid.UUID(mine["id"]), uuid.uuid4()):
            with pytest.raises(DBAPIError, match="a voucher is never deleted"):
                async with app.state.database.unit_of_work() as session:
                    await session.execute(text("CREATE TEMP TABLE copy AS SELECT * FROM voucher WHERE id = :id"),
                                          {"id": uuid.UUID(mine["id"]).hex})
                    await session.execute(text("UPDATE copy SET id = :id"), {"id": new_id.hex})
                    await session.execute(text("INSERT OR REPLACE INTO voucher SELECT * FROM copy"))
    with pytest.raises(DBAPIError, match="a voucher is never deleted"):
        async with app.state.database.unit_of_work() as session:
            await session.execute(delete(V).where(V.c.id == uuid.UUID(mine["id"])))
    # what the service changes still changes: a suspension, its reason, a resumption
    for action in ("suspend", "resume"):
        done = await world.post(f"/v1/vouchers/{mine['id']}/{action}", {"reason": "check"}, key=world.operator)
        assert done.status_code == 200, done.text
    assert (await world.reconciliation())["is_clean"]


@pytest.mark.ledger_tampered  # the loss is left in the ledger, as the review left it
async def test_a_voucher_pointed_at_another_s_accounts_is_reported(app, client: httpx.AsyncClient) -> None:
    """The review's scenario: E1's voucher of 100,000 pointed at E2's accounts captured 270,000
    of E2's balance, and every check passed — while pointed, and after the pointers were put
    back."""
    world, mine, theirs = await _pair(app, client)
    my_accounts = await _accounts(app, mine)
    await _behind_the_service(app, mine, **await _accounts(app, theirs))
    recon = await world.reconciliation()
    assert _what(recon) == {"voucher names an account that is not its own"}
    [found] = recon["record_differences"]
    assert found["voucher_id"] == mine["id"] and found["available_account_voucher_id"] == theirs["id"]

    redeemed = await world.hold(mine, 900_000, order="PO-X", path="/v1/redemptions")
    assert redeemed.status_code == 201, redeemed.text
    await _behind_the_service(app, mine, **my_accounts)  # the pointers put back: the loss stays
    recon = await world.reconciliation()
    assert not recon["is_clean"]
    assert _what(recon) == {"journal moves another voucher's value", "redemption differs from its journals"}
    assert {d["account_voucher_id"] for d in recon["record_differences"]
            if d["what"] == "journal moves another voucher's value"} == {theirs["id"]}
    [redemption] = [d for d in recon["record_differences"] if d["what"] == "redemption differs from its journals"]
    assert (redemption["captured_amount"], redemption["ledger_captured"]) == (270_000, 0)


async def test_a_voucher_s_face_value_changed_is_reported(app, client: httpx.AsyncClient) -> None:
    world, mine, _ = await _pair(app, client)
    await _behind_the_service(app, mine, face_value=5_100_000)
    [found] = (await world.reconciliation())["record_differences"]
    assert (found["what"], found["voucher_id"], found["face_value"], found["ledger_issued"]) == (
        "voucher's face value differs from its issuing journal", mine["id"], 5_100_000, 100_000)
    await _behind_the_service(app, mine, face_value=100_000)
    assert (await world.reconciliation())["is_clean"]


async def test_an_export_s_manifest_is_completed_once_and_never_rewritten(app, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    exported = await client.get("/v1/exports/ledger-entries", headers=auth(world.auditor))
    assert exported.status_code == 200, exported.text
    export_id = uuid.UUID(exported.headers["export-id"])
    m = table_of(ExportManifest)
    for values in ({"sha256": "0" * 64, "row_count": 1}, {"finished_at": None}, {"dataset": "redemptions"}):
        with pytest.raises(DBAPIError, match="an export's manifest never changes"):
            async with app.state.database.unit_of_work() as session:
                await session.execute(update(m).where(m.c.id == export_id).values(**values))
    with pytest.raises(DBAPIError, match="an export's manifest never changes"):
        async with app.state.database.unit_of_work() as session:
            await session.execute(delete(m).where(m.c.id == export_id))
    manifest = await client.get(f"/v1/exports/manifests/{export_id}", headers=auth(world.auditor))
    assert manifest.status_code == 200 and manifest.json()["row_count"] is not None


async def test_vouchers_whose_enterprises_were_swapped_are_reported(app, client: httpx.AsyncClient) -> None:
    """Two vouchers of one face value in one programme and period, their enterprises swapped:
    the cap's and the ledger's sums stay equal, so only the redemptions tell (a review of the
    checks above)."""
    world, mine, theirs = await _pair(app, client)
    await _behind_the_service(app, theirs, face_value=100_000)  # one face value (and its journal's)
    assert (await world.hold(mine, 100_000, order="PO-1", path="/v1/redemptions")).status_code == 201
    mine_enterprise, their_enterprise = world.enterprise["id"], (await world.voucher(theirs["id"]))["enterprise_id"]
    await _behind_the_service(app, mine, enterprise_id=uuid.UUID(their_enterprise))
    await _behind_the_service(app, theirs, enterprise_id=uuid.UUID(mine_enterprise))
    recon = await world.reconciliation()
    assert "redemption's enterprise or programme differs from its voucher's" in _what(recon)
    await _behind_the_service(app, mine, enterprise_id=uuid.UUID(mine_enterprise))
    await _behind_the_service(app, theirs, enterprise_id=uuid.UUID(their_enterprise), face_value=1_000_000)
    assert (await world.reconciliation())["is_clean"]



async def test_a_suspension_lifted_behind_the_service_is_reported(app, client: httpx.AsyncClient) -> None:
    """Only the final statuses are guarded: an UPDATE that lifts a suspension (the voucher
    frozen for an investigation, spendable again) shows against the audit trail's last
    suspension, and so does one that suspends without an event; resuming through the service
    records the event and agrees."""
    world, mine, theirs = await _pair(app, client)
    suspended = await world.post(f"/v1/vouchers/{mine['id']}/suspend", {"reason": "check"}, key=world.operator)
    assert suspended.status_code == 200, suspended.text
    async with app.state.database.unit_of_work() as session:
        await session.execute(update(V).where(V.c.id == uuid.UUID(mine["id"])).values(status="active"))
        await session.execute(update(V).where(V.c.id == uuid.UUID(theirs["id"])).values(status="suspended"))
    found = sorted((d["voucher_id"], d["status"], d["last_recorded"])
                   for d in (await world.reconciliation())["record_differences"])
    assert found == sorted([(mine["id"], "active", "voucher.suspended"), (theirs["id"], "suspended", None)])
    async with app.state.database.unit_of_work() as session:  # put back as the events say
        await session.execute(update(V).where(V.c.id == uuid.UUID(mine["id"])).values(status="suspended"))
        await session.execute(update(V).where(V.c.id == uuid.UUID(theirs["id"])).values(status="active"))
    assert (await world.reconciliation())["is_clean"]
    resumed = await world.post(f"/v1/vouchers/{mine['id']}/resume", {"reason": "cleared"}, key=world.operator)
    assert resumed.status_code == 200, resumed.text
    assert (await world.reconciliation())["is_clean"]
