"""An independent review of settlement (December 2026): the provider is told of a draft it may be
deemed to confirm, and a payment or an objection is recorded only with visible text."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError

from services.voucher.db import table_of
from services.voucher.events import service as events
from services.voucher.tables import Settlement
from tests.settlement.test_routes import START, act, get, moved, redeem, refund, settled, utc
from tests.support import assert_problem, auth
from tests.world import World, build_world


@pytest.fixture
async def world(app, client: httpx.AsyncClient, clock) -> World:
    clock.current = START
    return await build_world(app, client, rate_table={"accelerator:domestic": 3000})


async def _a_draft(world: World, clock) -> tuple[dict, dict]:
    """A draft settlement of one day's capture, and the capture."""
    v = await world.issue(100_000_000)
    captured = await redeem(world, clock, "2026-03-02T02:00:00+00:00", v, 10_000_000, "PO-X")
    clock.current = utc("2026-03-03T01:00:00+00:00")
    return await settled(world, "2026-03-02", "2026-03-02"), captured


async def _a_repayment_draft(world: World, clock) -> dict:
    """A draft repayment of 400,000: a paid settlement's capture, partly refunded the next day."""
    first, x = await _a_draft(world, clock)
    for action, status in (("submit", "submitted"), ("approve", "approved"), ("pay", "paid")):
        await moved(world, first["id"], action, status)
    await refund(world, clock, "2026-03-03T02:00:00+00:00", x, 400_000)
    clock.current = utc("2026-03-04T01:00:00+00:00")
    return await settled(world, "2026-03-03", "2026-03-03")


async def test_a_provider_is_told_of_a_repayment_statement_before_it_is_confirmed_on_its_behalf(
        app, world: World, clock) -> None:
    """A repayment draft neither confirmed nor disputed for 15 days is approved 'confirmed on the
    provider's behalf'. Silence is consent only if the provider was told: its event feed (and so
    its webhooks) must carry the draft before then."""
    repayment = await _a_repayment_draft(world, clock)
    assert repayment["total"] == -400_000 and repayment["status"] == "draft"

    async def feed() -> list[str]:
        await events.publish_pending(app.state.database, clock())
        found = await world.client.get("/v1/events", params={"resource_id": repayment["id"]},
                                       headers=auth(world.provider_key))
        assert found.status_code == 200, found.text
        return [e["type"] for e in found.json()["items"]]

    assert await feed() == ["settlement.created"], "the provider is told of the draft as it is drawn up"
    clock.current = clock.current + timedelta(days=16)
    assert (await act(world, repayment["id"], "approve")).status_code == 200  # deemed confirmed
    assert await feed() == ["settlement.created", "settlement.submitted"]


async def test_a_provider_is_told_when_its_statement_is_cancelled(app, world: World, clock) -> None:
    """A provider that confirmed a statement heard nothing when the office cancelled it (an
    independent review, December 2026): the cancellation is on its feed, and the events of a
    settlement carry the unit their amounts are in."""
    repayment = await _a_repayment_draft(world, clock)
    assert (await act(world, repayment["id"], "cancel")).status_code == 200
    await events.publish_pending(app.state.database, clock())
    found = await world.client.get("/v1/events", params={"resource_id": repayment["id"]},
                                   headers=auth(world.provider_key))
    assert found.status_code == 200, found.text
    items = found.json()["items"]
    assert [e["type"] for e in items] == ["settlement.created", "settlement.cancelled"]
    assert items[0]["data"]["unit"] == "CNY" and items[0]["data"]["total"] == -400_000


@pytest.mark.parametrize("reference", ["  \n ", "ICBC\u2028-77", "ICBC\x85-77", "ICBC\x9b31m-77", "\u200b\u200b"],
                         ids=["blank", "line-separator", "NEL", "C1-CSI", "zero-width-only"])
