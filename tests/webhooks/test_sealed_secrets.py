"""Webhook signing secrets are kept sealed (docs/security.md, "Sealed secrets"): a copy of the
database — the endpoint rows, the stored answers that showed them — does not give anyone a
secret; deliveries are still signed with it; a change of key keeps the old one opening what it
sealed until `voucher secrets reseal` has sealed everything again; rows kept before sealing
existed still sign, and are sealed by the reseal."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from services.voucher import secretbox
from services.voucher.db import Database
from services.voucher.events import service as events
from services.voucher.idempotency import service as idempotency
from services.voucher.webhooks import service as webhooks
from tests.support import auth
from tests.webhooks.receiver import receiver
from tests.world import World, build_world

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()
PURPOSE = secretbox.webhook_secret_purpose(uuid.UUID(int=7))


def _box(current: str, *retired: str) -> secretbox.Keyring:
    return secretbox.Keyring(secretbox.decode_key(current, "k"), tuple(secretbox.decode_key(k, "k") for k in retired))


def _use_keys(app: Any, current: str | None, *retired: str) -> None:
    """The app's (and its worker's) settings with these keys, as after a restart with them."""
    database: Database = app.state.database
    settings = database.settings.model_copy(update={
        "secrets_key": SecretStr(current) if current else None,
        "secrets_retired_keys": [SecretStr(k) for k in retired]})
    database.settings = settings
    app.state.settings = settings


async def _rows(app: Any, sql: str, **params: Any) -> list[Any]:
    async with app.state.database.unit_of_work(write=False) as session:
        return list((await session.execute(text(sql), params)).all())


async def _endpoint(client: httpx.AsyncClient, key: str, url: str, idempotency_key: str) -> dict[str, Any]:
    response = await client.post("/v1/webhook-endpoints", headers=auth(key, **{"Idempotency-Key": idempotency_key}),
                                 json={"url": url, "event_types": ["redemption.captured"]})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _rotated(client: httpx.AsyncClient, world: World, url: str, name: str) -> tuple[dict[str, Any], str]:
    """A provider's endpoint, and the secret its rotation gave (the first one still signs)."""
    endpoint = await _endpoint(client, world.provider_key, url, f"{name}-1")
    rotated = await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/secret-rotations", json={},
                                headers=auth(world.provider_key, **{"Idempotency-Key": f"{name}-rot"}))
    assert rotated.status_code == 200, rotated.text
    return endpoint, rotated.json()["secret"]


async def _redeem_and_deliver(app: Any, world: World, voucher: dict[str, Any], order: str) -> int:
    response = await world.hold(voucher, 1_000_000, order=order, path="/v1/redemptions")
    assert response.status_code == 201, response.text
    await events.publish_pending(app.state.database, app.state.clock())
    return await webhooks.deliver_due(app.state.database, app.state.clock())


# -- the seal itself --------------------------------------------------------------------------


def test_a_sealed_value_opens_only_for_what_it_was_sealed_for_and_only_unaltered() -> None:
    box = _box(KEY_A)
    secret = "whsec_" + base64.b64encode(bytes(32)).decode()
    sealed = box.seal(secret, PURPOSE)
    assert sealed.startswith(secretbox.PREFIX) and secret not in sealed
    assert len(sealed) <= 128  # the column's width: no migration needed
    assert box.open(sealed, PURPOSE) == secret
    assert box.seal(secret, PURPOSE) != sealed  # a fresh nonce each time
    other = secretbox.webhook_secret_purpose(uuid.UUID(int=8))
    with pytest.raises(secretbox.CannotOpen, match="sealed for something else"):
        box.open(sealed, other)  # copied onto another endpoint, it signs nothing
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(secretbox.CannotOpen):
        box.open(flipped, PURPOSE)
    assert box.open(secret, PURPOSE) == secret  # kept before sealing existed: read as it is
    for altered in (sealed + "=", sealed + "A", sealed[:30] + "!" + sealed[30:], sealed[:-1]):
        with pytest.raises(secretbox.CannotOpen):  # nothing skipped, nothing padded in
            box.open(altered, PURPOSE)
    assert KEY_A not in repr(box) and repr(bytes(range(32))) not in repr(box)


@pytest.mark.parametrize("key", ['"' + KEY_A + '"', KEY_A[:10] + "!" + KEY_A[10:], KEY_A[:-4], "", "====="])
def test_a_key_that_is_not_32_bytes_of_clean_base64_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="VOUCHER_SECRETS_KEY"):
        secretbox.decode_key(key, "VOUCHER_SECRETS_KEY")


def test_a_key_is_read_in_either_base64_alphabet_padded_or_not() -> None:
    raw = bytes(range(200, 232))
    for written in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        assert secretbox.decode_key(written, "k") == raw


def test_a_stored_answer_altered_or_not_text_does_not_open() -> None:
    box = _box(KEY_A)
    for broken in (secretbox.PREFIX.encode() + b"\xff\xfe", box.seal("not base64 inside", PURPOSE).encode()):
        with pytest.raises(secretbox.CannotOpen):
            box.open_bytes(broken, PURPOSE)


