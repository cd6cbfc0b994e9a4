"""One unit of work per request, and the request id.

A pure ASGI middleware. For writing methods it buffers the response, and commits the
request's session only if the response is a success — storing the idempotent answer in the
same transaction, sent with the COMMIT — so a client never sees a success for a change that
did not commit.
Errors roll back and answer with problem+json; unexpected exceptions are logged with their
traceback and answered with a 500 that says nothing about the internals.
Reads stream through (exports must not be buffered) and their session is closed at the end.
In sandbox mode each request first reads the sandbox clock (sandbox/service.py), and every
answer says the time it was judged by (`Voucher-Sandbox-Clock`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.voucher import driver, errors, secretbox
from services.voucher.apikeys.rules import Scope as KeyScope
from services.voucher.audit import service as audit
from services.voucher.clock import Clock, SandboxClock
from services.voucher.db import (
    Database,
    is_data_error,
    is_integrity_error,
    is_schema_missing,
    is_transient,
    is_unavailable,
)
from services.voucher.driver import Batch
from services.voucher.http import gate, ratelimit
from services.voucher.http.authenticate import (
    authenticate,
    bearer_credentials,
    client_address,
    early_refusal,
)
from services.voucher.http.language import content_language
from services.voucher.http.problems import (
    PROBLEM_MEDIA_TYPE,
    error_body,
    error_headers,
    internal_error_body,
    scope_language,
)
from services.voucher.http.throttle import REFUSAL_DELAY_SECONDS
from services.voucher.i18n import msg
from services.voucher.idempotency import service as idempotency
from services.voucher.observability import (
    REQUEST_ID,
    SchemaWatch,
    database_heads,
    migration_heads,
    new_request_id,
)
from services.voucher.sandbox import service as sandbox
from services.voucher.webhooks import service as webhooks

log = logging.getLogger("voucher.http")
#: How long a failing request waits to learn whether the database is at this build's revision.
SCHEMA_CHECK_SECONDS = 2
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestUnit:
    """The request's lazily opened session plus its idempotency claim, if any."""

    def __init__(self, database: Database, *, write: bool) -> None:
        self.database = database
        self.write = write
        self._session: AsyncSession | None = None
        self.claim: idempotency.Claim | None = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            self._session = self.database.session(write=self.write)
        return self._session

    async def settle_claim(self) -> None:
        if self._session is not None:
            await driver.send_pending(self._session)

    async def commit(self, batch: Batch | None = None) -> None:
        if self._session is not None:
            await self.database.commit(self._session, batch)

    async def close(self) -> None:
        """Roll back whatever was not committed and return the connection. A rollback that
        fails (the connection was lost) leaves nothing to undo: the database ended the
        transaction with the connection; the connection is dropped, and the request is still
        answered as a problem."""
        if self._session is not None:
            session, self._session = self._session, None
            try:
                await session.close()
            except Exception:
                log.warning("rollback failed; dropping the request's connection", exc_info=True)
                await session.invalidate()


def discard(scope: Scope) -> None:
    """Roll the request's transaction back even when it succeeds: an answer computed by the
    code that would make the change (a subsidy quote is a hold never committed)."""
    scope["state"]["discard"] = True


def after_commit(scope: Scope, work: Callable[[], Awaitable[Any]]) -> None:
    """Run `work` once the request's transaction has committed (and SQLite's write lock is let
    go), before the answer is sent, as the system's doing; never if the request fails. An
    error in it is logged: the change it follows stands."""
    scope["state"].setdefault("after_commit", []).append(work)


async def _run_after_commit(scope: Scope) -> None:
    if not scope["state"].get("committed"):
        return
    with audit.as_system():
        for work in scope["state"].get("after_commit", ()):
            try:
                await work()
            except Exception:
                log.exception("work after the commit of %s %s failed", scope["method"], scope.get("path", ""))


def _header(scope: Scope, name: bytes) -> str | None:
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", ())
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _with_headers(start: Message, extra: list[tuple[bytes, bytes]], drop: set[bytes]) -> Message:
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in drop]
    return {**start, "headers": headers + extra}


def is_console(scope: Scope) -> bool:
    """A request for the web console (console/web.py), which opens no transaction of its own:
    each API call it makes comes back through this middleware as a request of its own, with
    its key, body limit and unit of work. Only the console's mount matches these paths, so
    no API route is reached this way (tests/console/test_security.py)."""
    path: str = scope.get("path", "")
    return path == "/console" or path.startswith("/console/")


