"""`/metrics` for Prometheus, and the middleware that measures and logs every request.

`RequestObserver` is the outermost middleware: it sees every answer, including those the unit
of work writes itself (a refused commit) and 404s no route matched. It labels requests with the
route TEMPLATE (`/v1/vouchers/{voucher_id}`), never the raw path, so the number of series stays
bounded; requests no route matched share the label `unmatched`.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.voucher import driver, errors, metrics
from services.voucher.http.problems import PROBLEM_MEDIA_TYPE, responses
from services.voucher.i18n import msg
from services.voucher.observability import log_access
from services.voucher.settings import Settings

router = APIRouter(tags=["service"])


@router.get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics (text exposition format)",
    description="Request counts and latencies by route template, redemptions and subsidy by "
    "programme, expired holds, webhook deliveries and background jobs. Not an API key: when "
    "`VOUCHER_METRICS_TOKEN` is set the scraper sends it as `Authorization: Bearer <token>`; "
    "unset, the endpoint is open in development and tests and not served (404) in production. "
    "With several workers and `PROMETHEUS_MULTIPROC_DIR` set, every worker answers with the sum "
    "over all workers.",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Metrics in the Prometheus text format"},
               **responses(errors.Unauthenticated, errors.NotFound)},
)
async def prometheus_metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    token = settings.metrics_token
    if token is None and settings.environment == "production":
        raise errors.NotFound(msg("metrics are not served in production until VOUCHER_METRICS_TOKEN is set"))
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                  token.get_secret_value().encode()):
            raise errors.Unauthenticated(msg("send the metrics token as Authorization: Bearer <token>"))
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)


def route_label(scope: Scope) -> str:
    """The template of the route that answered, under the mount it is in (`/console/sign-in`);
    `unmatched` for a request no route answered: none matched its path (a 404), or it was
    refused before routing (a body over the limit, a throttled key or sign-in)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    # A mounted app's routes are templates within it; the mount is the part of root_path it added.
    mounted = str(scope.get("root_path", ""))[len(str(scope.get("app_root_path", ""))):].rstrip("/")
    if not isinstance(path, str):
        if "endpoint" in scope and mounted:  # a mounted app with no routes (the docs' static assets)
            return mounted + "/{path}"
        return metrics.UNMATCHED
    if isinstance(route, Mount):
        return path.rstrip("/") + "/{path}"
    return mounted + path


def _principal(scope: Scope) -> dict[str, str] | None:
    actor = scope.get("state", {}).get("actor")
    if actor is None:
        return None
    return {
        "key_id": str(actor.key_id) if actor.key_id else "",
        "role": actor.role.value,
        "principal_id": str(actor.principal_id),
    }


def _request_id(message: Message) -> str:
    for key, value in message.get("headers", ()):
        if key.lower() == b"x-request-id":
            return str(value.decode("latin-1"))
    return "-"


def _is_problem(message: Message) -> bool:
    return any(key.lower() == b"content-type" and value.startswith(PROBLEM_MEDIA_TYPE.encode())
               for key, value in message.get("headers", ()))


#: A problem body longer than this is not read for its code (every problem the service writes is
#: far shorter; a validation failure lists at most 100 fields).
_PROBLEM_READ = 64 * 1024


def _problem_code(body: bytes) -> str | None:
    """The `code` of a problem+json body, or None: the access line says why a request was
    refused, so the office can explain a refusal from its logs without the caller's copy."""
    if len(body) > _PROBLEM_READ:
        return None
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) and len(code) <= 64 else None


class RequestObserver:
    """Counts, times and logs each HTTP request once it has been answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "request_id": "-", "code": None, "problem": False}

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = int(message["status"])
                seen["request_id"] = _request_id(message)
                seen["problem"] = seen["status"] >= 400 and _is_problem(message)
            elif seen["problem"] and message["type"] == "http.response.body":
                seen["problem"] = False  # the first body message holds the whole problem
                seen["code"] = _problem_code(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            driver.flush_counts()  # the database's round trips this request made
            seconds = time.perf_counter() - started
            route = route_label(scope)
            metrics.http_request(scope["method"], route, seen["status"], seconds)
            log_access(
                request_id=seen["request_id"], method=scope["method"], route=route,
                path=scope.get("path", ""), status=seen["status"], duration_ms=seconds * 1000,
                principal=_principal(scope), code=seen["code"],
            )