def test_a_retired_key_still_opens_what_it_sealed_and_an_unlisted_one_is_named() -> None:
    sealed = _box(KEY_A).seal("whsec_x", PURPOSE)
    assert _box(KEY_B, KEY_A).open(sealed, PURPOSE) == "whsec_x"
    assert not _box(KEY_B, KEY_A).current_for(sealed) and _box(KEY_A).current_for(sealed)
    with pytest.raises(secretbox.CannotOpen, match=secretbox.key_id(secretbox.decode_key(KEY_A, "k"))):
        _box(KEY_B).open(sealed, PURPOSE)
    body = b'{"secret":"whsec_y"}'
    assert _box(KEY_B, KEY_A).open_bytes(_box(KEY_A).seal_bytes(body, PURPOSE), PURPOSE) == body


# -- through the API and the worker ----------------------------------------------------------


@pytest.fixture
async def started(app: Any, client: httpx.AsyncClient) -> tuple[World, dict[str, Any]]:
    """A programme with a provider and a voucher, on an app sealing under KEY_A."""
    _use_keys(app, KEY_A)
    world = await build_world(app, client)
    return world, await world.issue(10_000_000)


async def test_the_database_holds_no_secret_in_the_clear_and_deliveries_still_sign(
    app: Any, client: httpx.AsyncClient, started: tuple[World, dict[str, Any]]
) -> None:
    world, voucher = started
    with receiver() as hooks:
        endpoint, second = await _rotated(client, world, hooks.url, "wh-sealed")
        assert await _redeem_and_deliver(app, world, voucher, "PO-S1") == 1
    first = endpoint["secret"]
    [got] = hooks.received
    assert Webhook(first).verify(got.body, got.headers)["type"] == "redemption.captured"  # the old one, in its day
    assert Webhook(second).verify(got.body, got.headers)["type"] == "redemption.captured"
    [(secret, previous)] = await _rows(app, "SELECT secret, previous_secret FROM webhook_endpoint")
    assert secret.startswith(secretbox.PREFIX) and previous.startswith(secretbox.PREFIX)
    dump = repr(await _rows(app, "SELECT * FROM webhook_endpoint")) + repr(await _rows(
        app, "SELECT response_body FROM idempotency_record"))
    for shown in (first, second, first.removeprefix("whsec_"), second.removeprefix("whsec_")):
        assert shown not in dump
    # A retry that lost the answer still gets the secret, opened from the stored answer.
    again = await client.post(f"/v1/webhook-endpoints/{endpoint['id']}/secret-rotations", json={},
                              headers=auth(world.provider_key, **{"Idempotency-Key": "wh-sealed-rot"}))
    assert again.headers["idempotent-replayed"] == "true" and again.json()["secret"] == second


async def test_a_change_of_key_keeps_signing_through_the_reseal_and_without_the_old_key_after_it(
    app: Any, client: httpx.AsyncClient, started: tuple[World, dict[str, Any]]
) -> None:
    world, voucher = started
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url, "wh-change-1")
        # The new key, the old one retired: what the old one sealed still signs.
        _use_keys(app, KEY_B, KEY_A)
        assert await _redeem_and_deliver(app, world, voucher, "PO-C1") == 1
        async with app.state.database.unit_of_work(write=True) as session:
            assert await webhooks.reseal(session, secretbox.keyring(app.state.settings)) == (1, [])
            assert await idempotency.reseal(session, secretbox.keyring(app.state.settings)) == (1, [])
        async with app.state.database.unit_of_work(write=True) as session:  # nothing left to do
            assert await webhooks.reseal(session, secretbox.keyring(app.state.settings)) == (0, [])
            assert await idempotency.reseal(session, secretbox.keyring(app.state.settings)) == (0, [])
        # Resealed: the old key can go.
        _use_keys(app, KEY_B)
        assert await _redeem_and_deliver(app, world, voucher, "PO-C2") == 1
        replay = await client.post("/v1/webhook-endpoints", headers=auth(world.provider_key, **{
            "Idempotency-Key": "wh-change-1"}), json={"url": hooks.url, "event_types": ["redemption.captured"]})
    assert replay.headers["idempotent-replayed"] == "true" and replay.json()["secret"] == endpoint["secret"]
    assert len(hooks.received) == 2
    for got in hooks.received:
        Webhook(endpoint["secret"]).verify(got.body, got.headers)
    [(secret,)] = await _rows(app, "SELECT secret FROM webhook_endpoint")
    assert _box(KEY_B).current_for(secret)


