"""A flood of unknown API keys against one valid client (issue 19, finding 3).

On a fresh PostgreSQL database (`<db>_auth`), one server (2 uvicorn workers): first a valid
provider key reads `GET /v1/me` alone with 4 clients for `--seconds`; then the same while 32
clients send random `vk_…` keys from the same address. Prints the valid key's p50/p95 in both
runs and their ratio (goal: p95 under the flood ≤ 2 × alone), how the flood was answered (401
then 429 once the address is throttled, each held a second), and the service CPU of both runs.
Judges nothing: read the ratio.

    .venv/bin/python bench/auth_flood.py [--seconds 10] [--flood 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import load_world  # noqa: E402  (bench/ is on sys.path)
from loadgen import Connection  # noqa: E402
from redeem import DEFAULT_URL, fresh_database, process_cpu, tree  # noqa: E402

from tests.live_server import LiveServer  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


async def run(url: str, key: str, seconds: float, clients: int, flood: int) -> dict[str, Any]:
    """`clients` valid clients and `flood` attackers, each on its own keep-alive connection
    (bench/loadgen.py: httpx would make the load generator the bottleneck)."""
    timings: list[float] = []
    answers: dict[int, int] = {}
    deadline = time.monotonic() + seconds

    async def valid() -> None:
        http = Connection(url)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await http.request("GET", "/v1/me", headers={"Authorization": f"Bearer {key}"})
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200, response.body
        await http.close()

    async def attacker() -> None:
        http = Connection(url)
        while time.monotonic() < deadline:
            bad = "vk_" + secrets.token_hex(5) + "_" + secrets.token_urlsafe(32)
            response = await http.request("GET", "/v1/me", headers={"Authorization": f"Bearer {bad}"})
            answers[response.status_code] = answers.get(response.status_code, 0) + 1
        await http.close()

    await asyncio.gather(*(valid() for _ in range(clients)), *(attacker() for _ in range(flood)))
    return {"valid_requests": len(timings), "p50_ms": round(1000 * percentile(timings, 0.5), 2),
            "p95_ms": round(1000 * percentile(timings, 0.95), 2), "flood_answers": answers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("VOUCHER_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--flood", type=int, default=32)
    args = parser.parse_args()

    database_url = fresh_database(args.database_url, "auth")
    world = asyncio.run(load_world(database_url, 1))
    with LiveServer(database_url, workers=2, env={"VOUCHER_LOG_LEVEL": "ERROR"}) as server:
        assert server.process is not None
        pids = tree(server.process.pid)
        asyncio.run(run(server.url, world["key"], 2, args.clients, 0))  # warm the key cache and the pool
        cpu0 = process_cpu(pids)
        alone = asyncio.run(run(server.url, world["key"], args.seconds, args.clients, 0))
        cpu1 = process_cpu(pids)
        flooded = asyncio.run(run(server.url, world["key"], args.seconds, args.clients, args.flood))
        cpu2 = process_cpu(pids)
    flood_requests = sum(flooded["flood_answers"].values())
    result = {
        "conditions": f"PostgreSQL, 2 uvicorn workers, {args.clients} valid clients, {args.flood} flooding "
                      f"clients from the same address, {args.seconds:g} s per run, {os.cpu_count()} CPUs shared",
        "alone": {**alone, "service_cpu_s": round(cpu1 - cpu0, 2)},
        "flooded": {**flooded, "service_cpu_s": round(cpu2 - cpu1, 2),
                    "flood_answers_per_s": round(flood_requests / args.seconds, 1)},
        "p95_ratio_flooded_to_alone": round(flooded["p95_ms"] / alone["p95_ms"], 2) if alone["p95_ms"] else None,
        "goal": "p95 under the flood <= 2 x alone",
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
