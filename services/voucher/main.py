"""create_app(): settings, database, routers, error handlers, middleware — nothing else."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.voucher import __version__, jobs
from services.voucher.anomalies import routes as anomalies
from services.voucher.apikeys import cache as key_cache
from services.voucher.apikeys import routes as apikeys
from services.voucher.applications import routes as applications
from services.voucher.audit import routes as audit
from services.voucher.audit.signing import Signer
from services.voucher.claims import routes as claims
from services.voucher.clock import Clock, SandboxClock, system_clock
from services.voucher.db import Database
from services.voucher.eligibility import routes as eligibility
from services.voucher.enterprises import routes as enterprises
from services.voucher.events import routes as events
from services.voucher.exports import routes as exports
from services.voucher.http import docs, idempotency, meta, problems
from services.voucher.http import metrics as http_metrics
from services.voucher.http.ratelimit import RateLimiter, RateLimitHeaders
from services.voucher.http.throttle import AuthThrottle
from services.voucher.http.unit_of_work import UnitOfWorkMiddleware
from services.voucher.ledger import routes as ledger
from services.voucher.observability import configure_logging, migration_heads
from services.voucher.programmes import routes as programmes
from services.voucher.providers import routes as providers
from services.voucher.redemption import routes as redemption
from services.voucher.sandbox import routes as sandbox
from services.voucher.settings import Settings, get_settings
from services.voucher.settlement import routes as settlement
from services.voucher.usage import routes as usage
from services.voucher.vouchers import routes as vouchers
from services.voucher.webhooks import routes as webhooks

DESCRIPTION = """\
Issue, redeem, settle and audit compute vouchers (算力券) and model vouchers (模型券).

* Amounts are integers in the minor unit of their `unit` (CNY: fen, 1/100 yuan; GPU_HOUR:
  thousandths of a GPU-hour; TOKEN: tokens), never decimals.
* Errors are RFC 9457 `application/problem+json` with a stable `code`; `GET /v1/problems`
  lists them all.
* Authenticate with `Authorization: Bearer <api key>`.
* Send an `Idempotency-Key` with POSTs so retries are safe.
* Lists page with `limit` and `cursor` → `next_cursor`.
"""


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    settings = settings or get_settings()
    if settings.sandbox and not isinstance(clock, SandboxClock):
        clock = SandboxClock(clock)  # the given clock (real time, or a test's) plus the shared offset
    configure_logging(settings.log_level, settings.log_format)
    migration_heads()  # read once at start-up; /readyz compares the database with it
    database = Database(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with key_cache.listening(app.state.key_cache, settings.database_url), jobs.in_process(database, clock):
            yield
        await database.dispose()

    app = FastAPI(
        title="Voucher service",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.clock = clock
    app.state.signer = Signer.from_settings(settings)
    app.state.rate_limiter = database.info["rate_limiter"] = RateLimiter.from_settings(settings)
    database.info["auth_throttle"] = AuthThrottle.from_settings(settings)
    app.state.key_cache = database.info["key_cache"] = key_cache.KeyCache(
        settings.api_key_cache_seconds, needs_listener=not database.is_sqlite)

    problems.install(app)
    idempotency.install(app)
    app.add_middleware(UnitOfWorkMiddleware, database=database, clock=clock)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(http_metrics.RequestObserver)  # outermost: sees every answer

    # Routes are matched in the order they were added: the value path's first.
    for module in (redemption, vouchers, meta, http_metrics, apikeys, programmes, eligibility, enterprises, providers,
                   applications, claims, settlement, usage, ledger):
        app.include_router(module.router)
    app.include_router(applications.public_router)
    app.include_router(audit.router)
    app.include_router(exports.router)
    app.include_router(ledger.programme_router)
    app.include_router(anomalies.router)
    app.include_router(events.router)
    app.include_router(webhooks.router)
    app.include_router(sandbox.router)
    if settings.docs_enabled:
        docs.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
            problems.Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        _lift_defs(schema)
        _problem_validation_errors(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def _lift_defs(schema: dict[str, Any]) -> None:
    """Move nested `$defs` of the Problem schema into components (OpenAPI has no `$defs` there)."""
    components = schema["components"]["schemas"]
    problem = components["Problem"]
    for name, definition in problem.pop("$defs", {}).items():
        components.setdefault(name, definition)


def _problem_validation_errors(schema: dict[str, Any]) -> None:
    """FastAPI documents its 422 as a plain JSON `HTTPValidationError`; ours is a problem with
    an `errors` list. Say so, and drop the schemas nothing else uses."""
    problem = {"$ref": "#/components/schemas/Problem"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422")
            if response is None:
                continue
            described = response.get("description", "")
            if described in ("", "Validation Error"):
                response["description"] = "`validation_failed`: the request has invalid fields"
            media = response.setdefault("content", {})
            media.pop("application/json", None)
            media.setdefault(problems.PROBLEM_MEDIA_TYPE, {"schema": problem})
            media[problems.PROBLEM_MEDIA_TYPE].setdefault("schema", problem)
    components = schema["components"]["schemas"]
    text = json.dumps(schema["paths"])
    for name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{name}" not in text:
            components.pop(name, None)