async def test_a_secret_no_configured_key_opens_is_never_sent_and_the_delivery_says_why(
    app: Any, client: httpx.AsyncClient, clock: Any, started: tuple[World, dict[str, Any]]
) -> None:
    world, voucher = started
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url, "wh-lost-1")
        _use_keys(app, KEY_B)  # the old key dropped before the reseal
        assert await _redeem_and_deliver(app, world, voucher, "PO-L1") == 1
        assert hooks.received == []  # nothing unsigned, nothing signed with a wrong secret
        async with app.state.database.unit_of_work(write=True) as session:
            changed, unreadable = await webhooks.reseal(session, secretbox.keyring(app.state.settings))
        assert changed == 0 and len(unreadable) == 1 and endpoint["id"] in unreadable[0]
        deliveries = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries",
                                      headers=auth(world.provider_key))
        [delivery] = deliveries.json()["items"]
        assert delivery["status"] == "pending"
        assert "cannot open this endpoint's signing secret" in delivery["last_error"]
        # The service's fault, not the receiver's: no attempt is used up, however long it lasts.
        assert delivery["attempts"] == 0 and len(delivery["attempt_log"]) == 1
        for _ in range(app.state.settings.webhook_max_attempts + 1):
            clock.advance(seconds=app.state.settings.webhook_retry_base_seconds * 1.3)
            assert await webhooks.deliver_due(app.state.database, app.state.clock()) == 1
        [delivery] = (await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries",
                                       headers=auth(world.provider_key))).json()["items"]
        assert delivery["status"] == "pending" and delivery["attempts"] == 0, delivery
        assert hooks.received == []
        # The stored answer does not open either: a replay says so (503, retry once the key is
        # back), never answers with the sealed body, and changes nothing.
        replay = await client.post("/v1/webhook-endpoints", headers=auth(world.provider_key, **{
            "Idempotency-Key": "wh-lost-1"}), json={"url": hooks.url, "event_types": ["redemption.captured"]})
        assert replay.status_code == 503 and replay.json()["code"] == "secret_unavailable", replay.text
        assert "sealed" not in replay.text and "idempotent-replayed" not in replay.headers
        assert len(await _rows(app, "SELECT id FROM webhook_endpoint")) == 1
        # The key restored (as a retired one), the retry signs with the secret the owner holds.
        _use_keys(app, KEY_B, KEY_A)
        again = await client.post("/v1/webhook-endpoints", headers=auth(world.provider_key, **{
            "Idempotency-Key": "wh-lost-1"}), json={"url": hooks.url, "event_types": ["redemption.captured"]})
        assert again.status_code == 201 and again.json()["secret"] == endpoint["secret"], again.text
        clock.advance(seconds=app.state.settings.webhook_retry_base_seconds * 1.3)
        assert await webhooks.deliver_due(app.state.database, app.state.clock()) == 1
    [got] = hooks.received
    Webhook(endpoint["secret"]).verify(got.body, got.headers)


async def test_a_secret_kept_before_sealing_still_signs_and_the_reseal_seals_it(
    app: Any, client: httpx.AsyncClient, started: tuple[World, dict[str, Any]]
) -> None:
    world, voucher = started
    legacy = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    with receiver() as hooks:
        endpoint = await _endpoint(client, world.provider_key, hooks.url, "wh-legacy-1")
        async with app.state.database.unit_of_work(write=True) as session:  # as an older build stored it
            await session.execute(text("UPDATE webhook_endpoint SET secret = :s"), {"s": legacy})
        assert await _redeem_and_deliver(app, world, voucher, "PO-G1") == 1
        async with app.state.database.unit_of_work(write=True) as session:
            assert await webhooks.reseal(session, secretbox.keyring(app.state.settings)) == (1, [])
        assert await _redeem_and_deliver(app, world, voucher, "PO-G2") == 1
    assert len(hooks.received) == 2 and endpoint["secret"] != legacy
    for got in hooks.received:
        Webhook(legacy).verify(got.body, got.headers)
    [(secret,)] = await _rows(app, "SELECT secret FROM webhook_endpoint")
    assert _box(KEY_A).open(secret, secretbox.webhook_secret_purpose(endpoint["id"])) == legacy


async def test_a_replaced_secret_that_does_not_open_is_left_out_and_the_current_one_signs(
    app: Any, client: httpx.AsyncClient, started: tuple[World, dict[str, Any]]
) -> None:
    world, voucher = started
    with receiver() as hooks:
        endpoint, current = await _rotated(client, world, hooks.url, "wh-part")
        stray = _box(KEY_B).seal(endpoint["secret"], secretbox.webhook_secret_purpose(endpoint["id"]))
        async with app.state.database.unit_of_work(write=True) as session:  # sealed under a key not configured
            await session.execute(text("UPDATE webhook_endpoint SET previous_secret = :s"), {"s": stray})
        assert await _redeem_and_deliver(app, world, voucher, "PO-P1") == 1
    [got] = hooks.received
    Webhook(current).verify(got.body, got.headers)
    assert len(got.headers["webhook-signature"].split()) == 1  # the current secret's signature only


def test_the_console_says_why_a_delivery_was_not_sent_in_the_readers_language() -> None:
    from services.voucher.console.web import delivery_error

    error = "not sent: the service cannot open this endpoint's signing secret (its operator must restore the key)"
    assert delivery_error(error, "zh") == "未发送：服务无法打开该端点的签名密钥"
    assert delivery_error(error, "en") == "not sent: the service cannot open this endpoint's signing secret"