async def test_a_payment_is_recorded_only_with_a_reference_of_one_line_of_visible_text(
        world: World, clock, reference: str) -> None:
    """A paid settlement is immutable: a bank reference that shows nothing, or that breaks its
    line, recorded once can never be put right. The console refuses a blank one (it strips the
    field); the API must refuse them all."""
    s, _ = await _a_draft(world, clock)
    for action, status in (("submit", "submitted"), ("approve", "approved")):
        await moved(world, s["id"], action, status)
    assert_problem(await act(world, s["id"], "pay", reference=reference), 422, "validation_failed")
    assert (await get(world, s["id"]))["status"] == "approved"


@pytest.mark.parametrize("reason", ["   ", "\n\t ", "bad\x07bell"])
async def test_a_dispute_is_recorded_only_with_a_reason_in_words(world: World, clock, reason: str) -> None:
    s, _ = await _a_draft(world, clock)
    refused = await act(world, s["id"], "dispute", key=world.provider_key, reason=reason)
    assert_problem(refused, 422, "validation_failed")
    assert (await get(world, s["id"]))["status"] == "draft"


@pytest.mark.parametrize("note", ["   ", "\x1b[2J\u202e  \n ", "ok\x07"], ids=["blank", "escape", "bell"])
async def test_a_note_on_a_confirmation_or_approval_is_words_or_nothing(world: World, clock, note: str) -> None:
    """A note is kept as the settlement's status reason and in the audit trail, as a reason is:
    blank text and control characters had been recorded (an independent review)."""
    s, _ = await _a_draft(world, clock)
    assert_problem(await act(world, s["id"], "submit", note=note), 422, "validation_failed")
    assert (await get(world, s["id"]))["status"] == "draft"
    await moved(world, s["id"], "submit", "submitted")
    assert_problem(await act(world, s["id"], "approve", note=note), 422, "validation_failed")
    assert (await get(world, s["id"]))["status"] == "submitted"


async def test_a_provider_disputes_a_draft_without_confirming_it_first(app, world: World, clock) -> None:
    """A provider had to confirm (submit) a draft before it could dispute it, and the office could
    approve what it had just confirmed in between; a repayment it had not confirmed in 15 days is
    approved on its behalf. A dispute of a draft puts it forward and disputes it in one step, both
    recorded, and a disputed repayment is never approved on the provider's behalf."""
    repayment = await _a_repayment_draft(world, clock)
    disputed = await act(world, repayment["id"], "dispute", key=world.provider_key, reason="the refund was reversed")
    assert disputed.status_code == 200, disputed.text
    body = disputed.json()
    assert (body["status"], body["status_reason"]) == ("disputed", "the refund was reversed")
    assert body["submitted_at"] is not None
    trail = await world.client.get("/v1/audit/events", params={"resource_id": repayment["id"]},
                                   headers=auth(world.auditor))
    assert trail.status_code == 200, trail.text
    actions = [e["action"] for e in trail.json()["items"]]
    assert actions == ["settlement.created", "settlement.submitted", "settlement.disputed"], actions
    clock.current = clock.current + timedelta(days=16)
    assert_problem(await act(world, repayment["id"], "approve"), 409, "invalid_transition")
    assert (await get(world, repayment["id"]))["status"] == "disputed"
    await moved(world, repayment["id"], "resolve", "submitted")  # the office answers; the statement stands
    await moved(world, repayment["id"], "approve", "approved")


