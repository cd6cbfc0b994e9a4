"""The `voucher` command as an operator uses it: migrate, bootstrap the first operator key, load
the demo (twice), and refuse a key it cannot bind to a principal.

Each test points DATABASE_URL at an empty database of its own: a fresh SQLite file, or a fresh,
empty PostgreSQL database when VOUCHER_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, make_url, pool, text
from typer.testing import CliRunner, Result

from services.voucher import demo as demo_data
from services.voucher.cli import alembic_config, app
from services.voucher.main import create_app
from services.voucher.settings import (
    Settings,
    get_settings,
    normalise_database_url,
    sync_database_url,
)
from tests.support import assert_problem, auth, drop_database

POSTGRES_URL = os.environ.get("VOUCHER_TEST_POSTGRES_URL")
ROLES = ("operator", "auditor", "enterprise", "provider")
KEY = re.compile(r"^vk_\S+$")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty database, named by DATABASE_URL as in production; settings re-read around it."""
    if POSTGRES_URL:
        name = f"voucher_cli_{uuid.uuid4().hex[:16]}"
        admin = create_engine(sync_database_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    else:
        # A directory that does not exist yet: the CLI creates it, as `make run` relies on.
        url = f"sqlite:///{tmp_path / 'var' / 'voucher.db'}"
    for name_ in ("VOUCHER_DATABASE_URL", "VOUCHER_ENVIRONMENT"):
        monkeypatch.delenv(name_, raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("VOUCHER_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
    if POSTGRES_URL:
        with admin.connect() as conn:
            drop_database(conn, name)
        admin.dispose()


def voucher(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def ok(*args: str) -> str:
    result = voucher(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def _get_me(database_url: str, key: str) -> httpx.Response:
    """GET /v1/me with `key` against a fresh app on the same database, as a client would."""

    async def call() -> httpx.Response:
        application = create_app(Settings(database_url=database_url, log_level="WARNING"))
        try:
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                response = await client.get("/v1/me", headers=auth(key))
                await response.aread()
                return response
        finally:
            await application.state.database.dispose()

    return asyncio.run(call())


def _demo_keys(output: str) -> dict[str, str]:
    keys = dict(re.findall(r"^\s+(operator|auditor|enterprise|provider)\s+(vk_\S+)\s*$", output, re.M))
    assert sorted(keys) == sorted(ROLES), output
    return keys


def _demo_ids(output: str) -> list[str]:
    uuid_ = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    return re.findall(
        rf"^\s+(?:compute programme|model programme|enterprise|provider)\s+({uuid_})\s", output, re.M
    )


def _count(database_url: str, sql: str, **params: object) -> int:
    engine = create_engine(sync_database_url(normalise_database_url(database_url)), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar_one())
    finally:
        engine.dispose()


def test_db_upgrade_then_current_shows_the_head(cli_database: str) -> None:
    head = ScriptDirectory.from_config(alembic_config(cli_database)).get_current_head()
    assert head

    assert "database at head" in ok("db", "upgrade")
    assert head in ok("db", "current")
    assert "database at head" in ok("db", "upgrade")  # again: nothing to do, still fine


def test_first_operator_key_from_the_cli_authenticates(cli_database: str) -> None:
    ok("db", "upgrade")
    lines = ok("keys", "create", "--role", "operator", "--name", "bootstrap").strip().splitlines()
    labelled = dict(line.split(None, 1) for line in lines[:3])
    assert list(labelled) == ["id", "prefix", "key"], lines  # each line says what it is
    key_id, prefix, secret = labelled["id"], labelled["prefix"], labelled["key"]
    assert KEY.match(secret), lines
    assert secret.startswith(prefix)
    assert "shown once" in lines[3]

    response = _get_me(cli_database, secret)
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["role"] == "operator"
    assert me["key_id"] == key_id

    tampered = _get_me(cli_database, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert tampered.status_code == 401, tampered.text
    assert tampered.headers["content-type"].startswith("application/problem+json")


def test_demo_twice_rotates_the_keys_and_keeps_the_records(cli_database: str) -> None:
    ok("db", "upgrade")
    first = ok("demo")
    # An office key that happens to be called "demo" is the office's, not the demo's.
    created = ok("keys", "create", "--role", "operator", "--name", "demo", "--principal-name", "City office")
    office_demo = re.search(r"^key\s+(vk_\S+)", created, re.M).group(1)  # type: ignore[union-attr]
    second = ok("demo")
    assert _get_me(cli_database, office_demo).status_code == 200
    # Each demo key replaced is revoked as any key is: with its audit event.
    assert _count(cli_database, "SELECT count(*) FROM audit_event WHERE action = 'api_key.revoked'") == 4

    first_keys, second_keys = _demo_keys(first), _demo_keys(second)
    assert set(first_keys.values()).isdisjoint(second_keys.values())
    assert _demo_ids(first) == _demo_ids(second) and len(_demo_ids(first)) == 4

    for role in ROLES:
        response = _get_me(cli_database, second_keys[role])
        assert response.status_code == 200, (role, response.text)
        assert response.json()["role"] == role
        assert_problem(_get_me(cli_database, first_keys[role]), 401, "api_key_revoked")

    assert _count(
        cli_database,
        "SELECT count(*) FROM programme WHERE code IN (:a, :b)",
        a=demo_data.COMPUTE_CODE,
        b=demo_data.MODEL_CODE,
    ) == 2
    assert _count(cli_database, "SELECT count(*) FROM programme") == 2
    assert _count(
        cli_database, "SELECT count(*) FROM enterprise WHERE uscc = :u", u=demo_data.ENTERPRISE_USCC
    ) == 1
    assert _count(
        cli_database, "SELECT count(*) FROM provider WHERE uscc = :u", u=demo_data.PROVIDER_USCC
    ) == 1
    assert _count(cli_database, "SELECT count(*) FROM programme_enrolment") == 2


def _call(database_url: str, key: str, method: str, path: str, body: dict[str, object]) -> httpx.Response:
    """One request with `key` against a fresh app on the same database, as a client would."""

    async def call() -> httpx.Response:
        application = create_app(Settings(database_url=database_url, log_level="WARNING"))
        try:
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                response = await client.request(method, path, json=body,
                                                headers=auth(key, **{"Idempotency-Key": str(uuid.uuid4())}))
                await response.aread()
                return response
        finally:
            await application.state.database.dispose()

    return asyncio.run(call())


def test_demo_again_after_the_sme_got_another_voucher(cli_database: str) -> None:
    """The README's walkthrough issues the demo SME a second compute voucher; `make run` runs the
    demo again and had failed (MultipleResultsFound) for good, found by an independent review."""
    ok("db", "upgrade")
    first = ok("demo")
    programme, _, enterprise, _ = _demo_ids(first)
    issued = _call(cli_database, _demo_keys(first)["operator"], "POST", "/v1/vouchers",
                   {"programme_id": programme, "enterprise_id": enterprise, "face_value": 100_000})
    assert issued.status_code == 201, issued.text
    second = ok("demo")
    assert re.search(r"voucher\s+(\S+)", first).group(1) == re.search(r"voucher\s+(\S+)", second).group(1)  # type: ignore[union-attr]


@pytest.mark.skipif(not POSTGRES_URL, reason="production runs on PostgreSQL only")
def test_the_demo_is_never_loaded_in_production(cli_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ok("db", "upgrade")
    monkeypatch.setenv("VOUCHER_ENVIRONMENT", "production")
    monkeypatch.setenv("VOUCHER_AUDIT_SIGNING_KEY", base64.b64encode(b"k" * 32).decode())
    monkeypatch.setenv("VOUCHER_SECRETS_KEY", base64.b64encode(b"s" * 32).decode())
    get_settings.cache_clear()
    result = voucher("demo")
    assert result.exit_code == 2 and "never loaded in production" in result.output, result.output
    assert _count(cli_database, "SELECT count(*) FROM programme") == 0


async def _start(settings: Settings) -> None:
    """The API's lifespan, started and stopped: what `voucher serve` does before it serves."""
    application = create_app(settings)
    try:
        async with application.router.lifespan_context(application):
            pass
    finally:
        await application.state.database.dispose()


def test_a_database_production_marked_is_refused_outside_production(cli_database: str) -> None:
    """A cron line without VOUCHER_ENVIRONMENT had run as development on production's database:
    it signed production's audit checkpoints with the published seed, for good, and `demo` loaded
    its programmes and full-power keys there (an independent review, December 2026). A database
    production has marked is refused by the worker, cron's jobs, the demo and the API outside
    production. What only reads or migrates still runs."""
    ok("db", "upgrade")
    engine = create_engine(sync_database_url(cli_database), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO production_mark (id, marked_at) VALUES (1, :at)"),
                         {"at": datetime(2026, 12, 1, tzinfo=UTC)})
    finally:
        engine.dispose()
    for command in (("worker", "--once"), ("jobs", "run-once", "seal-audit"), ("demo",), ("audit", "checkpoint"),
                    ("secrets", "reseal")):
        result = voucher(*command)
        assert result.exit_code == 2 and "this database is production's" in result.output, (command, result.output)
    assert _count(cli_database, "SELECT count(*) FROM programme") == 0
    assert _count(cli_database, "SELECT count(*) FROM audit_checkpoint") == 0
    assert ok("ledger", "reconcile").splitlines()[-1] == "ledger reconciles: 0 differences"
    settings = Settings(database_url=cli_database, environment="development", log_level="WARNING")

    with pytest.raises(RuntimeError, match="this database is production's"):
        asyncio.run(_start(settings))


@pytest.mark.parametrize(("settings", "said"), [
    ({"console_secret": "short"}, "VOUCHER_CONSOLE_SECRET must be at least 32 characters"),
    ({"environment": "prod"}, "VOUCHER_ENVIRONMENT: Input should be"),
    ({"audit_signing_key": "not base64!"}, "VOUCHER_AUDIT_SIGNING_KEY must be base64"),
])
def test_a_refused_setting_is_named_in_the_one_line_error(settings: dict[str, str], said: str) -> None:
    """It had been pydantic's "1 validation error for Settings", the variable and the reason
    only in a DEBUG traceback (found by an independent review)."""
    from pydantic import ValidationError

    from services.voucher.cli import _one_line

    with pytest.raises(ValidationError) as refused:
        Settings(**settings)  # type: ignore[arg-type]
    line = _one_line(refused.value)
    assert said in line and "\n" not in line, line


def test_a_one_line_error_shows_no_password_whatever_raised_it() -> None:
    """A rate-limit storage URL that did not parse was printed with its password by the limits
    library's own message (an independent review, December 2026)."""
    from limits.errors import ConfigurationError

    from services.voucher.cli import _one_line

    line = _one_line(ConfigurationError("Unable to parse storage uri redis://:s3cret@cache:notaport/0"))
    assert "s3cret" not in line and "redis://" in line


def test_db_downgrade_minus_one_steps_back_one_revision(cli_database: str) -> None:
    """The help's own example, `-1`, had been read as an unknown option."""
    script = ScriptDirectory.from_config(alembic_config(cli_database))
    ok("db", "upgrade")
    head = script.get_revision(script.get_current_head())
    assert f"database at {head.down_revision}" in ok("db", "downgrade", "-1")
    assert "database at head" in ok("db", "upgrade")


def test_a_downgrade_that_would_drop_rows_is_refused(cli_database: str) -> None:
    """An independent review took a populated database down to base, one `-1` at a time, exit 0
    each: the audit chain, the paid settlements and the ledger were dropped without a word. A
    downgrade that drops a table holding rows is refused, naming them, and changes nothing;
    one that drops none goes down; --drop-data goes down all the same."""
    script = ScriptDirectory.from_config(alembic_config(cli_database))
    ok("db", "upgrade")
    ok("demo")
    head = script.get_current_head()
    counts = {t: _count(cli_database, f"SELECT count(*) FROM {t}")  # noqa: S608 (fixed names)
              for t in ("audit_event", "ledger_posting", "voucher", "programme")}
    assert all(counts.values()), counts
    for target in ("0006", "base"):
        result = voucher("db", "downgrade", target)
        assert result.exit_code == 2, (result.output, result.exception)
        assert "drops tables or columns that hold data" in result.stderr and "Nothing was changed" in result.stderr
        assert re.search(r"audit_event \([\d,]+ rows\)", result.stderr), result.stderr
        assert ("ledger_posting" in result.stderr) is (target == "base"), result.stderr
        assert _count(cli_database, "SELECT count(*) FROM alembic_version WHERE version_num = :v", v=head) == 1
        assert {t: _count(cli_database, f"SELECT count(*) FROM {t}") for t in counts} == counts  # noqa: S608
    below = script.get_revision(head).down_revision
    assert f"database at {below}" in ok("db", "downgrade", "-1")  # 0030's table holds only short-lived records
    assert "database at base" in ok("db", "downgrade", "base", "--drop-data")


def test_a_downgrade_that_would_drop_a_column_holding_data_is_refused(cli_database: str) -> None:
    """A downgrade keeps the table but drops the columns its revisions added: a settlement's
    payee account, a usage row's committed value. One that would drop a column holding a value
    (other than its declared default) is refused, naming it, and changes nothing."""
    ok("db", "upgrade")
    ok("demo")
    assert "database at 0013" in ok("db", "downgrade", "0013")  # the demo's later columns are empty or default
    ok("db", "upgrade")
    engine = create_engine(sync_database_url(normalise_database_url(cli_database)), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("UPDATE enterprise_period_usage SET decided_at = CURRENT_TIMESTAMP")).rowcount == 1
    finally:
        engine.dispose()
    result = voucher("db", "downgrade", "0013")
    assert result.exit_code == 2, (result.output, result.exception)
    assert "enterprise_period_usage.decided_at (1 rows)" in result.stderr and "Nothing was changed" in result.stderr
    head = ScriptDirectory.from_config(alembic_config(cli_database)).get_current_head()
    assert _count(cli_database, "SELECT count(*) FROM alembic_version WHERE version_num = :v", v=head) == 1
    assert _count(cli_database, "SELECT count(*) FROM enterprise_period_usage WHERE decided_at IS NOT NULL") == 1
    assert "database at 0013" in ok("db", "downgrade", "0013", "--drop-data")


def test_a_column_holding_only_its_default_or_json_null_holds_no_data(cli_database: str) -> None:
    """The guard counts values, not rows: a usage row's committed 0 and a programme's contract
    requirement false (the defaults their columns declare), and a webhook's older secrets
    written as JSON's null (how the ORM stores None), are nothing a downgrade loses."""
    from sqlalchemy import insert, select, update

    from services.voucher.cli import _columns_a_downgrade_drops
    from services.voucher.db import table_of
    from services.voucher.tables import Provider, WebhookEndpoint

    ok("db", "upgrade")
    ok("demo")
    config, hook = alembic_config(cli_database), table_of(WebhookEndpoint)
    engine = create_engine(sync_database_url(normalise_database_url(cli_database)), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            provider_id = conn.execute(select(table_of(Provider).c.id)).scalar_one()
            now = datetime.now(UTC)
            conn.execute(insert(hook).values(
                id=uuid.uuid4(), provider_id=provider_id, url="https://hooks.example.com/v", event_types=["x"],
                status="enabled", secret="s", older_secrets=None, created_at=now, updated_at=now, version=1))
            assert _columns_a_downgrade_drops(config, conn, "0002") == {}
            conn.execute(update(hook).values(older_secrets=[["old", now.isoformat()]]))
            assert _columns_a_downgrade_drops(config, conn, "0002") == {"webhook_endpoint.older_secrets": 1}
    finally:
        engine.dispose()


#: Every column a revision's upgrade adds to an older table, as the guard reads it: (table,
#: column, the SQL of its declared default).
ADDED_COLUMNS = {
    "0003": [("enterprise_period_usage", "committed", "'0'"), ("programme", "application_requires_contract", "false")],
    "0006": [("contract_reference", "claim_id", None), ("redemption", "payee", "'provider'")],
    "0010": [("claim", "invoice_key", None)],
    "0012": [("claim", "invoice_code", None)],
    "0014": [("order_subsidy", "decided_at", None), ("enterprise_period_usage", "decided_at", None)],
    "0018": [("webhook_endpoint", "older_secrets", None)],
    "0021": [("audit_verification", "accounts_checked", "'0'")],
    "0022": [("redemption_refund", "provider_id", None), ("redemption_refund", "programme_id", None)],
    "0023": [("export_manifest", "unsealed_events", None)],
    "0032": [("export_manifest", "lapsed_unreleased", None)],
    "0033": [("settlement", "payee_account", None)],
}


def test_the_downgrade_guard_finds_every_column_a_revision_adds() -> None:
    """Every `add_column` call in a revision's upgrade is read, with its table (a literal, a
    batch block's, or each of a loop's) and declared default, into columns the schema has; a
    call it cannot read is refused, not skipped. A new revision adding a column adds its row."""
    from services.voucher.cli import _added_columns
    from services.voucher.db import metadata

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    found = {revision.revision: added for revision in script.walk_revisions()
             if (added := _added_columns(Path(revision.path).read_text(encoding="utf-8")))}
    assert found == ADDED_COLUMNS
    assert all(column in metadata.tables[table].c for added in found.values() for table, column, _ in added)
    with pytest.raises(ValueError, match="add_column at line 3"):
        _added_columns("def upgrade():\n    column = make()\n    op.add_column('t', column)\n")


def test_the_downgrade_guard_finds_every_table_a_revision_makes() -> None:
    """The guard reads each revision's `create_table` calls: every table of the schema must be
    found there, or a downgrade could drop one holding rows unasked (a review of the guard)."""
    from services.voucher.cli import _CREATES_TABLE
    from services.voucher.db import metadata

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    found = {name for revision in script.walk_revisions()
             for name in _CREATES_TABLE.findall(Path(revision.path).read_text(encoding="utf-8"))}
    assert set(metadata.tables) - found == set()


def test_enterprise_key_without_enterprise_id_is_refused_with_a_reason(cli_database: str) -> None:
    ok("db", "upgrade")
    result = voucher("keys", "create", "--role", "enterprise")

    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception  # a message, not a crash
    assert "Traceback" not in result.output
    assert "error" in result.stderr.lower()
    # The user is told what to add, not only that something was wrong.
    assert re.search(r"enterprise[_-]id", result.stderr), result.stderr
    assert not KEY.search(result.stdout)
    assert _count(cli_database, "SELECT count(*) FROM api_key") == 0


def test_a_refusal_is_told_in_the_configured_language(cli_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The code stays as it is (scripts read it); the reason follows VOUCHER_DEFAULT_LANGUAGE."""
    ok("db", "upgrade")
    monkeypatch.setenv("VOUCHER_DEFAULT_LANGUAGE", "zh-CN")
    get_settings.cache_clear()
    try:
        result = voucher("keys", "create", "--role", "enterprise")
    finally:
        get_settings.cache_clear()
    assert result.exit_code != 0 and "error: validation_failed: " in result.stderr, result.stderr
    assert re.search("[\u4e00-\u9fff]", result.stderr) and "enterprise_id" in result.stderr, result.stderr


def test_secrets_keygen_and_a_reseal_under_a_new_key(cli_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider's endpoint kept before sealing existed (plain text), then `voucher secrets
    reseal`: sealed under the configured key, said as JSON; run again, nothing to do; with the
    key changed and the old one not listed, it names what does not open and exits 1."""
    import base64
    import json

    from services.voucher import secretbox

    ok("db", "upgrade")
    ok("demo")
    first, second = ok("secrets", "keygen").strip(), ok("secrets", "keygen").strip()
    assert len(base64.b64decode(first)) == 32 and first != second
    engine = create_engine(sync_database_url(normalise_database_url(cli_database)), poolclass=pool.NullPool)
    endpoint_id = uuid.uuid4()
    legacy = "whsec_" + base64.b64encode(bytes(32)).decode()
    try:
        with engine.begin() as conn:
            provider_id = conn.execute(text("SELECT id FROM provider LIMIT 1")).scalar_one()
            conn.execute(text(
                "INSERT INTO webhook_endpoint (id, provider_id, url, event_types, status, secret, version, "
                "created_at, updated_at) VALUES (:id, :p, 'https://hooks.example.com/in', '[]', 'enabled', :s, 1, "
                ":t, :t)"), {"id": endpoint_id if POSTGRES_URL else endpoint_id.hex, "p": provider_id, "s": legacy,
                             "t": datetime(2026, 12, 1, tzinfo=UTC)})
        monkeypatch.setenv("VOUCHER_SECRETS_KEY", first)
        get_settings.cache_clear()
        done = json.loads(ok("secrets", "reseal"))
        assert done == {"key_id": secretbox.key_id(base64.b64decode(first)), "webhook_endpoints": 1,
                        "stored_answers": 0, "unreadable": []}
        assert json.loads(ok("secrets", "reseal"))["webhook_endpoints"] == 0
        with engine.connect() as conn:
            sealed = conn.execute(text("SELECT secret FROM webhook_endpoint")).scalar_one()
        box = secretbox.Keyring(base64.b64decode(first))
        assert box.open(sealed, secretbox.webhook_secret_purpose(endpoint_id)) == legacy
        monkeypatch.setenv("VOUCHER_SECRETS_KEY", second)
        get_settings.cache_clear()
        refused = voucher("secrets", "reseal")
        assert refused.exit_code == 1 and str(endpoint_id) in refused.stdout, refused.output
        monkeypatch.setenv("VOUCHER_SECRETS_RETIRED_KEYS", first)
        get_settings.cache_clear()
        assert json.loads(ok("secrets", "reseal"))["webhook_endpoints"] == 1
    finally:
        engine.dispose()
        get_settings.cache_clear()


def test_audit_verify_checkpoint_and_keygen(cli_database: str) -> None:
    """After the demo, the chain verifies (exit 0); a checkpoint prints what to keep; once an
    event is altered behind the service, verify lists it and exits 1 for scripts."""
    import base64
    import json

    ok("db", "upgrade")
    ok("demo")
    assert "audit chain intact: 0 problems" in ok("audit", "verify")
    kept = json.loads(ok("audit", "checkpoint"))
    assert kept["seq"] > 0 and len(kept["chain_hash"]) == 64 and kept["signature"]
    assert "processed" in ok("jobs", "run-once", "seal-audit")
    assert "audit chain intact" in ok("audit", "verify", "--checkpoint-seq", str(kept["seq"]),
                                      "--checkpoint-hash", kept["chain_hash"])
    assert len(base64.b64decode(ok("audit", "keygen").strip())) == 32

    engine = create_engine(sync_database_url(normalise_database_url(cli_database)), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            if POSTGRES_URL:
                conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            else:
                conn.execute(text("DROP TRIGGER audit_event_seal_once"))
            conn.execute(text("UPDATE audit_event SET action = 'programme.archived' WHERE seq = 2"))
    finally:
        engine.dispose()
    result = voucher("audit", "verify")
    assert result.exit_code == 1, result.output
    assert "event_altered: seq=2" in result.output
    assert voucher("audit", "verify", "--checkpoint-seq", "3").exit_code == 2  # a position needs its hash


def test_worker_keys_list_and_export(cli_database: str, tmp_path: Path) -> None:
    """The operator's everyday commands: one worker round, the key inventory (never a secret),
    and an export whose file matches the manifest printed with it; bad arguments exit 2."""
    import hashlib
    import json

    ok("db", "upgrade")
    keys = _demo_keys(ok("demo"))
    rounds = voucher("worker", "--once")
    assert rounds.exit_code == 0, rounds.output
    done = dict(part.split("=") for part in rounds.stdout.split())
    assert set(done) == {line.split("\t")[0] for line in ok("jobs", "list").splitlines()}
    assert int(done["publish-events"]) >= 1  # the demo's voucher.issued
    assert int(done["seal-audit"]) > 0 and done["audit-checkpoint"] == "1"
    assert voucher("worker", "--once", "--job", "no-such-job").exit_code == 2
    assert voucher("jobs", "run-once", "no-such-job").exit_code == 2

    listed = ok("keys", "list")
    assert listed.splitlines()[0].split("\t")[:3] == ["id", "prefix", "role"]
    for key in keys.values():
        assert key not in listed and key[:len("vk_") + 10] in listed  # the prefix, never the secret
    assert {line.split("\t")[2] for line in ok("keys", "list", "--role", "provider").splitlines()[1:]} == {"provider"}

    target = tmp_path / "entries.csv"
    result = voucher("export", "ledger-entries", "--format", "csv", "-o", str(target))
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stderr.strip().splitlines()[-1])
    data = target.read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert manifest["row_count"] == len(data.decode("utf-8-sig").strip().splitlines()) - 1 > 0
    assert voucher("export", "nope").exit_code == 2
    assert voucher("export", "redemptions", "--since", "2026-01-01").exit_code == 2  # no time zone
    assert voucher("export", "redemptions", "--account-id", "x").exit_code == 2  # no such option
    # A malformed id is refused by the command line, before the database is opened, naming the argument.
    for args, named in ((("keys", "revoke", "not-a-key-id"), "KEY_ID"),
                        (("export", "redemptions", "--programme-id", "x"), "--programme-id"),
                        (("keys", "create", "--role", "enterprise", "--enterprise-id", "42"), "--enterprise-id")):
        refused = voucher(*args)
        assert refused.exit_code == 2 and named in refused.output, (args, refused.output)
        assert not isinstance(refused.exception, ValueError), refused.exception


def test_every_command_has_help() -> None:
    """`--help` on each command the issue names, and on every group: exit 0 with a description."""
    commands = [
        ("serve",), ("worker",), ("demo",), ("export",), ("db", "upgrade"), ("db", "downgrade"),
        ("db", "current"), ("keys", "create"), ("keys", "list"), ("keys", "revoke"), ("jobs", "run-once"),
        ("jobs", "list"), ("ledger", "reconcile"), ("audit", "verify"), ("audit", "checkpoint"),
        ("audit", "keygen"), ("secrets", "keygen"), ("secrets", "reseal"), ("db",), ("keys",), ("jobs",),
        ("ledger",), ("audit",), ("secrets",), (),
    ]
    for command in commands:
        result = voucher(*command, "--help")
        assert result.exit_code == 0, (command, result.output)
        assert "Usage:" in result.output and len(result.output.splitlines()) > 3, (command, result.output)
        # A flag shows no type; a value shows what to write (UUID, TIME, FILE), not a Python type.
        assert not re.search(r"<(bool|str|path|int|float)>", result.output), (command, result.output)
    assert voucher("no-such-command").exit_code == 2


def test_commands_follow_the_sandbox_clock_in_sandbox_mode(cli_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With VOUCHER_SANDBOX=true a command reads the sandbox clock as the server does: a key
    created after the clock moved two years on expires two years on, and it lists as active."""
    from datetime import UTC, datetime, timedelta

    ok("db", "upgrade")
    with create_engine(sync_database_url(normalise_database_url(cli_database))).begin() as conn:
        conn.execute(text("UPDATE sandbox_clock SET offset_us = :us"), {"us": 2 * 365 * 86400 * 10**6})
    monkeypatch.setenv("VOUCHER_SANDBOX", "true")
    get_settings.cache_clear()
    ok("keys", "create", "--role", "operator", "--expires-in-days", "30")
    [line] = [row for row in ok("keys", "list").splitlines() if "\toperator\t" in row]
    expires = datetime.fromisoformat(line.split("\t")[-1])
    sandbox_now = datetime.now(UTC) + timedelta(days=2 * 365)
    assert timedelta(days=29) < expires - sandbox_now < timedelta(days=31), line
    assert "\tactive\t" in line
    monkeypatch.setenv("VOUCHER_SANDBOX", "false")  # real time: the same key is not expired either,
    get_settings.cache_clear()                      # but its expiry is two years and a month away
    assert "\tactive\t" in [row for row in ok("keys", "list").splitlines() if "\toperator\t" in row][0]


def test_a_command_that_cannot_run_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    """Run as cron runs it, outside the checkout: no database or an unmigrated one is exit 2 and
    one line on stderr (never a traceback, never the 1 that means "the ledger differs"), and no
    password is printed. Every command that opens the database takes --database-url."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VOUCHER_DATABASE_URL")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "services.voucher.cli", *args], cwd=tmp_path,  # noqa: S603
                              env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)

    for url, says in ((f"sqlite:///{tmp_path / 'empty.db'}", "voucher db upgrade"),
                      ("postgresql://someone:hunter2@127.0.0.1:1/nothing", "cannot open the database")):
        done = run("ledger", "reconcile", "--database-url", url)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and says in done.stderr, done.stderr
        assert "hunter2" not in done.stderr and "Traceback" not in done.stderr
    migrated = f"sqlite:///{tmp_path / 'ok.db'}"
    assert run("db", "upgrade", "--database-url", migrated).returncode == 0
    clean = run("ledger", "reconcile", "--database-url", migrated)
    assert (clean.returncode, clean.stdout.splitlines()[-1]) == (0, "ledger reconciles: 0 differences")
    needs_url = [("db", "upgrade"), ("db", "downgrade"), ("db", "current"), ("keys", "create"), ("keys", "list"),
                 ("keys", "revoke"), ("jobs", "run-once"), ("worker",), ("ledger", "reconcile"), ("audit", "verify"),
                 ("audit", "checkpoint"), ("export",), ("demo",), ("serve",)]
    for command in needs_url:
        assert "--database-url" in voucher(*command, "--help").output, command


def test_a_mistyped_sqlite_path_is_refused_and_not_created(tmp_path: Path) -> None:
    """Only `db upgrade` makes a new SQLite file: any other command, `serve` included, had
    created an empty database at a mistyped path and then failed on its tables (a server
    answered 500 to every request)."""
    typo = tmp_path / "var" / "vocher.db"
    for command in (("serve", "--port", "1"), ("keys", "list"), ("ledger", "reconcile"), ("worker", "--once")):
        result = voucher(*command, "--database-url", f"sqlite:///{typo}")
        assert result.exit_code == 2, (command, result.output)
        assert f"there is no database at {typo} (--database-url names" in result.stderr, result.stderr
        assert "voucher db upgrade" in result.stderr
        assert not typo.exists() and not typo.parent.exists(), command
    assert voucher("db", "upgrade", "--database-url", f"sqlite:///{typo}").exit_code == 0
    assert typo.exists()


def test_serve_refuses_a_database_never_migrated_and_a_port_in_use(cli_database: str, tmp_path: Path) -> None:
    """`voucher serve` printed "API on …" and served, whatever the database and the port: on a
    database never migrated every request was a 500, and a port already held ended in uvicorn's
    traceback after the greeting."""
    import socket

    if not POSTGRES_URL:  # the fixture names a file not yet made: an empty one, as a mistake leaves
        path = make_url(cli_database).database
        assert path
        Path(path).parent.mkdir(parents=True)
        Path(path).touch()
    result = voucher("serve", "--port", "1")
    assert result.exit_code == 2, result.output
    assert "has never been migrated: run `voucher db upgrade`" in result.stderr and "API on" not in result.stdout
    ok("db", "upgrade")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = voucher("serve", "--port", str(port))
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "API on" not in result.stdout


def test_a_server_on_a_database_never_migrated_answers_503_not_500(cli_database: str) -> None:
    """Started some other way than `voucher serve` (uvicorn on services.voucher.asgi:app), a
    server on an unmigrated database answers every request 503 `not_ready`, naming `voucher db
    upgrade` — it had answered 500 internal_error — and /readyz says why."""
    if not POSTGRES_URL:
        path = make_url(cli_database).database
        assert path
        Path(path).parent.mkdir(parents=True)

    async def calls() -> list[httpx.Response]:
        application = create_app(Settings(database_url=cli_database, log_level="CRITICAL"))
        try:
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                key = auth("vk_0000000000_" + "x" * 43, **{"Idempotency-Key": str(uuid.uuid4())})
                return [await client.get("/v1/programmes", headers=key),
                        await client.post("/v1/enterprises", json={"name": "x"}, headers=key),
                        await client.get("/readyz")]
        finally:
            await application.state.database.dispose()

    listed, created, ready = asyncio.run(calls())
    for response in (listed, created):
        problem = assert_problem(response, 503, "not_ready")
        assert "voucher db upgrade" in problem["detail"], problem
    assert_problem(ready, 503, "not_ready")


def test_a_password_in_the_urls_query_is_not_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq takes `?password=`: the masking had hidden only `user:password@` (a review)."""
    from services.voucher.cli import _where

    monkeypatch.delenv("VOUCHER_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://voucher@db.internal/x?sslmode=require&PASSWORD=SECRETPW&a=1")
    assert "SECRETPW" not in _where() and "sslmode=require" in _where() and "a=1" in _where()
    monkeypatch.setenv("DATABASE_URL", "postgresql://voucher:SECRETPW@db.internal/x")
    assert "SECRETPW" not in _where()


@pytest.mark.skipif(not POSTGRES_URL, reason="production runs on PostgreSQL only")
def test_production_refuses_a_database_whose_sandbox_clock_was_moved(
    cli_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database served in sandbox mode, its clock moved two days on, then served in
    production: what it records is in sandbox time, and a key that had expired on the sandbox
    clock worked again on real time (an independent review of keys, December 2026). The API
    does not start on it, nor does the worker; a database never moved starts."""
    ok("db", "upgrade")
    monkeypatch.setenv("VOUCHER_ENVIRONMENT", "production")
    monkeypatch.setenv("VOUCHER_AUDIT_SIGNING_KEY", base64.b64encode(b"k" * 32).decode())
    monkeypatch.setenv("VOUCHER_SECRETS_KEY", base64.b64encode(b"s" * 32).decode())
    get_settings.cache_clear()
    settings = Settings(database_url=cli_database, environment="production",
                        audit_signing_key=base64.b64encode(b"k" * 32).decode(),
                        secrets_key=base64.b64encode(b"s" * 32).decode(), log_level="WARNING")

    ok("db", "upgrade")  # in production, the upgrade marks it
    assert _count(cli_database, "SELECT count(*) FROM production_mark") == 1
    asyncio.run(_start(settings))  # never moved: it starts
    engine = create_engine(sync_database_url(cli_database), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO sandbox_clock (id, offset_us, moved_at) VALUES (1, :us, now()) "
                              "ON CONFLICT (id) DO UPDATE SET offset_us = :us"), {"us": 2 * 86_400_000_000})
    finally:
        engine.dispose()
    with pytest.raises(RuntimeError, match="used as a sandbox"):
        asyncio.run(_start(settings))
    result = voucher("worker", "--once")
    assert result.exit_code == 2 and "used as a sandbox" in result.output, result.output
    # Cron's way to run a job is refused too (a review of this refusal found it was not).
    result = voucher("jobs", "run-once", "expire-holds")
    assert result.exit_code == 2 and "used as a sandbox" in result.output, result.output

    # A database not reachable for the start-up's read (a restart of both, a failover) had been
    # served for good: /readyz now says why it is not ready, and a worker's round runs nothing.
    from services.voucher import jobs
    from services.voucher.sandbox import service as sandbox

    real, calls = sandbox.moved_offset, {"n": 0}

    async def flaky(database: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionRefusedError("connection refused")
        return await real(database)  # type: ignore[arg-type]

    monkeypatch.setattr(sandbox, "moved_offset", flaky)

    async def probe() -> tuple[int, dict[str, object], dict[str, int]]:
        application = create_app(settings)
        try:
            async with application.router.lifespan_context(application):
                transport = httpx.ASGITransport(app=application)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    ready = await c.get("/readyz")
                done = await jobs.JobWorker(application.state.database, application.state.clock, 0.01).round()
                return ready.status_code, ready.json(), done
        finally:
            await application.state.database.dispose()

    status, body, done = asyncio.run(probe())
    assert status == 503 and "used as a sandbox" in str(body["checks"]["sandbox_clock"]), body
    assert done == {}


@pytest.mark.skipif(bool(POSTGRES_URL), reason="SQLite's one write lock")
def test_reading_commands_run_while_the_service_writes(cli_database: str) -> None:
    """`ledger reconcile` and `keys list` only read: they took SQLite's write lock for their whole
    run, so every hold and redeem of the service waited behind a reconciliation from cron, then
    failed after the busy timeout (an independent review, December 2026). Here a write is held
    open throughout, and both answer."""
    import sqlite3

    ok("db", "upgrade")
    ok("demo")
    path = cli_database.removeprefix("sqlite:///")
    writer = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # the service, mid-write
        writer.execute("UPDATE programme SET updated_at = updated_at")
        assert ok("ledger", "reconcile").splitlines()[-1] == "ledger reconciles: 0 differences"
        assert "\toperator\t" in ok("keys", "list")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
