"""The ceiling (issue 8): the least a redemption can do over HTTP on this machine — FastAPI and
async psycopg, no auth, no idempotency, no audit, no outbox: lock and update one voucher
balance row and insert one ledger row, in one transaction.

    python -m services.voucher.serving bench.reference_app:app --workers 2 --loop uvloop --http httptools

`REFERENCE_DATABASE_URL` names the database; `python bench/reference_app.py setup N` creates
its two tables with N vouchers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, HTTPException
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

URL = os.environ.get("REFERENCE_DATABASE_URL", "postgresql://voucher:voucher@127.0.0.1:5432/voucher_reference")
pool = AsyncConnectionPool(URL, min_size=4, max_size=20, open=False)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await pool.open()
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


class Redeem(BaseModel):
    voucher_id: int
    amount: int
    order_reference: str


@app.post("/redeem", status_code=201)
async def redeem(body: Redeem) -> dict[str, int]:
    async with pool.connection() as conn, conn.transaction():
        row = await (await conn.execute(
            "UPDATE ref_voucher SET balance = balance - %s WHERE id = %s AND balance >= %s RETURNING balance",
            (body.amount, body.voucher_id, body.amount))).fetchone()
        if row is None:
            raise HTTPException(409, "insufficient balance")
        await conn.execute("INSERT INTO ref_ledger (voucher_id, amount, order_reference) VALUES (%s, %s, %s)",
                           (body.voucher_id, -body.amount, body.order_reference))
    return {"balance": row[0]}


def setup(vouchers: int) -> None:
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS ref_ledger, ref_voucher")
        conn.execute("CREATE TABLE ref_voucher (id int PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0))")
        conn.execute("CREATE TABLE ref_ledger (id bigserial PRIMARY KEY, voucher_id int NOT NULL "
                     "REFERENCES ref_voucher (id), amount bigint NOT NULL, order_reference text NOT NULL, "
                     "created_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("INSERT INTO ref_voucher SELECT g, 10^15 FROM generate_series(1, %s) g", (vouchers,))


if __name__ == "__main__":
    if sys.argv[1:2] == ["setup"]:
        setup(int(sys.argv[2]))
