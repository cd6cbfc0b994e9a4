"""An independent review of webhooks (December 2026): a dual-stack receiver, the health of an
endpoint while a send is under way, and a body the JSON decoder cannot hold."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.voucher.db import Database
from services.voucher.events import service as events
from services.voucher.ids import uuid7
from services.voucher.webhooks import repository
from services.voucher.webhooks import service as webhooks
from tests.support import auth
from tests.webhooks.test_delivery import _deliveries, _endpoint, _redeem
from tests.world import build_world

DUAL_STACK = "hooks.dual-stack.example"
V4, V6 = "93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"


def _resolves_to(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    """DUAL_STACK resolves to `addresses`, in that order (as the resolver would sort them)."""
    real = socket.getaddrinfo

    def resolver(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == DUAL_STACK:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, int(port or 443), 0, 0)) if ":" in a
                    else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port or 443))) for a in addresses]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)


async def _delivered_through(app: Any, client: httpx.AsyncClient, settings: Any,
                             network: Callable[[httpx.Request], Awaitable[httpx.Response]]) -> dict[str, Any]:
    """One event's delivery to DUAL_STACK through `network`, sent by a worker with `settings`."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    endpoint = await _endpoint(client, world.provider_key, f"https://{DUAL_STACK}/hooks")
    await _redeem(world, voucher, "PO-1")
    database = Database(settings)
    try:
        await events.publish_pending(database, app.state.clock())
        async with httpx.AsyncClient(transport=httpx.MockTransport(network)) as sender:
            assert await webhooks.deliver_due(database, app.state.clock(), client=sender) == 1
    finally:
        await database.dispose()
    [delivery] = await _deliveries(client, world.provider_key, endpoint)
    return delivery  # type: ignore[no-any-return]


async def test_a_dual_stack_receiver_is_reached_when_the_worker_has_no_ipv6_route(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolver answers IPv4 first (RFC 6724 on a host without IPv6, the usual container);
    the sender re-sorted the answers as strings, pinned the send to the IPv6 one and never tried
    the other: every delivery to a dual-stack receiver failed, attempt after attempt."""
    _resolves_to(monkeypatch, V4, V6)
    reached: list[str] = []

    async def network(request: httpx.Request) -> httpx.Response:
        if ":" in request.url.host:  # no IPv6 route from this worker
            raise httpx.ConnectError("[Errno 101] Network is unreachable", request=request)
        reached.append(request.url.host)
        return httpx.Response(200)

    delivery = await _delivered_through(app, client, app.state.settings, network)
    assert delivery["status"] == "succeeded", delivery["attempt_log"]
    assert reached == [V4]


async def test_a_delivery_being_sent_for_the_first_time_is_not_reported_as_failing(
    app: Any, client: httpx.AsyncClient
) -> None:
    """GET /v1/webhook-endpoints/health: 'its newest failed attempt' and the failing streak
    count a delivery a worker has claimed and is sending right now (attempts 1, no answer yet)."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    endpoint = await _endpoint(client, world.provider_key, "http://127.0.0.1:9/hooks")
    await _redeem(world, voucher, "PO-1")
    database = app.state.database
    await events.publish_pending(database, app.state.clock())
    now = app.state.clock()
    async with database.unit_of_work() as session:  # a worker's claim, its send still under way
        claimed = await repository.claim_due(session, now, now + timedelta(seconds=50), 1, uuid7())
    assert len(claimed) == 1
    response = await client.get("/v1/webhook-endpoints/health", headers=auth(world.provider_key))
    assert response.status_code == 200, response.text
    [row] = [r for r in response.json()["items"] if r["endpoint_id"] == endpoint["id"]]
    assert row["pending"] == 1
    assert row["last_failure_at"] is None and row["failing_streak"] == 0, row


async def test_a_lone_surrogate_in_a_description_is_refused_not_a_500(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    body = '{"url": "http://127.0.0.1:9/hooks", "event_types": ["refund.created"], "description": "x\\ud800"}'
    response = await client.post("/v1/webhook-endpoints", content=body,
                                 headers=auth(world.provider_key, **{"Idempotency-Key": str(uuid.uuid4()),
                                                                     "content-type": "application/json"}))
    assert response.status_code != 500, response.text


async def test_a_dual_stack_receiver_is_reached_when_ipv6_is_black_holed(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolver lists IPv6 first (RFC 6724 on a host with an IPv6 address) and the IPv6 path
    drops packets. The connect had waited the whole timeout, which also bounds the whole send,
    so the IPv4 address that answers was never tried (a review of the fix): each address now
    has its share of the time to connect."""
    _resolves_to(monkeypatch, V6, V4)
    reached: list[str] = []

    async def network(request: httpx.Request) -> httpx.Response:
        if ":" in request.url.host:  # black-holed: the connect gives up at the request's connect timeout
            await asyncio.sleep(request.extensions["timeout"]["connect"])
            raise httpx.ConnectTimeout("timed out", request=request)
        reached.append(request.url.host)
        return httpx.Response(200)

    settings = app.state.settings.model_copy(update={"webhook_timeout_seconds": 0.5})
    delivery = await _delivered_through(app, client, settings, network)
    assert reached == [V4], delivery["attempt_log"]
    assert delivery["status"] == "succeeded"


async def test_a_retry_being_sent_still_shows_the_endpoints_last_failure(app: Any, client: httpx.AsyncClient) -> None:
    """health_of now leaves out of 'the newest failed attempt' every delivery a worker holds. A
    delivery that already failed (HTTP 500) and is being retried is such a delivery: while the
    retry is under way, the endpoint reads failing_streak 1 but no last failure at all (before
    the change, its last error and status were shown)."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    endpoint = await _endpoint(client, world.provider_key, "http://127.0.0.1:9/hooks")
    await _redeem(world, voucher, "PO-1")
    database = app.state.database
    await events.publish_pending(database, app.state.clock())
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as sender:
        assert await webhooks.deliver_due(database, app.state.clock(), client=sender) == 1

    async def health() -> dict[str, Any]:
        response = await client.get("/v1/webhook-endpoints/health", headers=auth(world.provider_key))
        assert response.status_code == 200, response.text
        [row] = [r for r in response.json()["items"] if r["endpoint_id"] == endpoint["id"]]
        return row  # type: ignore[no-any-return]

    before = await health()
    assert before["last_failure_status_code"] == 500 and before["failing_streak"] == 1, before
    later = app.state.clock() + timedelta(days=2)  # the retry is due: a worker claims it
    async with database.unit_of_work() as session:
        claimed = await repository.claim_due(session, later, later + timedelta(seconds=50), 1, uuid7())
    assert len(claimed) == 1
    during = await health()
    assert during["failing_streak"] == 1, during
    assert during["last_failure_status_code"] == 500 and during["last_failure_at"] is not None, during
