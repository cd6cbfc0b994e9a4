"""Webhook endpoints (a subscriber's own) and the sender that delivers their events.

Deliveries are at-least-once: the same event keeps its `webhook-id` across retries and manual
redeliveries, so a receiver drops repeats by that id. Only the registered URL is ever called:
no redirects are followed, and every send re-resolves the host and refuses non-public
addresses the operator has not allowed, then connects to the very address it checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import socket
import time
import uuid
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from services.voucher import metrics, secretbox
from services.voucher.actor import Actor
from services.voucher.apikeys import repository as principals
from services.voucher.apikeys.rules import Scope
from services.voucher.audit import service as audit
from services.voucher.db import Database, PageRequest
from services.voucher.errors import (
    NotFound,
    TooManyWebhookEndpoints,
    WebhookEndpointDisabled,
    WebhookUrlRefused,
)
from services.voucher.i18n import Status, msg
from services.voucher.ids import uuid7
from services.voucher.settings import Settings
from services.voucher.tables import WebhookEndpoint
from services.voucher.webhooks import repository
from services.voucher.webhooks.rules import (
    ROTATION_OVERLAP,
    DeliveryStatus,
    EndpointStatus,
    UnsafeUrl,
    address_allowed,
    address_of,
    check_url_shape,
    default_port,
    failing_streak,
    in_allowed_networks,
    is_literal,
    new_secret,
    retry_delay,
    signature_header,
    signing_secrets,
    still_signing,
)

log = logging.getLogger("voucher.webhooks")
USER_AGENT = "voucher-service-webhooks/1"


def _not_public(host: str) -> UnsafeUrl:
    """One refusal for a name that does not resolve and for one that resolves somewhere it may
    not go, naming no address: the text must not tell a caller what our DNS knows."""
    return UnsafeUrl(msg("the host {host!r} does not resolve to a public address (loopback, private, link-local "
                         "and other special-purpose addresses are refused unless the operator allows them)", host=host))


#: How long a registration waits for the URL's host to resolve (a resolver that does not
#: answer makes glibc wait 5 s per try and server).
RESOLVE_SECONDS = 3.0


async def resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to (an IP literal resolves to itself)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise UnsafeUrl(msg("the host {host!r} did not resolve within {seconds} s", host=host,
                            seconds=RESOLVE_SECONDS)) from exc
    except (socket.gaierror, UnicodeError) as exc:
        raise _not_public(host) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))  # the resolver's order (RFC 6724), deduplicated


async def vet(url: str, settings: Settings) -> tuple[str, str, int, list[str]]:
    """(scheme, host, port, addresses) of a URL that may be called now, else UnsafeUrl.
    The host is the one httpx will connect to (IDNA-encoded), so what is checked is what is
    called. Plain http only when every address lies in an operator-allowed network."""
    allowed = settings.webhook_allowed_networks
    scheme, _, port = check_url_shape(url, allow_http=True)
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")  # IDNA 2008, as httpx sends it: never the resolver's own encoding
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:  # httpx's own words are English
        if isinstance(exc, UnicodeError) or "IDNA" in str(exc):  # httpx wraps idna's refusal
            raise UnsafeUrl(msg("the URL's host is not a domain name IDNA 2008 can write (an empty label, "
                                "a soft hyphen or a character no name may hold)")) from exc
        raise UnsafeUrl(msg("not a valid URL; check its scheme, host and port")) from exc
    if not host:
        raise UnsafeUrl(msg("the URL has no host"))
    if (parsed.port or default_port(scheme)) != port:  # the port vetted must be the port httpx calls
        raise UnsafeUrl(msg("not a valid URL; check its scheme, host and port"))
    addresses = await resolve(host, port)
    refused = [a for a in addresses if not address_allowed(a, allowed)]
    if refused or not addresses:
        log.info("webhook URL refused: %s resolves to %s", host, ", ".join(addresses) or "nothing")
        if is_literal(host):  # the caller wrote the address: naming it tells them nothing new
            raise UnsafeUrl(msg("{host} is not a public address (loopback, private, link-local and other "
                                "special-purpose addresses are refused unless the operator allows them)", host=host))
        raise _not_public(host)
    if scheme == "http" and not all(in_allowed_networks(a, allowed) for a in addresses):
        raise UnsafeUrl(msg("the URL must be https:// (plain http only to an operator-allowed network)"))
    return scheme, host, port, addresses


#: A URL vetted for this request before its unit of work began: (url, None or the refusal).
VETTED: ContextVar[tuple[str, UnsafeUrl | None] | None] = ContextVar("webhook_url_vetted", default=None)


def registers_url(scope: MutableMapping[str, Any]) -> bool:
    """A request that may register a webhook URL: its create and its update."""
    path, method = str(scope.get("path", "")), scope.get("method")
    return path.startswith("/v1/webhook-endpoints") and (
        (method == "POST" and path.rstrip("/") == "/v1/webhook-endpoints") or method == "PATCH")


def may_register(actor: Actor | None) -> bool:
    """Whether a request's key may register a URL at all: a key without `webhooks:manage` is
    refused by the route, and must not make the service look its host up first (any key had
    had the service resolve names of its choosing, and time the answer; an independent review)."""
    return actor is not None and Scope.WEBHOOKS_MANAGE in actor.scopes


async def vet_ahead(body: bytes, settings: Settings) -> tuple[str, UnsafeUrl | None] | None:
    """Check the URL a registration's body names before its unit of work begins, so waiting on
    DNS holds no transaction and, on SQLite, not the process's write lock (a tenant's slow name
    server had held every other write; an independent review). The route uses the outcome
    (`_checked`); a body it cannot read here is left to the route to refuse."""
    try:
        url = json.loads(body).get("url") if body else None
    except (ValueError, AttributeError, RecursionError):  # nested past the parser's depth: the route's 400
        return None
    if not isinstance(url, str) or len(url) > 2_048:
        return None
    try:
        await vet(url, settings)
    except UnsafeUrl as exc:
        return url, exc
    except Exception:  # a shape the schema refuses first: the route says so
        return None
    return url, None


async def _checked(url: str, settings: Settings) -> str:
    ahead = VETTED.get()
    try:
        if ahead is not None and ahead[0] == url:
            if ahead[1] is not None:
                raise ahead[1]
        else:
            await vet(url, settings)
    except UnsafeUrl as exc:
        raise WebhookUrlRefused(exc.message) from exc
    return url


def _public(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """What the audit trail keeps of an endpoint. Not its URL whole: a receiver's token often
    rides in its path or query (`?token=…`, a chat service's `/hooks/<secret>`), and the chain
    keeps what it records for good. The address (scheme, host, port) and the SHA-256 of the
    whole URL: a change of URL shows, and whoever holds a URL can check it was this one."""
    return {**audit.fields(endpoint, "event_types description status enterprise_id provider_id"),
            "url": address_of(endpoint.url), "url_sha256": hashlib.sha256(endpoint.url.encode()).hexdigest()}


async def create(session: AsyncSession, actor: Actor, data: dict[str, Any], settings: Settings,
                 now: datetime) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint for the caller itself; its secret is returned once, here (the row
    keeps it sealed). An owner keeps at most `max_webhook_endpoints_per_owner`: the publisher
    writes each of its events once per endpoint, in the one transaction that publishes everyone's,
    so thousands of one tenant's endpoints had held every tenant's events for minutes (an
    independent review)."""
    url = await _checked(data["url"], settings)
    limit = settings.max_webhook_endpoints_per_owner
    await principals.lock_principal(session, actor.principal_id)  # as a key's creation counts its keys
    kept = await repository.endpoints_kept(session, actor.enterprise_id, actor.provider_id)
    if kept >= limit:
        raise TooManyWebhookEndpoints(
            msg("you already keep {kept} webhook endpoints, the most one owner may keep is {limit}; delete one "
                "you no longer use, or subscribe one endpoint to more event types", kept=kept, limit=limit),
            endpoints=kept, max_endpoints=limit)
    secret = new_secret()
    endpoint = WebhookEndpoint(
        enterprise_id=actor.enterprise_id, provider_id=actor.provider_id,
        url=url, event_types=sorted(set(data["event_types"])),
        description=data.get("description"), status=EndpointStatus.ENABLED.value, secret="",
        created_at=now, updated_at=now,
    )
    endpoint.secret = secretbox.keyring(settings).seal(secret, secretbox.webhook_secret_purpose(endpoint.id))
    await repository.add(session, endpoint)
    await audit.record(session, "webhook_endpoint.created", "webhook_endpoint", endpoint.id, now=now,
                       after=_public(endpoint), enterprise_id=endpoint.enterprise_id,
                       provider_id=endpoint.provider_id)
    return endpoint, secret


async def get(session: AsyncSession, actor: Actor, endpoint_id: uuid.UUID, *, for_update: bool = False) -> WebhookEndpoint:
    """An endpoint of the caller's own; anyone else's is a 404, never a 403 (no probing)."""
    endpoint = await repository.get(session, endpoint_id, for_update=for_update)
    if endpoint is None or (endpoint.enterprise_id, endpoint.provider_id) != (actor.enterprise_id, actor.provider_id):
        raise NotFound(msg("no webhook endpoint with id {endpoint_id}", endpoint_id=endpoint_id))
    return endpoint


async def list_endpoints(session: AsyncSession, actor: Actor, page: PageRequest) -> tuple[list[WebhookEndpoint], uuid.UUID | None]:
    rows = await repository.list_owned(session, actor.enterprise_id, actor.provider_id, page)
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, rows[-1].id if more else None


async def update(session: AsyncSession, actor: Actor, endpoint_id: uuid.UUID, data: dict[str, Any],
                 check_version: Callable[[int], None], settings: Settings, now: datetime) -> WebhookEndpoint:
    endpoint = await get(session, actor, endpoint_id, for_update=True)
    check_version(endpoint.version)
    before = _public(endpoint)
    if "url" in data:
        endpoint.url = await _checked(data["url"], settings)
    if "event_types" in data:
        endpoint.event_types = sorted(set(data["event_types"]))
    if "description" in data:
        endpoint.description = data["description"]
    if "status" in data and data["status"] != endpoint.status:
        endpoint.status = data["status"]
        if endpoint.status == EndpointStatus.DISABLED.value:
            await repository.pause_pending(session, endpoint.id)
        else:
            await repository.resume_pending(session, endpoint.id, now)
    before, after = audit.changes(before, _public(endpoint))
    if after:
        endpoint.updated_at = now
        endpoint.version += 1
        await audit.record(session, "webhook_endpoint.updated", "webhook_endpoint", endpoint.id, now=now,
                           before=before, after=after, enterprise_id=endpoint.enterprise_id,
                           provider_id=endpoint.provider_id)
    await session.flush()
    return endpoint


async def delete(session: AsyncSession, actor: Actor, endpoint_id: uuid.UUID, now: datetime) -> None:
    """Stop calling it: the endpoint is kept (its log stays readable to auditors through the
    audit trail) but hidden, and its pending deliveries are cancelled."""
    endpoint = await get(session, actor, endpoint_id, for_update=True)
    before = endpoint.status
    endpoint.status = EndpointStatus.DELETED.value
    endpoint.updated_at = now
    endpoint.version += 1
    cancelled = await repository.cancel_pending(session, endpoint.id)
    await audit.record(session, "webhook_endpoint.deleted", "webhook_endpoint", endpoint.id, now=now,
                       before={"status": before}, after={"status": endpoint.status, "cancelled_deliveries": cancelled},
                       enterprise_id=endpoint.enterprise_id, provider_id=endpoint.provider_id)
    await session.flush()


async def rotate_secret(session: AsyncSession, actor: Actor, endpoint_id: uuid.UUID, settings: Settings,
                        now: datetime) -> tuple[WebhookEndpoint, str]:
    """A new secret signs from now on; the old one also signs for ROTATION_OVERLAP, so the
    receiver can switch without dropping a delivery. The new secret is returned once, here;
    the row keeps every secret sealed (the old ones as they were sealed)."""
    endpoint = await get(session, actor, endpoint_id, for_update=True)
    secret = new_secret()
    endpoint.older_secrets = still_signing(endpoint.previous_secret, endpoint.previous_secret_expires_at,
                                           endpoint.older_secrets, now) or None
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
    endpoint.secret = secretbox.keyring(settings).seal(secret, secretbox.webhook_secret_purpose(endpoint.id))
    endpoint.updated_at = now
    endpoint.version += 1
    await audit.record(session, "webhook_endpoint.secret_rotated", "webhook_endpoint", endpoint.id, now=now,
                       after={"previous_secret_expires_at": endpoint.previous_secret_expires_at},
                       enterprise_id=endpoint.enterprise_id, provider_id=endpoint.provider_id)
    await session.flush()
    return endpoint, secret


async def deliveries(session: AsyncSession, actor: Actor, endpoint_id: uuid.UUID, page: PageRequest,
                     status: str | None) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
    """The endpoint's delivery log, newest first, each with its attempts."""
    await get(session, actor, endpoint_id)
    rows = await repository.deliveries(session, endpoint_id, page, status)
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    attempts = await repository.attempts_of(session, [r["id"] for r in rows])
    for row in rows:
        row["attempt_log"] = attempts[row["id"]]
    return rows, rows[-1]["id"] if more else None


async def redeliver(session: AsyncSession, actor: Actor, endpoint_id: uuid.UUID, delivery_id: uuid.UUID,
                    now: datetime) -> dict[str, Any]:
    """Send an event again, with a fresh round of retries; same `webhook-id`, so a receiver that
    has it already can tell. The endpoint is locked first, as a pause or a deletion locks it before
    its deliveries: a deletion that came between the read and the delivery's lock had left the
    delivery pending on a deleted endpoint, never sent and never cancelled (an independent review)."""
    endpoint = await get(session, actor, endpoint_id, for_update=True)
    if endpoint.status != EndpointStatus.ENABLED.value:
        raise WebhookEndpointDisabled(msg("endpoint {endpoint_id} is {status}", endpoint_id=endpoint_id,
                                          status=Status(endpoint.status)), current_status=endpoint.status)
    found = await repository.delivery(session, endpoint_id, delivery_id, for_update=True)
    if found is None:
        raise NotFound(msg("no delivery with id {delivery_id} for this endpoint", delivery_id=delivery_id))
    await repository.redeliver(session, delivery_id, now)
    await audit.record(session, "webhook_delivery.redelivered", "webhook_delivery", delivery_id, now=now,
                       before={"status": found["status"], "attempts": found["attempts"]},
                       after={"status": DeliveryStatus.PENDING.value, "attempts": 0},
                       enterprise_id=endpoint.enterprise_id, provider_id=endpoint.provider_id)
    refreshed = await repository.delivery(session, endpoint_id, delivery_id)
    assert refreshed is not None
    refreshed["attempt_log"] = (await repository.attempts_of(session, [delivery_id]))[delivery_id]
    return refreshed


# -- sending ---------------------------------------------------------------------------------------


def payload(row: dict[str, Any]) -> bytes:
    """The body Standard Webhooks describes: type, timestamp, data."""
    occurred = row["occurred_at"]
    return json.dumps(
        {"type": row["type"], "timestamp": occurred.isoformat().replace("+00:00", "Z"), "data": row["data"]},
        separators=(",", ":"), ensure_ascii=False, sort_keys=True,
    ).encode("utf-8")


#: A delivery's error when the service cannot open its endpoint's current secret: the service's
#: fault, not the receiver's, so the attempt does not count against VOUCHER_WEBHOOK_MAX_ATTEMPTS.
UNOPENED = "not sent: the service cannot open this endpoint's signing secret (its operator must restore the key)"


def _signing_secrets(row: dict[str, Any], box: secretbox.Keyring, now: datetime) -> list[str]:
    """The secrets that sign a delivery now, opened: CannotOpen if the current one does
    not open; one still in its overlap that does not open is left out (logged): a receiver
    that has switched to the current secret verifies, one that has not yet would not anyway."""
    purpose = secretbox.webhook_secret_purpose(row["endpoint_id"])
    current, *overlapping = signing_secrets(row["secret"], row["previous_secret"],
                                            row["previous_secret_expires_at"], row["older_secrets"], now)
    opened = [box.open(current, purpose)]
    for secret in overlapping:
        try:
            opened.append(box.open(secret, purpose))
        except secretbox.CannotOpen as exc:
            log.warning("webhook delivery %s signed without a replaced secret of endpoint %s that does not open: %s",
                        row["id"], row["endpoint_id"], exc)
    return opened


def _host_header(host: str, port: int, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == (443 if scheme == "https" else 80) else f"{shown}:{port}"


async def _send(client: httpx.AsyncClient, row: dict[str, Any], settings: Settings, now: datetime) -> tuple[int | None, str | None]:
    """One POST to the registered URL, pinned to one of the addresses that were checked: the
    next is tried only when the connection could not be made (nothing was sent)."""
    try:
        scheme, host, port, addresses = await vet(row["url"], settings)
    except UnsafeUrl as exc:
        return None, f"refused: {exc}"
    try:
        signing = _signing_secrets(row, secretbox.keyring(settings), now)
    except secretbox.CannotOpen as exc:
        # Nothing is sent unsigned or signed wrong. The owner reads the delivery's error; the
        # operator the log, which says which key is missing (docs/security.md, "Sealed secrets").
        log.error("webhook delivery %s not sent: endpoint %s's signing secret does not open: %s",
                  row["id"], row["endpoint_id"], exc)
        return None, UNOPENED
    body = payload(row)
    message_id = str(row["event_id"])
    stamp = int(time.time())  # receivers check it against their own clock, not the service's
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": _host_header(host, port, scheme),
        "webhook-id": message_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature_header(signing, message_id, stamp, body),
    }
    error: str | None = None
    # Each address may take its share of the time to connect: the whole send is cut off at the
    # timeout, so a first address that drops packets had used it all and the next was never
    # tried (a review of this fix). Reading the answer may take the whole timeout still.
    limit = settings.webhook_timeout_seconds
    timeout = httpx.Timeout(limit, connect=limit / len(addresses)) if len(addresses) > 1 else httpx.USE_CLIENT_DEFAULT
    for address in addresses:  # every checked address in the resolver's order, as any client would
        target = httpx.URL(row["url"]).copy_with(host=address)
        try:
            async with client.stream("POST", target, content=body, headers=headers, extensions=extensions,
                                     timeout=timeout) as response:
                status = response.status_code
            break
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing was sent: the next address may answer (a dual-stack receiver seen from a
            # worker with no IPv6 route; the resolver lists it first or not, any client tries on).
            error = "timed out" if isinstance(exc, httpx.TimeoutException) else f"{type(exc).__name__}: {exc}"[:500]
        except httpx.TimeoutException:
            return None, "timed out"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
    else:
        return None, error
    if 200 <= status < 300:
        return status, None
    return status, f"HTTP {status}"


async def deliver_due(database: Database, now: datetime, *, client: httpx.AsyncClient | None = None,
                      clock: Callable[[], datetime] | None = None, tally: dict[str, int] | None = None) -> int:
    """The `deliver-webhooks` job: send what is due, record each attempt, schedule retries.
    Returns the number of attempts made.

    A pool of `webhook_concurrency` sends. Each free slot claims the next due delivery under a
    lease of its own, committed before the send, and every send is cut off at the timeout: a
    claimed delivery is therefore always settled (or its worker dead) before its lease ends, and
    no other worker sends it twice. Fair between tenants: an owner (an enterprise, a provider)
    has one send in flight at a time in a worker, however many endpoints it has (its deliveries
    go in order), and an endpoint that did not take a delivery (a timeout, a refused
    connection, or an answer other than 2xx) gets no other send this run, so a tenant whose
    receivers hang holds one slot for one timeout per run, never the others' turns (an
    independent review: waves gathered whole held every tenant behind one dead receiver for
    about 125 s), and a receiver that answers 503 at once is not sent its whole backlog back to
    back, each send refused (a later review: a load balancer in front of a receiver that is
    down). New claims stop after one timeout, so a run lasts at most about two.
    `clock` gives each claim's time (tests); by default it is `now` plus the time spent so far.
    `tally`, when given, gets `taken`: the sends a receiver took (2xx), which the worker's loop
    reads as progress (a send never made, its secret unopened, or refused, is none)."""
    settings = database.settings
    timeout = settings.webhook_timeout_seconds
    lease = timedelta(seconds=timeout * 2 + 30)
    started = time.monotonic()

    def current() -> datetime:
        return clock() if clock is not None else now + timedelta(seconds=time.monotonic() - started)

    owned = client is None
    # A connection per send, never kept: connections go to the vetted address with the
    # receiver's name as SNI, and a pool keyed by address could carry one tenant's event over a
    # connection opened and verified for another's name on a shared address. As many as the
    # sends in flight may be (httpx's default of 100, below webhook_concurrency's 256, had let
    # sends wait for a connection and be recorded as timeouts of receivers never contacted; an
    # independent review, December 2026).
    client = client or httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False,
        limits=httpx.Limits(max_connections=settings.webhook_concurrency, max_keepalive_connections=0))
    total = 0
    busy: set[uuid.UUID] = set()  # owners (enterprises, providers) with a send in flight
    failed: set[uuid.UUID] = set()  # endpoints that did not take a delivery in this run
    sending: dict[asyncio.Task[bool], tuple[uuid.UUID, uuid.UUID]] = {}
    counts = tally if tally is not None else {}
    counts["taken"] = 0

    async def settle_one() -> None:
        done, _ = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            endpoint, owner = sending.pop(task)
            busy.discard(owner)
            if task.result():
                counts["taken"] += 1
            else:
                failed.add(endpoint)

    try:
        while total < settings.webhook_batch_size and time.monotonic() - started < timeout:
            free = min(settings.webhook_concurrency - len(sending), settings.webhook_batch_size - total)
            if free <= 0:
                await settle_one()
                continue
            at, lease_id = current(), uuid7()
            async with database.unit_of_work() as session:
                due = await repository.claim_due(session, at, at + lease, free, lease_id,
                                                 skip_endpoints=failed, skip_owners=busy)
            for row in due:
                busy.add(row["owner_id"])
                task = asyncio.create_task(_attempt(database, client, row, lease_id, current))
                sending[task] = (row["endpoint_id"], row["owner_id"])
            total += len(due)
            if not due:
                if not sending:
                    break
                await settle_one()  # an owner that frees up may have more due
        while sending:
            await settle_one()
    except BaseException:
        # A claim that failed, or the job stopped: the sends already made finish and are recorded.
        # Cancelled, one the receiver already had would be recorded nowhere and sent again when
        # its lease ended (an independent review of the pool).
        await asyncio.gather(*sending, return_exceptions=True)
        raise
    finally:
        if owned:
            await client.aclose()
    return total


async def behind_seconds(database: Database, now: datetime) -> float:
    """How long the oldest delivery due to an enabled endpoint has waited at `now` (0: none is
    due): the delivery job's lag, which its own counters do not show (an independent review)."""
    async with database.unit_of_work(write=False) as session:
        oldest = await repository.oldest_due(session, now)
    return 0.0 if oldest is None else (now - oldest).total_seconds()


async def _attempt(database: Database, client: httpx.AsyncClient, row: dict[str, Any], lease_id: uuid.UUID,
                   current: Callable[[], datetime]) -> bool:
    """Send one delivery and settle it; nothing one subscriber's URL does can stop the others.
    Whether the receiver took it (2xx), rather than timing out, refusing to connect or
    answering an error."""
    settings = database.settings
    started = time.perf_counter()
    try:
        status_code, error = await asyncio.wait_for(_send(client, row, settings, current()),
                                                    timeout=settings.webhook_timeout_seconds)
    except TimeoutError:
        status_code, error = None, "timed out"
    except Exception as exc:  # an unexpected failure is this delivery's failed attempt, logged
        log.exception("webhook delivery %s failed unexpectedly", row["id"])
        status_code, error = None, f"failed: {type(exc).__name__}"
    elapsed = int((time.perf_counter() - started) * 1000)
    try:
        await _finish(database, row, lease_id, status_code, error, elapsed, current())
    except Exception:  # the lease runs out and another run retries it
        log.exception("webhook delivery %s: its attempt could not be recorded", row["id"])
    return error is None


async def _finish(database: Database, row: dict[str, Any], lease_id: uuid.UUID, status_code: int | None,
                  error: str | None, elapsed_ms: int, now: datetime) -> None:
    settings = database.settings
    succeeded = error is None
    if succeeded:
        values: dict[str, Any] = {"status": DeliveryStatus.SUCCEEDED.value, "delivered_at": now, "next_attempt_at": None}
        outcome = "succeeded"
    elif error == UNOPENED:  # kept until the key is back: nothing was sent, no receiver's attempt used
        delay = timedelta(seconds=settings.webhook_retry_base_seconds * random.uniform(0.8, 1.2))  # noqa: S311
        values = {"next_attempt_at": now + delay, "attempts": max(0, row["attempts"] - 1)}
        outcome = "retrying"
    elif row["attempts"] >= settings.webhook_max_attempts:
        values = {"status": DeliveryStatus.FAILED.value, "next_attempt_at": None}
        outcome = "failed"
    else:
        delay = retry_delay(row["attempts"], settings.webhook_retry_base_seconds,
                            settings.webhook_retry_cap_seconds, random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not a secret
        values = {"next_attempt_at": now + delay}
        outcome = "retrying"
    values.update(last_status_code=status_code, last_error=error)
    async with database.unit_of_work() as session:
        await repository.lock_delivery(session, row["id"])
        settled = await repository.finish(session, row["id"], lease_id, values)
        await repository.record_attempt(session, {  # the attempt happened, whoever settles the delivery
            "id": uuid7(), "delivery_id": row["id"], "attempted_at": now, "status_code": status_code,
            "duration_ms": elapsed_ms, "error": error,
        })
    metrics.webhook_delivery(outcome if settled else "superseded")
    if not succeeded:
        log.warning("webhook delivery %s to endpoint %s: %s (%s)", row["id"], row["endpoint_id"], error,
                    outcome if settled else "superseded by a newer attempt")


async def health(session: AsyncSession, actor: Actor, page: PageRequest) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
    """Each endpoint the actor may see with what its deliveries say: the office sees every
    tenant's (their addresses, never their paths, queries or secrets), an enterprise or a
    provider its own."""
    if actor.sees_everything:
        rows = await repository.list_owned(session, None, None, page)
    elif actor.enterprise_id is not None or actor.provider_id is not None:
        rows = await repository.list_owned(session, actor.enterprise_id, actor.provider_id, page)
    else:
        return [], None
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    names = await repository.owner_names(session, rows)
    found = []
    for endpoint in rows:
        seen = await repository.health_of(session, endpoint.id)
        streak, longer = failing_streak(seen.pop("newest"), repository.STREAK_WINDOW)
        owner_id = endpoint.enterprise_id or endpoint.provider_id
        assert owner_id is not None  # one owner, a constraint of the table
        found.append({
            "endpoint_id": endpoint.id, "owner": "enterprise" if endpoint.enterprise_id else "provider",
            "owner_id": owner_id, "owner_name": names.get(owner_id), "address": address_of(endpoint.url),
            "status": endpoint.status, **seen, "failing_streak": streak, "failing_streak_may_be_longer": longer,
        })
    return found, rows[-1].id if more else None


async def reseal(session: AsyncSession, box: secretbox.Keyring) -> tuple[int, list[str]]:
    """Seal every endpoint's secrets under the current key (`voucher secrets reseal`): those
    stored before sealing existed, and those sealed under a retired key. Returns how many
    endpoints changed and, for each secret that does not open, which endpoint holds it (left
    as it is). Neither version nor ETag moves: what the endpoint is has not changed."""
    changed, unreadable = 0, []
    for endpoint in await repository.all_for_update(session):
        purpose = secretbox.webhook_secret_purpose(endpoint.id)

        def again(value: str, endpoint: WebhookEndpoint = endpoint, purpose: str = purpose) -> str:
            if box.current_for(value):
                return value
            try:
                return box.seal(box.open(value, purpose), purpose)
            except secretbox.CannotOpen as exc:
                unreadable.append(f"webhook endpoint {endpoint.id}: {exc}")
                return value

        secret = again(endpoint.secret)
        previous = again(endpoint.previous_secret) if endpoint.previous_secret is not None else None
        older = [[again(value), ends] for value, ends in endpoint.older_secrets] if endpoint.older_secrets else None
        if (secret, previous, older) != (endpoint.secret, endpoint.previous_secret, endpoint.older_secrets or None):
            endpoint.secret, endpoint.previous_secret, endpoint.older_secrets = secret, previous, older
            changed += 1
    await session.flush()
    return changed, unreadable
