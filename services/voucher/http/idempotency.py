"""The Idempotency-Key dependency (protocol in idempotency/service.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from starlette.responses import Response

from services.voucher.actor import Actor
from services.voucher.errors import IdempotencyKeyRequired
from services.voucher.http.auth import current_actor
from services.voucher.idempotency import service as idempotency

KEY_HEADER_DOC = (
    "Makes the request safe to retry: the same key and body return the first answer and "
    "change nothing again. Use a fresh UUID per intended operation. Kept for "
    "VOUCHER_IDEMPOTENCY_RETENTION_DAYS (default 90)."
)


async def _claim(request: Request, actor: Actor, key: str | None) -> None:
    if key is None:
        return
    idempotency.check_key(key)
    settings = request.app.state.settings
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    claim = await idempotency.claim(
        request.app.state.database,
        principal_id=actor.principal_id,
        key=key,
        method=request.method,
        path=path,
        fingerprint=idempotency.request_fingerprint(request.method, path, await request.body()),
        now=request.app.state.clock(),
        lock_seconds=settings.idempotency_lock_seconds,
        retention_days=settings.idempotency_retention_days,
    )
    request.scope["state"]["unit"].claim = claim


async def idempotent(
    request: Request,
    actor: Annotated[Actor, Depends(current_actor)],
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description=KEY_HEADER_DOC)
    ] = None,
) -> None:
    """Optional key: without one the request simply runs once."""
    await _claim(request, actor, idempotency_key)


async def idempotent_required(
    request: Request,
    actor: Annotated[Actor, Depends(current_actor)],
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", description=KEY_HEADER_DOC)]
    = "",
) -> None:
    """For operations that move value: a retry without a key could move it twice."""
    if not idempotency_key:
        raise IdempotencyKeyRequired()
    await _claim(request, actor, idempotency_key)


async def _replay(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, idempotency.Replay)
    stored = exc.response
    return Response(
        stored.body,
        status_code=stored.status,
        media_type=stored.content_type,
        headers={**(stored.headers or {}), "Idempotent-Replayed": "true"},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(idempotency.Replay, _replay)
