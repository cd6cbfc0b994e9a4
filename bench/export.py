"""Streaming export throughput and memory through a real server process on PostgreSQL.

    python bench/export.py [--postings 1000000]

It (re)creates the database `<db>_export` beside the one VOUCHER_BENCH_POSTGRES_URL names (default
postgresql://voucher:voucher@127.0.0.1:5432/voucher, as every bench), migrates it with Alembic, opens a
programme, loads balanced journals of two postings each with INSERT … SELECT generate_series,
starts `uvicorn services.voucher.asgi:app` (one process, uvloop, httptools), streams
`GET /v1/exports/ledger-entries` as CSV and as JSON Lines with an auditor key, and prints rows/s,
MB/s and the server process's peak resident memory (VmHWM) — which stays flat however many rows
are exported — then checks each file against its manifest (SHA-256 and row count). It judges
speed and memory not at all; it exits 1 only if a manifest does not describe the bytes received.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import check_balanced_and_analyse, programme_with_provider  # noqa: E402
from redeem import DEFAULT_URL, fresh_database  # noqa: E402

from services.voucher.settings import sync_database_url  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402


async def load_world(database_url: str, now: datetime) -> dict[str, Any]:
    """A programme, an approved provider and an auditor key; the two accounts bench journals use."""
    from services.voucher.apikeys import service as apikeys
    from services.voucher.apikeys.rules import Role
    from services.voucher.db import Database
    from services.voucher.ledger import service as ledger
    from services.voucher.ledger.rules import AccountKind
    from services.voucher.settings import Settings

    db = Database(Settings(database_url=database_url))
    async with db.unit_of_work() as s:
        programme, provider = await programme_with_provider(s, "bench-export", now)
        spent = (await ledger.programme_accounts(s, programme.id))[AccountKind.PROGRAMME_SPENT]
        payable = (await ledger.ensure_provider_accounts(s, provider.id, programme.id, "CNY", now))[
            AccountKind.PROVIDER_PAYABLE]
        key = await apikeys.issue_key(s, role=Role.AUDITOR, name="bench auditor", principal_name="bench", now=now)
    await db.dispose()
    return {"key": key.secret, "programme_id": programme.id, "spent": spent, "payable": payable}


LOAD = """
WITH journal AS (
    INSERT INTO ledger_transaction (id, kind, programme_id, memo, created_at)
    SELECT gen_random_uuid(), 'bench', :programme_id, '', :t0 + g * interval '1 millisecond'
      FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
    RETURNING id, created_at
)
INSERT INTO ledger_posting (transaction_id, account_id, amount, unit, created_at)
SELECT journal.id, leg.account_id,
       leg.sign * (1 + abs(hashtext(journal.id::text)) % 1000000), 'CNY', journal.created_at
  FROM journal CROSS JOIN (VALUES (CAST(:spent AS uuid), -1), (CAST(:payable AS uuid), 1)) AS leg(account_id, sign)
"""


def load_postings(database_url: str, world: dict[str, Any], postings: int, t0: datetime) -> float:
    """Balanced two-posting journals, written set-wise. The per-row balance trigger is disabled
    for the load (as the tables' owner: no superuser needed; the rows balance by construction)
    and the balance is then checked once for the whole table instead."""
    engine = create_engine(sync_database_url(database_url))
    started = time.perf_counter()
    journals, batch = postings // 2, 250_000
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE ledger_posting DISABLE TRIGGER ledger_posting_balanced"))
        for first in range(1, journals + 1, batch):
            conn.execute(text(LOAD), {
                "programme_id": world["programme_id"], "t0": t0, "first": first,
                "last": min(first + batch - 1, journals), "spent": world["spent"], "payable": world["payable"]})
        conn.execute(text("ALTER TABLE ledger_posting ENABLE TRIGGER ledger_posting_balanced"))
    check_balanced_and_analyse(engine)
    engine.dispose()
    return time.perf_counter() - started


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


async def stream(url: str, key: str, fmt: str) -> dict[str, Any]:
    digest, size, newlines = hashlib.sha256(), 0, 0
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        started = time.perf_counter()
        async with http.stream("GET", "/v1/exports/ledger-entries", params={"format": fmt}, headers=headers) as r:
            if r.status_code != 200:
                raise SystemExit(f"export failed: {r.status_code} {(await r.aread())[:500]!r}")
            export_id = r.headers["export-id"]
            async for piece in r.aiter_raw():
                digest.update(piece)
                size += len(piece)
                newlines += piece.count(b"\n")
        elapsed = time.perf_counter() - started
        manifest = (await http.get(f"/v1/exports/manifests/{export_id}", headers=headers)).json()
    rows = newlines - (1 if fmt == "csv" else 0)
    return {
        "format": fmt, "rows": rows, "bytes": size, "seconds": round(elapsed, 2),
        "rows_per_s": round(rows / elapsed), "mb_per_s": round(size / elapsed / 1e6, 1),
        "manifest_ok": manifest.get("sha256") == digest.hexdigest() and manifest.get("row_count") == rows,
        "manifest_row_count": manifest.get("row_count"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("VOUCHER_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--postings", type=int, default=1_000_000)
    args = parser.parse_args()

    now = datetime.now(UTC)
    database_url = fresh_database(args.database_url, "export")
    world = asyncio.run(load_world(database_url, now))
    load_seconds = load_postings(database_url, world, args.postings, now - timedelta(days=30))
    print(f"loaded {args.postings:,} postings in {load_seconds:.1f} s")
    results = []
    with LiveServer(database_url, workers=1) as server:
        assert server.process is not None
        pid = server.process.pid
        asyncio.run(_warm_up(server.url, world["key"]))
        idle = memory(pid)
        for fmt in ("csv", "jsonl"):
            result = asyncio.run(stream(server.url, world["key"], fmt))
            result.update({f"server_{k}_kb": v for k, v in memory(pid).items()})
            results.append(result)
    print(f"GET /v1/exports/ledger-entries, PostgreSQL, one uvicorn process (uvloop, httptools); "
          f"server RSS before exporting {idle['VmRSS'] / 1024:.0f} MiB")
    print(f"{'format':>7} {'rows':>10} {'MB':>8} {'s':>7} {'rows/s':>9} {'MB/s':>6} {'peak RSS MiB':>13}  manifest")
    for r in results:
        print(f"{r['format']:>7} {r['rows']:>10,} {r['bytes'] / 1e6:>8.1f} {r['seconds']:>7} {r['rows_per_s']:>9,} "
              f"{r['mb_per_s']:>6} {r['server_VmHWM_kb'] / 1024:>13.0f}  "
              f"{'sha256 and row count match' if r['manifest_ok'] else 'MISMATCH'}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "export-latest.json").write_text(json.dumps({
        "benchmark": "export_ledger_entries", "at": datetime.now(UTC).isoformat(), "machine": platform.node(),
        "cpus": os.cpu_count(), "postings": args.postings, "load_seconds": round(load_seconds, 1),
        "server_idle_kb": idle, "rows": results,
    }, indent=2))
    return 0 if all(r["manifest_ok"] for r in results) else 1


async def _warm_up(url: str, key: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        response = await http.get("/v1/exports/settlements", headers={"Authorization": f"Bearer {key}"})
        response.raise_for_status()


if __name__ == "__main__":
    raise SystemExit(main())
