"""The Idempotency-Key dependency (protocol in idempotency/service.py). No `from __future__
import annotations` here: FastAPI must resolve the closure's annotations at definition time.

`idempotent(*scopes)` checks the key's scopes BEFORE claiming: a caller that may not make the
request never leaves a record behind (FastAPI resolves route-level dependencies before the
handler's own parameters, so the check has to live here).
"""

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from services.voucher import driver, errors, secretbox
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.audit import service as audit
from services.voucher.errors import IdempotencyKeyRequired
from services.voucher.http import problems
from services.voucher.http.auth import authenticating, authorised, bearer
from services.voucher.idempotency import service as idempotency

KEY_HEADER_DOC = (
    "Makes the request safe to retry: the same key and body return the first answer and "
    "change nothing again. Use a fresh UUID per intended operation. Kept for "
    "VOUCHER_IDEMPOTENCY_RETENTION_DAYS (default 90)."
)


async def _claim(request: Request, actor: Actor, key: str | None, *, required: bool, with_first_reads: bool) -> datetime:
    """The key is claimed first thing in the request's own transaction (protocol in
    idempotency/service.py): a replay or a refusal found there changes nothing. With
    `with_first_reads`, the claim rides in the same round trip as the handler's first reads
    (the value engine's), and is settled before the handler sees them. The request's instant
    (the claim's) is the answer."""
    if key is None:
        if required:
            raise IdempotencyKeyRequired()
        return request.app.state.clock()  # type: ignore[no-any-return]
    idempotency.check_key(key)
    settings = request.app.state.settings
    # the query string is UTF-8 here: http/gate.QueryText refuses any other before the app runs
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    unit = request.scope["state"]["unit"]
    fingerprint = idempotency.request_fingerprint(request.method, path, await request.body())
    now: datetime = request.app.state.clock()  # once the body is in
    fields = {
        "principal_id": actor.principal_id, "key": key, "method": request.method, "path": path,
        "fingerprint": fingerprint, "now": now, "retention_days": settings.idempotency_retention_days,
    }
    audit.IDEMPOTENCY_KEY.set(key)
    if with_first_reads:
        batch, settle = idempotency.claim_batch(unit.session, **fields)
        unit.claim = idempotency.Claim(**fields, dialect=unit.session.bind.dialect.name)  # settled below

        def then() -> None:
            unit.claim = settle()

        driver.send_first(unit.session, batch, then, idempotency.failed_with_reads)
    else:
        unit.claim = await idempotency.claim(unit.session, **fields)
    return now


def keep_answer_from(request: Request, moment: datetime) -> None:
    """Keep this request's stored answer for the retention counted from `moment` (later than
    the request's own time: the sandbox clock's move), so a retry after it still replays."""
    unit = request.scope["state"]["unit"]
    if unit.claim is not None:
        unit.claim = dataclasses.replace(unit.claim, kept_from=moment)


def idempotent(*scopes: Scope, required: bool = False) -> Callable[..., Awaitable[Actor]]:
    """A dependency: authenticate and check `scopes` (`auth.authorised`, as `require` does), then
    claim the Idempotency-Key (in a round trip of its own, first in the request's transaction);
    its value is the actor (a route that needs it takes it from here, not from a second
    dependency).

    `required`: for operations that move value, where a retry without a key could move it twice.
    """
    doc = ("Required. " if required else "Optional. ") + KEY_HEADER_DOC

    @authenticating
    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", description=doc)] = None,
    ) -> Actor:
        actor = await authorised(request, credentials, scopes)
        await _claim(request, actor, idempotency_key, required=required, with_first_reads=False)
        return actor

    return dependency


@dataclasses.dataclass(frozen=True, slots=True)
class ValueCall:
    """What a value operation's route needs of its request: the actor (authenticated, its scope
    checked, its Idempotency-Key claimed), the request's session and its instant (the claim's)."""

    actor: Actor
    session: AsyncSession
    now: datetime


def value_call(*scopes: Scope) -> Callable[..., Awaitable[ValueCall]]:
    """The value engine's dependency (hold, redeem, capture, void, refund): as
    `idempotent(*scopes, required=True)`, but the claim rides in the same round trip as the
    handler's first reads (the unit of work sends it before committing if the handler sent
    none), and its value carries the session and the instant too. It authenticates itself, as
    `require` does (`auth.authorised`: the key, its rate limit, the scopes, then the query
    string), with the bearer scheme its only sub-dependency: FastAPI's resolution of each
    dependency costs on every request, and these routes are the busiest."""
    doc = "Required. " + KEY_HEADER_DOC

    @authenticating
    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", description=doc)] = None,
    ) -> ValueCall:
        actor = await authorised(request, credentials, scopes)
        now = await _claim(request, actor, idempotency_key, required=True, with_first_reads=True)
        return ValueCall(actor, request.scope["state"]["unit"].session, now)

    return dependency


async def _replay(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, idempotency.Replay)
    request.scope["state"]["replayed"] = True  # nothing to commit: the unit of work rolls back
    try:
        stored = idempotency.opened(exc.response, secretbox.keyring(request.app.state.settings))
    except errors.SecretUnavailable as unavailable:
        return await problems.domain_error(request, unavailable)
    return Response(
        stored.body,
        status_code=stored.status,
        media_type=stored.content_type,
        headers={**(stored.headers or {}), "Idempotent-Replayed": "true"},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(idempotency.Replay, _replay)
