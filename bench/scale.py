"""Scale: does a voucher balance read stay as fast with 2,000,000 ledger postings as with
10,000, and how long does settling 100,000 captured redemptions take?

    python bench/scale.py [--large 2000000] [--redemptions 100000]

On a fresh PostgreSQL database (`<db>_scale`) it opens a programme with an approved provider and
50 vouchers through the services, then:

  * loads ledger postings set-wise (INSERT … SELECT generate_series) on the vouchers' own
    available and held accounts, in pairs of journals that cancel out, so every balance and the
    reconciliation stay true — first up to 10,000 postings, later up to `--large`;
  * after each load, drives GET /v1/vouchers/{id} through two uvicorn workers (uvloop,
    httptools): one client for the latency of a lone read, then 8 clients for throughput;
  * makes one redemption through the API, clones it set-wise into `--redemptions` captured
    redemptions in last month (Asia/Shanghai), then times POST /v1/settlements for that month
    through the server, and checks the settlement's line count and total.

It prints a table and writes bench/results/scale-latest.json. It judges nothing and exits 0
unless the settlement does not cover exactly the loaded redemptions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import check_balanced_and_analyse, load_world  # noqa: E402  (bench/ is on sys.path)
from redeem import DEFAULT_URL, _order, drive, fresh_database  # noqa: E402

from services.voucher.settings import sync_database_url  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402

# Journals of two postings on one voucher: available -> held for even g, and back for the odd g
# that follows with the same amount, so each pair cancels out on both accounts.
LOAD = """
WITH pairs AS (
    SELECT p.available, p.held, p.i - 1 AS i
      FROM unnest(CAST(:available AS uuid[]), CAST(:held AS uuid[])) WITH ORDINALITY AS p(available, held, i)
), journal AS (
    INSERT INTO ledger_transaction (id, kind, programme_id, memo, created_at)
    SELECT gen_random_uuid(), 'bench', :programme_id, g::text, :t0 + g * interval '1 millisecond'
      FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
    RETURNING id, memo, created_at
)
INSERT INTO ledger_posting (transaction_id, account_id, amount, unit, created_at)
SELECT journal.id, CASE WHEN leg.side = 0 THEN pairs.available ELSE pairs.held END,
       (CASE WHEN leg.side = 0 THEN -1 ELSE 1 END) * (CASE WHEN journal.memo::bigint % 2 = 0 THEN 1 ELSE -1 END)
         * (1 + (journal.memo::bigint / 2) % 1000),
       'CNY', journal.created_at
  FROM journal
  JOIN pairs ON pairs.i = (journal.memo::bigint / 2) % :vouchers
 CROSS JOIN (VALUES (0), (1)) AS leg(side)
"""

CLONE = """
INSERT INTO redemption (id, voucher_id, programme_id, enterprise_id, provider_id, order_reference, order_amount,
                        unit, line_items, computation, status, held_amount, captured_amount, refunded_amount,
                        period_key, hold_expires_at, created_at, captured_at, voided_at, void_reason, payee)
SELECT gen_random_uuid(), r.voucher_id, r.programme_id, r.enterprise_id, r.provider_id, 'bench-settle-' || g,
       r.order_amount, r.unit, r.line_items, r.computation, r.status, r.held_amount, r.captured_amount, 0,
       r.period_key, :starts_at + g * interval '10 milliseconds', :starts_at + g * interval '10 milliseconds',
       :starts_at + g * interval '10 milliseconds', NULL, NULL, r.payee
  FROM redemption AS r CROSS JOIN generate_series(1, CAST(:n AS integer)) AS g
 WHERE r.id = :template
