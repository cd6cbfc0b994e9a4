"""Where a programme's subsidy went (GET /v1/programmes/{id}/spending): by region and by
category it adds up exactly to the programme's spent account, and the enterprises nearest their
cap are the ones the usage rows say."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support import assert_problem, auth, create, enterprise_payload, make_key
from tests.world import World, build_world, line


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=10_000_000,
                             max_per_voucher=10_000_000,
                             rate_table={"accelerator:domestic": 3000, "storage:block": 1000})


async def redeem(world: World, voucher: dict[str, Any], uscc: str, order: str,
                 items: list[tuple[str, int]]) -> dict[str, Any]:
    response = await world.client.post("/v1/redemptions", json={
        "voucher_code": voucher["code"], "enterprise_uscc": uscc, "order_reference": order,
        "line_items": [line(c, a) for c, a in items]}, headers=auth(world.provider_key, **{"Idempotency-Key": order}))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def spending(world: World, key: str | None = None) -> httpx.Response:
    return await world.client.get(f"/v1/programmes/{world.programme['id']}/spending", headers=auth(key or world.operator))


async def spent_account(world: World) -> int:
    tb = (await world.client.get(f"/v1/programmes/{world.programme['id']}/trial-balance",
                                 headers=auth(world.auditor))).json()
    return -sum(a["balance"] for a in tb["accounts"] if a["kind"] == "programme_spent")


async def test_spending_adds_up_by_region_and_by_category_to_the_spent_account(world: World) -> None:
    other = await create(world.client, world.operator, "/v1/enterprises",
                         enterprise_payload(region_code="330106", name="杭州另一家科技有限公司"))
    a = await world.issue(10_000_000)
    b = await world.issue(70_001, enterprise_id=other["id"])
    ua, ub = world.enterprise["uscc"], other["uscc"]
    # uncapped: 30 % of ¥10,000 and 10 % of ¥5,000 → ¥3,000 + ¥500
    first = await redeem(world, a, ua, "PO-1", [("accelerator:domestic", 1_000_000), ("storage:block", 500_000)])
    assert first["captured_amount"] == 350_000
    # cut to the voucher's ¥700.01: shared 6 : 1 between the lines' computed ¥3,000 and ¥500 —
    # 60,000.86 and 10,000.14 rounded down, the fen left over on the first line
    capped = await redeem(world, b, ub, "PO-2", [("accelerator:domestic", 1_000_000), ("storage:block", 500_000)])
    assert capped["captured_amount"] == 70_001
    # a line computed at nothing gets nothing: 30 % of 333,333 = 99,999; 10 % of 7 fen = 0
    await redeem(world, a, ua, "PO-3", [("accelerator:domestic", 333_333), ("storage:block", 7)])
    # a refund takes off what it gives back
    refunded = await world.post(f"/v1/redemptions/{first['id']}/refunds", {"amount": 35_000, "reason": "short"})
    assert refunded.status_code == 201, refunded.text

    response = await spending(world)
    assert response.status_code == 200, response.text
    body = response.json()
    spent = await spent_account(world)
    assert body["spent"] == spent == 350_000 + 70_001 + 99_999 - 35_000
    assert sum(r["spent"] for r in body["by_region"]) == spent
    assert sum(c["spent"] for c in body["by_category"]) == spent
    regions = {r["region_code"]: (r["enterprises"], r["spent"]) for r in body["by_region"]}
    assert regions == {"330110": (1, 350_000 + 99_999 - 35_000), "330106": (1, 70_001)}
    categories = {c["category"]: c["spent"] for c in body["by_category"]}
    # PO-1 after its refund: 315,000 shared 300,000 : 50,000 → 270,000 + 45,000
    # PO-2: 70,001 shared 300,000 : 50,000 → 60,000 + 10,000, and the fen left over → 60,001 + 10,000
    # PO-3: 99,999 all on the first line
    assert categories == {"accelerator:domestic": 270_000 + 60_001 + 99_999, "storage:block": 45_000 + 10_000}
    assert [c["spent"] for c in body["by_category"]] == sorted(categories.values(), reverse=True)


async def test_the_enterprises_nearest_their_cap_come_first(world: World) -> None:
    other = await create(world.client, world.operator, "/v1/enterprises", enterprise_payload())
    a = await world.issue(5_000_000)
    b = await world.issue(5_000_000, enterprise_id=other["id"])
    await redeem(world, a, world.enterprise["uscc"], "PO-A", [("accelerator:domestic", 1_000_000)])
    await redeem(world, b, other["uscc"], "PO-B", [("accelerator:domestic", 3_000_000)])
    body = (await spending(world)).json()
    assert body["enterprise_cap"] == 10_000_000 and body["period_key"]
    users = [(u["enterprise_id"], u["subsidised"], u["granted"], u["cap_used_bps"]) for u in body["heaviest_users"]]
    assert users == [(other["id"], 900_000, 5_000_000, 900), (world.enterprise["id"], 300_000, 5_000_000, 300)]


async def test_holds_that_have_lapsed_no_longer_count_against_the_cap_here_either(world: World, clock) -> None:
    """What the cap counts, read before any job runs: a hold past its TTL, and a hold on a voucher
    that has expired, are void (DESIGN §2), so the enterprise's use of its cap leaves them out."""
    other = await create(world.client, world.operator, "/v1/enterprises", enterprise_payload())
    a = await world.issue(5_000_000)
    expires_at = datetime.fromisoformat(a["expires_at"])
    clock.advance(seconds=(expires_at - clock()).total_seconds() - 600)
    b = await world.issue(5_000_000, enterprise_id=other["id"])  # valid well after A has expired
    await redeem(world, a, world.enterprise["uscc"], "PO-A", [("accelerator:domestic", 1_000_000)])
    assert (await world.hold(a, 2_000_000, order="PO-A2")).status_code == 201  # lapses with A's expiry
    held = await world.hold(b, 3_000_000, order="PO-B", uscc=other["uscc"])
    assert held.status_code == 201, held.text

    async def users() -> list[tuple[str, int]]:
        body = (await spending(world)).json()
        return [(u["enterprise_id"], u["subsidised"]) for u in body["heaviest_users"]]

    assert await users() == [(other["id"], 900_000), (world.enterprise["id"], 300_000 + 600_000)]
    clock.advance(seconds=660)  # A has expired; neither hold's TTL has passed
    assert await users() == [(other["id"], 900_000), (world.enterprise["id"], 300_000)]
    clock.advance(minutes=30)  # B's hold is past its TTL too
    assert await users() == [(world.enterprise["id"], 300_000), (other["id"], 0)]


