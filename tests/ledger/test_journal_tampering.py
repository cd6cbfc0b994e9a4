"""Journals written behind the service, a refund's destination and a programme's budget changed
after the fact: the reconciliation proves invariant 2 voucher by voucher (value crosses a
voucher's boundary only when it is issued, revoked, expired or refunded to the pool, and refunds
to the pool match their records) and invariant 3 against the ledger (a programme's funding is
its budget, moved once). The balances still equal their postings and none is negative in each
case below, so the checks before these saw nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from services.voucher.db import table_of
from services.voucher.ledger import service as ledger
from services.voucher.ledger.rules import FUNDING_JOURNAL, AccountKind, transfer
from services.voucher.redemption.rules import REFUND_JOURNAL
from services.voucher.tables import LedgerAccount, Programme, Voucher
from tests.conftest import ENGINE
from tests.world import World, build_world

V = table_of(Voucher)


async def _world(app: Any, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])


async def _voucher_accounts(app: Any, voucher: dict[str, Any]) -> dict[str, uuid.UUID]:
    async with app.state.database.unit_of_work(write=False) as session:
        row = (await session.execute(select(V.c.available_account_id, V.c.used_account_id).where(
            V.c.id == uuid.UUID(voucher["id"])))).one()
    return dict(row._mapping)


async def _post(app: Any, world: World, kind: str, source: uuid.UUID, target: uuid.UUID, amount: int, *,
                voucher: dict[str, Any] | None = None, redemption_id: str | None = None) -> uuid.UUID:
    """A balanced journal written straight to the ledger, as code that skipped the rules could."""
    programme_id = uuid.UUID(world.programme["id"])
    async with app.state.database.unit_of_work() as session:
        return await ledger.post(
            session, kind=kind, legs=transfer(source, target, amount, "CNY"), now=app.state.clock(),
            programme_id=programme_id, voucher_id=uuid.UUID(voucher["id"]) if voucher else None,
            redemption_id=uuid.UUID(redemption_id) if redemption_id else None, memo="behind the service")


async def _pool(app: Any, world: World) -> uuid.UUID:
    async with app.state.database.unit_of_work(write=False) as session:
        return (await ledger.programme_accounts(session, uuid.UUID(world.programme["id"])))[
            AccountKind.PROGRAMME_AVAILABLE]


def _found(recon: dict[str, Any], what: str, key: str = "record_differences") -> list[dict[str, Any]]:
    return [d for d in recon[key] if d["what"] == what]


@pytest.mark.ledger_tampered
async def test_value_taken_out_of_a_voucher_by_a_journal_that_may_not_is_reported(
    app, client: httpx.AsyncClient
) -> None:
    """A 'hold' journal moving a voucher's available value straight back to the pool: the
    voucher's balances still equal its postings and none is negative, but its value is short
    of face value less what was revoked, expired or refunded to the pool."""
    world = await _world(app, client)
    voucher = await world.issue(100_000)
    assert (await world.reconciliation())["is_clean"]
    accounts = await _voucher_accounts(app, voucher)
    journal = await _post(app, world, "hold_placed", accounts["available_account_id"], await _pool(app, world),
                          40_000, voucher=voucher)
    recon = await world.reconciliation()
    assert not recon["is_clean"]
    assert _found(recon, "journal moves value into or out of a voucher that its kind may not") == [
        {"what": "journal moves value into or out of a voucher that its kind may not",
         "transaction_id": str(journal), "kind": "hold_placed", "voucher_id": voucher["id"], "net": -40_000}]
    assert not recon["account_differences"] and not recon["negative_balances"]


MAY_NOT = "journal moves value into or out of a voucher that its kind may not"


@pytest.mark.ledger_tampered
@pytest.mark.parametrize("kinds", [("redeemed", "hold_voided"), ("hold_placed", "hold_placed")])
async def test_two_journals_whose_crossings_cancel_on_a_voucher_are_both_reported(
    app, client: httpx.AsyncClient, kinds: tuple[str, str]
) -> None:
    """Value from the programme's pool through a voucher to the provider's payable: one journal
    puts 40,000 into the voucher from the pool, another takes 40,000 out of it to the payable.
    The voucher's identity still holds (in and out cancel), so a check summed per voucher, or
    per voucher and journal kind, passes them, and no other check sees it (an independent
    review of such a form, December 2026): each journal is named by its own crossing, whatever
    their kinds."""
    world = await _world(app, client)
    voucher, other = await world.issue(100_000), await world.issue(100_000)
    assert (await world.hold(other, 10_000, order="PO-1", path="/v1/redemptions")).status_code == 201
    async with app.state.database.unit_of_work(write=False) as session:
        payable = (await session.execute(select(table_of(LedgerAccount).c.id).where(
            table_of(LedgerAccount).c.kind == AccountKind.PROVIDER_PAYABLE.value))).scalar_one()
    accounts = await _voucher_accounts(app, voucher)
    into = await _post(app, world, kinds[1], await _pool(app, world), accounts["available_account_id"], 40_000,
                       voucher=voucher)
    out = await _post(app, world, kinds[0], accounts["available_account_id"], payable, 40_000, voucher=voucher)
    recon = await world.reconciliation()
    assert not recon["is_clean"]
    assert sorted((f["transaction_id"], f["kind"], f["net"]) for f in _found(recon, MAY_NOT)) == sorted(
        [(str(into), kinds[1], 40_000), (str(out), kinds[0], -40_000)])


@pytest.mark.ledger_tampered
@pytest.mark.parametrize("kind", [FUNDING_JOURNAL, "redeemed", "hold_captured", "settlement_paid", "made_up"])
async def test_a_journal_moving_an_account_its_kind_may_not_is_reported(
    app, client: httpx.AsyncClient, kind: str
) -> None:
    """40,000 of the programme's pool straight to the provider's payable, naming no
    redemption: balanced, touching no voucher, and of a kind that moves one of the two accounts
    or of none the service posts, it had passed every other check. Reported by its kind, the
    account and the way, with the journal."""
    world = await _world(app, client)
    assert (await world.hold(await world.issue(100_000), 10_000, order="PO-1", path="/v1/redemptions")
            ).status_code == 201
    assert (await world.reconciliation())["is_clean"]
    async with app.state.database.unit_of_work(write=False) as session:
        payable = (await session.execute(select(table_of(LedgerAccount).c.id).where(
            table_of(LedgerAccount).c.kind == AccountKind.PROVIDER_PAYABLE.value))).scalar_one()
    journal = await _post(app, world, kind, await _pool(app, world), payable, 40_000)
    recon = await world.reconciliation()
    assert not recon["is_clean"]
    found = _found(recon, "journal moves an account that its kind may not")
    wrong = {("programme_available", "out")} | ({("provider_payable", "in")} if kind in (
        FUNDING_JOURNAL, "settlement_paid", "made_up") else set())
    assert {(f["account_kind"], f["way"]) for f in found} == wrong
    assert all(f["kind"] == kind and f["transaction_ids"] == [str(journal)] and f["postings"] == 1 for f in found)


@pytest.mark.ledger_tampered
async def test_value_put_into_a_voucher_other_than_by_its_issue_is_reported(app, client: httpx.AsyncClient) -> None:
    """A refund-kind journal that adds to a voucher (pool to available): refunds only take
    value out of a voucher or move it within one."""
    world = await _world(app, client)
    voucher = await world.issue(100_000)
    accounts = await _voucher_accounts(app, voucher)
    journal = await _post(app, world, REFUND_JOURNAL, await _pool(app, world), accounts["available_account_id"],
                          5_000, voucher=voucher)
    [found] = _found(await world.reconciliation(), "journal moves value into or out of a voucher that its kind may not")
    assert (found["transaction_id"], found["kind"], found["net"]) == (str(journal), REFUND_JOURNAL, 5_000)


@pytest.mark.ledger_tampered
async def test_a_refund_posted_to_the_pool_that_no_refund_record_sends_there_is_reported(
    app, client: httpx.AsyncClient, clock
) -> None:
    """A real refund to the pool reconciles; a second refund journal of the same redemption
    taking more of its used value to the pool, with no refund record, does not (the
    redemption's own check sees its refunded total differ too)."""
    world = await _world(app, client)
    voucher, redeemed, _ = await world.refunded_to_the_pool(clock)
    assert (await world.reconciliation())["is_clean"]
    accounts = await _voucher_accounts(app, voucher)
    await _post(app, world, REFUND_JOURNAL, accounts["used_account_id"], await _pool(app, world), 20_000,
                voucher=voucher, redemption_id=redeemed["id"])
    recon = await world.reconciliation()
    [found] = _found(recon, "refunds to the pool differ from the value refunds took out of the voucher")
    assert (found["redemption_id"], found["recorded"], found["ledger"]) == (redeemed["id"], 100_000, 120_000)
    assert not _found(recon, "journal moves value into or out of a voucher that its kind may not")


async def _budget_behind_the_service(app: Any, budget_total: int) -> None:
    """A programme's budget changed with its guard out of the way (migration 0034), as the
    table's owner can."""
    async with app.state.database.unit_of_work() as session:
        if ENGINE == "postgresql":
            await session.execute(text("ALTER TABLE programme DISABLE TRIGGER programme_terms_fixed"))
        else:
            await session.execute(text("DROP TRIGGER IF EXISTS programme_terms_fixed"))
        await session.execute(update(table_of(Programme)).values(budget_total=budget_total))
        if ENGINE == "postgresql":
            await session.execute(text("ALTER TABLE programme ENABLE TRIGGER programme_terms_fixed"))


async def test_a_budget_raised_after_the_programme_opened_is_reported(app, client: httpx.AsyncClient) -> None:
    world = await _world(app, client)
    budget = world.programme["budget_total"]
    await _budget_behind_the_service(app, budget * 2)
    recon = await world.reconciliation()
    assert _found(recon, "programme's funding differs from its budget", "commitment_differences") == [
        {"what": "programme's funding differs from its budget", "programme_id": world.programme["id"],
         "status": "open", "recorded": budget, "expected": budget * 2, "journals": 1}]
    await _budget_behind_the_service(app, budget)
    assert (await world.reconciliation())["is_clean"]


@pytest.mark.ledger_tampered
async def test_a_second_funding_of_a_programme_is_reported(app, client: httpx.AsyncClient) -> None:
    """The pool grown by another journal from funding, of the opening's kind or another: the
    available account and every check on it read the larger pool as budget."""
    world = await _world(app, client)
    budget = world.programme["budget_total"]
    async with app.state.database.unit_of_work(write=False) as session:
        accounts = await ledger.programme_accounts(session, uuid.UUID(world.programme["id"]))
    funding, pool = accounts[AccountKind.PROGRAMME_FUNDING], accounts[AccountKind.PROGRAMME_AVAILABLE]
    await _post(app, world, FUNDING_JOURNAL, funding, pool, 1_000)
    recon = await world.reconciliation()
    [found] = _found(recon, "programme's funding differs from its budget", "commitment_differences")
    assert (found["recorded"], found["expected"], found["journals"]) == (budget + 1_000, budget, 2)
    other = await _post(app, world, "budget_committed", funding, pool, 7)
    recon = await world.reconciliation()
    [moved] = _found(recon, "programme's funding moved by another journal than its opening", "commitment_differences")
    assert (moved["transaction_id"], moved["kind"], moved["amount"]) == (str(other), "budget_committed", -7)


@pytest.mark.ledger_tampered
async def test_a_draft_programme_is_not_funded(app, client: httpx.AsyncClient) -> None:
    """A draft's budget is not spendable: the ledger funds a programme only when it opens."""
    from services.voucher.programmes import service as programmes
    from services.voucher.programmes.schemas import ProgrammeCreate
    from tests.support import programme_payload

    world = await _world(app, client)
    now = app.state.clock()
    async with app.state.database.unit_of_work() as session:
        draft = await programmes.create_programme(session, ProgrammeCreate(**programme_payload()).model_dump(), now)
    assert (await world.reconciliation())["is_clean"]
    async with app.state.database.unit_of_work() as session:  # funded as if it had opened
        await ledger.open_programme_accounts(session, draft.id, "CNY", 500, now)
    [found] = _found(await world.reconciliation(), "programme's funding differs from its budget",
                     "commitment_differences")
    assert (found["programme_id"], found["status"], found["recorded"], found["expected"]) == (
        str(draft.id), "draft", 500, 0)


@pytest.mark.ledger_tampered
async def test_a_refund_journal_of_no_redemption_is_reported(app, client: httpx.AsyncClient) -> None:
    """A refund takes value out of a voucher only for a redemption: one naming none is matched
    with no refund record, and had drained used value unseen."""
    world = await _world(app, client)
    voucher = await world.issue(300_000)
    redeemed = (await world.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")).json()
    assert redeemed["captured_amount"] == 300_000
    accounts = await _voucher_accounts(app, voucher)
    journal = await _post(app, world, REFUND_JOURNAL, accounts["used_account_id"], await _pool(app, world), 50_000,
                          voucher=voucher)
    recon = await world.reconciliation()
    [found] = _found(recon, "journal moves value into or out of a voucher that its kind may not")
    assert (found["transaction_id"], found["kind"], found["net"]) == (str(journal), REFUND_JOURNAL, -50_000)


@pytest.mark.ledger_tampered
async def test_value_issued_into_a_voucher_s_used_account_is_reported(app, client: httpx.AsyncClient) -> None:
    """The face-value check reads what issuing put into available: a second issue journal into
    used had left it equal while the voucher held more than its face value."""
    world = await _world(app, client)
    voucher = await world.issue(100_000)
    accounts = await _voucher_accounts(app, voucher)
    journal = await _post(app, world, "voucher_issued", await _pool(app, world), accounts["used_account_id"], 9_000,
                          voucher=voucher)
    recon = await world.reconciliation()
    assert recon["record_differences"] == [
        {"what": "voucher's face value differs from its issuing journal", "voucher_id": voucher["id"],
         "face_value": 100_000, "ledger_issued": 109_000},
        {"what": "journal moves an account that its kind may not", "kind": "voucher_issued",
         "account_kind": "voucher_used", "way": "in", "postings": 1, "transaction_ids": [str(journal)]}]


@pytest.mark.ledger_tampered
async def test_an_expiry_posted_on_a_live_voucher_is_reported(app, client: httpx.AsyncClient) -> None:
    """An expiry or revocation journal moves a voucher's unused value out once, when it ends:
    one on an active voucher, or one that takes used value, is not an ending."""
    world = await _world(app, client)
    voucher = await world.issue(100_000)
    assert (await world.hold(voucher, 10_000, order="PO-1", path="/v1/redemptions")).json()["captured_amount"] == 3_000
    accounts = await _voucher_accounts(app, voucher)
    pool = await _pool(app, world)
    expiry = await _post(app, world, "voucher_expired", accounts["available_account_id"], pool, 1_000,
                         voucher=voucher)
    revoke = await _post(app, world, "voucher_revoked", accounts["used_account_id"], pool, 1, voucher=voucher)
    recon = await world.reconciliation()
    [ended] = _found(recon, "voucher's value ended twice, or on a voucher not of that status")
    assert (ended["transaction_id"], ended["status"]) == (str(expiry), "active")
    [taken] = _found(recon, "journal moves value into or out of a voucher that its kind may not")
    assert (taken["transaction_id"], taken["kind"], taken["net"]) == (str(revoke), "voucher_revoked", -1)


async def test_a_refund_recorded_as_returned_to_the_voucher_but_posted_to_the_pool_is_reported(
    app, client: httpx.AsyncClient, clock
) -> None:
    """A refund's record says where its value went. One that says the voucher while its journal
    took the value to the pool differs; put back, the ledger reconciles."""
    from services.voucher.tables import RedemptionRefund
    from tests.settlement.test_reconciliation import _change

    world = await _world(app, client)
    _, redeemed, refund = await world.refunded_to_the_pool(clock)
    await _change(app, RedemptionRefund, refund["id"], destination="voucher")
    recon = await world.reconciliation()
    assert recon["record_differences"] == [
        {"what": "refunds to the pool differ from the value refunds took out of the voucher",
         "redemption_id": redeemed["id"], "recorded": 0, "ledger": 100_000}]
    await _change(app, RedemptionRefund, refund["id"], destination="pool")
    assert (await world.reconciliation())["is_clean"]
