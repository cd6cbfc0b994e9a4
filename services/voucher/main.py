"""create_app(): settings, database, routers, error handlers, middleware — nothing else."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from services.voucher import __version__, deployment, errors, i18n, jobs
from services.voucher.anomalies import routes as anomalies
from services.voucher.apikeys import cache as key_cache
from services.voucher.apikeys import routes as apikeys
from services.voucher.applications import routes as applications
from services.voucher.audit import routes as audit
from services.voucher.audit.signing import Signer
from services.voucher.claims import routes as claims
from services.voucher.clock import Clock, SandboxClock, system_clock
from services.voucher.console import install as console
from services.voucher.db import Database
from services.voucher.eligibility import routes as eligibility
from services.voucher.enterprises import routes as enterprises
from services.voucher.events import routes as events
from services.voucher.exports import routes as exports
from services.voucher.http import docs, gate, idempotency, meta, problems
from services.voucher.http import metrics as http_metrics
from services.voucher.http.head import HeadAsGet
from services.voucher.http.query import refuse_unknown_query
from services.voucher.http.ratelimit import RateLimiter, RateLimitHeaders
from services.voucher.http.throttle import AuthThrottle
from services.voucher.http.unit_of_work import UnitOfWorkMiddleware
from services.voucher.ledger import routes as ledger
from services.voucher.observability import SchemaWatch, configure_logging, migration_heads
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

#: The tags in reading order: where value moves first, then set-up, proof, notification, access.
TAGS = [
    {"name": "redemption", "description": "Providers hold, capture, void, redeem and refund the subsidy on an SME's "
     "order; every call that moves value requires an Idempotency-Key. Enterprises, operators and auditors read "
     "the redemptions they may see."},
    {"name": "vouchers", "description": "The programme office issues, suspends, resumes and revokes vouchers; an "
     "enterprise reads its own with their available, held and used balances, and a provider looks one up by "
     "code to quote a subsidy."},
    {"name": "claims", "description": "In `enterprise_claim` programmes an SME that paid a provider in full files "
     "a claim with its invoice and contract; the programme office reviews, approves, rejects and pays it."},
    {"name": "settlement", "description": "What a programme owes a provider for a period: the office drafts, "
     "approves and pays settlements and the provider confirms or disputes its statement. Providers also "
     "reconcile their own usage records with the service's here."},
    {"name": "applications", "description": "SMEs apply for a voucher under an open programme and are judged by "
     "its eligibility rules at once; the office approves or rejects, and an approval is published (公示) "
     "before its voucher is issued."},
    {"name": "programmes", "description": "Subsidy policies (budget, unit, rate table, caps, windows, eligibility "
     "rules) with their lifecycle draft → open → closed → archived, and the providers enrolled in each. The "
     "office configures them; every key reads them."},
    {"name": "eligibility", "description": "The eligibility rule versions a programme published (what each "
     "application was judged by), and a dry run of a rule set that stores nothing."},
    {"name": "enterprises", "description": "The SMEs a programme can subsidise, with their USCC checked per "
     "GB 32100-2015; the office registers and edits them, an enterprise key sees only itself."},
    {"name": "providers", "description": "Compute and model vendors: the office registers, approves and suspends "
     "them; only an approved provider enrolled in a programme redeems its vouchers."},
    {"name": "ledger", "description": "The double-entry ledger behind every balance: postings, point-in-time "
     "balances, a programme's trial balance, and the reconciliation of stored balances with the postings."},
    {"name": "audit", "description": "The tamper-evident trail: hash-chained events of every state change, "
     "signed checkpoints, verifications of the chain and the ledger, and anomaly reports."},
    {"name": "exports", "description": "Whole datasets streamed as CSV or JSON Lines, each described by a "
     "manifest with its row count, SHA-256 and the audit chain head it is consistent with."},
    {"name": "events", "description": "Announced changes (approvals, issuance, captures, refunds, claims, "
     "settlements, expiries) in commit order: the pull alternative to webhooks."},
    {"name": "webhooks", "description": "An enterprise or a provider registers endpoints that receive its events, "
     "signed per Standard Webhooks and retried, and reads each endpoint's delivery log."},
    {"name": "api keys", "description": "Who the calling key is, and creating, listing, rotating and revoking "
     "API keys; a key never grants scopes it does not hold."},
    {"name": "sandbox", "description": "The sandbox clock, which can be moved forward to let hold TTLs, "
     "publicity, expiry and settlement periods pass; answers only in sandbox mode."},
    {"name": "service", "description": "Liveness, readiness, metrics and the catalogue of problem types, for "
     "load balancers, monitoring and anyone reading an error; no API key needed."},
]


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    settings = settings or get_settings()
    if settings.sandbox and not isinstance(clock, SandboxClock):
        clock = SandboxClock(clock)  # the given clock (real time, or a test's) plus the shared offset
    configure_logging(settings.log_level, settings.log_format)
    i18n.show_instants_in(settings.default_timezone)
    migration_heads()  # read once at start-up; /readyz compares the database with it
    database = Database(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await deployment.refuse_another_environment(database, mark=True)
        async with key_cache.listening(app.state.key_cache, settings.database_url), jobs.in_process(database, clock):
            yield
        await database.dispose()

    app = FastAPI(
        title="Voucher service",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        contact={"name": "Voucher service maintainers"},
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
        servers=[{"url": "/", "description": "this service"}],
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        dependencies=[Depends(refuse_unknown_query)],
    )
    app.state.settings = settings
    app.state.database = database
    app.state.clock = clock
    app.state.signer = Signer.from_settings(settings)
    app.state.rate_limiter = database.info["rate_limiter"] = RateLimiter.from_settings(settings)
    database.info["auth_throttle"] = AuthThrottle.from_settings(settings)
    database.info["schema_watch"] = SchemaWatch()  # writes refused while the schema is not this build's
    app.state.key_cache = database.info["key_cache"] = key_cache.KeyCache(
        key_cache.seconds_for(settings.api_key_cache_seconds, is_sqlite=database.is_sqlite),
        needs_listener=not database.is_sqlite)
    if database.info["auth_throttle"] is not None:
        database.info["key_cache"].on_created = database.info["auth_throttle"].expire_live

    problems.install(app)
    idempotency.install(app)
    app.add_middleware(HeadAsGet)  # innermost: the unit of work and the observer see the HEAD
    app.add_middleware(UnitOfWorkMiddleware, database=database, clock=clock)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(gate.QueryText)  # a query string no one can read is refused before anything reads it
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
    console.install(app, settings)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


#: The documents made, by the route table they describe. Every app create_app builds has the same
#: table (settings add or drop only undocumented routes: the docs pages and the console), so its
#: document is made once per process, not once per app: it takes half a second here, and the
#: first 422 of every app reads it (problems.allowed_methods), so a test suite building thousands
#: of apps paid it thousands of times. An app given routes of its own gets a document of its own.
#: Nothing changes a document once made.
_DOCUMENTS: dict[tuple[Any, ...], dict[str, Any]] = {}


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        table = _route_table(app)
        document = _DOCUMENTS.get(table)
        if document is None:
            document = _DOCUMENTS[table] = _make_document(app)
        app.openapi_schema = document
    return app.openapi_schema


def _route_table(app: FastAPI) -> tuple[Any, ...]:
    """What an app's document is made from: the routers it includes (module-level, the same
    objects in every app) and any documented route of its own, in order. Mounts and undocumented
    routes (/openapi.json itself, a new closure in every app) are not in a document."""
    table: list[tuple[Any, ...]] = []
    for route in app.router.routes:
        if hasattr(route, "original_router"):
            table.append(("router", id(route.original_router)))  # module-level: never freed, never reused
        elif isinstance(route, APIRoute) and route.include_in_schema:
            table.append((route.path, tuple(sorted(route.methods or ())), route.endpoint))
    return tuple(table)


def _make_document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
        contact=app.contact,
        license_info=app.license_info,
    )
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
        problems.Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    _lift_defs(schema)
    _examples_keep_nulls(schema)
    _problem_validation_errors(schema)
    _undeclared_answers(schema)
    _integer_bounds(schema)
    return schema


def _lift_defs(schema: dict[str, Any]) -> None:
    """Move nested `$defs` of the Problem schema into components (OpenAPI has no `$defs` there)."""
    components = schema["components"]["schemas"]
    problem = components["Problem"]
    for name, definition in problem.pop("$defs", {}).items():
        components.setdefault(name, definition)


def _examples_keep_nulls(schema: dict[str, Any]) -> None:
    """FastAPI drops every null from the document it renders, examples included (fastapi#5559):
    an example then lacks a nullable field the answer always carries, and no longer matches its
    schema. Put the nulls back: a required, nullable property an example lacks is null."""
    components = schema["components"]["schemas"]

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = components[node["$ref"].rsplit("/", 1)[1]]
        return node

    def nullable(node: dict[str, Any]) -> bool:
        node = resolve(node)
        return node.get("type") == "null" or any(nullable(option) for option in node.get("anyOf", ()))

    def fill(example: Any, node: dict[str, Any]) -> None:
        node = resolve(node)
        options = [o for o in node.get("anyOf", ()) if resolve(o).get("type") != "null"]
        if len(options) == 1:
            node = resolve(options[0])
        if isinstance(example, dict) and "properties" in node:
            for name in node.get("required", ()):
                if name not in example and nullable(node["properties"].get(name, {})):
                    example[name] = None
            for name, value in example.items():
                if name in node["properties"]:
                    fill(value, node["properties"][name])
        elif isinstance(example, list) and isinstance(node.get("items"), dict):
            for item in example:
                fill(item, node["items"])

    for component in components.values():
        for example in component.get("examples", ()):
            fill(example, component)


def _undeclared_answers(schema: dict[str, Any]) -> None:
    """The answers every operation of a kind can give, whatever its route declares, merged into
    what it declares (a route's own 422 lists its own codes; validation_failed is added to them):
    a body that is not JSON (400), too large (413), not JSON at all (415), too slow (408) or
    holding what no database stores (422); a query parameter it does not take (422); a one-value
    header sent twice (400); for a key-bearing operation, each 401, the rate limit and the
    failed-login throttle (429) and a lost database (503); for a write, another request's lock
    (409); for an Idempotency-Key, its shape, its reuse and its first request still running, and
    its absence where it is required (428, the header then declared required)."""
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            answers = operation.setdefault("responses", {})
            kinds: list[type[errors.DomainError]] = [errors.ValidationFailed, errors.DuplicateHeader]
            if "requestBody" in operation:
                kinds += [errors.MalformedJson, errors.PayloadTooLarge, errors.UnsupportedMediaType,
                          errors.RequestTimeout, errors.UnstorableValue]
            if "401" in answers and operation.get("security"):  # an API key's (not /metrics' token)
                kinds += [errors.InvalidApiKey, errors.ApiKeyExpired, errors.ApiKeyRevoked, errors.RateLimited,
                          errors.AuthenticationThrottled, errors.DatabaseUnavailable]
                if method != "get":
                    kinds.append(errors.ConcurrentUpdate)
            for parameter in operation.get("parameters", ()):
                if parameter.get("name") != "Idempotency-Key":
                    continue
                kinds += [errors.InvalidIdempotencyKey, errors.IdempotencyKeyReused,
                          errors.IdempotencyRequestInProgress]
                if parameter.get("description", "").startswith("Required."):
                    parameter["required"] = True
                    parameter["schema"] = {"type": "string", "title": "Idempotency-Key"}
                    kinds.append(errors.IdempotencyKeyRequired)
            for kind in kinds:
                _merge_answer(answers, kind)


def _merge_answer(answers: dict[str, Any], kind: type[errors.DomainError]) -> None:
    """Add `kind`'s code to the operation's answer for its status (a whole answer if none)."""
    declared = answers.get(str(kind.status))
    if declared is None:
        answers[str(kind.status)] = problems.responses(kind)[kind.status]
    elif f"`{kind.code}`" not in declared.get("description", ""):
        declared["description"] = f"{declared.get('description', '')}; `{kind.code}`: {kind.title}".lstrip("; ")


def _integer_bounds(node: Any) -> None:
    """pydantic writes an integer field's bounds as floats (`1e15` as 1000000000000000.0): an
    integer schema's bounds are integers."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                if isinstance(node.get(bound), float) and node[bound].is_integer():
                    node[bound] = int(node[bound])
        for value in node.values():
            _integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _integer_bounds(value)


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
