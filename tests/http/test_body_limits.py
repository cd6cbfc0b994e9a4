"""Bodies are bounded and keys come first (issue 19, finding 2): a body over its route's limit
is 413 `payload_too_large` before it is read, declared or streamed; a writing request without
a valid key is 401 before a byte of its body is read; nothing changes either way."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.voucher.clock import system_clock
from services.voucher.tables import Redemption
from tests.live_server import LiveServer
from tests.support import assert_problem, auth
from tests.world import World, build_world, hold_body

MiB = 1_048_576


class Call:
    """One request straight into the ASGI app, counting how much of its body the app read."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.read = 0
        self.messages: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.read >= len(self.chunks):
            await asyncio.sleep(3600)  # a client that never sends the rest
        chunk = self.chunks[self.read]
        self.read += 1
        return {"type": "http.request", "body": chunk, "more_body": self.read < len(self.chunks)}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(b"".join(m.get("body", b"") for m in self.messages[1:]))  # type: ignore[no-any-return]


async def call(app: Any, path: str, chunks: list[bytes], *, key: str | None = None,
               length: int | None = None, method: str = "POST") -> Call:
    headers = [(b"content-type", b"application/json"), (b"idempotency-key", b"k-1")]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 5000), "server": ("test", 80)}
    made = Call(chunks)
    await asyncio.wait_for(app(scope, made.receive, made.send), timeout=30)
    return made


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    return await build_world(app, client)


async def redemptions(app: Any) -> int:
    async with app.state.database.unit_of_work(write=False) as session:
        return (await session.execute(select(func.count()).select_from(Redemption))).scalar_one()  # type: ignore[no-any-return]


async def test_a_declared_body_over_the_limit_is_refused_unread(app: Any, world: World) -> None:
    for key in (None, world.provider_key):
        made = await call(app, "/v1/redemptions", [b"[" * 1024], key=key, length=100 * MiB)
        assert made.status == 413 and made.read == 0
        assert made.body["code"] == "payload_too_large" and made.body["max_bytes"] == MiB
    assert await redemptions(app) == 0


async def test_no_key_no_read(app: Any, world: World) -> None:
    """Without a valid key the body is never read (and so never parsed)."""
    for key in (None, "vk_unknown_0000000000000000000000000000000000000000", "not-a-key"):
        made = await call(app, "/v1/redemptions", [b"[1," * 1000, b"2]"], key=key, length=3002)
        assert made.status == 401 and made.read == 0, made.messages
    made = await call(app, "/v1/redemptions", [b"{"], key=world.provider_key, length=1)
    assert made.status == 400 and made.body["code"] == "malformed_json" and made.read == 1


async def test_a_streamed_body_is_cut_off_at_the_limit(app: Any, world: World) -> None:
    chunk = b" " * 65_536
    made = await call(app, "/v1/redemptions", [chunk] * 64, key=world.provider_key)  # 4 MiB, no length
    assert made.status == 413 and made.body["code"] == "payload_too_large"
    assert made.read == MiB // len(chunk) + 1  # stopped at the first chunk past 1 MiB
    assert await redemptions(app) == 0


async def test_a_keyless_body_is_never_read_and_its_connection_closed(app: Any, world: World) -> None:
    made = await call(app, "/v1/redemptions", [b"[" * 65_536] * 8, length=8 * 65_536)
    assert made.status == 401 and made.read == 0
    assert (b"connection", b"close") in made.messages[0]["headers"]
    too_large = await call(app, "/v1/redemptions", [b""], key=world.provider_key, length=100 * MiB)
    assert too_large.status == 413 and (b"connection", b"close") in too_large.messages[0]["headers"]


async def test_uploads_may_be_larger(app: Any, world: World) -> None:
    body = json.dumps({"programme_id": world.programme["id"], "period_start": "2026-03-01",
                       "period_end": "2026-03-31", "csv": "order_reference,amount,subsidy\n" + "x" * (2 * MiB)})
    made = await call(app, "/v1/usage-reconciliations", [body.encode()], key=world.provider_key, length=len(body))
    assert made.status != 413, made.body
    over = await call(app, "/v1/usage-reconciliations", [b""], key=world.provider_key, length=16 * MiB + 1)
    assert over.status == 413 and over.body["max_bytes"] == 16 * MiB
    # only for a key that may upload: an operator's 2 MiB there is refused, unread
    operator = await call(app, "/v1/usage-reconciliations", [body.encode()], key=world.operator, length=len(body))
    assert operator.status == 413 and operator.body["max_bytes"] == MiB and operator.read == 0


async def test_a_body_within_the_limit_works(world: World, client: httpx.AsyncClient) -> None:
    voucher = await world.issue(1_000_000)
    response = await world.hold(voucher, 100_000, order="PO-1", path="/v1/redemptions")
    assert response.status_code == 201, response.text
    padded = await client.post("/v1/redemptions", content=json.dumps(
        hold_body(voucher["code"], world.enterprise["uscc"], "PO-2", [("accelerator:domestic", 100_000)])
    ).encode() + b" " * (MiB - 2000), headers=auth(world.provider_key, **{
        "Idempotency-Key": "PO-2", "Content-Type": "application/json"}))
    assert padded.status_code == 201, padded.text


async def test_a_body_of_many_small_values_is_refused_before_it_is_parsed(app: Any, world: World) -> None:
    """1 MiB of `{},` is 350,000 objects, about 26 MB to parse before any model refuses it; a body
    holds at most 50,000 values (the largest a route takes, a bulk issue of 1,000 grants, about
    6,000), counted without parsing. Commas inside strings are text, not values."""
    import tracemalloc

    many = b"[" + b",".join([b"{}"] * 349_000) + b"]"
    tracemalloc.start()
    try:
        made = await call(app, "/v1/redemptions", [many], key=world.provider_key, length=len(many))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert made.status == 413 and made.body["code"] == "payload_too_large", made.body
    assert made.body["max_values"] == 50_000
    assert peak < 8 * MiB, f"{peak / MiB:.1f} MiB to refuse it"
    text = json.dumps({"order_reference": "," * 60_000}).encode()  # one string of commas: a single value
    worded = await call(app, "/v1/redemptions", [text], key=world.provider_key, length=len(text))
    assert worded.status == 422 and worded.body["code"] == "validation_failed", worded.body
    assert await redemptions(app) == 0


# -- over a socket: a 100 MB declaration is answered at once, and other callers are not held --


@pytest.fixture
def clock():  # the live server runs on the real clock; so does this test's app
    return system_clock


@pytest.mark.timeout(60)
async def test_a_live_server_answers_a_huge_declaration_without_waiting_for_it(
    world: World, database_url: str
) -> None:
    with LiveServer(database_url, workers=1) as server:
        port = int(server.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/redemptions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 104857600\r\n\r\n" + b"[" * 65_536)
        await writer.drain()
        started = time.monotonic()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert head.startswith(b"HTTP/1.1 413"), head
        assert time.monotonic() - started < 10
        writer.close()
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            me = await http.get("/v1/me", headers=auth(world.provider_key))
            assert me.status_code == 200
            unauthenticated = await http.post("/v1/redemptions", content=b"[" * 500_000,
                                              headers={"Content-Type": "application/json"})
            assert_problem(unauthenticated, 401, "unauthenticated")
