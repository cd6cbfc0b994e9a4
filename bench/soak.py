"""Faults, then proof that nothing was lost (issue 8): `make soak`.

Two service processes share one PostgreSQL. Clients redeem (one step), hold then capture, and
refund, each request with its own Idempotency-Key, retrying with that key whenever they do not
get a definitive answer (a dropped connection, a 5xx, "still in progress"). Meanwhile service
processes are killed with SIGKILL at random moments and restarted, and PostgreSQL is restarted
once mid-run. Afterwards:

  * every request a client saw succeed is in the ledger exactly once;
  * every order was charged at most once, however often it was retried;
  * ledger reconciliation finds no difference and the audit chain verifies;
  * no voucher, cap or budget is overdrawn.

It prints the counts and exits 1 on any violation. Only 127.0.0.1 is ever targeted.

    python bench/soak.py --minutes 10 --clients 12
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import load_world, recreate_database  # noqa: E402  (bench/ is on sys.path)

from services.voucher.settings import normalise_database_url  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402

DEFAULT_URL = "postgresql://voucher:voucher@127.0.0.1:5432/voucher"
FACE_VALUE = 3_000_000  # small: vouchers run out during the run, so limits are exercised


@dataclass
class Tally:
    requests: int = 0
    retries: int = 0
    in_doubt: int = 0
    kills: int = 0
    pg_restarts: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    #: order reference -> redemption id the client was told (one-step and captured holds)
    charged: dict[str, str] = field(default_factory=dict)
    #: refund idempotency key -> refund id the client was told
    refunds: dict[str, str] = field(default_factory=dict)
    attempted_orders: set[str] = field(default_factory=set)
    captured: list[tuple[str, int]] = field(default_factory=list)


class Servers:
    """Two service processes on 127.0.0.1; `kill` and `restart` them by index."""

    def __init__(self, database_url: str) -> None:
        # An interrupted request leaves nothing under its Idempotency-Key (its record commits with
        # its change or not at all): a retry runs at once, or waits for the first and replays it.
        env = {"VOUCHER_RATE_LIMIT_ENABLED": "false", "VOUCHER_DATABASE_POOL_SIZE": "10"}
        self.servers = [LiveServer(database_url, workers=1, env=env) for _ in range(2)]

    def start(self) -> None:
        for server in self.servers:
            server.start(timeout=60)

    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def kill(self, index: int) -> None:
        self.servers[index].kill()

    def restart(self, index: int) -> None:
        self.servers[index].start(timeout=60)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


async def definitive(http: httpx.AsyncClient, urls: list[str], method: str, path: str, key: str, body: Any,
                     tally: Tally, deadline: float) -> httpx.Response | None:
    """Send until a definitive answer (2xx or a refusal that is not "try again"), always with the
    same Idempotency-Key, to whichever server is up. None: no answer before the deadline."""
    first = True
    while time.monotonic() < deadline + 120:  # in-flight requests get two more minutes after the run
        if not first:
            tally.retries += 1
            await asyncio.sleep(random.uniform(0.05, 0.4))  # noqa: S311 - jitter
        first = False
        tally.requests += 1
        try:
            response = await http.request(method, random.choice(urls) + path, json=body,  # noqa: S311
                                          headers={"Idempotency-Key": key})
        except httpx.TransportError:
            tally.in_doubt += 1
            continue
        if response.status_code >= 500 or response.status_code == 429:
            continue
        if response.status_code == 409 and response.json().get("code") in (
                "idempotency_request_in_progress", "concurrent_update"):
            continue
        return response
    return None


def _order_body(target: tuple[str, str], order: str) -> dict[str, Any]:
    code, uscc = target
    return {"voucher_code": code, "enterprise_uscc": uscc, "order_reference": order,
            "line_items": [{"category": "accelerator:domestic", "amount": 100_000, "accelerator": "Ascend 910B",
                            "hours_milli": 1000}]}


async def client(n: int, world: dict[str, Any], urls: list[str], tally: Tally, deadline: float) -> None:
    headers = {"Authorization": f"Bearer {world['key']}"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, connect=2), headers=headers) as http:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            choice = random.random()  # noqa: S311
            target = random.choice(world["targets"])  # noqa: S311
            order = f"soak-{n}-{i}"
            if choice < 0.15 and tally.captured:
                redemption_id, amount = random.choice(tally.captured)  # noqa: S311
                key = f"refund-{n}-{i}"
                answer = await definitive(http, urls, "POST", f"/v1/redemptions/{redemption_id}/refunds", key,
                                          {"amount": max(1, amount // 10), "reason": "soak"}, tally, deadline)
                kind = "refund"
                if answer is not None and answer.status_code == 201:
                    tally.refunds[key] = answer.json()["id"]
            elif choice < 0.40:
                tally.attempted_orders.add(order)
                answer = await definitive(http, urls, "POST", "/v1/redemptions/holds", f"hold-{order}",
                                          _order_body(target, order), tally, deadline)
                kind = "hold"
                if answer is not None and answer.status_code == 201:
                    held = answer.json()
                    answer = await definitive(http, urls, "POST", f"/v1/redemptions/{held['id']}/capture",
                                              f"capture-{order}", {}, tally, deadline)
                    kind = "capture"
                    if answer is not None and answer.status_code == 200:
                        tally.charged[order] = held["id"]
                        tally.captured.append((held["id"], answer.json()["captured_amount"]))
            else:
                tally.attempted_orders.add(order)
                answer = await definitive(http, urls, "POST", "/v1/redemptions", f"redeem-{order}",
                                          _order_body(target, order), tally, deadline)
                kind = "redeem"
                if answer is not None and answer.status_code == 201:
                    tally.charged[order] = answer.json()["id"]
                    tally.captured.append((answer.json()["id"], answer.json()["captured_amount"]))
            status = "no answer" if answer is None else str(answer.status_code)
            if answer is not None and answer.status_code >= 400:
                status += " " + answer.json().get("code", "")
            tally.outcomes[f"{kind} {status}"] += 1


def restart_postgres() -> bool:
    """Restart the local cluster the hard way (immediate mode: like a crash, recovery from the WAL
    on start; a smart shutdown would wait for the services' pooled connections forever, and a fast
    one was seen to take a minute here). Needs root, as .ci/run has; False when it cannot."""
    try:
        done = subprocess.run(["pg_ctlcluster", "15", "main", "restart", "-m", "immediate"],  # noqa: S603, S607
                              capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        done = None
    if done is None or done.returncode != 0:  # never leave the cluster down behind us
        subprocess.run(["pg_ctlcluster", "15", "main", "start"], capture_output=True, timeout=120, check=False)  # noqa: S603, S607
        return False
    return True


async def chaos(servers: Servers, tally: Tally, deadline: float, started: float, min_kills: int,
                restart_pg: bool) -> None:
    restarted_pg = False
    total = deadline - started
    while time.monotonic() < deadline:
        # The faults still due (the kills, and the PostgreSQL restart) share what is left of the
        # run, one more share kept for the restarts they take: each pause is at most its share,
        # so the last kill lands before the deadline even on a slow machine.
        due = max(min_kills - tally.kills, 1) + int(restart_pg and not restarted_pg)
        share = (deadline - time.monotonic()) / (due + 1)
        await asyncio.sleep(max(1.0, random.uniform(0.4, 1.0) * share))  # noqa: S311
        if time.monotonic() >= deadline:
            break
        if not restarted_pg and restart_pg and time.monotonic() - started > total / 2:
            restarted_pg = True
            ok = await asyncio.to_thread(restart_postgres)
            tally.pg_restarts += int(ok)
            print(f"  [{time.monotonic() - started:6.1f}s] PostgreSQL restart: {'done' if ok else 'not possible here'}")
            continue
        index = random.randrange(2)  # noqa: S311
        await asyncio.to_thread(servers.kill, index)
        tally.kills += 1
        print(f"  [{time.monotonic() - started:6.1f}s] SIGKILL server {index} (kill {tally.kills})")
        await asyncio.sleep(random.uniform(0.5, 3.0))  # noqa: S311
        await asyncio.to_thread(servers.restart, index)


async def verify(database_url: str, tally: Tally) -> list[str]:
    """Every check of the run; each violation as a sentence."""
    from sqlalchemy import func, select, text

    from services.voucher.audit import service as audit
    from services.voucher.audit.signing import Signer
    from services.voucher.db import Database
    from services.voucher.ledger import service as ledger
    from services.voucher.settings import Settings
    from services.voucher.tables import Redemption, RedemptionRefund

    settings = Settings(database_url=database_url)
    db = Database(settings)
    violations: list[str] = []
    try:
        async with db.unit_of_work(write=False) as s:
            per_order = dict((await s.execute(
                select(Redemption.order_reference, func.count()).group_by(Redemption.order_reference))).all())
            ids = {str(r) for r in (await s.execute(select(Redemption.id))).scalars()}
            refund_ids = {str(r) for r in (await s.execute(select(RedemptionRefund.id))).scalars()}
            negative = (await s.execute(text(
                "SELECT count(*) FROM ledger_account WHERE is_non_negative AND balance < 0"))).scalar_one()
            over_cap = (await s.execute(text(
                "SELECT count(*) FROM enterprise_period_usage u JOIN programme p ON p.id = u.programme_id "
                "WHERE u.granted + u.committed > p.enterprise_cap OR u.subsidised > u.granted"))).scalar_one()
            reconciliation = await ledger.reconcile(s)
        for order, n in per_order.items():
            if n > 1:
                violations.append(f"order {order} charged {n} times")
        for order, redemption_id in tally.charged.items():
            if redemption_id not in ids:
                violations.append(f"order {order}: the client was told {redemption_id}, which is not in the ledger")
        for key, refund_id in tally.refunds.items():
            if refund_id not in refund_ids:
                violations.append(f"refund {key}: the client was told {refund_id}, which is not in the ledger")
        unknown = set(per_order) - tally.attempted_orders
        if unknown:
            violations.append(f"{len(unknown)} redemptions for orders no client sent")
        if negative:
            violations.append(f"{negative} non-negative ledger accounts are overdrawn")
        if over_cap:
            violations.append(f"{over_cap} enterprises are over their cap")
        if not reconciliation.is_clean:
            violations.append(f"ledger reconciliation: {reconciliation}")
        await audit.seal_pending(db)
        async with db.snapshot() as s:
            checked = await audit.verify(s, Signer.from_settings(settings))
        if not checked.is_intact:
            violations.append(f"audit chain: {checked.problems[:5]}")
        print(f"  ledger: {reconciliation.transactions} journals, {reconciliation.postings} postings; "
              f"audit: {checked.events_checked} events checked")
    finally:
        await db.dispose()
    return violations


async def run(args: argparse.Namespace) -> int:
    base = make_url(normalise_database_url(args.database_url))
    if base.host not in ("127.0.0.1", "localhost"):
        print("the soak only ever targets 127.0.0.1", file=sys.stderr)
        return 2
    database_url = recreate_database(args.database_url, base.set(database=f"{base.database}_soak"))
    world = await load_world(database_url, args.vouchers, face_value=FACE_VALUE, code="soak")
    servers = Servers(database_url)
    await asyncio.to_thread(servers.start)
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.minutes * 60
    print(f"soak: {args.minutes:g} min, {args.clients} clients, 2 server processes, {args.vouchers} vouchers")
    try:
        await asyncio.gather(
            chaos(servers, tally, deadline, started, args.kills, not args.no_postgres_restart),
            *(client(n, world, servers.urls(), tally, deadline) for n in range(args.clients)),
        )
    finally:
        await asyncio.to_thread(servers.stop)
    violations = await verify(database_url, tally)
    print(f"requests sent      {tally.requests}")
    print(f"  retries          {tally.retries}")
    print(f"  in doubt         {tally.in_doubt}  (connection lost before an answer; each retried with its key)")
    print(f"SIGKILLs           {tally.kills}")
    print(f"PostgreSQL restarts {tally.pg_restarts}")
    print(f"orders charged     {len(tally.charged)} of {len(tally.attempted_orders)} attempted; "
          f"refunds {len(tally.refunds)}")
    for outcome, count in sorted(tally.outcomes.items()):
        print(f"  {outcome:40s} {count}")
    print(f"violations         {len(violations)}")
    for violation in violations[:50]:
        print(f"  VIOLATION: {violation}")
    return 1 if violations or tally.kills < args.kills else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("VOUCHER_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "8")))
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--vouchers", type=int, default=60)
    parser.add_argument("--kills", type=int, default=10, help="at least this many SIGKILLs")
    parser.add_argument("--no-postgres-restart", action="store_true",
                        help="leave PostgreSQL alone (e.g. while other work uses the cluster)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
