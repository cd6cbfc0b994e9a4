"""Structured logs (one JSON access line per request, request ids on every line, no key material
ever) and readiness (/readyz: the database answers and is migrated to this build's head)."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.voucher import observability
from services.voucher.http import meta
from services.voucher.main import create_app
from services.voucher.settings import Settings
from tests.support import assert_problem, auth, create, programme_payload


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, environment="test", log_level="INFO")


@pytest.fixture
def log_output(app: Any) -> io.StringIO:
    """What the service's own log handler writes (its stream swapped for a buffer)."""
    handlers = logging.getLogger("voucher").handlers
    assert len(handlers) == 1
    buffer = io.StringIO()
    handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    return buffer


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]  # every line is JSON


def access_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in lines(buffer) if line["logger"] == "voucher.access"]


async def test_one_json_access_line_per_request_with_principal_route_and_request_id(
    client: httpx.AsyncClient, operator_key: str, log_output: io.StringIO
) -> None:
    created = await create(client, operator_key, "/v1/programmes", programme_payload())
    found = await client.get(f"/v1/programmes/{created['id']}", headers=auth(operator_key))
    missing = await client.get("/v1/programmes/0190d5d2-0000-7000-8000-000000000000",
                               headers=auth(operator_key, **{"X-Request-ID": "caller-trace-0001"}))
    anonymous = await client.get("/v1/programmes")
    assert found.status_code == 200 and missing.status_code == 404 and anonymous.status_code == 401

    access = access_lines(log_output)
    assert [(a["method"], a["route"], a["status"]) for a in access] == [
        ("POST", "/v1/programmes", 201),
        ("GET", "/v1/programmes/{programme_id}", 200),
        ("GET", "/v1/programmes/{programme_id}", 404),
        ("GET", "/v1/programmes", 401),
    ]
    for line, response in zip(access[1:], (found, missing, anonymous), strict=True):
        assert line["request_id"] == response.headers["x-request-id"]
        assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
        assert line["level"] == "INFO" and line["time"]
    assert access[2]["request_id"] == "caller-trace-0001"
    assert access[1]["path"] == f"/v1/programmes/{created['id']}"
    principal = access[1]["principal"]
    assert principal["role"] == "operator" and principal["key_id"]
    assert access[3]["principal"] is None
    assert operator_key not in log_output.getvalue()


async def test_a_refusal_s_access_line_names_its_problem_code(
    app: Any, client: httpx.AsyncClient, operator_key: str, log_output: io.StringIO
) -> None:
    """The office explains a refusal from its own logs: the access line carries the problem's
    `code` (null for an answer that is not a problem), in the JSON field and in the message, a
    replayed refusal's too."""
    from tests.world import build_world

    world = await build_world(app, client)
    voucher = await world.issue(1_000_000)
    log_output.truncate(0)
    log_output.seek(0)
    suspended = await world.post(f"/v1/vouchers/{voucher['id']}/suspend", {"reason": "checking documents"},
                                 key=world.operator)
    assert suspended.status_code == 200, suspended.text
    refused = await world.hold(voucher, 100_000, order="PO-REFUSED", path="/v1/redemptions")
    assert_problem(refused, 409, "voucher_suspended")
    again = await world.hold(voucher, 100_000, order="PO-REFUSED", path="/v1/redemptions")
    assert again.headers.get("idempotent-replayed") == "true"
    unknown = await client.get("/v1/programmes/0190d5d2-0000-7000-8000-000000000000", headers=auth(operator_key))
    assert unknown.status_code == 404
    access = access_lines(log_output)
    assert [(a["status"], a["code"]) for a in access] == [
        (200, None), (409, "voucher_suspended"), (409, "voucher_suspended"), (404, "not_found")]
    assert re.fullmatch(r"POST /v1/redemptions 409 voucher_suspended [0-9.]+ms", access[1]["message"])
    assert re.fullmatch(r"GET /v1/programmes/\{programme_id\} 404 not_found [0-9.]+ms", access[3]["message"])
    assert access[1]["request_id"] == refused.headers["x-request-id"]


