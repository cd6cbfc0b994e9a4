"""Webhook endpoint health over HTTP: a provider's endpoints with the last success, the last
failed attempt and the deliveries failing in a row, read from deliveries really sent to a
receiver; one endpoint's delivery log; another provider's endpoint is a 404 page; the office's
page says the API shows it none."""

from __future__ import annotations

from typing import Any

import httpx

from services.voucher.console.webhooks import RECENT, health
from tests.console.conftest import Browser
from tests.support import auth, create, fresh_key, make_key, provider_payload
from tests.webhooks.receiver import receiver
from tests.webhooks.test_delivery import _run
from tests.world import World


def delivery(status: str, *codes: int | None, at: str = "2026-03-02T01:00:00Z") -> dict[str, Any]:
    return {"status": status, "delivered_at": at if status == "succeeded" else None,
            "attempt_log": [{"attempted_at": at, "status_code": c, "error": None if c else "timed out",
                             "duration_ms": 5} for c in codes]}


def test_health_counts_the_newest_deliveries_that_did_not_get_through() -> None:
    newest_first = [delivery("pending"),  # not tried yet: neither way
                    delivery("pending", 500, at="2026-03-02T03:00:00Z"), delivery("cancelled", 500),
                    delivery("failed", None, 503, at="2026-03-02T02:00:00Z"),
                    delivery("succeeded", 500, 200, at="2026-03-02T01:00:00Z"), delivery("failed", 500)]
    found = health(newest_first, newest_first[4], newest_first[3])
    assert (found.streak, found.streak_is_more) == (2, False)
    assert found.last_success == "2026-03-02T01:00:00Z"
    assert (found.last_failure, found.failure_status) == ("2026-03-02T03:00:00Z", 500)
    quiet = health([], None, None)
    assert (quiet.streak, quiet.last_success, quiet.last_failure) == (0, None, None)
    every = health([delivery("failed", 500)] * RECENT, None, None)
    assert every.streak == RECENT and every.streak_is_more


async def endpoint_of(client: httpx.AsyncClient, key: str, url: str) -> dict[str, Any]:
    answer = await client.post("/v1/webhook-endpoints", headers=auth(key, **fresh_key()),
                               json={"url": url, "event_types": ["redemption.captured"], "description": "账单系统"})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_a_provider_sees_its_endpoints_health_from_real_deliveries(
        app: Any, client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    voucher = await world.issue(10_000_000)
    with receiver(statuses=[200, 500]) as hooks:
        endpoint = await endpoint_of(client, world.provider_key, hooks.url)
        assert (await world.hold(voucher, 100_000, order="PO-1", path="/v1/redemptions")).status_code == 201
        assert await _run(app) == 1  # delivered
        for order in ("PO-2", "PO-3"):
            assert (await world.hold(voucher, 100_000, order=order, path="/v1/redemptions")).status_code == 201
        assert await _run(app) == 2  # both answered 500: to be retried
    await browser.sign_in(world.provider_key, language="en")
    page = await browser.get("/console/provider/webhooks")
    assert page.status_code == 200 and hooks.url in page.text and 'id="webhook-scope"' in page.text
    row = page.text.split(f'data-endpoint="{endpoint["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-streak="2"' in row and "answered 500" in row
    assert '<td class="last-success">2026-03-02 09:00</td>' in row  # Beijing time
    detail = await browser.get(f"/console/provider/webhooks/{endpoint['id']}")
    assert detail.status_code == 200 and "redemption.captured" in detail.text and "账单系统" in detail.text
    assert detail.text.count('data-status="pending"') == 2 and detail.text.count('data-status="succeeded"') == 1
    only = await browser.get(f"/console/provider/webhooks/{endpoint['id']}", params={"status": "succeeded"})
    assert only.text.count("<tr data-delivery=") == 1
    refused = await browser.get(f"/console/provider/webhooks/{endpoint['id']}", params={"cursor": "forged"})
    assert refused.status_code == 422 and "cursor" in refused.text  # the API's refusal, in words

    other = await create(client, world.operator, "/v1/providers", provider_payload())
    stranger = Browser(app)
    try:
        await stranger.sign_in(await make_key(app, "provider", provider_id=other["id"]))
        theirs = await stranger.get(f"/console/provider/webhooks/{endpoint['id']}")
        assert theirs.status_code == 404 and hooks.url not in theirs.text
        assert hooks.url not in (await stranger.get("/console/provider/webhooks")).text
    finally:
        await stranger.http.aclose()


async def test_the_office_is_told_the_api_shows_it_no_endpoint(app: Any, client: httpx.AsyncClient,
                                                               browser: Browser, world: World) -> None:
    with receiver() as hooks:
        endpoint = await endpoint_of(client, world.provider_key, hooks.url)
    await browser.sign_in(world.operator, language="en")
    page = await browser.get("/console/operator/webhooks")
    assert page.status_code == 200 and 'id="webhooks-refused"' in page.text and hooks.url not in page.text
    assert (await browser.get(f"/console/operator/webhooks/{endpoint['id']}")).status_code == 404
    assert (await browser.get("/console/provider/webhooks")).status_code == 403
    enterprise = Browser(app)
    try:
        await enterprise.sign_in(world.enterprise_key)
        own = await enterprise.get("/console/enterprise/webhooks")
        assert own.status_code == 200 and hooks.url not in own.text
        assert (await enterprise.get(f"/console/enterprise/webhooks/{endpoint['id']}")).status_code == 404
        assert (await enterprise.get(f"/console/provider/webhooks/{endpoint['id']}")).status_code == 403
    finally:
        await enterprise.http.aclose()
