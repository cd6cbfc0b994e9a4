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
from sqlalchemy import text

from services.voucher.db import Database
from services.voucher.events import service as events
from services.voucher.ids import uuid7
from services.voucher.webhooks import repository
from services.voucher.webhooks import service as webhooks
from tests.conftest import ENGINE
from tests.support import assert_problem, auth
from tests.webhooks.receiver import receiver
from tests.webhooks.test_delivery import _deliveries, _endpoint, _redeem, _run
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
                             network: Callable[[httpx.Request], Awaitable[httpx.Response]],
                             host: str = DUAL_STACK) -> dict[str, Any]:
    """One event's delivery to `host` through `network`, sent by a worker with `settings`."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    endpoint = await _endpoint(client, world.provider_key, f"https://{host}/hooks")
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


async def test_a_receiver_with_an_international_domain_name_is_called_by_the_name_it_registered(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`faß.example` is `xn--fa-hia.example` under IDNA 2008 (what httpx and browsers send), and
    `fass.example` under the resolver's IDNA 2003: the service resolves, checks, names (Host, SNI)
    and calls the one form. It had resolved the Unicode name and sent it in the Host header, which
    httpx refuses: accepted at registration, every send failed (an independent review)."""
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def resolver(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".example"):
            looked_up.append(host)
            if host == "xn--fa-hia.example":
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (V4, int(port or 443)))]
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    seen: list[tuple[str, str, Any]] = []

    async def network(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers["host"], request.extensions.get("sni_hostname")))
        return httpx.Response(200)

    delivery = await _delivered_through(app, client, app.state.settings, network, host="faß.example")
    assert delivery["status"] == "succeeded", delivery["attempt_log"]
    assert seen == [(V4, "xn--fa-hia.example", "xn--fa-hia.example")]
    assert set(looked_up) == {"xn--fa-hia.example"}


async def test_a_key_that_may_not_register_a_url_never_has_its_host_looked_up(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, auditor_key: str, operator_key: str
) -> None:
    """The URL of a registration is checked before its unit of work begins, and that had been so
    for any key: an auditor's key had the service resolve names of its choosing (and time the
    answer) before its 403 (an independent review). Only a key with `webhooks:manage` is."""
    looked_up: list[Any] = []
    real = socket.getaddrinfo

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    body = {"url": "https://probe-1.internal.example/hooks", "event_types": ["redemption.captured"]}
    for key in (auditor_key, operator_key):
        created = await client.post("/v1/webhook-endpoints", json=body, headers=auth(key, **{"Idempotency-Key": key[-12:]}))
        assert created.status_code == 403, created.text
        changed = await client.patch(f"/v1/webhook-endpoints/{uuid.uuid4()}", json=body,
                                     headers=auth(key, **{"If-Match": '"v1"'}))
        assert changed.status_code in (403, 404), changed.text
    assert looked_up == []


@pytest.mark.skipif(ENGINE != "postgresql", reason="SQLite runs one write at a time")
async def test_a_redelivery_and_a_deletion_at_once_leave_nothing_owed_to_a_deleted_endpoint(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner deletes the endpoint while a redelivery of one of its deliveries is between its
    read of the endpoint and its lock of the delivery: the deletion waits for the redelivery and
    cancels the delivery. It had answered 204 at once, and the redelivery then made the delivery
    pending again on a deleted endpoint, owed for ever."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url)
        await _redeem(world, voucher, "PO-1")
        await _run(app)
    [delivery] = await _deliveries(client, world.provider_key, endpoint)
    real = repository.delivery
    deletions: list[asyncio.Task[httpx.Response]] = []

    async def deleted_meanwhile(session: Any, endpoint_id: Any, delivery_id: Any, *, for_update: bool = False) -> Any:
        if for_update and not deletions:
            other = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
            deletions.append(asyncio.create_task(
                other.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth(world.provider_key))))
            await asyncio.sleep(0.5)  # the deletion runs as far as it can
        return await real(session, endpoint_id, delivery_id, for_update=for_update)

    monkeypatch.setattr(repository, "delivery", deleted_meanwhile)
    again = await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/{delivery['id']}/redeliveries",
                              headers=auth(world.provider_key, **{"Idempotency-Key": "redeliver-1"}))
    assert again.status_code == 202, again.text
    assert (await deletions[0]).status_code == 204
    async with app.state.database.unit_of_work() as session:
        row = (await session.execute(text(
            "SELECT e.status, d.status, d.next_attempt_at FROM webhook_delivery d JOIN webhook_endpoint e "
            "ON e.id = d.endpoint_id WHERE d.id = CAST(:id AS uuid)"), {"id": delivery["id"]})).one()
    assert tuple(row) == ("deleted", "cancelled", None)


async def test_an_owner_keeps_a_bounded_number_of_endpoints(app: Any, client: httpx.AsyncClient) -> None:
    """Each of an owner's events is written once per endpoint, in the transaction that publishes
    every tenant's events: a provider with thousands of endpoints had held everyone's feed and
    webhooks for minutes (an independent review). Two registrations at once cannot both take the
    last place; a paused endpoint counts, a deleted one does not; other owners are not affected."""
    world = await build_world(app, client)
    limit = app.state.settings.max_webhook_endpoints_per_owner
    with receiver() as hooks:
        made = [await _endpoint(client, world.provider_key, f"{hooks.url}/{n}") for n in range(limit - 2)]
        paused = await client.patch(f"/v1/webhook-endpoints/{made[0]['id']}", json={"status": "disabled"},
                                    headers=auth(world.provider_key, **{"If-Match": '"v1"'}))
        assert paused.status_code == 200, paused.text

        async def register(n: int) -> httpx.Response:
            return await client.post("/v1/webhook-endpoints", json={"url": f"{hooks.url}/last-{n}", "event_types": [
                "redemption.captured"]}, headers=auth(world.provider_key, **{"Idempotency-Key": f"last-{n}"}))

        both = await asyncio.gather(register(1), register(2), register(3))
        assert sorted(r.status_code for r in both) == [201, 201, 409], [r.text for r in both]
        refused = assert_problem(next(r for r in both if r.status_code == 409), 409, "too_many_webhook_endpoints")
        assert (refused["endpoints"], refused["max_endpoints"]) == (limit, limit)
        assert str(limit) in refused["detail"]
        listed = await client.get("/v1/webhook-endpoints", params={"limit": 100}, headers=auth(world.provider_key))
        assert len(listed.json()["items"]) == limit
        deleted = await client.delete(f"/v1/webhook-endpoints/{made[1]['id']}", headers=auth(world.provider_key))
        assert deleted.status_code == 204
        assert (await register(4)).status_code == 201
        assert (await register(5)).status_code == 409
        await _endpoint(client, world.enterprise_key, f"{hooks.url}/enterprise")  # another owner
