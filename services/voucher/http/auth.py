"""Bearer API keys -> Actor, and scope checks.

The key is looked up by its SHA-256 in a short read transaction of its own (not the request's
unit of work), so authentication never holds a write lock; the lookup is cached for a few
seconds per process (services/voucher/apikeys/cache.py), revocations evicting it at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.audit import service as audit
from services.voucher.db import Database
from services.voucher.errors import InsufficientScope, ValidationFailed, field_error
from services.voucher.http import query, ratelimit
from services.voucher.http.authenticate import authenticate, client_address
from services.voucher.i18n import Status, msg

bearer = HTTPBearer(
    auto_error=False,
    description="An API key: `Authorization: Bearer vk_…`. Operators create keys; the first "
    "operator key comes from `voucher keys create --role operator`.",
)


_Dependency = TypeVar("_Dependency", bound=Callable[..., Any])


def authenticating(dependency: _Dependency) -> _Dependency:
    """Mark `dependency` as one that authenticates the key: a route using it checks its query
    string there, once the key is known (http/query.py), not before."""
    query.AUTHENTICATING.add(dependency)
    return dependency


@authenticating
async def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Actor:
    """The request's actor, for an operation any key may call (its own key's revocation, say):
    `_actor`, then text in the body no database stores alike refused (`refuse_unstorable`)."""
    actor = await _actor(request)
    query.check(request)  # a query parameter the operation does not take: 422, nothing read
    refuse_unstorable(request)
    return actor


async def _actor(request: Request) -> Actor:
    """The request's actor: a writing request was authenticated before its body was read
    (http/gate.py); any other is authenticated here. (The database and the clock are the app's,
    read here rather than declared: every dependency costs FastAPI work on every request.)"""
    actor: Actor | None = request.scope["state"].get("actor")
    if actor is None:
        db: Database = request.app.state.database
        actor = await authenticate(db, request.headers.get("authorization"), request.app.state.clock(),
                                   client_address(request.scope))
        request.scope["state"]["actor"] = actor
    audit.ACTOR.set(actor)  # the unit-of-work middleware resets it when the request ends
    await ratelimit.check(request, actor)  # before anything else: a refusal changes nothing
    return actor


async def authorised(request: Request, credentials: HTTPAuthorizationCredentials | None,
                     scopes: tuple[Scope, ...]) -> Actor:
    """The request's actor (the key, its rate limit), then 403 unless its key holds every one of
    `scopes`, then the query string and the body's text: every dependency that checks scopes calls
    this, so the checks and their order are written once."""
    actor = await _actor(request)
    missing = [s.value for s in scopes if s not in actor.scopes]
    if missing:
        raise InsufficientScope(
            msg("this operation needs scope {scopes}; the key's role is {role}",
                scopes=sorted(missing), role=Status(actor.role.value)),
            required_scopes=[s.value for s in scopes],
        )
    # After the scope: a key that may not call the operation is told so whatever its query (an
    # unknown parameter had been 422 and a bad limit 403, by the order of the checks).
    query.check(request)
    refuse_unstorable(request)
    return actor


def refuse_unstorable(request: Request) -> None:
    """422 for the strings of the body that hold NUL or an unpaired surrogate, found as the body
    was read (http/gate.py) and refused once the key may act."""
    unstorable = request.scope.get("state", {}).get("unstorable_text")
    if unstorable:
        raise ValidationFailed([
            field_error(pointer, msg("text may not hold the NUL character or an unpaired surrogate (\\u0000, "
                                     "\\ud800–\\udfff): no database stores it as written"), "unstorable_text")
            for pointer in unstorable])


def require(*scopes: Scope) -> Callable[..., Awaitable[Actor]]:
    """A dependency that authenticates and checks the key holds every one of `scopes`; the
    bearer scheme is its only sub-dependency (each costs FastAPI's resolution per request)."""

    @authenticating
    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Actor:
        return await authorised(request, credentials, scopes)

    dependency.__name__ = "require_" + "_".join(s.value.replace(":", "_") for s in scopes)
    return dependency
