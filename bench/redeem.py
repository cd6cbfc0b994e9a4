"""`make bench`: the value path through real server processes (the way production runs them:
uvicorn workers with uvloop and httptools) against PostgreSQL, beside the raw-SQL ceiling.

    python bench/redeem.py --clients 8 32 --seconds 10 --history 1000000

In one run, on 127.0.0.1:
  * the reference app (bench/reference_app.py: FastAPI + async psycopg, no auth, one balance
    update and one ledger insert per request) on a database of its own: the ceiling;
  * the service, everything on (auth, Idempotency-Key, ledger, audit, outbox, rate limits):
    one-step redeem, hold + capture (each request counted), voucher reads
    (GET /v1/vouchers/{id}), and one-step redeem with audit events off, to price them;
  * history: `--history` prior redemptions (a year of captures with their journals, postings,
    audit and outbox events and Idempotency-Key records) loaded set-wise into a second database
    with a world like the first, VACUUMed, ANALYZEd and CHECKPOINTed (the role needs
    pg_checkpoint for the last; without it the bench says so); then one-step redeem and
    hold + capture in `--pairs` alternating pairs of rows, fresh database and loaded one, the
    order swapped each pair, and the history ratios are the medians of the pairs';
  * the embedded default: one-step redeem on SQLite with one worker.
Per row it prints requests/s, p50, p99, errors, and per request: CPU of the service's processes
and of PostgreSQL's (from /proc), round trips and statements the service sent (its own counters,
summed over workers), commits (pg_stat_database), rows written and index entries written
(pg_stat_user_tables × the table's indexes, partial ones weighted by the share of rows they
hold). Then the ratios the product targets (docs/decisions.md, "Value engine"), and what the
requests left to the worker, priced: sealing their audit events and publishing their outbox events
(`voucher worker --once`, one job at a time, over the backlog of the fresh-database rows). It judges
nothing and exits 0; the figures also go to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, make_url, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from common import load_world, recreate_database  # noqa: E402  (bench/ is on sys.path)
from history import load_history  # noqa: E402
from loadgen import Connection  # noqa: E402

from services.voucher.settings import normalise_database_url, sync_database_url  # noqa: E402
from tests.live_server import LiveServer, every_worker_listens, free_port  # noqa: E402

DEFAULT_URL = "postgresql://voucher:voucher@127.0.0.1:5432/voucher"


def fresh_database(base_url: str, suffix: str) -> str:
    url = make_url(normalise_database_url(base_url))
    return recreate_database(base_url, url.set(database=f"{url.database}_{suffix}"))


def _order(code: str, uscc: str, order: str) -> str:
    return json.dumps({
        "voucher_code": code, "enterprise_uscc": uscc, "order_reference": order,
        "line_items": [{"category": "accelerator:domestic", "amount": 100_000,
                        "accelerator": "Ascend 910B", "hours_milli": 1000}],
    })


async def _one(http: Connection, scenario: str, world: dict[str, Any], n: int, i: int, clients: int,
               each: list[float] | None = None) -> str:
    """One operation of `scenario`; its final status (201/200 is success). A hold + capture also
    puts each of its two requests' latency in `each` (the p50 and p99 are per request)."""
    json_type = {"content-type": "application/json"}
    if scenario == "reference":
        body = json.dumps({"voucher_id": 1 + (n + i * clients) % world["vouchers"], "amount": 30_000,
                           "order_reference": f"{n}-{i}"}).encode()
        return str((await http.request("POST", "/redeem", body, json_type)).status_code)
    if scenario == "balance":
        voucher_id = world["voucher_ids"][(n + i * clients) % len(world["voucher_ids"])]
        response = await http.request("GET", f"/v1/vouchers/{voucher_id}",
                                      headers={"Authorization": f"Bearer {world['operator']}"})
        return str(response.status_code)
    code, uscc = world["targets"][(n + i * clients) % len(world["targets"])]
    order = f"{n}-{i}-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {world['key']}", **json_type}
    if scenario == "redeem":
        response = await http.request("POST", "/v1/redemptions", _order(code, uscc, order).encode(),
                                      {**headers, "Idempotency-Key": order})
        return str(response.status_code)
    started = time.perf_counter()
    held = await http.request("POST", "/v1/redemptions/holds", _order(code, uscc, order).encode(),
                              {**headers, "Idempotency-Key": order})
    if held.status_code != 201:
        return f"hold {held.status_code}"
    between = time.perf_counter()
    captured = await http.request("POST", f"/v1/redemptions/{held.json()['id']}/capture", b"{}",
                                  {**headers, "Idempotency-Key": f"c-{order}"})
    if each is not None and captured.status_code == 200:
        each.extend((between - started, time.perf_counter() - between))
    return "201" if captured.status_code == 200 else f"capture {captured.status_code}"


