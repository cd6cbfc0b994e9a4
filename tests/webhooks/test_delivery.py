"""Webhook endpoints and deliveries (issue 7): signed per Standard Webhooks (checked with the
independent `standardwebhooks` verifier) to a receiver on 127.0.0.1, retried with backoff,
logged per endpoint, redelivered by hand, only ever to the registered URL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from standardwebhooks.webhooks import Webhook

from services.voucher.db import Database
from services.voucher.events import service as events
from services.voucher.settings import Settings
from services.voucher.webhooks import repository
from services.voucher.webhooks import service as webhooks
from tests.conftest import ENGINE
from tests.support import assert_problem, auth, fresh_key
from tests.webhooks.receiver import receiver
from tests.world import World, build_world


async def _endpoint(client: httpx.AsyncClient, key: str, url: str, types: list[str] | None = None) -> dict[str, Any]:
    response = await client.post("/v1/webhook-endpoints", headers=auth(key, **fresh_key()),
                                 json={"url": url, "event_types": types or ["redemption.captured", "refund.created"]})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _run(app: Any) -> int:
    """The worker's two event jobs, once: publish, then deliver what is due."""
    database: Database = app.state.database
    await events.publish_pending(database, app.state.clock())
    return await webhooks.deliver_due(database, app.state.clock())


async def _deliveries(client: httpx.AsyncClient, key: str, endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def _redeem(world: World, voucher: dict[str, Any], order: str) -> dict[str, Any]:
    response = await world.hold(voucher, 1_000_000, order=order, path="/v1/redemptions")
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_capture_is_delivered_signed_to_the_provider(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url)
        assert endpoint["secret"].startswith("whsec_")
        redeemed = await _redeem(world, voucher, "PO-1")
        assert hooks.received == []  # the API never calls a receiver itself
        assert await _run(app) == 1
    [got] = hooks.received
    payload = Webhook(endpoint["secret"]).verify(got.body, got.headers)
    assert payload["type"] == "redemption.captured"
    assert payload["data"]["resource_id"] == redeemed["id"]
    assert payload["data"]["captured_amount"] == redeemed["captured_amount"]
    assert got.path == "/hooks" and got.headers["content-type"] == "application/json"
    [delivery] = await _deliveries(client, world.provider_key, endpoint)
    assert got.headers["webhook-id"] == delivery["event_id"]
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 1
    assert [a["status_code"] for a in delivery["attempt_log"]] == [200]
    # Nothing is due any more: a second run sends nothing.
    assert await _run(app) == 0


#: What a delivery run's own time may add to a retry's wait, counted from the run's start.
RUN_SECONDS = 1.0


async def test_failures_are_retried_with_growing_delays_then_given_up(
    app: Any, client: httpx.AsyncClient, clock: Any
) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    settings: Settings = app.state.settings
    with receiver(statuses=[500, 503, 200]) as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url)
        await _redeem(world, voucher, "PO-1")
        assert await _run(app) == 1
        [delivery] = await _deliveries(client, world.provider_key, endpoint)
        assert delivery["status"] == "pending" and delivery["last_status_code"] == 500
        first_wait = _wait(delivery, clock)
        base = settings.webhook_retry_base_seconds
        # ±20 % of jitter, counted from the send's instant: the run's own time (on the clock it
        # is given, plus what it spent) comes on top — a second is ample (0.03 s past 36 s had
        # failed a CI run)
        assert base * 0.8 <= first_wait <= base * 1.2 + RUN_SECONDS
        assert await _run(app) == 0  # not yet due
        clock.advance(seconds=first_wait)
        assert await _run(app) == 1
        [delivery] = await _deliveries(client, world.provider_key, endpoint)
        assert delivery["last_status_code"] == 503
        assert 2 * base * 0.8 <= _wait(delivery, clock) <= 2 * base * 1.2 + RUN_SECONDS  # doubled
        clock.advance(seconds=_wait(delivery, clock))
        assert await _run(app) == 1
    [delivery] = await _deliveries(client, world.provider_key, endpoint)
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 503, 200]
    assert len(set(hooks.ids())) == 1  # the same webhook-id on every attempt


def _wait(delivery: dict[str, Any], clock: Any) -> float:
    from datetime import datetime

    due = datetime.fromisoformat(delivery["next_attempt_at"].replace("Z", "+00:00"))
    return (due - clock()).total_seconds()


async def test_after_the_last_attempt_it_fails_and_a_manual_redelivery_revives_it(
    app: Any, client: httpx.AsyncClient, clock: Any
) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    attempts = app.state.settings.webhook_max_attempts
    with receiver(statuses=[500] * attempts + [200]) as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url)
        await _redeem(world, voucher, "PO-1")
        for _ in range(attempts):
            assert await _run(app) == 1
            clock.advance(days=1)
        [delivery] = await _deliveries(client, world.provider_key, endpoint)
        assert delivery["status"] == "failed" and delivery["next_attempt_at"] is None
        assert await _run(app) == 0
        path = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/{delivery['id']}/redeliveries"
        again = await client.post(path, headers=auth(world.provider_key, **fresh_key()))
        assert again.status_code == 202, again.text
        assert again.json()["status"] == "pending" and again.json()["attempts"] == 0
        assert await _run(app) == 1
    [delivery] = await _deliveries(client, world.provider_key, endpoint)
    assert delivery["status"] == "succeeded"
    assert len(delivery["attempt_log"]) == attempts + 1
    assert [a["number"] for a in delivery["attempt_log"]] == list(range(1, attempts + 2))


