"""How long the programme office's dashboard takes to render over a year of history.

    python bench/console.py [--redemptions 100000] [--renders 20]

On a fresh PostgreSQL database (`<db>_console`) it opens a programme with an approved provider
and 50 vouchers through the services, makes one real redemption through the API and clones it
set-wise into `--redemptions` captured redemptions over the past weeks (bench/history.py),
moves the programme's opening a year back (so the dashboard shows its full 12 months, one trial
balance each), then starts one server (uvicorn, uvloop, httptools), signs in to the console with an operator
key and renders `GET /console/operator/programmes/{id}` `--renders` times, one at a time.

It prints the render time (p50, p95, max) and the same for one `GET .../trial-balance` (the
dashboard reads one, then the spent account's balance at each month's start). It checks, and exits 1 if not, that the
dashboard's spent figure equals the trial balance's (the clones are captures). It judges speed
not at all: read the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import load_world  # noqa: E402  (bench/ is on sys.path)
from history import load_history  # noqa: E402
from redeem import DEFAULT_URL, fresh_database, template_redeem  # noqa: E402

from services.voucher.settings import sync_database_url  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1) if ordered else float("nan")


async def render(url: str, operator: str, programme_id: str, renders: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=300, follow_redirects=False) as http:
        form = await http.get("/console/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        signed = await http.post("/console/sign-in", data={"api_key": operator, "csrf_token": token, "next": ""})
        assert signed.status_code == 303, signed.text
        page_ms, balance_ms = [], []
        html = ""
        for _ in range(renders):
            started = time.perf_counter()
            page = await http.get(f"/console/operator/programmes/{programme_id}")
            page_ms.append((time.perf_counter() - started) * 1000)
            assert page.status_code == 200, page.text[:500]
            html = page.text
            started = time.perf_counter()
            balance = await http.get(f"/v1/programmes/{programme_id}/trial-balance",
                                     headers={"Authorization": f"Bearer {operator}"})
            balance_ms.append((time.perf_counter() - started) * 1000)
        kinds: dict[str, int] = {}
        for account in balance.json()["accounts"]:
            kinds[account["kind"]] = kinds.get(account["kind"], 0) + account["balance"]
    spent = re.search(r'id="figure-spent">([^<]+)<', html).group(1)  # type: ignore[union-attr]
    months = html.count("<tr><td>20")
    expected = -kinds.get("programme_spent", 0)
    return {"render_ms": {"p50": percentile(page_ms, 0.5), "p95": percentile(page_ms, 0.95),
                          "max": round(max(page_ms), 1)},
            "trial_balance_ms": {"p50": percentile(balance_ms, 0.5), "p95": percentile(balance_ms, 0.95)},
            "months_shown": months, "spent_shown": spent,
            "spent_matches": spent == f"¥{expected // 100:,}.{expected % 100:02d}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("VOUCHER_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--redemptions", type=int, default=100_000)
    parser.add_argument("--renders", type=int, default=20)
    args = parser.parse_args()

    database_url = fresh_database(args.database_url, "console")
    world = asyncio.run(load_world(database_url, 50))
    with LiveServer(database_url) as server:
        world["template"] = asyncio.run(template_redeem(server.url, world))
    print(f"loading {args.redemptions:,} prior redemptions set-wise ...", flush=True)
    history = load_history(database_url, world, args.redemptions)
    print(f"loaded in {history['seconds']} s: {history['rows']}", flush=True)
    engine = create_engine(sync_database_url(database_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE programme SET created_at = created_at - interval '1 year', "
                          "opened_at = opened_at - interval '1 year'"))
    engine.dispose()
    with LiveServer(database_url) as server:
        me = httpx.get(f"{server.url}/v1/programmes", headers={"Authorization": f"Bearer {world['operator']}"})
        programme_id = me.json()["items"][0]["id"]
        asyncio.run(render(server.url, world["operator"], programme_id, 2))  # warm up
        result = asyncio.run(render(server.url, world["operator"], programme_id, args.renders))
    print(f"PostgreSQL on 127.0.0.1, one uvicorn process, {os.cpu_count()} CPUs; "
          f"{history['rows']['redemption']:,} redemptions, {history['rows']['ledger_posting']:,} postings")
    print(f"dashboard GET /console/operator/programmes/{{id}}: p50 {result['render_ms']['p50']} ms, "
          f"p95 {result['render_ms']['p95']} ms, max {result['render_ms']['max']} ms "
          f"({result['months_shown']} months shown)")
    print(f"one GET /v1/programmes/{{id}}/trial-balance: p50 {result['trial_balance_ms']['p50']} ms, "
          f"p95 {result['trial_balance_ms']['p95']} ms")
    print(f"spent shown {result['spent_shown']}, equals the trial balance: {result['spent_matches']}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "console-latest.json").write_text(json.dumps({
        "benchmark": "console", "at": datetime.now(UTC).isoformat(), "machine": platform.node(),
        "cpus": os.cpu_count(), "history": history, **result}, indent=2, default=str))
    return 0 if result["spent_matches"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
