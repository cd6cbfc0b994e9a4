"""One-step redeem throughput through real server processes (the way production runs them:
uvicorn workers with uvloop and httptools) against PostgreSQL, at several client counts.

    python bench/redeem.py --clients 8 32 --seconds 10

It creates a fresh database (`<db>_bench` next to the one in VOUCHER_BENCH_POSTGRES_URL),
migrates it, loads a programme with many vouchers (one per enterprise, so requests do not
all queue on one voucher's row lock), starts the server, drives it from this process on
127.0.0.1, and prints requests/s, p50, p99 and errors per client count. It judges nothing and
exits 0; the figures go to bench/results/latest.json as well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
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


from common import programme_with_provider, recreate_database  # noqa: E402  (bench/ is on sys.path)

from services.voucher.settings import normalise_database_url  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402

DEFAULT_URL = "postgresql://voucher:voucher@127.0.0.1:5432/voucher"


def fresh_database(base_url: str, suffix: str) -> str:
    url = make_url(normalise_database_url(base_url))
    return recreate_database(base_url, url.set(database=f"{url.database}_{suffix}"))


async def load_world(database_url: str, vouchers: int) -> dict[str, Any]:
    """Programme, provider, `vouchers` enterprises each with a voucher; returns what clients need."""
    from services.voucher.actor import SYSTEM
    from services.voucher.apikeys import service as apikeys
    from services.voucher.apikeys.rules import Role
    from services.voucher.db import Database
    from services.voucher.enterprises import service as enterprises
    from services.voucher.programmes import service as programmes
    from services.voucher.settings import Settings
    from services.voucher.vouchers import service as vouchers_service
    from tests.support import new_uscc

    now = datetime.now(UTC)
    db = Database(Settings(database_url=database_url))
    async with db.unit_of_work() as s:
        programme, provider = await programme_with_provider(s, "bench", now)
        await programmes.enrol_provider(s, SYSTEM, programme.id, provider.id, now)
        key = await apikeys.issue_key(s, role=Role.PROVIDER, name="bench", provider_id=provider.id, now=now)
        targets = []
        for _ in range(vouchers):
            enterprise = await enterprises.register(
                s, {"uscc": new_uscc(), "name": "bench SME", "region_code": "330110", "headcount": 10,
                    "annual_revenue": None, "founded_on": None, "industry_code": None, "certifications": [],
                    "blacklist_records": [], "related_parties": []}, now)
            voucher = await vouchers_service.issue_voucher(
                s, programme_id=programme.id, enterprise_id=enterprise.id, face_value=10**11, now=now)
            targets.append((voucher.code, enterprise.uscc))
    await db.dispose()
    return {"key": key.secret, "targets": targets}


async def drive(url: str, world: dict[str, Any], clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    targets = world["targets"]
    headers = {"Authorization": f"Bearer {world['key']}", "content-type": "application/json"}
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(n: int, http: httpx.AsyncClient) -> None:
        i = 0
        while time.perf_counter() < deadline:
            code, uscc = targets[(n + i * clients) % len(targets)]
            i += 1
            order = f"{n}-{i}-{uuid.uuid4().hex[:8]}"
            body = json.dumps({
                "voucher_code": code, "enterprise_uscc": uscc, "order_reference": order,
                "line_items": [{"category": "accelerator:domestic", "amount": 100_000,
                                "accelerator": "Ascend 910B", "hours_milli": 1000}],
            })
            started = time.perf_counter()
            try:
                response = await http.post("/v1/redemptions", content=body,
                                           headers={**headers, "Idempotency-Key": order})
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            elapsed = time.perf_counter() - started
            if status == "201":
                latencies.append(elapsed)
            else:
                errors[status] = errors.get(status, 0) + 1

    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(n, http) for n in range(clients)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "clients": clients,
        "requests_per_s": round(len(latencies) / wall, 1),
        "ok": len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2) if latencies else None,
        "errors": errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("VOUCHER_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--vouchers", type=int, default=200)
    args = parser.parse_args()

    database_url = fresh_database(args.database_url, "bench")
    world = asyncio.run(load_world(database_url, args.vouchers))
    rows = []
    # Audit on (production) and off (VOUCHER_AUDIT_EVENTS_ENABLED=false, benchmarks only), same
    # database, same run, alternating per client count so drift hits both alike.
    for clients in args.clients:
        for audit in (True, False):
            env = {"VOUCHER_AUDIT_EVENTS_ENABLED": "true" if audit else "false"}
            with LiveServer(database_url, workers=args.workers, env=env) as server:
                asyncio.run(drive(server.url, world, 4, 2))  # warm up every worker's pool and caches
                rows.append({**asyncio.run(drive(server.url, world, clients, args.seconds)), "audit": audit})
    print(f"one-step redeem, PostgreSQL, {args.workers} uvicorn workers (uvloop, httptools), "
          f"{args.vouchers} vouchers, {args.seconds:g} s per row, load generator in-process on 127.0.0.1")
    print(f"{'clients':>8} {'audit':>6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ok':>7}  errors")
    for r in rows:
        print(f"{r['clients']:>8} {'on' if r['audit'] else 'off':>6} {r['requests_per_s']:>9} {r['p50_ms']:>8} "
              f"{r['p99_ms']:>8} {r['ok']:>7}  {r['errors'] or '-'}")
    for clients in args.clients:
        on, off = (next(r for r in rows if r["clients"] == clients and r["audit"] is a) for a in (True, False))
        if off["requests_per_s"]:
            print(f"audit cost at {clients} clients: throughput with audit / without = "
                  f"{on['requests_per_s'] / off['requests_per_s']:.2f}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps({
        "benchmark": "one_step_redeem", "at": datetime.now(UTC).isoformat(), "machine": platform.node(),
        "cpus": os.cpu_count(), "workers": args.workers, "vouchers": args.vouchers, "rows": rows,
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