#: A writing request whose body took longer than this to arrive has its key checked again.
RECHECK_AFTER_SECONDS = 1.0


class UnitOfWorkMiddleware:
    def __init__(self, app: ASGIApp, database: Database, clock: Clock) -> None:
        self.app = app
        self.database = database
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_console(scope):
            await self.app(scope, receive, send)
            return
        if isinstance(self.clock, SandboxClock):
            send = self._stamped(send, self.clock)
        request_id = new_request_id(_header(scope, b"x-request-id"))
        token = REQUEST_ID.set(request_id)
        # Authentication and the idempotency claim set these for the request's audit events;
        # resetting here keeps one request's actor out of the next (tests run many in a task).
        actor_token, key_token = audit.ACTOR.set(None), audit.IDEMPOTENCY_KEY.set(None)
        vetted_token = None  # set for a webhook registration only
        verified_token = None  # set for a verification of the audit chain only
        unit = RequestUnit(self.database, write=scope["method"] not in SAFE_METHODS)
        scope.setdefault("state", {})["unit"] = unit
        rid = (b"x-request-id", request_id.encode())
        try:
            if isinstance(self.clock, SandboxClock):
                try:  # another process may have moved it
                    await sandbox.refresh(self.database, self.clock)
                except Exception as exc:  # a lost database is a 503 here too, never a 500
                    await self._send(send, *(await self._failure(exc, scope)), scope, rid)
                    return
            try:
                gate.check_headers(scope)
            except errors.DuplicateHeader as exc:
                if unit.write and gate.has_body(scope):
                    scope["state"]["close_connection"] = True  # what it sent is never read
                await self._send(send, *(await self._failure(exc, scope)), scope, rid)
                return
            refused = await early_refusal(self.database, scope, self.clock())
            if refused is not None:  # a flood of unknown keys from a throttled address
                await asyncio.sleep(REFUSAL_DELAY_SECONDS)
                await self._send(send, *(await self._failure(refused, scope)), scope, rid)
                return
            if unit.write and (stale := await self._schema_refusal()) is not None:
                if gate.has_body(scope):
                    scope["state"]["close_connection"] = True  # what it sent is never read
                await self._send(send, *(await self._failure(stale, scope)), scope, rid)
                return
            if unit.write:
                try:  # the key first, then the (bounded) body, before any transaction or lock
                    receive = await self._admit(scope, receive)
                except gate.Disconnected:
                    return
                except Exception as exc:
                    await self._send(send, *(await self._failure(exc, scope)), scope, rid)
                    return
                if webhooks.registers_url(scope) and "body" in scope["state"] and webhooks.may_register(
                        scope["state"].get("actor")):
                    vetted_token = webhooks.VETTED.set(
                        await webhooks.vet_ahead(scope["state"]["body"], self.database.settings))
                if audit.verifies(scope) and "body" in scope["state"] and _header(scope, b"idempotency-key") and (
                        actor := scope["state"].get("actor")) is not None and KeyScope.AUDIT_VERIFY in actor.scopes:
                    try:
                        verified_token = audit.AHEAD.set(await audit.verify_ahead(
                            self.database, scope["app"].state.signer, scope["state"]["body"]))
                    except Exception:  # the route verifies, or answers the failure, as it would have
                        log.warning("a verification ahead of its request failed; the route verifies", exc_info=True)
                # SQLite: the process's writers queue in order (db.py, `writer`); the answer is
                # sent once the write lock is let go, so a slow reader never holds it.
                outgoing: list[Message] = []

                async def keep(message: Message) -> None:
                    outgoing.append(message)

                async with self.database.writer():
                    await self._buffered(scope, receive, keep, unit, rid)
                if "after_commit" in scope["state"]:
                    await unit.close()
                    await _run_after_commit(scope)
                for message in outgoing:
                    await send(message)
            else:
                await self._streamed(scope, receive, send, unit, rid)
        finally:
            await unit.close()
            REQUEST_ID.reset(token)
            audit.ACTOR.reset(actor_token)
            audit.IDEMPOTENCY_KEY.reset(key_token)
            if vetted_token is not None:
                webhooks.VETTED.reset(vetted_token)
            if verified_token is not None:
                audit.AHEAD.reset(verified_token)

    async def _schema_refusal(self) -> errors.NotReady | None:
        """503 `not_ready` for a write while the database is at another revision than this
        build's head (an older process left running across an upgrade): nothing is read or
        written. Reads are still answered."""
        watch: SchemaWatch | None = self.database.info.get("schema_watch")
        if watch is None or (mismatch := await watch.mismatch(self.database)) is None:
            return None
        found, wanted = mismatch  # logged once when the watch saw it (observability.SchemaWatch)
        return errors.NotReady(msg(
            "this process was built for the database at revision {wanted}, but it is at {found}: it writes nothing "
            "until it is restarted with the build the database was migrated for, or the operator runs "
            "`voucher db upgrade`",
            wanted=", ".join(wanted), found=", ".join(found) or msg("no revision (never migrated)")))

    @staticmethod
    def _stamped(send: Send, clock: SandboxClock) -> Send:
        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                stamp = clock().isoformat().replace("+00:00", "Z").encode()
                message = _with_headers(message, [(b"voucher-sandbox-clock", stamp)], {b"voucher-sandbox-clock"})
            await send(message)
        return stamped

    async def _admit(self, scope: Scope, receive: Receive) -> Receive:
        """A writing request's key, checked before its body is read; then its body, read whole
        up to the route's limit (http/gate.py). Without any key the body is never read: the
        app sees an empty one, and the route's authentication answers 401 (a route that does
        not exist or allow the method still answers 404 or 405)."""
        settings = self.database.settings
        gate.check_declared(scope, gate.limit_for(settings, scope.get("path", ""), None))
        authorization = _header(scope, b"authorization")
        if bearer_credentials(authorization) is None:
            if gate.has_body(scope):
                scope["state"]["close_connection"] = True  # what it sent is never read
            return gate.empty_body
        actor = await authenticate(self.database, authorization, self.clock(), client_address(scope))
        scope["state"]["actor"] = actor
        await ratelimit.count(self.database.info.get("rate_limiter"), scope, actor)  # before the body too
        limit = gate.limit_for(settings, scope.get("path", ""), actor)
        gate.check_declared(scope, limit)
        started = time.monotonic()
        body = await gate.read_body(receive, limit, scope)
        if time.monotonic() - started > RECHECK_AFTER_SECONDS:
            # The key may have been revoked or have expired while the body trickled in: a leaked
            # key had finished writes tens of seconds after its revocation (an independent
            # review, December 2026). A body read at once is judged by the key as it was a
            # moment ago, as a request sent just before the revocation would be.
            scope["state"]["actor"] = await authenticate(
                self.database, authorization, self.clock(), client_address(scope))
        return body

    async def _streamed(
        self, scope: Scope, receive: Receive, send: Send, unit: RequestUnit, rid: Any
    ) -> None:
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = _with_headers(message, [rid], set())
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:
                raise
            await self._send(send, *(await self._failure(exc, scope)), scope, rid)

    async def _buffered(
        self, scope: Scope, receive: Receive, send: Send, unit: RequestUnit, rid: Any
    ) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, capture)
        except Exception as exc:
            await unit.close()
            await self._send(send, *(await self._failure(exc, scope)), scope, rid)
            return

        assert start is not None
        status = int(start["status"])
        body = b"".join(chunks)
        answer = _answer(start, status, body)
        box = secretbox.keyring(self.database.settings)
        if unit.claim is not None:
            answer = idempotency.sealed(answer, unit.claim, box)  # as it is stored; `body` is what is sent
        if status < 400 and not scope["state"].get("replayed") and not scope["state"].get("discard"):
            try:
                if unit.claim is not None:
                    await unit.settle_claim()  # a claim meant to ride with reads the handler never sent
                await unit.commit(idempotency.completion(unit.claim, answer) if unit.claim else None)
                scope["state"]["committed"] = True
            except idempotency.Replay as replay:  # the key was answered before: that is the answer
                await unit.close()
                try:
                    start, status, body = _replayed(replay.response, box)
                except errors.SecretUnavailable as exc:
                    await self._send(send, *(await self._failure(exc, scope)), scope, rid)
                    return
            except Exception as exc:
                await unit.close()
                await self._send(send, *(await self._failure(exc, scope)), scope, rid)
                return
        else:
            await unit.close()
            if unit.claim is not None and scope["state"].get("store_error_response") and status < 500:
                try:
                    stored = await idempotency.store_refusal(self.database, unit.claim, answer)
                except Exception as exc:
                    await self._send(send, *(await self._failure(exc, scope)), scope, rid)
                    return
                if stored is not answer:  # another attempt answered first: that is the answer
                    try:
                        start, status, body = _replayed(stored, box)
                    except errors.SecretUnavailable as exc:
                        await self._send(send, *(await self._failure(exc, scope)), scope, rid)
                        return
        closing = [(b"connection", b"close")] if scope["state"].get("close_connection") else []
        start = _with_headers(
            start,
            [rid, (b"content-length", str(len(body)).encode()), *closing],
            {b"content-length", b"x-request-id"},
        )
        await send(start)
        await send({"type": "http.response.body", "body": body})

    async def _schema_at_head(self) -> bool:
        """Whether the database's revision is this build's (False when that cannot be read)."""
        try:
            found = await asyncio.wait_for(database_heads(self.database), SCHEMA_CHECK_SECONDS)
        except Exception:  # noqa: BLE001 - a database that cannot say is not known to be at head
            return False
        return found == migration_heads()

    async def _failure(self, exc: Exception, scope: Scope) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """An exception that escaped the handlers, as a problem (never a traceback), with the
        headers it needs."""
        path = scope.get("path", "")
        if isinstance(exc, errors.DomainError):
            err = exc
        elif is_unavailable(exc):
            log.warning("database unavailable on %s %s: %s", scope["method"], path, exc.__class__.__name__)
            err = errors.DatabaseUnavailable(
                msg("the connection to the database was lost or could not be opened. If it was lost while "
                    "the change was being committed, the change may have been made: send the same request "
                    "again with the same Idempotency-Key, which answers with the first outcome"),
            )
        elif is_schema_missing(exc) and not await self._schema_at_head():
            # An operator's mistake, not the request's: a server started on a database never
            # migrated, or behind this build (a deployment that skipped `voucher db upgrade`).
            # A database at this build's revision makes it our bug: a 500, traceback logged.
            log.error("the database lacks a table or column this build needs, on %s %s: %s", scope["method"], path,
                      str(getattr(exc, "orig", None) or exc).splitlines()[0][:200])
            err = errors.NotReady(
                msg("the database is not migrated to this version of the service (a table or column it needs is "
                    "missing): the operator must run `voucher db upgrade`; nothing was changed"),
            )
        elif is_transient(exc):
            err = errors.ConcurrentUpdate()
        elif is_data_error(exc):
            err = errors.UnstorableValue(
                msg("a value in the request cannot be stored: text may not contain NUL characters "
                    "and numbers must fit in 64 bits; nothing was changed"),
            )
        elif is_integrity_error(exc):
            err = errors.Conflict(
                msg("the change conflicts with data written at the same time "
                    "(a duplicate or a reference that no longer exists); nothing was changed"),
            )
        else:
            log.error("unhandled error on %s %s", scope["method"], path, exc_info=exc)
            return 500, internal_error_body(path, scope_language(scope)), []
        log.info("refused %s %s: %s", scope["method"], path, err.code)
        headers = [(k.lower().encode(), v.encode()) for k, v in error_headers(err).items()]
        if err.status in (408, 413) or scope.get("state", {}).get("close_connection"):
            headers.append((b"connection", b"close"))  # the body it sent is not read: end the connection
        return err.status, error_body(err, language=scope_language(scope), instance=path), headers

    async def _send(self, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], scope: Scope,
                    rid: Any) -> None:
        """A problem response, in the request's language."""
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-language", content_language(scope_language(scope)).encode()),
                    (b"content-length", str(len(body)).encode()),
                    rid,
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _replayed(stored: idempotency.StoredResponse, box: secretbox.Keyring) -> tuple[Message, int, bytes]:
    stored = idempotency.opened(stored, box)
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (stored.headers or {}).items()]
    if stored.content_type:
        headers.append((b"content-type", stored.content_type.encode("latin-1")))
    headers.append((b"idempotent-replayed", b"true"))
    return {"type": "http.response.start", "status": stored.status, "headers": headers}, stored.status, stored.body


def _answer(start: Message, status: int, body: bytes) -> idempotency.StoredResponse:
    """The response as the idempotency record keeps it: status, body and its own headers."""
    content_type, kept = None, {}
    for key, value in start.get("headers", []):
        name = key.decode("latin-1").lower()
        if name == "content-type":
            content_type = value.decode("latin-1")
        elif name in idempotency.REPLAYED_HEADERS:
            kept[name] = value.decode("latin-1")
    return idempotency.StoredResponse(status, body, content_type, kept)