async def test_a_500_is_logged_as_json_with_its_request_id_and_no_secret(
    client: httpx.AsyncClient, log_output: io.StringIO, monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "vk_0123456789_" + "S" * 43
    webhook_secret = "whsec_" + "c2VjcmV0c2VjcmV0c2VjcmV0"
    url = "postgresql://voucher:hunter2hunter2@db.internal:5432/voucher"

    def explode(language: str = "en") -> Any:
        raise RuntimeError(f"bug: key={key} secret={webhook_secret} url={url} Authorization: Bearer {key}")

    monkeypatch.setattr(meta, "catalogue", explode)
    response = await client.get("/v1/problems", headers={"Authorization": f"Bearer {key}"})
    assert_problem(response, 500, "internal_error")
    bad_key = await client.get("/v1/programmes", headers=auth(key))
    assert_problem(bad_key, 401, "invalid_api_key")

    output = log_output.getvalue()
    for secret in (key, webhook_secret, "hunter2hunter2", "S" * 43):
        assert secret not in output
    parsed = lines(log_output)
    error = next(line for line in parsed if line["level"] == "ERROR")
    assert error["request_id"] == response.headers["x-request-id"]
    assert "RuntimeError" in error["exception"] and "[REDACTED]" in error["exception"]
    assert "db.internal" in error["exception"]  # redaction keeps what is not secret
    access = [line for line in parsed if line["logger"] == "voucher.access"]
    assert [(a["status"], a["level"]) for a in access] == [(500, "WARNING"), (401, "INFO")]
    assert access[0]["request_id"] == response.headers["x-request-id"]


async def test_every_voucher_logger_writes_json_with_the_request_id(
    client: httpx.AsyncClient, log_output: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    def catalogue(language: str = "en") -> dict[str, Any]:
        logging.getLogger("voucher.programmes").info("looked up %d problem types", 0)
        return {}

    monkeypatch.setattr(meta, "catalogue", catalogue)
    response = await client.get("/v1/problems")
    assert response.status_code == 200 and response.json() == []
    logging.getLogger("voucher.test").warning("outside any request")

    domain, access, outside = lines(log_output)
    assert domain["logger"] == "voucher.programmes" and domain["message"] == "looked up 0 problem types"
    assert domain["request_id"] == access["request_id"] == response.headers["x-request-id"]
    assert access["logger"] == "voucher.access" and access["route"] == "/v1/problems"
    assert outside["request_id"] == "-" and outside["level"] == "WARNING"


@pytest.mark.parametrize(
    ("raw", "kept", "gone"),
    [
        ("DATABASE_URL=postgresql+psycopg://voucher:p%40ss@127.0.0.1/voucher", "127.0.0.1/voucher", "p%40ss"),
        ('{"authorization": "Bearer vk_abc_def"}', "authorization", "vk_abc_def"),
        ("Authorization: token-without-scheme-123", "Authorization", "token-without-scheme-123"),
        ("the secret is whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "the secret is", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("sqlite+aiosqlite:///./var/voucher.db", "sqlite+aiosqlite:///./var/voucher.db", "[REDACTED]"),
    ],
)
def test_redaction(raw: str, kept: str, gone: str) -> None:
    redacted = observability.redact(raw)
    assert kept in redacted
    assert gone not in redacted


@pytest.mark.parametrize("unit", ["a", "a:", "://", "a://b:", "bearer ", "vk_", "authorization:"])
def test_redaction_takes_time_in_proportion_to_the_line(unit: str) -> None:
    """Each pattern runs over every log line, on the event loop, and a line holds what a client
    sent (a path of up to 64 KiB): the URL-password pattern took time in the square of a run of
    letters, and one anonymous request for a 60,000-letter path held the process for 3 s (an
    independent review, December 2026). Sixteen times the line must cost well under the 256
    times a square would: the best of five runs of each length, compared within the test."""
    import time

    def cost(repeat: int) -> float:
        line = '{"path": "/' + unit * repeat + '"}'
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            observability.redact(line)
            runs.append(time.perf_counter() - started)
        return min(runs)

    short, long = cost(60_000 // len(unit) // 16), cost(60_000 // len(unit))
    assert long < 64 * short + 0.01, (unit, short, long)


def test_text_format_for_humans_is_redacted_too() -> None:
    buffer = io.StringIO()
    logger = logging.getLogger("voucher")
    handlers, level = logger.handlers[:], logger.level
    try:
        observability.configure_logging("INFO", "text", stream=buffer)
        logging.getLogger("voucher.test").info("connecting to %s", "postgresql://u:pw123456@h/db")
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
    line = buffer.getvalue()
    assert " INFO [-] voucher.test: connecting to postgresql://u:[REDACTED]@h/db" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


# -- readiness ---------------------------------------------------------------------------------


async def test_ready_when_migrated_to_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "migrations": "ok"}
    assert body["revision"] == body["head"] == sorted(observability.migration_heads())
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_not_ready_when_the_database_is_behind_the_head(app: Any, client: httpx.AsyncClient) -> None:
    from alembic.script import ScriptDirectory

    (head,) = observability.migration_heads()
    previous = ScriptDirectory(str(observability.MIGRATIONS)).get_revision(head).down_revision
    async with app.state.database.engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": previous})
    try:
        response = await client.get("/readyz")
        body = assert_problem(response, 503, "not_ready")
        assert body["checks"]["database"] == "ok"
        assert previous in body["checks"]["migrations"] and "voucher db upgrade" in body["checks"]["migrations"]
        assert body["revision"] == [previous] and body["head"] == [head]
    finally:
        async with app.state.database.engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert (await client.get("/readyz")).status_code == 200


@pytest.mark.parametrize("where", ["behind", "ahead"])
async def test_a_process_left_running_across_an_upgrade_refuses_writes_and_still_answers_reads(
    app: Any, client: httpx.AsyncClient, operator_key: str, where: str
) -> None:
    """An older API process still serving after an upgrade (the database ahead of its build),
    or a newer one before it (behind): every write is 503 `not_ready` and changes nothing, once
    the process has read the revision (/readyz, or the first write after SCHEMA_RECHECK_SECONDS);
    reads are answered; at head again, writes go through."""
    from alembic.script import ScriptDirectory

    from tests.support import enterprise_payload

    (head,) = observability.migration_heads()
    other = (ScriptDirectory(str(observability.MIGRATIONS)).get_revision(head).down_revision
             if where == "behind" else "9999_a_later_build")
    watch: observability.SchemaWatch = app.state.database.info["schema_watch"]

    async def set_revision(revision: str) -> None:
        async with app.state.database.engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})

    async def register() -> httpx.Response:
        return await client.post("/v1/enterprises", json=enterprise_payload(),
                                 headers=auth(operator_key, **{"Idempotency-Key": f"e-{where}-{uuid.uuid4()}"}))

    assert (await register()).status_code == 201  # read at head: the watch holds it for a while
    await set_revision(other)
    try:
        assert (await register()).status_code == 201  # not read again yet: within SCHEMA_RECHECK_SECONDS
        watch.checked_at -= observability.SCHEMA_RECHECK_SECONDS  # the interval passes
        refused = assert_problem(await register(), 503, "not_ready")
        assert other in refused["detail"] and head in refused["detail"]
        listed = await client.get("/v1/enterprises", headers=auth(operator_key))
        assert listed.status_code == 200 and len(listed.json()["items"]) == 2  # nothing written
        await set_revision(head)
        assert_problem(await register(), 503, "not_ready")  # as last read, until read again
        assert (await client.get("/readyz")).status_code == 200  # which /readyz does
        assert (await register()).status_code == 201
        await set_revision(other)
        assert (await client.get("/readyz")).status_code == 503
        assert_problem(await register(), 503, "not_ready")
    finally:
        await set_revision(head)


async def test_not_ready_when_never_migrated(tmp_path: Path) -> None:
    application = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", environment="test",
                                      log_level="WARNING"))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t") as c:
            body = assert_problem(await c.get("/readyz"), 503, "not_ready")
        assert body["checks"]["database"] == "ok"
        assert "no revision" in body["checks"]["migrations"] and body["revision"] == []
    finally:
        await application.state.database.dispose()


