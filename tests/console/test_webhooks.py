"""Webhook endpoint health over HTTP: a provider's endpoints with the last success, the last
failed attempt and the deliveries failing in a row, read from deliveries really sent to a
receiver (the API's health report); one endpoint's delivery log; another provider's endpoint is
a 404 page; the office sees every tenant's endpoint by its address, never its path."""

from __future__ import annotations

from typing import Any

import httpx

from tests.console.conftest import Browser
from tests.support import auth, create, fresh_key, make_key, provider_payload
from tests.webhooks.receiver import receiver
from tests.webhooks.test_delivery import _run
from tests.world import World


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
        # both answered 500, one a run (an endpoint that refuses gets no other send that run)
        assert [await _run(app), await _run(app)] == [1, 1]  # to be retried
    await browser.sign_in(world.provider_key, language="en")
    page = await browser.get("/console/provider/webhooks")
    address = hooks.url.split("/hooks")[0]
    assert page.status_code == 200 and address in page.text and 'id="webhook-scope"' in page.text
    row = page.text.split(f'data-endpoint="{endpoint["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-streak="2"' in row and "answered 500" in row
    assert "HTTP 500" not in row  # the worker's own words, as the endpoint's page reads them: the status once
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
        assert f'data-endpoint="{endpoint["id"]}"' not in (await stranger.get("/console/provider/webhooks")).text
    finally:
        await stranger.http.aclose()


async def test_the_office_sees_every_endpoints_health_by_its_address_only(
        app: Any, client: httpx.AsyncClient, browser: Browser, world: World) -> None:
    voucher = await world.issue(10_000_000)
    with receiver(statuses=[503]) as hooks:
        endpoint = await endpoint_of(client, world.provider_key, hooks.url + "?token=s3cret")
        assert (await world.hold(voucher, 100_000, order="PO-9", path="/v1/redemptions")).status_code == 201
        assert await _run(app) == 1
    await browser.sign_in(world.operator)
    page = await browser.get("/console/operator/webhooks")
    assert page.status_code == 200
    row = page.text.split(f'data-endpoint="{endpoint["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert hooks.url.split("/hooks")[0] in row and "/hooks" not in row and "s3cret" not in page.text
    assert world.provider["name"] in row and "服务商" in row and 'data-streak="1"' in row and "503" in row
    assert (await browser.get(f"/console/operator/webhooks/{endpoint['id']}")).status_code == 404  # only its owner
    assert (await browser.get("/console/provider/webhooks")).status_code == 403
    enterprise = Browser(app)
    try:
        await enterprise.sign_in(world.enterprise_key)
        own = await enterprise.get("/console/enterprise/webhooks")
        assert own.status_code == 200 and f'data-endpoint="{endpoint["id"]}"' not in own.text
        assert (await enterprise.get(f"/console/enterprise/webhooks/{endpoint['id']}")).status_code == 404
        assert (await enterprise.get(f"/console/provider/webhooks/{endpoint['id']}")).status_code == 403
    finally:
        await enterprise.http.aclose()