"""


def postings(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM ledger_posting")).scalar_one())


def load_postings(engine: Any, target: int, accounts: dict[str, Any]) -> float:
    """Add cancelling journals until the ledger holds about `target` postings."""
    started = time.perf_counter()
    have = postings(engine)
    journals = max((target - have) // 4 * 2, 0)  # an even number: whole cancelling pairs
    first = 10**9 + have  # memo numbers never reused across loads; even, so pairs stay aligned
    first -= first % 2
    batch = 250_000
    with engine.begin() as conn:
        # The per-row balance trigger is off for the load (the tables' owner may; the journals
        # balance by construction) and the whole table is checked once afterwards.
        conn.execute(text("ALTER TABLE ledger_posting DISABLE TRIGGER ledger_posting_balanced"))
        for start in range(0, journals, batch):
            conn.execute(text(LOAD), {
                **accounts, "first": first + start, "last": first + min(start + batch, journals) - 1,
                "t0": datetime(2026, 1, 1, tzinfo=UTC)})
        conn.execute(text("ALTER TABLE ledger_posting ENABLE TRIGGER ledger_posting_balanced"))
    check_balanced_and_analyse(engine)
    return time.perf_counter() - started


async def _reconciles(url: str, operator: str) -> bool:
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        response = await http.get("/v1/ledger/reconciliation", headers={"Authorization": f"Bearer {operator}"})
    return response.status_code == 200 and response.json()["is_clean"] is True


def balance_reads(url: str, world: dict[str, Any], seconds: float) -> dict[str, Any]:
    lone = asyncio.run(drive(url, world, 1, seconds / 2, "balance"))
    busy = asyncio.run(drive(url, world, 8, seconds, "balance"))
    return {"lone_p50_ms": lone["p50_ms"], "lone_p99_ms": lone["p99_ms"], "requests_per_s_8": busy["requests_per_s"],
            "p50_ms_8": busy["p50_ms"], "p99_ms_8": busy["p99_ms"], "errors": {**lone["errors"], **busy["errors"]}}


async def one_capture(url: str, world: dict[str, Any]) -> str:
    code, uscc = world["targets"][0]
    headers = {"Authorization": f"Bearer {world['key']}", "content-type": "application/json",
               "Idempotency-Key": f"scale-{uuid.uuid4().hex}"}
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        response = await http.post("/v1/redemptions", content=_order(code, uscc, "scale-template"), headers=headers)
    response.raise_for_status()
    return str(response.json()["id"])


async def settle(url: str, operator: str, body: dict[str, Any]) -> tuple[float, httpx.Response]:
    headers = {"Authorization": f"Bearer {operator}", "Idempotency-Key": f"scale-{uuid.uuid4().hex}"}
    async with httpx.AsyncClient(base_url=url, timeout=1800) as http:
        started = time.perf_counter()
        response = await http.post("/v1/settlements", json=body, headers=headers)
        return time.perf_counter() - started, response


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("VOUCHER_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    parser.add_argument("--redemptions", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()

    from services.voucher.settlement.rules import period_bounds, previous_month

    database_url = fresh_database(args.database_url, "scale")
    world = asyncio.run(load_world(database_url, 50))
    engine = create_engine(sync_database_url(database_url))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT available_account_id, held_account_id FROM voucher ORDER BY id")).all()
        programme_id, provider_id = conn.execute(text(
            "SELECT programme_id, provider_id FROM programme_enrolment LIMIT 1")).one()
    accounts = {"available": [r[0] for r in rows], "held": [r[1] for r in rows], "vouchers": len(rows),
                "programme_id": programme_id}

    reads: dict[str, Any] = {}
    loads: dict[str, float] = {}
    for label, target in (("small", args.small), ("large", args.large)):
        loads[label] = load_postings(engine, target, accounts)
        count = postings(engine)
        with LiveServer(database_url, workers=2) as server:
            asyncio.run(drive(server.url, world, 4, 2, "balance"))  # warm every worker
            reads[label] = {"postings": count, **balance_reads(server.url, world, args.seconds)}
            reads[label]["reconciles"] = asyncio.run(_reconciles(server.url, world["operator"]))
        print(f"{count:,} postings (loaded in {loads[label]:.1f} s): {reads[label]}", flush=True)

    now = datetime.now(UTC)
    first, last = previous_month(now)
    starts_at, _ = period_bounds(first, last)
    with LiveServer(database_url, workers=2) as server:
        template = asyncio.run(one_capture(server.url, world))
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(CLONE), {"template": template, "n": args.redemptions, "starts_at": starts_at})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE redemption"))
            expected = conn.execute(text(
                "SELECT count(*), sum(captured_amount) FROM redemption WHERE order_reference LIKE 'bench-settle-%'")).one()
        clone_seconds = time.perf_counter() - started
        seconds, response = asyncio.run(settle(server.url, world["operator"], {
            "provider_id": str(provider_id), "programme_id": str(programme_id),
            "period_start": first.isoformat(), "period_end": last.isoformat()}))
    engine.dispose()
    settlement = response.json()
    covered = response.status_code == 201 and settlement.get("line_count") == expected[0] \
        and settlement.get("total") == expected[1]

    small, large = reads["small"], reads["large"]
    print("PostgreSQL 15 on 127.0.0.1, 2 uvicorn workers (uvloop, httptools), 50 vouchers, "
          f"{os.cpu_count()} CPUs shared with the load generator")
    print(f"{'voucher balance read':28} {'postings':>10} {'lone p50':>9} {'lone p99':>9} {'req/s @8':>9} "
          f"{'p50 @8':>7} {'p99 @8':>7}  reconciles")
    for r in (small, large):
        print(f"{'GET /v1/vouchers/{id}':28} {r['postings']:>10,} {r['lone_p50_ms']!s:>9} {r['lone_p99_ms']!s:>9} "
              f"{r['requests_per_s_8']!s:>9} {r['p50_ms_8']!s:>7} {r['p99_ms_8']!s:>7}  {r['reconciles']}")
    ratio = round(large["lone_p50_ms"] / small["lone_p50_ms"], 2) if small["lone_p50_ms"] else None
    print(f"balance read p50 at {large['postings']:,} / at {small['postings']:,} postings = {ratio} (materialised: ~1)")
    print(f"settlement of {expected[0]:,} captured redemptions (POST /v1/settlements, one request): "
          f"{seconds:.1f} s, status {response.status_code}, line_count {settlement.get('line_count')}, "
          f"covers exactly the loaded captures: {covered}  (loaded set-wise in {clone_seconds:.1f} s)")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale-latest.json").write_text(json.dumps({
        "benchmark": "scale", "at": datetime.now(UTC).isoformat(), "machine": platform.node(), "cpus": os.cpu_count(),
        "balance_reads": reads, "posting_loads_s": loads, "balance_read_p50_ratio": ratio,
        "settlement": {"redemptions": expected[0], "seconds": round(seconds, 2), "status": response.status_code,
                       "line_count": settlement.get("line_count"), "covers_loaded": covered},
    }, indent=2, default=str))
    return 0 if covered else 1


if __name__ == "__main__":
    raise SystemExit(main())