async def test_not_ready_when_the_database_does_not_answer() -> None:
    """Port 9 on loopback refuses connections at once; the password never shows."""
    application = create_app(Settings(
        database_url="postgresql://voucher:pa55w0rd-xyz@127.0.0.1:9/voucher", environment="test",
        log_level="WARNING"))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t") as c:
            response = await c.get("/readyz")
            assert (await c.get("/healthz")).status_code == 200  # alive, just not ready
        body = assert_problem(response, 503, "not_ready")
        assert body["checks"]["database"].startswith("the database does not answer")
        assert body["checks"]["migrations"].startswith("unknown")
        assert "pa55w0rd" not in response.text
    finally:
        await application.state.database.dispose()


async def test_the_schema_watch_reads_once_at_a_time_and_a_database_that_does_not_answer_refuses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many writes when the reading is stale: one read, which they wait for only while none was
    ever made; a read that hangs is cut off and one that fails leaves the last answer standing
    (the request's own database error answers, not this check); an older read finishing after
    a newer one is dropped."""
    import asyncio

    (head,) = observability.migration_heads()
    reads: list[str] = []
    answers: list[Any] = []

    async def heads(database: Any) -> frozenset[str]:
        reads.append("read")
        answer = answers.pop(0)
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            return frozenset({"0001"})
        if isinstance(answer, Exception):
            raise answer
        return frozenset(answer)

    monkeypatch.setattr(observability, "database_heads", heads)
    monkeypatch.setattr(observability, "SCHEMA_READ_SECONDS", 0.05)
    watch = observability.SchemaWatch()
    answers.append({"0001"})
    results = await asyncio.gather(*(watch.mismatch(object()) for _ in range(20)))  # type: ignore[arg-type]
    assert reads == ["read"] and all(r == (["0001"], [head]) for r in results)  # all waited for the first
    answers.append(1.0)  # hangs: cut off, the last answer stands
    watch.checked_at -= observability.SCHEMA_RECHECK_SECONDS
    assert await asyncio.wait_for(watch.mismatch(object()), 1) == (["0001"], [head])  # type: ignore[arg-type]
    answers.append(ConnectionError("refused"))
    watch.checked_at -= observability.SCHEMA_RECHECK_SECONDS
    assert await watch.mismatch(object()) == (["0001"], [head])  # type: ignore[arg-type]
    assert len(reads) == 3
    fresh = observability.SchemaWatch()
    answers.append(OSError("no database"))
    assert await fresh.mismatch(object()) is None  # type: ignore[arg-type]  # never read: nothing refused
    fresh.saw(frozenset({head}))
    fresh.saw(frozenset({"0001"}), started=0.0)  # an older reading, finishing late
    assert await fresh.mismatch(object()) is None  # type: ignore[arg-type]
