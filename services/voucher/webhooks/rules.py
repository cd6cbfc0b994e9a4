"""Standard Webhooks signing, retry schedule and destination rules. Pure (stdlib and the
message catalogue only).

Signature (https://www.standardwebhooks.com): `webhook-signature: v1,<base64 HMAC-SHA256>`
over `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with the secret's bytes (the part
after `whsec_`, base64-decoded). Several signatures are space-separated, which is how a
rotation overlaps: the receiver accepts any one it can verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from services.voucher.i18n import Message, msg

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
#: After a rotation the previous secret still signs for this long.
ROTATION_OVERLAP = timedelta(hours=24)
#: At most this many secrets sign a delivery, the current one included: a rotation beyond it
#: (the tenth within 24 hours) retires the oldest before its overlap ends.
MAX_SIGNING_SECRETS = 10


def _in_overlap(previous: str | None, previous_ends: datetime | None, older: list[list[str]] | None,
                now: datetime) -> list[list[str]]:
    """The replaced secrets still in their overlap at `now`, newest first, as [secret, ends at
    (ISO 8601)]: the previous one, then the older ones."""
    kept = [[previous, previous_ends.isoformat()]] if previous and previous_ends and previous_ends > now else []
    return kept + [[secret, ends] for secret, ends in older or [] if datetime.fromisoformat(ends) > now]


def still_signing(previous: str | None, previous_ends: datetime | None, older: list[list[str]] | None,
                  now: datetime) -> list[list[str]]:
    """At a rotation, the secrets before the one being replaced that keep signing (`older_secrets`).
    A second rotation within 24 hours had retired the first secret at once, and a receiver still
    holding it refused every delivery (an independent review, December 2026)."""
    return _in_overlap(previous, previous_ends, older, now)[: MAX_SIGNING_SECRETS - 2]  # beside the new and the replaced


def signing_secrets(current: str, previous: str | None, previous_ends: datetime | None,
                    older: list[list[str]] | None, now: datetime) -> list[str]:
    """Every secret that signs a delivery sent at `now`: the current one first, then those still
    in their overlap (at most `MAX_SIGNING_SECRETS` in all, as rotations keep them)."""
    return [current, *(secret for secret, _ in _in_overlap(previous, previous_ends, older, now))]


class EndpointStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    DELETED = "deleted"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # gave up after the last attempt; a manual redelivery revives it
    CANCELLED = "cancelled"  # its endpoint was deleted


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets_: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(s, message_id, timestamp, body) for s in secrets_)


def retry_delay(attempt: int, base_seconds: int, cap_seconds: int, jitter: float) -> timedelta:
    """Delay before attempt `attempt + 1` after `attempt` failed: base·2^(attempt-1), capped,
    times `jitter` (a number in [0.8, 1.2] from the caller, so the rule stays deterministic)."""
    seconds = min(cap_seconds, base_seconds * 2 ** max(0, attempt - 1))
    return timedelta(seconds=seconds * jitter)


class UnsafeUrl(ValueError):
    """The URL may not be a webhook destination; the message (a catalogue Message, rendered in
    the reader's language as the refusal's detail) says why."""

    def __init__(self, message: Message) -> None:
        super().__init__(message)
        self.message = message


def _unparsable(exc: ValueError) -> Message:
    """Why urlsplit could not read a URL, in the catalogue's words (its own are English only)."""
    text = str(exc)
    if "Port" in text:
        return msg("not a valid URL: the port must be a number from 1 to 65535")
    if "IPv6" in text:
        return msg("not a valid URL: the address in square brackets is not an IPv6 address")
    return msg("not a valid URL; check its scheme, host and port")


def check_url_shape(url: str, *, allow_http: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL, else UnsafeUrl. No credentials in the URL (they
    would leak into logs), no fragment, https unless plain http is allowed for the destination."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeUrl(msg("the URL must not contain spaces or control characters"))  # parsers disagree on them
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(_unparsable(exc)) from exc
    if parts.scheme not in ("https", "http"):
        raise UnsafeUrl(msg("the URL must be https:// (or http:// to an allowed network)"))
    if parts.scheme == "http" and not allow_http:
        raise UnsafeUrl(msg("the URL must be https://"))
    if not parts.hostname:
        raise UnsafeUrl(msg("the URL has no host"))
    if parts.username or parts.password:
        raise UnsafeUrl(msg("the URL must not carry credentials"))
    if parts.fragment:
        raise UnsafeUrl(msg("the URL must not have a #fragment"))
    if port == 0:  # no server listens there, and `port or 443` would have vetted another port than is called
        raise UnsafeUrl(msg("not a valid URL: the port must be a number from 1 to 65535"))
    return parts.scheme, parts.hostname, port or default_port(parts.scheme)


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


# IANA's IPv4 and IPv6 Special-Purpose Address Registries (as of 2025), every entry whatever
# its "globally reachable" column (anycast relays, AMT, AS112 and the like are nobody's webhook),
# and multicast. Python's `is_global` misses some (192.0.0.8, 6to4 of a loopback address).
SPECIAL_PURPOSE = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128", "::1/128", "::ffff:0:0/96", "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
    "2001:db8::/32", "2002::/16", "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10",
    "fec0::/10", "ff00::/8",
))
#: IPv6 unicast that is assigned for the Internet at all.
GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip


def is_literal(host: str) -> bool:
    """Whether `host` is an IP address written out (`[::1]`, `fe80::1%eth0` included)."""
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def is_public(address: str) -> bool:
    """A public unicast address: in no special-purpose block (which takes in 6to4, Teredo and
    NAT64, whatever IPv4 address they carry), IPv6 only inside 2000::/3, and global to Python."""
    ip = _ip(address)
    if any(ip in network for network in SPECIAL_PURPOSE if network.version == ip.version):
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip not in GLOBAL_UNICAST_V6:
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def address_allowed(address: str, allowed_networks: Iterable[str]) -> bool:
    """Public unicast addresses are allowed; every special-purpose one (loopback, private,
    link-local and cloud metadata, shared, benchmarking, documentation, 6to4, Teredo, NAT64,
    multicast, reserved…) only inside an operator-allowed network."""
    return in_allowed_networks(address, allowed_networks) or is_public(address)


def in_allowed_networks(address: str, allowed_networks: Iterable[str]) -> bool:
    ip = _ip(address)
    return any(ip in ipaddress.ip_network(n, strict=False) for n in allowed_networks)


def failing_streak(newest: list[tuple[str, int]], window: int) -> tuple[int, bool]:
    """How many of an endpoint's newest deliveries in a row have been tried and not got through
    (from `newest`: (status, attempts), newest first, at most `window` of them): a delivery not
    yet tried, or cancelled, counts neither way; a success ends the streak. And whether there
    may be more (every delivery read is in the streak)."""
    streak = 0
    for status, attempts in newest:
        if status == "succeeded":
            return streak, False
        if status == "cancelled" or attempts == 0:
            continue
        streak += 1
    return streak, len(newest) >= window and streak > 0


def address_of(url: str) -> str:
    """Where an endpoint is, without what identifies the receiver's own route or may carry its
    token: the scheme, host and port of its URL (what the office is shown)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
