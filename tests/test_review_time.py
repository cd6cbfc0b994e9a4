"""An independent review of time boundaries and calendars (December 2026): each test here
failed against the code as reviewed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.support import auth
from tests.world import World, build_world

CAP_RULE = {"all": [{"id": "cap", "check": "requested_within_remaining_cap"}]}


async def _dry_run(world: World, **body: Any) -> dict[str, Any]:
    response = await world.client.post(
        "/v1/eligibility/dry-run",
        json={"programme_id": world.programme["id"], "enterprise_id": world.enterprise["id"], **body},
        headers=auth(world.operator))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_dry_run_as_of_a_day_in_the_next_cap_year_judges_that_years_cap(app, client: httpx.AsyncClient,
                                                                                 clock) -> None:
    """`application_date` is "Judge as of this day". An enterprise that was granted its whole
    2026 cap has its whole 2027 cap on 5 January 2027 (the cap is per calendar year in
    Asia/Shanghai), and a submission on that day is judged so; the dry run as of that day
    judged the cap left in the period of the request's own instant (2026: nothing)."""
    clock.current = datetime(2026, 12, 20, 2, 0, tzinfo=UTC)
    world = await build_world(app, client, eligibility_rules=CAP_RULE, enterprise_cap=800_000_000,
                              max_per_voucher=800_000_000)
    await world.issue(800_000_000)  # the whole 2026 cap
    as_of_next_year = await _dry_run(world, requested_amount=1_000_000, application_date="2027-01-05")
    clock.current = datetime(2027, 1, 5, 2, 0, tzinfo=UTC)  # 10:00 on 5 January 2027 in Beijing
    on_the_day = await _dry_run(world, requested_amount=1_000_000)
    assert on_the_day["passed"] is True  # what a submission that day is judged by
    assert as_of_next_year["passed"] is True, as_of_next_year["failed"]


async def test_an_anomalys_explanation_writes_its_instants_where_the_programme_is(app, client: httpx.AsyncClient,
                                                                                  clock) -> None:
    """docs/decisions.md: "An instant in a sentence ... [is] written where the programme is
    (`VOUCHER_DEFAULT_TIMEZONE`), to the minute, with its offset". The anomaly explanations
    (zh-CN and English, for auditors) wrote UTC wall-clock times and UTC calendar days: a
    voucher that expires at 09:00 on 1 April in Beijing read as expiring at 01:00, and one
    expiring at 07:00 Beijing time on a day read as expiring the day before."""
    start = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    clock.current = start
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, voucher_validity_days=30)
    # valid from 2026-03-01T23:00Z (07:00 on 2 March in Beijing): expires 2026-03-31T23:00Z,
    # 07:00 on 1 April in Beijing — 31 March in UTC.
    voucher = await world.issue(10_000_000, valid_from=(start - timedelta(hours=2)).isoformat())
    expires = datetime.fromisoformat(voucher["expires_at"])
    assert expires == datetime(2026, 3, 31, 23, 0, tzinfo=UTC)
    clock.current = start + timedelta(days=1)
    small = await world.hold(voucher, 100_000, order="PO-1", path="/v1/redemptions")
    assert small.status_code == 201, small.text
    clock.current = expires - timedelta(days=1)
    late = await world.hold(voucher, 1_000_000, order="PO-2", path="/v1/redemptions")
    assert late.status_code == 201, late.text
    for language, expected in (("en", "2026-04-01 07:00"), ("zh-CN", "2026-04-01 07:00")):
        response = await client.get("/v1/audit/anomalies", params={"rule": "expiry_burst"},
                                    headers=auth(world.auditor, **{"Accept-Language": language}))
        assert response.status_code == 200, response.text
        found = [f for f in response.json()["findings"] if f["rule"] == "expiry_burst"]
        assert len(found) == 1
        explanation = found[0]["explanation"]
        assert expected in explanation and "UTC+08:00" in explanation, explanation


async def test_a_provider_reconciles_a_period_only_once_its_captures_have_committed(
    app, client: httpx.AsyncClient, clock
) -> None:
    """As a settlement waits five minutes after its period's end (a capture begun at 23:59:59
    may commit after midnight), so does a provider's usage reconciliation: its kept report had
    called such an order missing from our books. Found by the same review (a suspicion it
    could not prove wrong), December 2026."""
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])
    body = {"programme_id": world.programme["id"], "period_start": "2026-03-02", "period_end": "2026-03-02",
            "records": []}
    end = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # midnight in Beijing
    clock.current = end + timedelta(minutes=2)
    for language, words in (("en", "2026-03-03 00:05"), ("zh-CN", "2026-03-03 00:05")):
        early = await client.post("/v1/usage-reconciliations", json=body,
                                  headers=auth(world.provider_key, **{"Idempotency-Key": f"early-{language}",
                                                                      "Accept-Language": language}))
        assert early.status_code == 422, early.text
        assert [e["pointer"] for e in early.json()["errors"]] == ["/period_end"]
        assert words in early.json()["errors"][0]["message"]
    clock.current = end + timedelta(minutes=5)
    ready = await client.post("/v1/usage-reconciliations", json=body,
                              headers=auth(world.provider_key, **{"Idempotency-Key": "ready"}))
    assert ready.status_code == 201, ready.text