async def test_an_empty_programme_spent_nothing_and_an_unknown_one_is_not_found(app, world: World) -> None:
    body = (await spending(world)).json()
    assert body["spent"] == 0 and body["by_region"] == [] and body["by_category"] == []
    assert body["heaviest_users"] == []
    missing = await world.client.get(f"/v1/programmes/{uuid.uuid4()}/spending", headers=auth(world.operator))
    assert_problem(missing, 404, "not_found")
    assert (await spending(world, world.auditor)).status_code == 200
    assert_problem(await spending(world, world.provider_key), 403, "insufficient_scope")
    assert_problem(await spending(world, await make_key(app, "enterprise", enterprise_id=world.enterprise["id"])),
                   403, "insufficient_scope")


def test_a_spent_amount_is_shared_among_lines_exactly_to_the_fen() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from services.voucher.ledger.rules import share_by_lines

    # values a floating-point or 16-digit division rounds wrong (found in review)
    assert share_by_lines(58_911_791, [41_457_375, 369_558_769]) == [
        58_911_791 - 58_911_791 * 369_558_769 // 411_016_144, 58_911_791 * 369_558_769 // 411_016_144]
    assert share_by_lines(249_463_761, [87_466_946, 212_969_249])[1] == 249_463_761 * 212_969_249 // 300_436_195
    assert share_by_lines(100, [0, 0]) == [100, 0]  # every line computed at nothing: all on the first
    assert share_by_lines(70_001, [300_000, 50_000]) == [60_001, 10_000]
    assert share_by_lines(5, []) == []

    @given(st.integers(0, 10**15), st.lists(st.integers(0, 10**15), min_size=1, max_size=20))
    def shares_add_up(spent: int, computed: list[int]) -> None:
        shares = share_by_lines(spent, computed)
        assert sum(shares) == spent and all(s >= 0 for s in shares)
        total = sum(computed)
        if total:
            assert shares[1:] == [spent * c // total for c in computed[1:]]

    shares_add_up()