async def test_a_statement_that_pays_nothing_is_approved_on_a_silent_provider_s_behalf(world: World, clock) -> None:
    """A capture refunded in full on its day: the day's statement pays nothing. Left unconfirmed,
    it had kept the programme open for good (cancelling it only left the capture and refund
    unsettled, and a new draft was the same); after 15 days the office approves it as a
    repayment statement is approved, and paying it moves nothing (an independent review)."""
    v = await world.issue(100_000_000)
    x = await redeem(world, clock, "2026-03-02T02:00:00+00:00", v, 10_000_000, "PO-Z")
    await refund(world, clock, "2026-03-02T03:00:00+00:00", x, x["captured_amount"])
    clock.current = utc("2026-03-03T01:00:00+00:00")
    nothing = await settled(world, "2026-03-02", "2026-03-02")
    assert (nothing["total"], nothing["line_count"], nothing["status"]) == (0, 2, "draft")
    early = assert_problem(await act(world, nothing["id"], "approve"), 409, "invalid_transition")
    assert "can approve it from" in early["detail"]
    clock.current = clock.current + timedelta(days=16)
    await moved(world, nothing["id"], "approve", "approved")
    await moved(world, nothing["id"], "pay", "paid")
    assert (await world.reconciliation())["is_clean"]


async def _provider_account(world: World, account: dict[str, str] | None) -> None:
    path = f"/v1/providers/{world.provider['id']}"
    etag = (await world.client.get(path, headers=auth(world.operator))).headers["etag"]
    changed = await world.client.patch(path, json={"settlement_account": account},
                                       headers=auth(world.operator, **{"If-Match": etag}))
    assert changed.status_code == 200, changed.text


async def test_a_payment_is_approved_to_the_account_on_file_and_kept_with_it(app, world: World, clock) -> None:
    """The provider's account was kept in the registry and read by nothing: a settlement was
    approved and paid with no account on file, and a change of account between confirmation
    and payment left no trace of where the money was to go (an independent review of the
    registries, December 2026). Approval is refused without an account, changing nothing, and
    records the account as it stands; a later change of the registry does not move it."""
    v = await world.issue(100_000_000)
    await redeem(world, clock, "2026-03-02T02:00:00+00:00", v, 10_000_000, "PO-X")
    clock.current = utc("2026-04-02T01:00:00+00:00")
    draft = await settled(world, "2026-03-01", "2026-03-31")
    assert draft["payee_account"] is None
    await _provider_account(world, None)
    # not yet confirmed by the provider: that is what the refusal says, not the account
    assert_problem(await act(world, draft["id"], "approve"), 409, "invalid_transition")
    await moved(world, draft["id"], "submit", "submitted")
    refused = assert_problem(await act(world, draft["id"], "approve"), 409, "settlement_account_missing")
    assert refused["provider_id"] == world.provider["id"]
    assert (await get(world, draft["id"]))["status"] == "submitted"
    first = {"bank_name": "中国银行杭州分行", "account_name": "杭州测试算力有限公司", "account_number": "6216600000000001"}
    await _provider_account(world, first)
    approved = await moved(world, draft["id"], "approve", "approved")
    assert approved["payee_account"] == first
    await _provider_account(world, {**first, "account_number": "6216600000000999"})  # after approval
    row = table_of(Settlement).c.id == uuid.UUID(draft["id"])
    for values in ({"payee_account": {**first, "account_number": "6216600000000999"}},
                   {"approved_at": None}):  # nor behind the service, nor by clearing the approval first
        with pytest.raises(DBAPIError, match="the account a settlement's payment was approved to, and when, never"):
            async with app.state.database.unit_of_work() as session:
                await session.execute(update(table_of(Settlement)).where(row).values(**values))
    paid = await moved(world, draft["id"], "pay", "paid")
    assert paid["payee_account"] == first
    await events.publish_pending(app.state.database, clock())
    announced = (await world.client.get("/v1/events", params={"resource_id": draft["id"], "type": "settlement.paid"},
                                        headers=auth(world.provider_key))).json()["items"]
    assert [(e["data"]["total"], e["data"]["unit"]) for e in announced] == [(paid["total"], "CNY")]
    assert (await get(world, draft["id"], key=world.provider_key))["payee_account"] == first
    recorded = (await world.client.get("/v1/audit/events", params={"resource_id": draft["id"],
                                                                   "action": "settlement.approved"},
                                       headers=auth(world.operator))).json()["items"]
    assert [e["after"]["payee_account"] for e in recorded] == [first]
