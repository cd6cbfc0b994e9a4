"""Webhook signing, retry schedule and destination rules, checked against the independent
`standardwebhooks` verifier."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.voucher.webhooks.rules import (
    UnsafeUrl,
    address_allowed,
    check_url_shape,
    new_secret,
    retry_delay,
    sign,
    signature_header,
)


def _headers(message_id: str, stamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


def test_the_standard_verifier_accepts_our_signature_and_refuses_a_changed_body() -> None:
    secret = new_secret()
    body = b'{"type":"redemption.captured","data":{"amount":100}}'
    stamp = int(time.time())
    headers = _headers("msg_1", stamp, sign(secret, "msg_1", stamp, body))
    assert Webhook(secret).verify(body, headers) == {"type": "redemption.captured", "data": {"amount": 100}}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"100", b"101"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):  # a replayed id under another id
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_2"})


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"type":"settlement.paid","data":{}}'
    stamp = int(time.time())
    headers = _headers("msg_9", stamp, signature_header([new, old], "msg_9", stamp, body))
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


def test_secrets_are_random_and_in_the_standard_format() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(s.startswith("whsec_") and len(s) == len("whsec_") + 44 for s in secrets)


def test_retry_delays_double_up_to_the_cap() -> None:
    delays = [retry_delay(n, 30, 3600, 1.0) for n in range(1, 10)]
    assert delays[:5] == [timedelta(seconds=s) for s in (30, 60, 120, 240, 480)]
    assert delays[-1] == timedelta(seconds=3600)
    assert retry_delay(3, 30, 3600, 0.8) == timedelta(seconds=96)


@pytest.mark.parametrize("url", [
    "ftp://example.com/x", "https://user:pw@example.com/x", "https://example.com/x#frag", "https:///nohost",
    "https://example.com:99999/", "not a url", "javascript:alert(1)", "https://example.com\t/x",
    "https://exa mple.com/x", "https://example.com/\x00", "https://example.com:0/x", "https://[2001:db8::1]:00/x",
])
def test_urls_of_the_wrong_shape_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url_shape(url, allow_http=True)


def test_a_port_written_out_is_the_port_vetted() -> None:
    """Port 0 was taken for the scheme's own (`port or 443`): what was vetted was not what httpx calls."""
    assert check_url_shape("https://example.com:0443/x", allow_http=False) == ("https", "example.com", 443)
    assert check_url_shape("http://example.com:8080/x", allow_http=True) == ("http", "example.com", 8080)
    with pytest.raises(UnsafeUrl, match="from 1 to 65535"):
        check_url_shape("https://example.com:0/x", allow_http=False)


def test_plain_http_only_where_allowed() -> None:
    assert check_url_shape("https://example.com/hooks", allow_http=False) == ("https", "example.com", 443)
    with pytest.raises(UnsafeUrl):
        check_url_shape("http://example.com/hooks", allow_http=False)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "::1", "fe80::1",
    "fc00::1", "224.0.0.1", "100.64.0.1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "240.0.0.1",
])
def test_non_public_addresses_are_refused_unless_allowed(address: str) -> None:
    assert not address_allowed(address, [])
    assert address_allowed(address, ["0.0.0.0/0", "::/0"])


@pytest.mark.parametrize("address", [  # issue 19, finding 7: Python's is_global says True to the first two
    "2002:7f00:1::", "192.0.0.8", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "198.18.0.1", "198.19.255.254",
    "192.0.0.9", "192.0.0.170", "192.0.2.1", "198.51.100.1", "203.0.113.1", "192.88.99.1", "192.31.196.1",
    "192.52.193.1", "192.175.48.1", "255.255.255.255", "64:ff9b::7f00:1", "64:ff9b:1::1", "::7f00:1", "100::1",
    "2001:db8::1", "2001:1::1", "2001:20::1", "2620:4f:8000::1", "3fff::1", "5f00::1", "fec0::1", "ff02::1",
    "4000::1",
])
def test_every_special_purpose_block_is_refused_unless_allowed(address: str) -> None:
    assert not address_allowed(address, [])
    assert address_allowed(address, ["0.0.0.0/0", "::/0"])


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "114.114.114.114",
                                     "2001:4860:4860::8888", "::ffff:93.184.216.34", "240e::1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address, [])
