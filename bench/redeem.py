"""`make bench`: the redemption path through real server processes (the way production runs
them: uvicorn workers with uvloop and httptools) against PostgreSQL, beside the raw-SQL ceiling.

    python bench/redeem.py --clients 8 32 --seconds 10

In one run, each at 8 and 32 concurrent clients on 127.0.0.1:
  * the reference app (bench/reference_app.py: FastAPI + async psycopg, no auth, one balance
    update and one ledger insert per request) on a database of its own: the ceiling;
  * the service: one-step redeem, hold + capture, voucher balance reads (GET /v1/vouchers/{id}),
    one-step redeem again with audit events off, to price the audit, and once more with the
    redeem fast path off (VOUCHER_REDEEM_FAST_PATH=false), to price the general path;
  * the embedded default: one-step redeem on SQLite with one worker.
It prints requests/s, p50, p99 and errors per row, the service / reference ratio and the audit
ratio. It judges nothing and exits 0; the figures go to bench/results/latest.json as well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from common import load_world, recreate_database  # noqa: E402  (bench/ is on sys.path)
from loadgen import Connection  # noqa: E402

from services.voucher.settings import normalise_database_url  # noqa: E402
from tests.live_server import LiveServer, free_port  # noqa: E402

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


async def _one(http: Connection, scenario: str, world: dict[str, Any], n: int, i: int, clients: int) -> str:
    """One operation of `scenario`; its final status (201/200 is success)."""
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
    held = await http.request("POST", "/v1/redemptions/holds", _order(code, uscc, order).encode(),
                              {**headers, "Idempotency-Key": order})
    if held.status_code != 201:
        return f"hold {held.status_code}"
    captured = await http.request("POST", f"/v1/redemptions/{held.json()['id']}/capture", b"{}",
                                  {**headers, "Idempotency-Key": f"c-{order}"})
    return "201" if captured.status_code == 200 else f"capture {captured.status_code}"


async def drive(url: str, world: dict[str, Any], clients: int, seconds: float, scenario: str = "redeem") -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def client_loop(n: int) -> None:
        http = Connection(url)
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            started = time.perf_counter()
            try:
                status = await _one(http, scenario, world, n, i, clients)
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
    latencies.sort()
    return {
        "scenario": scenario,
        "clients": clients,
        "requests_per_s": round(len(latencies) / wall, 1),
        "ok": len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000, 2) if latencies else None,
        "errors": errors,
    }


def reference_server(database_url: str, vouchers: int, workers: int) -> subprocess.Popen[bytes]:
    """The raw-SQL ceiling (bench/reference_app.py) on a database of its own, started like ours."""
    url = make_url(normalise_database_url(database_url))
    target = url.set(database=f"{url.database}_reference")
    recreate_database(database_url, target)
    plain = target.set(drivername="postgresql").render_as_string(hide_password=False)
    env = {**os.environ, "REFERENCE_DATABASE_URL": plain}
    subprocess.run([sys.executable, "bench/reference_app.py", "setup", str(vouchers)], cwd=ROOT, env=env, check=True)  # noqa: S603
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "uvicorn", "bench.reference_app:app", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{process.url}/redeem", json={"voucher_id": 1, "amount": 1, "order_reference": "warm"},  # type: ignore[attr-defined]
                       timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the reference app did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("VOUCHER_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--vouchers", type=int, default=200)
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    conditions = (f"PostgreSQL 15 on 127.0.0.1, {args.workers} uvicorn workers (uvloop, httptools), "
                  f"{args.vouchers} vouchers, {args.seconds:g} s per row, lean asyncio load generator in-process, "
                  f"{os.cpu_count()} CPUs shared by all")

    # The ceiling first, on a database of its own.
    reference = reference_server(args.database_url, args.vouchers, args.workers)
    try:
        world = {"vouchers": args.vouchers}
        asyncio.run(drive(reference.url, world, 4, 2, "reference"))  # type: ignore[attr-defined]
        for clients in args.clients:
            rows.append({**asyncio.run(drive(reference.url, world, clients, args.seconds, "reference")),  # type: ignore[attr-defined]
                         "service": "reference", "audit": None})
    finally:
        reference.terminate()
        reference.wait(10)

    database_url = fresh_database(args.database_url, "bench")
    world = asyncio.run(load_world(database_url, args.vouchers))
    # Production settings, then audit off (VOUCHER_AUDIT_EVENTS_ENABLED=false, benchmarks only),
    # then the redeem fast path off: same database, same run.
    for audit, fast, scenarios in ((True, True, ("redeem", "hold_capture", "balance")),
                                   (False, True, ("redeem",)), (True, False, ("redeem",))):
        env = {"VOUCHER_AUDIT_EVENTS_ENABLED": "true" if audit else "false",
               "VOUCHER_REDEEM_FAST_PATH": "true" if fast else "false"}
        with LiveServer(database_url, workers=args.workers, env=env) as server:
            asyncio.run(drive(server.url, world, 4, 2))  # warm up every worker's pool and caches
            for scenario in scenarios:
                for clients in args.clients:
                    rows.append({**asyncio.run(drive(server.url, world, clients, args.seconds, scenario)),
                                 "service": "voucher", "audit": audit, "fast_path": fast})
    sqlite = sqlite_redeem(args.seconds)
    rows.append(sqlite)

    print(conditions)
    print(f"{'what':34} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ok':>7}  errors")
    for r in rows:
        label = r.get("label") or f"{r['service']} {r['scenario']}" + (
            "" if r["audit"] is None else " (general path)" if r.get("fast_path") is False
            else f" (audit {'on' if r['audit'] else 'off'})")
        print(f"{label:34} {r['clients']:>7} {r['requests_per_s']:>9} {r['p50_ms']!s:>8} {r['p99_ms']!s:>8} "
              f"{r['ok']:>7}  {r['errors'] or '-'}")
    ratios = {}
    for clients in args.clients:
        ref = next(r for r in rows if r["service"] == "reference" and r["clients"] == clients)
        redeems = [r for r in rows if r["scenario"] == "redeem" and r["clients"] == clients and "fast_path" in r]
        on = next(r for r in redeems if r["audit"] is True and r["fast_path"] is True)
        off = next(r for r in redeems if r["audit"] is False)
        general = next(r for r in redeems if r["fast_path"] is False)
        ratios[clients] = {"service_over_reference": round(on["requests_per_s"] / ref["requests_per_s"], 3)
                           if ref["requests_per_s"] else None,
                           "audit_on_over_off": round(on["requests_per_s"] / off["requests_per_s"], 3)
                           if off["requests_per_s"] else None,
                           "fast_over_general_path": round(on["requests_per_s"] / general["requests_per_s"], 3)
                           if general["requests_per_s"] else None}
        print(f"one-step redeem at {clients} clients: service / reference = "
              f"{ratios[clients]['service_over_reference']}  (goal >= 0.5); audit on / off = "
              f"{ratios[clients]['audit_on_over_off']}; fast / general path = "
              f"{ratios[clients]['fast_over_general_path']}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps({
        "benchmark": "redeem", "at": datetime.now(UTC).isoformat(), "machine": platform.node(),
        "cpus": os.cpu_count(), "conditions": conditions, "rows": rows, "ratios": ratios,
    }, indent=2))
    return 0


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
    return {**row, "service": "voucher", "audit": True, "label": "voucher redeem, SQLite, 1 worker"}


if __name__ == "__main__":
    raise SystemExit(main())
