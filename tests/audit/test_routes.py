"""Reading the trail: events filtered and paged, the head, checkpoints; who may do what."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import assert_problem, auth
from tests.world import World, build_world


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    world = await build_world(app, client)
    voucher = await world.issue(1_000_000)
    assert (await world.hold(voucher, 100_000, order="PO-1", path="/v1/redemptions")).status_code == 201
    world.voucher_id = voucher["id"]  # type: ignore[attr-defined]
    return world


async def events(world: World, key: str | None = None, **params: Any) -> httpx.Response:
    return await world.client.get("/v1/audit/events", params=params, headers=auth(key or world.auditor))


async def test_events_are_filtered_by_voucher_action_and_time(world: World, clock) -> None:
    voucher_id = world.voucher_id  # type: ignore[attr-defined]
    mine = (await events(world, voucher_id=voucher_id, limit=200)).json()["items"]
    assert {e["voucher_id"] for e in mine} == {voucher_id}
    # a one-step redeem is one state change: no hold.placed before its redemption.captured
    assert {e["action"] for e in mine} == {"voucher.issued", "redemption.captured", "ledger.posted",
                                           "ledger.account_opened"}
    assert sorted(e["after"]["kind"] for e in mine if e["action"] == "ledger.account_opened") == [
        "voucher_available", "voucher_held", "voucher_used"]
    captured = (await events(world, action="redemption.captured")).json()["items"]
    assert len(captured) == 1
    event = captured[0]
    assert event["before"] is None
    assert event["after"]["held_amount"] == event["after"]["captured_amount"] > 0
    assert event["after"]["status"] == "captured" and event["actor_role"] == "provider"
    assert event["provider_id"] == world.provider["id"] and event["enterprise_id"] == world.enterprise["id"]
    assert event["idempotency_key"] == "hold-PO-1" and event["request_id"]
    clock.advance(seconds=1)
    later = clock().isoformat()
    assert (await events(world, since=later)).json()["items"] == []
    await world.issue(100_000)  # at the later instant
    recent = (await events(world, since=later)).json()["items"]
    assert sorted(e["action"] for e in recent) == ["ledger.account_opened"] * 3 + ["ledger.posted", "voucher.issued"]
    earlier = (await events(world, until=later, limit=200)).json()["items"]
    assert {e["id"] for e in earlier}.isdisjoint(e["id"] for e in recent) and len(earlier) >= len(mine)


async def test_events_page_with_a_cursor_and_no_repeats(world: World) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await events(world, **params)).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = (await events(world, limit=200)).json()["items"]
    assert seen == [e["id"] for e in everything] and len(seen) == len(set(seen)) > 3


async def test_a_naive_time_filter_is_a_422_not_a_500(world: World) -> None:
    response = await events(world, since="2026-03-02T01:00:00")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("path", ["/v1/audit/events", "/v1/ledger/entries"])
async def test_a_window_that_ends_before_it_starts_is_refused_not_empty(world: World, path: str) -> None:
    """An auditor's typo (until before since) had read as "no events" on the audit trail, while
    the ledger's entries refused it (an independent review): both refuse it, in the same words."""
    response = await world.client.get(path, params={"since": "2027-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
                                      headers=auth(world.auditor))
    problem = assert_problem(response, 422, "validation_failed")
    assert [(e["pointer"], e["message"]) for e in problem["errors"]] == [
        ("/until", "`until` must be after `since` (the range is [since, until))")]


@pytest.mark.parametrize("role", ["enterprise", "provider"])
async def test_tenants_cannot_read_the_trail_or_verify(world: World, role: str) -> None:
    key = world.enterprise_key if role == "enterprise" else world.provider_key
    assert_problem(await events(world, key), 403, "insufficient_scope")
    response = await world.client.post("/v1/audit/verifications", json={}, headers=auth(key))
    assert_problem(response, 403, "insufficient_scope")
    response = await world.client.post("/v1/audit/checkpoints", headers=auth(key))
    assert_problem(response, 403, "insufficient_scope")


async def test_operators_read_but_only_auditors_and_operators_verify(world: World) -> None:
    assert (await events(world, world.operator)).status_code == 200
    response = await world.client.post("/v1/audit/verifications", json={}, headers=auth(world.operator))
    assert response.status_code == 201, response.text
    assert response.json()["is_intact"]
    kept = await world.client.get(response.headers["location"], headers=auth(world.auditor))
    assert kept.status_code == 200 and kept.json()["id"] == response.json()["id"]


async def test_the_head_counts_what_waits_for_the_sealer(world: World) -> None:
    head = (await world.client.get("/v1/audit/head", headers=auth(world.auditor))).json()
    assert head["seq"] == 0 and head["unsealed"] > 0 and head["chain_hash"] == "0" * 64
    checkpoint = (await world.client.post("/v1/audit/checkpoints", headers=auth(world.auditor))).json()
    head = (await world.client.get("/v1/audit/head", headers=auth(world.auditor))).json()
    assert head["unsealed"] == 0 and head["seq"] == checkpoint["seq"] and head["chain_hash"] == checkpoint["chain_hash"]
    listed = (await world.client.get("/v1/audit/checkpoints", headers=auth(world.auditor))).json()["items"]
    assert [c["id"] for c in listed] == [checkpoint["id"]]
    one = await world.client.get(f"/v1/audit/checkpoints/{checkpoint['id']}", headers=auth(world.auditor))
    assert one.json() == checkpoint


async def test_unknown_checkpoint_and_verification_are_404(world: World) -> None:
    for path in ("/v1/audit/checkpoints/0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e91",
                 "/v1/audit/verifications/0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e91"):
        assert_problem(await world.client.get(path, headers=auth(world.auditor)), 404, "not_found")


async def test_a_refused_request_writes_no_event(world: World) -> None:
    before = len((await events(world, limit=200)).json()["items"])
    voucher = await world.issue(100_000)
    after_issue = len((await events(world, limit=200)).json()["items"])
    assert after_issue == before + 5  # voucher.issued, its ledger.posted and its three accounts opened
    response = await world.hold(voucher, 100_000_000, order="PO-BIG", path="/v1/redemptions",
                                category="storage:object")
    assert response.status_code in (409, 422), response.text
    assert len((await events(world, limit=200)).json()["items"]) == after_issue


@pytest.mark.parametrize("path", [
    "/v1/audit/events?since=0001-01-01T00:00:00%2B14:00",
    "/v1/audit/anomalies?until=9999-12-31T23:00:00Z",
    "/v1/exports/ledger-entries?since=0001-01-01T00:00:00%2B14:00",
    "/v1/ledger/entries?until=9999-12-31T23:00:00Z",
    "/v1/ledger/entries?cursor=" + __import__("base64").urlsafe_b64encode(b"n1:9999999999999999999").decode(),
    "/v1/ledger/entries?cursor=" + __import__("base64").urlsafe_b64encode("n1:٣".encode()).decode(),
])
async def test_times_and_cursors_out_of_range_are_422s(world: World, path: str) -> None:
    response = await world.client.get(path, headers=auth(world.auditor))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("signed_at", ["2026-03-02T02:00:00", "0001-01-01T00:00:00+14:00"])
async def test_a_kept_checkpoint_with_an_impossible_time_is_a_422(world: World, signed_at: str) -> None:
    body = {"checkpoint": {"seq": 1, "chain_hash": "ab" * 32, "signed_at": signed_at, "signature": "AA=="}}
    response = await world.post("/v1/audit/verifications", body, key=world.auditor)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_split_threshold_is_explained_as_an_amount(world: World) -> None:
    """`split_threshold` is in minor units: 100.50 and 0 are answered as amounts are (the review
    found 'must be at least 1', read as ¥1 where the least is one fen)."""
    for given, words in (("100.50", "minor unit"), ("0", "more than zero")):
        response = await world.client.get("/v1/audit/anomalies", params={"split_threshold": given},
                                          headers=auth(world.auditor))
        problem = assert_problem(response, 422, "validation_failed")
        assert words in problem["errors"][0]["message"], problem