async def test_redirects_are_not_followed_and_count_as_failures(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver(statuses=[302]) as hooks, receiver() as elsewhere:
        hooks.location = elsewhere.url
        endpoint = await _endpoint(client, world.provider_key, hooks.url)
        await _redeem(world, voucher, "PO-1")
        await _run(app)
    assert len(hooks.received) == 1 and elsewhere.received == []
    [delivery] = await _deliveries(client, world.provider_key, endpoint)
    assert delivery["status"] == "pending" and delivery["last_status_code"] == 302


async def test_a_slow_receiver_times_out_without_holding_up_the_api(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    settings = app.state.settings.model_copy(update={"webhook_timeout_seconds": 0.3})
    database = Database(settings)
    try:
        with receiver(delay=2.0) as hooks:
            endpoint = await _endpoint(client, world.provider_key, hooks.url)
            await _redeem(world, voucher, "PO-1")
            await events.publish_pending(database, app.state.clock())
            sending = asyncio.create_task(webhooks.deliver_due(database, app.state.clock()))
            # While the receiver hangs, the API serves the provider's next redemption.
            await _redeem(world, voucher, "PO-2")
            assert await sending == 1
    finally:
        await database.dispose()
    [delivery] = [d for d in await _deliveries(client, world.provider_key, endpoint) if d["attempts"]]
    assert delivery["last_error"] == "timed out" and delivery["status"] == "pending"


async def test_rotation_signs_with_both_secrets_for_a_while(app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url)
        rotated = await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/secret-rotations",
                                    headers=auth(world.provider_key, **fresh_key()))
        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["secret"]
        assert new_secret != endpoint["secret"] and rotated.json()["previous_secret_expires_at"]
        await _redeem(world, voucher, "PO-1")
        await _run(app)
        clock.advance(hours=25)
        await _redeem(world, voucher, "PO-2")
        await _run(app)
    first, second = hooks.received
    Webhook(endpoint["secret"]).verify(first.body, first.headers)
    Webhook(new_secret).verify(first.body, first.headers)
    Webhook(new_secret).verify(second.body, second.headers)
    assert len(second.headers["webhook-signature"].split()) == 1  # the old secret has stopped signing
    listed = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth(world.provider_key))
    assert "secret" not in listed.json()


async def test_only_the_event_types_asked_for_and_only_ones_own(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    other = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    theirs = await other.issue(10_000_000)
    with receiver() as mine, receiver() as refunds_only, receiver() as competitor:
        await _endpoint(client, world.provider_key, mine.url, ["redemption.captured"])
        await _endpoint(client, world.provider_key, refunds_only.url, ["refund.created"])
        await _endpoint(client, other.provider_key, competitor.url, ["redemption.captured", "refund.created"])
        await _redeem(world, voucher, "PO-1")
        await _redeem(other, theirs, "PO-X")
        await _run(app)
    assert [json.loads(r.body)["type"] for r in mine.received] == ["redemption.captured"]
    assert refunds_only.received == []
    assert len(competitor.received) == 1
    assert json.loads(competitor.received[0].body)["data"]["provider_id"] == other.provider["id"]


async def test_endpoints_belong_to_their_owner(app: Any, client: httpx.AsyncClient, operator_key: str,
                                               auditor_key: str) -> None:
    world = await build_world(app, client)
    other = await build_world(app, client)
    endpoint = await _endpoint(client, world.provider_key, "http://127.0.0.1:9/hooks")
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    for key in (other.provider_key, world.enterprise_key):
        assert_problem(await client.get(path, headers=auth(key)), 404, "not_found")
        assert_problem(await client.get(f"{path}/deliveries", headers=auth(key)), 404, "not_found")
        assert_problem(await client.delete(path, headers=auth(key)), 404, "not_found")
        listed = await client.get("/v1/webhook-endpoints", headers=auth(key))
        assert listed.status_code == 200 and listed.json()["items"] == []
    for key in (operator_key, auditor_key):
        assert_problem(await client.get(path, headers=auth(key)), 403, "insufficient_scope")
        refused = await client.post("/v1/webhook-endpoints", headers=auth(key, **fresh_key()),
                                    json={"url": "https://example.com/x", "event_types": ["voucher.issued"]})
        assert_problem(refused, 403, "insufficient_scope")
    enterprise_hook = await _endpoint(client, world.enterprise_key, "http://127.0.0.1:9/e", ["voucher.issued"])
    assert enterprise_hook["enterprise_id"] == world.enterprise["id"] and enterprise_hook["provider_id"] is None


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/hooks", "https://169.254.169.254/latest/meta-data", "https://192.168.1.10/x",
    "http://[fd00::1]/x", "https://user:secret@example.com/x", "ftp://example.com/x",
    "https://no-such-host.invalid/x", "http://127.0.0.1:0/x",
])
async def test_unsafe_urls_are_refused(app: Any, client: httpx.AsyncClient, url: str) -> None:
    world = await build_world(app, client)
    refused = await client.post("/v1/webhook-endpoints", headers=auth(world.provider_key, **fresh_key()),
                                json={"url": url, "event_types": ["redemption.captured"]})
    body = assert_problem(refused, 422, "webhook_url_refused")
    assert "secret" not in refused.text.lower() or "secret@" not in body["detail"]


