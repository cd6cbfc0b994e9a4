"""Prometheus metrics: what the service counts, and the one rule for counting business events —
only when the transaction that made them commits.

Every metric lives in prometheus_client's default registry, one per process. With several
uvicorn workers, set `PROMETHEUS_MULTIPROC_DIR` to an empty directory writable by all of them
(before they start; wipe it between runs): prometheus_client then keeps the values in files
there and a scrape of any worker sums every worker's values (docs/observability.md).

Business counters (redemptions, subsidy, expired holds) are not incremented where the code
decides: a later statement in the same request may still fail and roll everything back. The
service registers the increment on the session with `on_commit()`; it happens only if that
transaction commits, and is dropped if it (or the savepoint it was registered in) rolls back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

from services.voucher.driver import flush_counts
from services.voucher.pending import on_commit

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: The label of every request no route matched (a scanner's random paths must not create series).
UNMATCHED = "unmatched"

# Requests are mostly a few milliseconds; exports and settlement runs take seconds.
_HTTP_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)

HTTP_REQUESTS = Counter(
    "voucher_http_requests", "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "voucher_http_request_duration_seconds", "Time to answer an HTTP request, by route template",
    ["method", "route"], buckets=_HTTP_BUCKETS,
)
REDEMPTIONS = Counter(
    "voucher_redemptions", "Captured redemptions (provider captures, one-step redeems and approved "
    "claims), counted when their transaction commits", ["programme_id", "kind"],
)
SUBSIDY = Counter(
    "voucher_subsidy_amount", "Subsidy captured, in the unit's minor unit (CNY: fen), counted when "
    "its transaction commits", ["programme_id", "kind", "unit"],
)
HOLDS_EXPIRED = Counter(
    "voucher_holds_expired", "Holds released because they had lapsed: their TTL passed or their voucher "
    "expired first (by a job, or when a later request found them), counted when the release commits",
    ["programme_id"],
)
WEBHOOK_DELIVERIES = Counter(
    "voucher_webhook_deliveries", "Webhook delivery attempts, by outcome", ["outcome"],
)
JOB_RUNS = Counter("voucher_job_runs", "Background job runs, by outcome", ["job", "outcome"])
JOB_ITEMS = Counter("voucher_job_items", "Items (holds, vouchers, deliveries…) a job processed", ["job"])
JOB_DURATION = Histogram(
    "voucher_job_duration_seconds", "Time one run of a job took", ["job"], buckets=_JOB_BUCKETS,
)
JOB_LAG = Gauge(
    "voucher_job_lag_seconds", "Seconds between the job's last two successful runs in this worker (alert when it grows)",
    ["job"], multiprocess_mode="mostrecent",
)

WEBHOOKS_BEHIND = Gauge(
    "voucher_webhook_delivery_behind_seconds", "How long the oldest delivery due to an enabled webhook endpoint "
    "has waited, read after each delivery run (0: nothing due; alert when it grows)",
    multiprocess_mode="mostrecent",
)


def is_multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition() -> bytes:
    """The text exposition of this process's metrics, or of all workers' in multiprocess mode."""
    flush_counts()
    if is_multiprocess():
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def serve(host: str, port: int, token: str | None) -> Callable[[], None]:
    """Serve `exposition()` at http://host:port/metrics from a thread, for a process that has no
    API of its own (`voucher worker --metrics-port`): its job, webhook and hold counters had
    reached no scrape when the worker ran beside `voucher serve`, so alerts on job errors never
    fired (an independent review, December 2026). With `token`, a scrape must send it as
    `Authorization: Bearer <token>`, as for the API's `/metrics`. Returns what stops it."""
    import hmac
    import socket
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO", "/") not in ("/metrics", "/metrics/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: the metrics are at /metrics\n"]
        if token is not None:
            scheme, _, given = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
                return [b"send the metrics token as Authorization: Bearer <token>\n"]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
        return [exposition()]

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET  # `--metrics-host ::` too

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            """A scrape every 15 s is not worth a log line."""

    server = make_server(host, port, application, Server, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop


# -- HTTP -------------------------------------------------------------------------------------


#: Methods labelled as themselves; any other is `other`. A method is whatever the client sends
#: (an ASGI server other than httptools passes made-up ones through to a 405): each had been a
#: series of its own, so anyone without a key could grow /metrics and memory without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in KNOWN_METHODS else "other"
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


# -- background work (called by jobs.py and the webhook sender) ---------------------------------


def webhook_delivery(outcome: str) -> None:
    """One delivery attempt: e.g. `delivered`, `failed` (will retry), `gave_up`."""
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def job_ran(job: str, outcome: str, seconds: float, items: int = 0, lag_seconds: float | None = None) -> None:
    """One run of a job: `outcome` e.g. `ok` or `error`; `items` it processed; `lag_seconds` the
    time since the job's previous successful run (None on its first run: not measured)."""
    JOB_RUNS.labels(job, outcome).inc()
    JOB_DURATION.labels(job).observe(max(seconds, 0.0))
    if items:
        JOB_ITEMS.labels(job).inc(items)
    if lag_seconds is not None:
        JOB_LAG.labels(job).set(max(lag_seconds, 0.0))


def webhooks_behind(seconds: float) -> None:
    WEBHOOKS_BEHIND.set(max(seconds, 0.0))


# -- business events, counted when their transaction commits -----------------------------------


def redemption_captured(session: Any, *, programme_id: object, kind: str, unit: str, amount: int) -> None:
    """A capture (or approved claim) of `amount`: counted if and when `session` commits."""
    labels = (str(programme_id), kind)

    def count() -> None:
        REDEMPTIONS.labels(*labels).inc()
        SUBSIDY.labels(*labels, unit).inc(amount)

    on_commit(session, count)


def hold_expired(session: Any, *, programme_id: object) -> None:
    """A hold released because it had lapsed (its TTL passed, or its voucher expired first):
    counted if and when `session` commits."""
    label = str(programme_id)
    on_commit(session, lambda: HOLDS_EXPIRED.labels(label).inc())