async def drive(url: str, world: dict[str, Any], clients: int, seconds: float, scenario: str = "redeem") -> dict[str, Any]:
    latencies: list[float] = []
    each: list[float] = []  # hold + capture: per request
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def client_loop(n: int) -> None:
        http = Connection(url)
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            started = time.perf_counter()
            try:
                status = await _one(http, scenario, world, n, i, clients, each)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
                status = type(exc).__name__
            elapsed = time.perf_counter() - started
            if status in ("200", "201"):
                latencies.append(elapsed)
            else:
                errors[status] = errors.get(status, 0) + 1
        await http.close()

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(n) for n in range(clients)))
    wall = time.perf_counter() - started
    count = len(latencies)
    latencies = sorted(each) if each else sorted(latencies)
    return {
        "scenario": scenario,
        "clients": clients,
        "requests_per_s": round(count / wall, 1),
        "ok": count,
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000, 2) if latencies else None,
        "errors": errors,
    }


def reference_server(database_url: str, vouchers: int, workers: int) -> subprocess.Popen[bytes]:
    """The raw-SQL ceiling (bench/reference_app.py) on a database of its own, started like ours
    (tests/live_server.py: the same launcher, services/voucher/serving.py, with the same options)."""
    url = make_url(normalise_database_url(database_url))
    target = url.set(database=f"{url.database}_reference")
    recreate_database(database_url, target)
    plain = target.set(drivername="postgresql").render_as_string(hide_password=False)
    env = {**os.environ, "REFERENCE_DATABASE_URL": plain}
    subprocess.run([sys.executable, "bench/reference_app.py", "setup", str(vouchers)], cwd=ROOT, env=env, check=True)  # noqa: S603
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "services.voucher.serving", "bench.reference_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--loop", "uvloop",
         "--http", "httptools"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    process.database_url = plain  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        try:
            if not answered:
                httpx.post(f"{process.url}/redeem",  # type: ignore[attr-defined]
                           json={"voucher_id": 1, "amount": 1, "order_reference": "warm"}, timeout=1)
                answered = True
            if every_worker_listens(port, workers):  # as LiveServer waits for ours
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the reference app did not start")