async def test_a_refusal_does_not_say_what_a_name_resolved_to(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19, finding 7: the text must not map our DNS for the caller. A name that resolves
    to an internal address and one that does not resolve are refused alike."""
    from services.voucher.webhooks import service

    real_resolve = service.resolve

    async def internal(host: str, port: int) -> list[str]:
        if host == "intranet.example":
            return ["10.20.30.40", "2002:a14:1e28::1"]
        return await real_resolve(host, port)  # nowhere.invalid: really does not resolve

    monkeypatch.setattr(service, "resolve", internal)
    world = await build_world(app, client)
    details = []
    for host in ("intranet.example", "nowhere.invalid"):
        refused = await client.post("/v1/webhook-endpoints", headers=auth(world.provider_key, **fresh_key()),
                                    json={"url": f"https://{host}/x", "event_types": ["redemption.captured"]})
        details.append(assert_problem(refused, 422, "webhook_url_refused")["detail"].replace(host, "HOST"))
        assert "10.20.30.40" not in refused.text and "2002:" not in refused.text
    assert details[0] == details[1]


async def test_loopback_is_refused_unless_the_operator_allows_it(
    app: Any, client: httpx.AsyncClient, clock: Any
) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url)  # allowed in the tests' settings
        await _redeem(world, voucher, "PO-1")
        strict = Database(app.state.settings.model_copy(update={"webhook_allowed_networks": []}))
        try:  # the operator withdraws the allowance: the next send is refused, nothing is sent
            await events.publish_pending(strict, clock())
            assert await webhooks.deliver_due(strict, clock()) == 1
        finally:
            await strict.dispose()
    assert hooks.received == []
    [delivery] = await _deliveries(client, world.provider_key, endpoint)
    assert delivery["last_error"].startswith("refused:") and delivery["status"] == "pending"


async def test_deleting_an_endpoint_cancels_what_it_was_owed(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url)
        await _redeem(world, voucher, "PO-1")
        await events.publish_pending(app.state.database, app.state.clock())
        deleted = await client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth(world.provider_key))
        assert deleted.status_code == 204, deleted.text
        assert await webhooks.deliver_due(app.state.database, app.state.clock()) == 0
        await _redeem(world, voucher, "PO-2")
        assert await _run(app) == 0
    assert hooks.received == []
    gone = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth(world.provider_key))
    assert_problem(gone, 404, "not_found")


async def test_updates_need_if_match_and_recheck_the_url(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    endpoint = await _endpoint(client, world.provider_key, "http://127.0.0.1:9/hooks")
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    assert_problem(await client.patch(path, json={"status": "disabled"}, headers=auth(world.provider_key)),
                   428, "precondition_required")
    etag = (await client.get(path, headers=auth(world.provider_key))).headers["etag"]
    refused = await client.patch(path, json={"url": "http://10.0.0.1/x"},
                                 headers=auth(world.provider_key, **{"If-Match": etag}))
    assert_problem(refused, 422, "webhook_url_refused")
    changed = await client.patch(path, json={"status": "disabled", "event_types": ["settlement.paid"]},
                                 headers=auth(world.provider_key, **{"If-Match": etag}))
    assert changed.status_code == 200, changed.text
    assert changed.json()["status"] == "disabled" and changed.json()["event_types"] == ["settlement.paid"]
    stale = await client.patch(path, json={"status": "enabled"}, headers=auth(world.provider_key, **{"If-Match": etag}))
    assert_problem(stale, 412, "precondition_failed")
    for bad in ({"event_types": []}, {"event_types": ["voucher.stolen"]}, {"status": "deleted"}, {"url": None}):
        response = await client.patch(path, json=bad, headers=auth(world.provider_key, **{"If-Match": '"v2"'}))
        assert response.status_code == 422, (bad, response.text)


@pytest.mark.postgres_only
async def test_two_senders_at_once_deliver_each_event_once(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(50_000_000)
    with receiver(delay=0.05) as hooks:
        await _endpoint(client, world.provider_key, hooks.url)
        for n in range(20):
            await _redeem(world, voucher, f"PO-{n}")
        await events.publish_pending(app.state.database, app.state.clock())
        settings = app.state.settings.model_copy(update={"webhook_batch_size": 5})
        senders = [Database(settings) for _ in range(2)]
        try:
            sent = 0
            while True:
                rounds = await asyncio.gather(*(webhooks.deliver_due(db, app.state.clock()) for db in senders))
                sent += sum(rounds)
                if not any(rounds):
                    break
        finally:
            for db in senders:
                await db.dispose()
    assert sent == 20
    assert len(hooks.ids()) == 20 and len(set(hooks.ids())) == 20




async def test_a_disabled_endpoint_is_not_called_until_enabled_again(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url)
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        await _redeem(world, voucher, "PO-1")
        await events.publish_pending(app.state.database, app.state.clock())
        etag = (await client.get(path, headers=auth(world.provider_key))).headers["etag"]
        paused = await client.patch(path, json={"status": "disabled"}, headers=auth(world.provider_key, **{"If-Match": etag}))
        assert paused.status_code == 200, paused.text
        assert await _run(app) == 0 and hooks.received == []
        [delivery] = await _deliveries(client, world.provider_key, endpoint)
        assert delivery["status"] == "pending"
        refused = await client.post(f"{path}/deliveries/{delivery['id']}/redeliveries",
                                    headers=auth(world.provider_key, **fresh_key()))
        assert_problem(refused, 409, "webhook_endpoint_disabled")
        resumed = await client.patch(path, json={"status": "enabled"},
                                     headers=auth(world.provider_key, **{"If-Match": paused.headers["etag"]}))
        assert resumed.status_code == 200, resumed.text
        assert await _run(app) == 1
    assert len(hooks.received) == 1


async def _health(client: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/webhook-endpoints/health", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def test_webhook_health_for_the_office_and_for_the_owner(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver(statuses=[200, 503, 503]) as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url + "/route?token=s3cret")
        await _redeem(world, voucher, "PO-H1")
        assert await _run(app) == 1  # delivered
        await _redeem(world, voucher, "PO-H2")
        await _redeem(world, voucher, "PO-H3")
        # both answered 503 (one a run: an endpoint that refuses gets no other send that run)
        assert [await _run(app), await _run(app)] == [1, 1]  # still owed, being retried
    [office] = await _health(client, world.operator)
    assert office["endpoint_id"] == endpoint["id"] and office["owner"] == "provider"
    assert office["owner_id"] == world.provider["id"] and office["owner_name"] == world.provider["name"]
    assert office["address"] == hooks.url.split("/hooks")[0]  # no path, no query, no token
    assert "s3cret" not in json.dumps(office) and "secret" not in office
    assert office["last_success_at"] is not None and office["last_failure_status_code"] == 503
    assert office["pending"] == 2 and office["failing_streak"] == 2 and not office["failing_streak_may_be_longer"]
    assert await _health(client, world.auditor) == [office]
    assert await _health(client, world.provider_key) == [office]  # the owner sees the same
    assert await _health(client, world.enterprise_key) == []  # another tenant sees none of it


def test_a_failing_streak_ends_at_a_success_and_skips_what_was_never_tried() -> None:
    from services.voucher.webhooks.rules import address_of, failing_streak

    assert failing_streak([("pending", 2), ("pending", 0), ("cancelled", 3), ("failed", 5), ("succeeded", 1),
                           ("failed", 4)], 50) == (2, False)
    assert failing_streak([("failed", 1)] * 50, 50) == (50, True)
    assert failing_streak([], 50) == (0, False)
    assert address_of("https://hooks.example.com/a/b?token=x") == "https://hooks.example.com"
    assert address_of("https://user:pw@[2001:db8::1]:8443/x") == "https://[2001:db8::1]:8443"


async def test_the_audit_trail_keeps_an_endpoints_address_and_digest_never_its_token(
        app: Any, client: httpx.AsyncClient) -> None:
    """A receiver's token rides in its URL (an independent review found `?token=` in the audit
    export, kept by the chain for good, while the health report hid it)."""
    import hashlib

    world = await build_world(app, client)
    url = "http://127.0.0.1:9/hooks/SECRET-PATH?token=SECRET-QUERY"
    endpoint = await _endpoint(client, world.provider_key, url)
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    etag = (await client.get(path, headers=auth(world.provider_key))).headers["etag"]
    moved = await client.patch(path, json={"url": url.replace("QUERY", "OTHER")},
                               headers=auth(world.provider_key, **{"If-Match": etag}))
    assert moved.status_code == 200, moved.text
    events = (await client.get("/v1/audit/events", params={"resource_id": endpoint["id"]},
                               headers=auth(world.auditor))).json()["items"]
    assert [e["action"] for e in events] == ["webhook_endpoint.created", "webhook_endpoint.updated"]
    assert "SECRET" not in json.dumps(events)
    created, updated = events
    assert created["after"]["url"] == "http://127.0.0.1:9"
    assert created["after"]["url_sha256"] == hashlib.sha256(url.encode()).hexdigest()
    assert updated["before"]["url_sha256"] != updated["after"]["url_sha256"]  # the change shows


async def test_a_slow_name_server_holds_up_no_other_write(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registration's URL is resolved before its unit of work begins: a tenant's name server
    that does not answer had held the process's write lock (SQLite) or a transaction
    (PostgreSQL) for the whole lookup, and every other write waited (an independent review,
    December 2026). Here the lookup is held until the office's write has been answered: were
    the lock held, that write would wait for the lookup and the test would time out. Then a
    lookup that never answers is refused after RESOLVE_SECONDS, and nothing is registered."""
    import socket
    import threading

    from services.voucher.webhooks import service
    from tests.support import enterprise_payload

    world = await build_world(app, client)
    entered, release = threading.Event(), threading.Event()
    real = socket.getaddrinfo

    def slow(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow.example":
            entered.set()
            release.wait(30)
            return real("93.184.215.14", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    monkeypatch.setattr(service, "RESOLVE_SECONDS", 20.0)
    register = asyncio.create_task(client.post(
        "/v1/webhook-endpoints", headers=auth(world.provider_key, **fresh_key()),
        json={"url": "https://slow.example/hook", "event_types": ["voucher.issued"]}))
    try:
        assert await asyncio.to_thread(entered.wait, 10), "the registration never looked the host up"
        office = await asyncio.wait_for(client.post("/v1/enterprises", json=enterprise_payload(),
                                                    headers=auth(world.operator, **fresh_key())), 10)
        assert office.status_code == 201, office.text
    finally:
        release.set()
    registered = await register
    assert registered.status_code == 201, registered.text

    release.clear()
    monkeypatch.setattr(service, "RESOLVE_SECONDS", 0.2)
    try:
        refused = await client.post("/v1/webhook-endpoints", headers=auth(world.provider_key, **fresh_key()),
                                    json={"url": "https://slow.example/other", "event_types": ["voucher.issued"]})
    finally:
        release.set()
    assert "did not resolve within" in assert_problem(refused, 422, "webhook_url_refused")["detail"]
    listed = await client.get("/v1/webhook-endpoints", headers=auth(world.provider_key))
    assert [e["url"] for e in listed.json()["items"]] == ["https://slow.example/hook"]


async def test_events_published_while_an_endpoint_is_paused_go_out_when_it_is_enabled_again(
        app: Any, client: httpx.AsyncClient) -> None:
    """"Disabling an endpoint pauses it": an event published during the pause had no delivery at
    all, so re-enabling sent nothing for it and the receiver could not tell (independent review,
    December 2026). It is owed, waits pending, and goes out once enabled."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url, ["redemption.captured"])
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        etag = (await client.get(path, headers=auth(world.provider_key))).headers["etag"]
        paused = await client.patch(path, json={"status": "disabled"}, headers=auth(world.provider_key, **{"If-Match": etag}))
        assert paused.status_code == 200, paused.text
        captured = await _redeem(world, voucher, "PO-PAUSED")  # during the receiver's maintenance
        assert await _run(app) == 0 and hooks.received == []
        [owed] = await _deliveries(client, world.provider_key, endpoint)
        assert owed["status"] == "pending" and owed["attempts"] == 0
        resumed = await client.patch(path, json={"status": "enabled"},
                                     headers=auth(world.provider_key, **{"If-Match": paused.headers["etag"]}))
        assert resumed.status_code == 200, resumed.text
        assert await _run(app) == 1
    [got] = hooks.received
    assert json.loads(got.body)["data"]["resource_id"] == captured["id"]


async def test_deleting_a_paused_endpoint_cancels_what_it_was_owed(app: Any, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    endpoint = await _endpoint(client, world.provider_key, "http://127.0.0.1:9/v")
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    etag = (await client.get(path, headers=auth(world.provider_key))).headers["etag"]
    paused = await client.patch(path, json={"status": "disabled"}, headers=auth(world.provider_key, **{"If-Match": etag}))
    await _redeem(world, voucher, "PO-1")
    await events.publish_pending(app.state.database, app.state.clock())
    deleted = await client.delete(path, headers=auth(world.provider_key, **{"If-Match": paused.headers["etag"]}))
    assert deleted.status_code == 204, deleted.text
    await _redeem(world, voucher, "PO-2")
    await events.publish_pending(app.state.database, app.state.clock())
    async with app.state.database.unit_of_work(write=False) as session:
        from sqlalchemy import text
        rows = (await session.execute(text("SELECT status FROM webhook_delivery"))).scalars().all()
    assert list(rows) == ["cancelled"]  # the one owed before the deletion; none after it


async def test_a_receivers_answer_is_not_read_into_the_workers_memory(app: Any, client: httpx.AsyncClient) -> None:
    """A receiver any tenant registers answers 200 and then 300 MB: only the status is needed,
    and the worker read the whole body (its peak memory grew by 676 MiB; independent review)."""
    import resource
    import socket
    import threading

    chunk = b"0" * (1 << 20)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n")
                              if h.lower().startswith(b"content-length"))
                while len(rest) < length:
                    rest += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                             % (300 * len(chunk)))
                try:
                    for _ in range(300):
                        conn.sendall(chunk)
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    try:
        endpoint = await _endpoint(client, world.provider_key, f"http://127.0.0.1:{port}/hooks")
        await _redeem(world, voucher, "PO-BIG")
        await events.publish_pending(app.state.database, app.state.clock())
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        assert await webhooks.deliver_due(app.state.database, app.state.clock()) == 1
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    finally:
        listener.close()
    assert grown_mib < 50, f"the worker's peak memory grew by {grown_mib:.0f} MiB reading a receiver's answer"
    [delivery] = await _deliveries(client, world.provider_key, endpoint)
    assert delivery["status"] == "succeeded"


async def test_a_hanging_receiver_holds_up_no_other_tenants_delivery(app: Any, client: httpx.AsyncClient) -> None:
    """The provider's receiver hangs with a backlog; the enterprise's answers at once. Waves
    gathered whole, claimed by due time across tenants, made the enterprise's delivery wait for
    every wave of the provider's to time out (independent review): it is sent within one
    timeout now, and the hanging receiver is tried once per run."""
    import time

    world = await build_world(app, client)
    # A timeout long enough that a machine busy with other tests cannot blur "at once" and "after
    # one timeout" (at 0.5 s, one run on a loaded machine took 0.4 s to reach the fast receiver).
    timeout = 1.5
    settings = app.state.settings.model_copy(update={"webhook_timeout_seconds": timeout, "webhook_concurrency": 2})
    database = Database(settings)
    try:
        with receiver(delay=2 * timeout) as slow, receiver() as fast:
            voucher = await world.issue(50_000_000)
            await events.publish_pending(database, app.state.clock())
            await _endpoint(client, world.provider_key, slow.url, ["redemption.captured"])
            for n in range(6):  # six deliveries owed to the hanging receiver, due first
                await _redeem(world, voucher, f"PO-{n}")
            await _endpoint(client, world.enterprise_key, fast.url, ["voucher.issued"])
            await world.issue(1_000_000)
            await events.publish_pending(database, app.state.clock())
            started = time.monotonic()
            arrived: list[float] = []

            async def watch() -> None:
                for _ in range(500):
                    if fast.received:
                        arrived.append(time.monotonic() - started)
                        return
                    await asyncio.sleep(0.01)

            watcher = asyncio.create_task(watch())
            attempts = await webhooks.deliver_due(database, app.state.clock())
            took = time.monotonic() - started
            await asyncio.wait_for(watcher, 5)
    finally:
        await database.dispose()
    assert arrived[0] < timeout * 2 / 3, f"the enterprise's delivery waited {arrived[0]:.2f} s behind the provider's"
    assert attempts == 2, attempts  # one to each receiver: the hanging one is not tried again this run
    assert took < timeout * 1.8, took  # one timeout, not one per wave of the backlog


async def test_a_receiver_answering_errors_is_not_sent_its_backlog_back_to_back(app: Any, client: httpx.AsyncClient) -> None:
    """A receiver behind a load balancer that answers 503 at once while it is down: every answer
    had counted as one, so a run sent it its whole backlog, one refused send after another, and
    a run of refusals had the worker's loop start the next at once (an independent review,
    December 2026). An endpoint that does not take a delivery gets no other send that run;
    another tenant's receiver gets all of its own, and the refusals are not progress."""
    world = await build_world(app, client)
    with receiver(statuses=[503]) as down, receiver() as up:
        voucher = await world.issue(50_000_000)
        await events.publish_pending(app.state.database, app.state.clock())
        await _endpoint(client, world.provider_key, down.url, ["redemption.captured"])
        for n in range(4):
            await _redeem(world, voucher, f"PO-{n}")
        await _endpoint(client, world.enterprise_key, up.url, ["voucher.issued"])
        for _ in range(3):
            await world.issue(1_000_000)
        await events.publish_pending(app.state.database, app.state.clock())
        tally: dict[str, int] = {}
        attempts = await webhooks.deliver_due(app.state.database, app.state.clock(), tally=tally)
        assert (len(down.received), len(up.received), attempts) == (1, 3, 4)
        assert tally["taken"] == 3
        later = await _deliveries(client, world.provider_key,
                                  (await client.get("/v1/webhook-endpoints", headers=auth(world.provider_key))).json()["items"][0])
        assert sorted(d["status"] for d in later) == ["pending"] * 4  # each retried on its own schedule


async def test_rotating_again_within_the_overlap_keeps_each_secret_for_its_own_24_hours(
        app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    """A → B, then B → C an hour later, before the receiver switched: A had stopped signing at
    once, and the receiver still holding it refused every delivery (independent review). A signs
    until 24 hours after the first rotation, B until 24 hours after the second."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    rotate = "/v1/webhook-endpoints/{}/secret-rotations"
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url)
        secrets = [endpoint["secret"]]
        for _ in range(2):
            rotated = await client.post(rotate.format(endpoint["id"]), headers=auth(world.provider_key, **fresh_key()))
            assert rotated.status_code == 200, rotated.text
            secrets.append(rotated.json()["secret"])
            clock.advance(hours=1)
        await _redeem(world, voucher, "PO-1")  # an hour after the second rotation: A, B and C sign
        await _run(app)
        clock.advance(hours=22, minutes=30)  # 24.5 h after the first rotation, 23.5 h after the second
        await _redeem(world, voucher, "PO-2")
        await _run(app)
        clock.advance(hours=1)
        await _redeem(world, voucher, "PO-3")
        await _run(app)
    first, second, third = hooks.received
    for secret in secrets:
        Webhook(secret).verify(first.body, first.headers)
    assert len(second.headers["webhook-signature"].split()) == 2  # B and C; A's day is over
    Webhook(secrets[1]).verify(second.body, second.headers)
    assert len(third.headers["webhook-signature"].split()) == 1  # C alone
    Webhook(secrets[2]).verify(third.body, third.headers)


def test_at_most_ten_secrets_sign_at_once() -> None:
    from datetime import UTC, datetime, timedelta

    from services.voucher.webhooks.rules import (
        MAX_SIGNING_SECRETS,
        ROTATION_OVERLAP,
        signing_secrets,
        still_signing,
    )

    now = datetime(2026, 3, 2, tzinfo=UTC)
    current, previous, ends, older = "s0", None, None, None
    for n in range(1, 15):  # fourteen rotations a minute apart
        at = now + timedelta(minutes=n)
        older = still_signing(previous, ends, older, at) or None
        previous, ends, current = current, at + ROTATION_OVERLAP, f"s{n}"
    signing = signing_secrets(current, previous, ends, older, now + timedelta(minutes=15))
    assert signing == [f"s{n}" for n in range(14, 14 - MAX_SIGNING_SECRETS, -1)]
    assert signing_secrets(current, previous, ends, older, now + timedelta(hours=25)) == ["s14"]


async def test_a_tenant_with_as_many_hanging_endpoints_as_slots_starves_no_other_tenant(
        app: Any, client: httpx.AsyncClient) -> None:
    """A tenant may register any number of endpoints. While fairness was per endpoint, as many
    hanging endpoints (each with a due backlog, older than anyone else's) as the pool has slots
    held every slot a full timeout each run, and the other tenants' deliveries were not sent
    while the backlog lasted (a review of the pool). Fairness is per owner now."""
    world = await build_world(app, client)
    # A timeout long enough that a machine busy with other tests cannot blur "at once" and "after
    # one timeout" (at 0.5 s, one run on a loaded machine took 0.4 s to reach the fast receiver).
    timeout = 1.5
    settings = app.state.settings.model_copy(update={"webhook_timeout_seconds": timeout, "webhook_concurrency": 2})
    database = Database(settings)
    try:
        with receiver(delay=2 * timeout) as slow, receiver() as fast:
            voucher = await world.issue(50_000_000)
            await events.publish_pending(database, app.state.clock())
            for _ in range(2):  # as many as the pool has slots
                await _endpoint(client, world.provider_key, slow.url)
            for n in range(4):
                await _redeem(world, voucher, f"PO-{n}")
            await _endpoint(client, world.enterprise_key, fast.url, ["voucher.issued"])
            await world.issue(1_000_000)
            await events.publish_pending(database, app.state.clock())
            for _ in range(3):  # three worker runs
                await webhooks.deliver_due(database, app.state.clock())
            got = len(fast.received)
    finally:
        await database.dispose()
    assert got == 1, "three runs and the enterprise's delivery was never sent: the provider's two hanging " \
                     "endpoints took every slot each run"



async def test_a_failed_claim_does_not_abandon_sends_already_in_flight(
        app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim that fails (a lost connection, SQLite's busy lock) while other sends are in
    flight: the pool's `finally` cancels them mid-send. The receiver has the event, but the
    attempt is never recorded and the delivery stays leased, to be sent again when the lease
    ends (a duplicate). The gathered waves of before never had a send in flight during a claim."""
    world = await build_world(app, client)
    voucher = await world.issue(50_000_000)
    original = repository.claim_due
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            await asyncio.sleep(0.2)  # the first send has reached the receiver
            raise RuntimeError("connection lost during a claim")
        return await original(*args, **kwargs)

    monkeypatch.setattr(repository, "claim_due", flaky)
    with receiver(delay=0.5) as slow, receiver() as other:
        await _endpoint(client, world.provider_key, slow.url)
        await _endpoint(client, world.enterprise_key, other.url, ["voucher.issued"])
        await _redeem(world, voucher, "PO-1")
        await events.publish_pending(app.state.database, app.state.clock())
        await world.issue(1_000_000)
        await events.publish_pending(app.state.database, app.state.clock())
        with pytest.raises(RuntimeError):
            await webhooks.deliver_due(app.state.database, app.state.clock())
        await asyncio.sleep(1.0)  # whatever was left running
        received = len(slow.received)
    async with app.state.database.unit_of_work(write=False) as session:
        rows = (await session.execute(text(
            "SELECT d.status, d.attempts, (SELECT count(*) FROM webhook_attempt a WHERE a.delivery_id = d.id) "
            "FROM webhook_delivery d"))).all()
    assert received == 1
    claimed_unrecorded = [r for r in rows if r[1] > 0 and r[2] == 0]
    assert not claimed_unrecorded, f"sent, never recorded, leased to be sent again: {rows}"


async def test_a_paused_endpoints_deliveries_wait_out_of_every_claims_way(app: Any, client: httpx.AsyncClient) -> None:
    """Owed while paused, they had been due at once, at the head of the due index, so every
    claim read the whole (ever-growing) backlog past them (50,002 rows for one claim in a
    review's PostgreSQL plan). They wait with no time to be tried, and are due once enabled."""
    world = await build_world(app, client)
    voucher = await world.issue(50_000_000)
    endpoint = await _endpoint(client, world.provider_key, "http://127.0.0.1:9/paused")
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    await _redeem(world, voucher, "PO-0")  # owed before the pause: it waits too
    await events.publish_pending(app.state.database, app.state.clock())
    etag = (await client.get(path, headers=auth(world.provider_key))).headers["etag"]
    paused = await client.patch(path, json={"status": "disabled"}, headers=auth(world.provider_key, **{"If-Match": etag}))
    for n in range(1, 4):
        await _redeem(world, voucher, f"PO-{n}")
    await events.publish_pending(app.state.database, app.state.clock())

    async def due_times() -> list[Any]:
        async with app.state.database.unit_of_work(write=False) as session:
            return list((await session.execute(text("SELECT next_attempt_at FROM webhook_delivery"))).scalars())

    assert await due_times() == [None] * 4
    resumed = await client.patch(path, json={"status": "enabled"},
                                 headers=auth(world.provider_key, **{"If-Match": paused.headers["etag"]}))
    assert resumed.status_code == 200, resumed.text
    assert None not in await due_times() and len(await due_times()) == 4


async def _paused(client: httpx.AsyncClient, world: World, endpoint: dict[str, Any]) -> httpx.Response:
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    etag = (await client.get(path, headers=auth(world.provider_key))).headers["etag"]
    paused = await client.patch(path, json={"status": "disabled"}, headers=auth(world.provider_key, **{"If-Match": etag}))
    assert paused.status_code == 200, paused.text
    return paused


@pytest.mark.skipif(ENGINE != "postgresql", reason="SQLite's one writer serialises the publisher and the owner")
async def test_an_endpoint_enabled_while_the_publisher_writes_its_deliveries_is_sent_them(
        app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The publisher read the endpoints, found this one paused, and wrote its delivery with no
    time to be tried after the owner's enabling had committed (and resumed what it was owed
    then): the delivery was never sent (an independent review, December 2026). The publisher
    now reads the endpoints once, held shared, and writes for each as held: an enabling that
    commits as it is about to read them is the state it writes for."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url, ["redemption.captured"])
        paused = await _paused(client, world, endpoint)
        await _redeem(world, voucher, "PO-1")
        read = repository.endpoints_of

        async def enabled_first(session: Any, owners: set[Any]) -> list[dict[str, Any]]:
            enabled = await client.patch(f"/v1/webhook-endpoints/{endpoint['id']}", json={"status": "enabled"},
                                         headers=auth(world.provider_key, **{"If-Match": paused.headers["etag"]}))
            assert enabled.status_code == 200, enabled.text  # committed inside the publisher's transaction
            return await read(session, owners)

        monkeypatch.setattr(repository, "endpoints_of", enabled_first)
        assert await events.publish_pending(app.state.database, app.state.clock()) >= 1
        monkeypatch.setattr(repository, "endpoints_of", read)
        assert await _run(app) == 1
    assert len(hooks.received) == 1


@pytest.mark.skipif(ENGINE != "postgresql", reason="SQLite's one writer serialises the publisher and the owner")
@pytest.mark.parametrize("change", ["enabled", "deleted"])
async def test_an_owner_changing_an_endpoint_while_its_deliveries_are_written_waits_and_finds_them(
        app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, database_url: str, change: str) -> None:
    """Once the publisher holds the endpoint, enabling it (or deleting it) waits for the
    publisher's commit and then schedules (or cancels) the delivery just written."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url, ["redemption.captured"])
        paused = await _paused(client, world, endpoint)
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        headers = auth(world.provider_key, **{"If-Match": paused.headers["etag"]})
        await _redeem(world, voucher, "PO-1")
        lock, owner = repository.endpoints_of, []

        async def then_changed(session: Any, owners: set[Any]) -> list[dict[str, Any]]:
            held = await lock(session, owners)
            owner.append(asyncio.create_task(
                client.patch(path, json={"status": "enabled"}, headers=headers) if change == "enabled"
                else client.delete(path, headers=headers)))
            watcher = create_async_engine(database_url)
            try:
                async with watcher.connect() as conn:
                    for _ in range(200):  # until the owner's request waits on the endpoint
                        waiting = (await conn.execute(text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock'"))).scalar_one()
                        await conn.commit()
                        if waiting or owner[0].done():
                            break
                        await asyncio.sleep(0.025)
            finally:
                await watcher.dispose()
            assert not owner[0].done()  # it waits for the publisher
            return held

        monkeypatch.setattr(repository, "endpoints_of", then_changed)
        assert await events.publish_pending(app.state.database, app.state.clock()) >= 1
        monkeypatch.setattr(repository, "endpoints_of", lock)
        changed = await owner[0]
        assert changed.status_code in (200, 204), changed.text
        sent = await _run(app)
        [delivery] = await _deliveries(client, world.provider_key, endpoint) if change == "enabled" else [None]
    if change == "enabled":
        assert sent == 1 and len(hooks.received) == 1 and delivery["status"] == "succeeded"
    else:
        async with app.state.database.unit_of_work(write=False) as session:
            rows = (await session.execute(text("SELECT status FROM webhook_delivery"))).scalars().all()
        assert list(rows) == ["cancelled"] and sent == 0 and hooks.received == []


@pytest.mark.skipif(ENGINE != "postgresql", reason="SQLite's one writer serialises the publisher and the owner")
@pytest.mark.parametrize(("first", "then", "sent"), [
    (["redemption.captured", "refund.created"], ["refund.created"], 0),
    (["refund.created"], ["redemption.captured", "refund.created"], 1),
])
async def test_an_endpoints_events_changed_while_the_publisher_works_are_the_ones_it_gets(
        app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
        first: list[str], then: list[str], sent: int) -> None:
    """The publisher chose an endpoint's deliveries by the event types it read before holding
    it: a type the owner dropped in between was still sent, one added was missed (a review of
    the fix, December 2026). It now reads them once, held: the types as held decide."""
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url, first)
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        await _redeem(world, voucher, "PO-1")
        read = repository.endpoints_of

        async def changed_first(session: Any, owners: set[Any]) -> list[dict[str, Any]]:
            etag = (await client.get(path, headers=auth(world.provider_key))).headers["etag"]
            changed = await client.patch(path, json={"event_types": then},
                                         headers=auth(world.provider_key, **{"If-Match": etag}))
            assert changed.status_code == 200, changed.text
            return await read(session, owners)

        monkeypatch.setattr(repository, "endpoints_of", changed_first)
        assert await events.publish_pending(app.state.database, app.state.clock()) >= 1
        monkeypatch.setattr(repository, "endpoints_of", read)
        assert await _run(app) == sent
    assert len(hooks.received) == sent


async def test_a_delivery_a_dead_worker_claimed_is_sent_again_when_its_lease_ends(
        app: Any, client: httpx.AsyncClient) -> None:
    """A worker claims a delivery (the lease committed before the send) and dies before it
    sends or records anything. No other worker takes it while the lease runs; once it ends the
    delivery is sent, with the same `webhook-id`, as its second attempt. Nothing had tested it:
    a lease never given back would have left such deliveries unsent for good, and every other
    test would have passed (an independent review, December 2026)."""
    import uuid
    from datetime import timedelta

    database: Database = app.state.database
    world = await build_world(app, client)
    voucher = await world.issue(10_000_000)
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url, ["redemption.captured"])
        await _redeem(world, voucher, "PO-LEASED")
        now = app.state.clock()
        await events.publish_pending(database, now)
        lease = timedelta(seconds=database.settings.webhook_timeout_seconds * 2 + 30)
        async with database.unit_of_work() as session:  # the worker that dies after this commit
            [claimed] = await repository.claim_due(session, now, now + lease, 10, uuid.uuid4())
        assert claimed["attempts"] == 1
        assert await webhooks.deliver_due(database, now + lease - timedelta(seconds=1)) == 0
        assert hooks.received == []
        assert await webhooks.deliver_due(database, now + lease) == 1
        [owed] = await _deliveries(client, world.provider_key, endpoint)
    [got] = hooks.received
    assert got.headers["webhook-id"] == str(claimed["event_id"])
    assert owed["status"] == "succeeded" and owed["attempts"] == 2