class Probe:
    """Counters read before and after a run: CPU of the given processes and of PostgreSQL's,
    the database's commits and table writes, and the service's own round-trip counters."""

    def __init__(self, database_url: str, pids: list[int], metrics_url: str | None) -> None:
        self.engine = create_engine(sync_database_url(database_url))
        self.pids, self.metrics_url = pids, metrics_url
        self.full, self.partial = self._indexes()

    def _indexes(self) -> tuple[dict[str, int], dict[str, list[str]]]:
        """Per table: how many indexes hold every row, and the predicates of its partial ones."""
        full: dict[str, int] = {}
        partial: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT c.relname, pg_get_expr(i.indpred, i.indrelid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public'")).all()
        for table, predicate in rows:
            if predicate:
                partial.setdefault(table, []).append(predicate)
            else:
                full[table] = full.get(table, 0) + 1
        return full, partial

    def _shares(self, conn: Any, table: str, since: int) -> float:
        """How many of `table`'s partial indexes a row version written after transaction `since`
        is in, on average: each predicate's share among the versions the run wrote
        that are still there (a share among the whole table, history included, had counted a
        million captured redemptions' predicates against a run that inserts another kind of row)."""
        predicates = self.partial[table]
        counts = conn.execute(text(
            f"SELECT count(*), {', '.join(f'count(*) FILTER (WHERE {p})' for p in predicates)} "  # noqa: S608
            f"FROM {table} WHERE age(xmin) < age('{int(since) % 2**32}'::xid)")).one()
        return sum(counts[1:]) / counts[0] if counts[0] else 0.0

    def read(self, *, settle: float = 1.2) -> dict[str, Any]:
        # A backend publishes its counters at most once a second while busy, and within 10 s of
        # going idle (PostgreSQL 15's PGSTAT_IDLE_INTERVAL): the reading after a run waits that out.
        time.sleep(settle)
        with self.engine.connect() as conn:
            commits, rollbacks = conn.execute(text(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()")).one()
            tables = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(text(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables")).all()}
            xid = conn.execute(text("SELECT txid_current()")).scalar_one()
        trips = statements = 0.0
        if self.metrics_url:
            for line in httpx.get(self.metrics_url, timeout=10).text.splitlines():
                if line.startswith("voucher_db_round_trips_total"):
                    trips = float(line.split()[-1])
                elif line.startswith("voucher_db_statements_total"):
                    statements = float(line.split()[-1])
        return {"service_cpu": process_cpu(self.pids), "pg_cpu": postgres_cpu(), "commits": commits + rollbacks,
                "tables": tables, "round_trips": trips, "statements": statements, "xid": xid}

    def per_request(self, before: dict[str, Any], after: dict[str, Any], requests: int) -> dict[str, Any]:
        """Rows written are inserts and updates; index entries are what each written row version
        adds to its table's indexes (none for a HOT update), a partial index counted by the share of
        the run's own row versions its predicate holds (read after the counters, outside the run)."""
        n = max(requests, 1)
        rows = entries = 0.0
        by_table: dict[str, float] = {}
        with self.engine.connect() as conn:
            for table, (ins, upd, hot) in after["tables"].items():
                ins0, upd0, hot0 = before["tables"].get(table, (0, 0, 0))
                rows += (ins - ins0) + (upd - upd0)
                versions = (ins - ins0) + (upd - upd0) - (hot - hot0)
                if not versions:
                    continue
                weight = self.full.get(table, 0) + (self._shares(conn, table, before["xid"]) if table in self.partial else 0.0)
                by_table[table] = round(versions * weight / n, 2)
                entries += versions * weight
        per = {
            "service_cpu_ms": round(1000 * (after["service_cpu"] - before["service_cpu"]) / n, 2),
            "pg_cpu_ms": round(1000 * (after["pg_cpu"] - before["pg_cpu"]) / n, 2),
            "commits": round((after["commits"] - before["commits"]) / n, 2),
            "rows_written": round(rows / n, 1),
            "index_entries": round(entries / n, 1),
            "index_entries_by_table": dict(sorted(by_table.items(), key=lambda item: -item[1])),
        }
        for table, key in (("audit_event", "audit_events"), ("outbox_event", "outbox_events")):
            # What each request leaves the worker to seal and to publish (`deferred`).
            per[key] = round((after["tables"].get(table, (0, 0, 0))[0] - before["tables"].get(table, (0, 0, 0))[0]) / n, 2)
        if self.metrics_url:
            per["round_trips"] = round((after["round_trips"] - before["round_trips"]) / n, 2)
            per["statements"] = round((after["statements"] - before["statements"]) / n, 2)
        return per

    def close(self) -> None:
        self.engine.dispose()


def process_cpu(pids: list[int], *, reaped: bool = False) -> float:
    """CPU seconds of the processes; `reaped` adds what their exited children used (the
    postmaster reaps every backend, so PostgreSQL's total never goes down as connections close)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """Every PostgreSQL process's CPU (backends, WAL writer, checkpointer, autovacuum), and the
    backends that have exited since it started: honest."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith("postgres"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return process_cpu(pids, reaped=True)


def tree(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()  # noqa: S603, S607
    return [pid, *(int(c) for c in children)]


def measured(url: str, world: dict[str, Any], clients: int, seconds: float, scenario: str, probe: Probe) -> dict[str, Any]:
    before = probe.read()
    row = asyncio.run(drive(url, world, clients, seconds, scenario))
    requests = (row["ok"] + sum(row["errors"].values())) * (2 if scenario == "hold_capture" else 1)
    return {**row, **probe.per_request(before, probe.read(settle=11), requests)}


def deferred(database_url: str) -> dict[str, Any]:
    """What a request leaves to the worker, priced: sealing its audit events into the chain and
    publishing its outbox events, each job run once by `voucher worker --once` over the backlog
    the measured rows left. CPU of the worker's process, less a round with nothing left to do
    (start-up, imports, connecting), and of PostgreSQL, in ms per event."""
    engine = create_engine(sync_database_url(database_url))
    voucher = str(Path(sys.executable).with_name("voucher"))

    def backlog() -> dict[str, int]:
        with engine.connect() as conn:
            sealed, published = conn.execute(text(
                "SELECT (SELECT count(*) FROM audit_event WHERE seq IS NULL), "
                "(SELECT count(*) FROM outbox_event WHERE seq IS NULL)")).one()
        return {"seal-audit": sealed, "publish-events": published}

    def run_once(job: str) -> tuple[float, float]:
        pg, worker = postgres_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([voucher, "worker", "--once", "--job", job, "--database-url", database_url],  # noqa: S603
                       check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime + after.ru_stime - worker.ru_utime - worker.ru_stime), postgres_cpu() - pg

    waiting = backlog()
    result: dict[str, Any] = {}
    for job, events in waiting.items():
        worker, pg = run_once(job)
        idle_worker, idle_pg = run_once(job)  # nothing left: what the round costs apart from the events
        result[job] = {"events": events,
                       "worker_cpu_ms": round(1000 * max(worker - idle_worker, 0) / max(events, 1), 3),
                       "pg_cpu_ms": round(1000 * max(pg - idle_pg, 0) / max(events, 1), 3)}
    result["left"] = backlog()
    engine.dispose()
    return result


def analyse(database_url: str) -> None:
    engine = create_engine(sync_database_url(database_url))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()


async def template_redeem(url: str, world: dict[str, Any]) -> dict[str, str]:
    """One real one-step redeem, the shape the history is cloned from."""
    code, uscc = world["targets"][0]
    key = f"template-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post("/v1/redemptions", content=_order(code, uscc, key), headers={
            "Authorization": f"Bearer {world['key']}", "content-type": "application/json", "Idempotency-Key": key})
    response.raise_for_status()
    return {"id": response.json()["id"], "key": key}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("VOUCHER_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--vouchers", type=int, default=200)
    parser.add_argument("--history", type=int, default=1_000_000, help="prior redemptions to load (0: skip)")
    parser.add_argument("--pairs", type=int, default=4,
                        help="alternating fresh / history rows per scenario, for the history ratios (even: each "
                             "side goes first as often)")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    conditions = (f"PostgreSQL 15 on 127.0.0.1, {args.workers} uvicorn workers (uvloop, httptools), "
                  f"{args.vouchers} vouchers, {args.seconds:g} s per row, lean asyncio load generator in-process, "
                  f"{os.cpu_count()} CPUs shared by all")

    # The ceiling first, on a database of its own.
    reference = reference_server(args.database_url, args.vouchers, args.workers)
    try:
        world = {"vouchers": args.vouchers}
        probe = Probe(reference.database_url, tree(reference.pid), None)  # type: ignore[attr-defined]
        asyncio.run(drive(reference.url, world, max(args.clients), 3, "reference"))  # type: ignore[attr-defined]
        analyse(reference.database_url)  # type: ignore[attr-defined]  # as for the service, after its warm-up
        for clients in args.clients:
            rows.append({**measured(reference.url, world, clients, args.seconds, "reference", probe),  # type: ignore[attr-defined]
                         "service": "reference", "round_trips": 4.0, "statements": 4.0, "label": "reference"})
        probe.close()
    finally:
        reference.terminate()
        reference.wait(10)

    database_url = fresh_database(args.database_url, "bench")
    world = asyncio.run(load_world(database_url, args.vouchers))
    analyse(database_url)
    def serve(audit: bool = True, url: str = database_url) -> LiveServer:
        # Each server counts its round trips in a directory of its own: two run side by side.
        metrics_dir = tempfile.mkdtemp(prefix="voucher-bench-metrics-")
        # The limits are not what is measured: one operator key reads balances at 32 clients.
        env = {"VOUCHER_AUDIT_EVENTS_ENABLED": "true" if audit else "false", "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
               "VOUCHER_RATE_LIMITS": json.dumps({"operator": "10000000/minute"})}
        return LiveServer(url, workers=args.workers, env=env)

    def ready(server: LiveServer, url: str, on: dict[str, Any], clients: int) -> Probe:
        probe = Probe(url, tree(server.process.pid), f"{server.url}/metrics")  # type: ignore[union-attr]
        # Warm up every worker's pool to the most clients a row uses: a connection opened during
        # a measured row (and its statements prepared) would count against it.
        asyncio.run(drive(server.url, on, clients, 3))
        # Statistics as the measured rows find the tables, as a running programme's autoanalyze
        # keeps them: planned on the few rows loaded, a foreign-key check on the journals
        # table stays a sequential scan over every journal the run adds (0.33 ms of PostgreSQL
        # per redeem by the end of a 10-second row; autovacuum looks once a minute).
        analyse(url)
        return probe

    def run_service(label: str, scenarios: tuple[str, ...], clients: list[int], audit: bool = True) -> None:
        with serve(audit) as server:
            probe = ready(server, database_url, world, max(clients))
            for scenario in scenarios:
                for n in clients:
                    rows.append({**measured(server.url, world, n, args.seconds, scenario, probe),
                                 "service": "voucher", "label": f"{scenario}{label}"})
            probe.close()

    run_service("", ("redeem", "hold_capture", "balance"), args.clients)
    work = deferred(database_url)
    run_service(" (audit off)", ("redeem",), args.clients[:1], audit=False)

    history = None
    if args.history:
        # The history goes into a database of its own, with a world like the fresh one's, and
        # the two are measured in alternating pairs: one row after the other on the same loaded
        # machine, the order swapped each pair, and the median of the pairs' ratios taken. Run
        # once each, minutes apart, the same code's ratio had ranged from 0.65 to 1.27 (the
        # machine's speed drifts: even the service's CPU per request, which no history changes,
        # differed by a third between the two rows).
        history_url = fresh_database(args.database_url, "bench_history")
        old_world = asyncio.run(load_world(history_url, args.vouchers))
        with serve(url=history_url) as server:
            # A world's first redeem opens its provider's accounts, an audit event each: cloned a
            # million times, they had doubled the history's audit events (8 per redemption, not 4).
            asyncio.run(template_redeem(server.url, old_world))
            old_world["template"] = asyncio.run(template_redeem(server.url, old_world))
        print(f"loading {args.history:,} prior redemptions set-wise ...", flush=True)
        history = load_history(history_url, old_world, args.history)
        print(f"loaded in {history['seconds']} s: {history['rows']}"
              + ("" if history["checkpointed"] else " (no CHECKPOINT after it: the role lacks pg_checkpoint, "
                                                    "so a checkpoint may fall in the rows that follow)"), flush=True)
        n = args.clients[0]
        with serve() as fresh_server, serve(url=history_url) as old_server:
            sides = {"fresh": (fresh_server, ready(fresh_server, database_url, world, n), world),
                     "old": (old_server, ready(old_server, history_url, old_world, n), old_world)}
            for scenario in ("redeem", "hold_capture"):
                for pair in range(1, args.pairs + 1):
                    for side in (("fresh", "old") if pair % 2 else ("old", "fresh")):
                        server, probe, on = sides[side]
                        what = "fresh" if side == "fresh" else f"{args.history:,} before"
                        rows.append({**measured(server.url, on, n, args.seconds, scenario, probe),
                                     "service": "voucher", "label": f"{scenario} ({what}, pair {pair})"})
            for _, probe, _ in sides.values():
                probe.close()
    rows.append(sqlite_redeem(args.seconds))

    print(conditions)
    head = (f"{'what':40} {'clients':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>8} {'svc cpu':>7} {'pg cpu':>7} "
            f"{'trips':>5} {'stmts':>5} {'commit':>6} {'rows':>5} {'index':>6}  errors")
    print(head)
    for r in rows:
        print(f"{r['label']:40} {r['clients']:>7} {r['requests_per_s']:>8} {r['p50_ms']!s:>7} {r['p99_ms']!s:>8} "
              f"{r.get('service_cpu_ms', '-')!s:>7} {r.get('pg_cpu_ms', '-')!s:>7} {r.get('round_trips', '-')!s:>5} "
              f"{r.get('statements', '-')!s:>5} {r.get('commits', '-')!s:>6} {r.get('rows_written', '-')!s:>5} "
              f"{r.get('index_entries', '-')!s:>6}  {r['errors'] or '-'}")
    print("(CPU in ms per request; trips, statements, commits, rows and index entries written per request; "
          "hold_capture: req/s counts pairs, everything else (p50, p99 included) is per request, the hold and "
          "the capture each one)")
    print("Index entries per request, by table:")
    for r in rows:
        if r.get("index_entries_by_table") and r["service"] == "voucher":
            print(f"  {r['label']} ({r['clients']}): "
                  + ", ".join(f"{table} {entries}" for table, entries in r["index_entries_by_table"].items()))
    ratios = summarise(rows, args.clients, args.history)
    redeem = next(r for r in rows if r["label"] == "redeem" and r["clients"] == args.clients[0])
    seal, publish = work["seal-audit"], work["publish-events"]
    later = {k: round(redeem["audit_events"] * seal[k] + redeem["outbox_events"] * publish[k], 3)
             for k in ("worker_cpu_ms", "pg_cpu_ms")}
    print(f"Left to the worker: sealing {seal['events']:,} audit events cost {seal['worker_cpu_ms']} ms of its CPU "
          f"and {seal['pg_cpu_ms']} ms of PostgreSQL's each; publishing {publish['events']:,} outbox events "
          f"{publish['worker_cpu_ms']} + {publish['pg_cpu_ms']} ms each. A redeem leaves {redeem['audit_events']} "
          f"and {redeem['outbox_events']}: {later['worker_cpu_ms']} ms of worker CPU and {later['pg_cpu_ms']} ms of "
          f"PostgreSQL's more, beside its own {redeem['service_cpu_ms']} + {redeem['pg_cpu_ms']} ms "
          f"(backlog left: {work['left']})")
    ratios["redeem deferred worker + PostgreSQL CPU ms"] = [later["worker_cpu_ms"], later["pg_cpu_ms"]]
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps({
        "benchmark": "redeem", "at": datetime.now(UTC).isoformat(), "machine": platform.node(),
        "cpus": os.cpu_count(), "conditions": conditions, "rows": rows, "ratios": ratios, "history": history,
        "deferred": work,
    }, indent=2, default=str))
    return 0


def summarise(rows: list[dict[str, Any]], clients: list[int], history: int) -> dict[str, Any]:
    """The figures the product targets, as ratios within this run (DESIGN.md §7)."""
    def find(label: str, n: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["label"] == label and r["clients"] == n), None)

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    ratios: dict[str, Any] = {}
    for n in clients:
        ref = find("reference", n)
        assert ref is not None
        per_request = {"redeem": 1, "hold_capture": 2, "balance": 1}
        for scenario, goal in (("redeem", ">= 0.5"), ("hold_capture", ">= 0.4"), ("balance", ">= 0.6")):
            row = find(scenario, n)
            if row is None:
                continue
            value = ratio(row["requests_per_s"] * per_request[scenario], ref["requests_per_s"])
            ratios[f"{scenario}/reference at {n}"] = value
            print(f"{scenario} / reference at {n} clients: {value} (goal {goal}); p99 {row['p99_ms']} ms "
                  f"vs the reference's {ref['p99_ms']} ms (goal <= 2x: {ratio(row['p99_ms'], ref['p99_ms'])}x)")
    if history:
        n = clients[0]
        for scenario in ("redeem", "hold_capture"):
            pairs = []
            for pair in range(1, 1 + sum(1 for r in rows if r["label"].startswith(f"{scenario} (fresh, pair"))):
                fresh, old = find(f"{scenario} (fresh, pair {pair})", n), find(f"{scenario} ({history:,} before, pair {pair})", n)
                if fresh and old:
                    pairs.append((ratio(old["requests_per_s"], fresh["requests_per_s"]),
                                  ratio(old["pg_cpu_ms"], fresh["pg_cpu_ms"])))
            throughputs = [p[0] for p in pairs if p[0] is not None]
            cpus = [p[1] for p in pairs if p[1] is not None]
            if not pairs:
                continue
            # a pair with a row that served nothing, or PostgreSQL's CPU unseen, has no ratio
            throughput = round(statistics.median(throughputs), 3) if throughputs else None
            cpu = round(statistics.median(cpus), 3) if cpus else None
            ratios[f"{scenario} history/fresh throughput"] = throughput
            ratios[f"{scenario} history/fresh PostgreSQL CPU"] = cpu
            ratios[f"{scenario} history/fresh pairs"] = pairs
            print(f"{scenario} with {history:,} prior redemptions / fresh, median of {len(pairs)} alternating pairs: "
                  f"throughput {throughput} (goal >= 0.8), PostgreSQL CPU per request {cpu} (goal <= 1.25); "
                  f"pairs (throughput, CPU): {', '.join(f'({a}, {b})' for a, b in pairs)}")
    sqlite = next(r for r in rows if r["label"].startswith("redeem, SQLite"))
    ratios["sqlite p99/p50"] = ratio(sqlite["p99_ms"], sqlite["p50_ms"])
    print(f"SQLite, 1 worker, {sqlite['clients']} clients: p99 / p50 = {ratios['sqlite p99/p50']} (goal <= 10); "
          f"errors {sqlite['errors'] or 'none'}")
    return ratios


def sqlite_redeem(seconds: float) -> dict[str, Any]:
    """The embedded default: one-step redeem on SQLite with one worker (as `make run` serves)."""
    import tempfile

    from alembic import command

    from services.voucher.cli import alembic_config

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "voucher.db"
        command.upgrade(alembic_config(f"sqlite:///{path}"), "head")
        url = f"sqlite+aiosqlite:///{path}"
        world = asyncio.run(load_world(url, 50))
        with LiveServer(url, workers=1) as server:
            asyncio.run(drive(server.url, world, 4, 2))
            row = asyncio.run(drive(server.url, world, 8, seconds))
    return {**row, "service": "voucher", "label": "redeem, SQLite, 1 worker"}


if __name__ == "__main__":
    raise SystemExit(main())
