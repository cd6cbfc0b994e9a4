"""Test fixtures: every test gets its own database, built by the Alembic migrations.

The engine is SQLite unless VOUCHER_TEST_POSTGRES_URL is set; then every test runs on a fresh
PostgreSQL database cloned from a migrated template (CREATE DATABASE … TEMPLATE), which is as
isolated as a rollback but lets the code under test commit for real.
"""

from __future__ import annotations

import os
import queue
import shutil
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.util import LRUCache

from services.voucher import db as voucher_db
from services.voucher.cli import alembic_config
from services.voucher.clock import FrozenClock
from services.voucher.main import create_app
from services.voucher.settings import Settings, normalise_database_url, sync_database_url
from tests.support import drop_database

POSTGRES_URL = os.environ.get("VOUCHER_TEST_POSTGRES_URL")
ENGINE = "postgresql" if POSTGRES_URL else "sqlite"
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Asia/Shanghai


def share_compiled_statements() -> None:
    """Compile each SQL statement once per test process, not once per test.

    Every test gets its own app, so its own engine, and SQLAlchemy caches compiled statements
    per engine, keyed by the engine's dialect object: every test compiled afresh the same few
    hundred statements, and the reconciliation and audit check after it some forty more. That
    was a third of the CPU of tests/programmes (66 s of user time against 42 s with this).
    So an engine made after the first of its kind has connected compiles with that engine's
    dialect (initialised by then, on its first connection) into one shared cache. What the
    dialect does is the same for every engine of one driver; what differs per engine (the
    URL, the pool, the connect arguments, the engine's event listeners) stays the engine's."""
    create = voucher_db.create_async_engine
    shared: LRUCache[Any, Any] = LRUCache(20_000)
    initialised: dict[tuple[type, str], Any] = {}

    def create_async_engine(url: Any, **kwargs: Any) -> Any:
        engine = create(url, **kwargs)
        sync = engine.sync_engine
        kind = (type(sync.dialect), sync.url.drivername)
        dialect = initialised.get(kind)
        if dialect is not None:
            sync.dialect = dialect
            sync._compiled_cache = shared
        else:
            @event.listens_for(sync, "engine_connect")
            def _first(_: Any) -> None:  # the pool's first connection has initialised it by now
                initialised.setdefault(kind, sync.dialect)
        return engine

    voucher_db.create_async_engine = create_async_engine  # type: ignore[assignment]


share_compiled_statements()


def pytest_report_header() -> str:
    return f"voucher database engine: {ENGINE}"


#: The files that take longest (summed over their tests, December 2026: `--durations=0` on both
#: engines), longest first. `make test` hands whole files to its two processes in collection
#: order, each taking the next when it is free; a long file collected late (the fuzz pass, in
#: the middle of the alphabet) left one process working alone at the end. Sent first, the
#: short files fill in around them. Only the order changes; every test still runs.
LONGEST_FIRST = (
    "tests/fuzz/test_api_fuzz.py",
    "tests/exports/test_streaming.py",
    "tests/console/test_browser.py",
    "tests/applications/test_budget_state_machine.py",
    "tests/applications/test_lifecycle.py",
    "tests/programmes/test_routes.py",
    "tests/webhooks/test_delivery.py",
    "tests/redemption/test_concurrency.py",
    "tests/applications/test_races.py",
    "tests/test_cli.py",
    "tests/ledger/test_state_machine.py",
    "tests/settlement/test_state_machine.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: place for place, path in enumerate(LONGEST_FIRST)}
    where = {id(item): place for place, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(item.nodeid.split("::", 1)[0], len(rank)), where[id(item)]))


def _pg_url(name: str) -> str:
    assert POSTGRES_URL
    url = make_url(normalise_database_url(POSTGRES_URL)).set(database=name)
    return url.render_as_string(hide_password=False)


def _pg_admin():  # type: ignore[no-untyped-def]
    return create_engine(sync_database_url(POSTGRES_URL or ""), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to head once per test session; tests get copies of it."""
    if POSTGRES_URL:
        name = f"voucher_tpl_{os.getpid()}"
        admin = _pg_admin()
        with admin.connect() as conn:
            drop_database(conn, name)
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        command.upgrade(alembic_config(_pg_url(name)), "head")
        yield name
        with admin.connect() as conn:
            drop_database(conn, name)
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        command.upgrade(alembic_config(f"sqlite:///{path}"), "head")
        yield str(path)


class _DatabaseFactory:
    """Per-test PostgreSQL databases, cloned from the template ahead of need and dropped after
    use by a background thread, so a test waits for neither (each costs ~80 ms here, which
    across the suite was minutes of the PostgreSQL run)."""

    AHEAD = 2

    def __init__(self, template: str) -> None:
        self.template = template
        self.ready: queue.Queue[str] = queue.Queue()
        self.used: queue.Queue[str | None] = queue.Queue()
        self.admin = _pg_admin()
        self.wanted = threading.Semaphore(self.AHEAD)
        self.worker = threading.Thread(target=self._run, name="test-databases", daemon=True)
        self.worker.start()

    def _run(self) -> None:
        while True:
            try:
                name = self.used.get(timeout=0.01)
            except queue.Empty:
                name = ""
            if name is None:
                return
            try:
                with self.admin.connect() as conn:
                    if name:
                        drop_database(conn, name)
                    elif self.wanted.acquire(blocking=False):
                        fresh = f"voucher_t_{uuid.uuid4().hex[:16]}"
                        try:
                            conn.execute(text(f'CREATE DATABASE "{fresh}" TEMPLATE "{self.template}"'))
                        except Exception:
                            self.wanted.release()
                            raise
                        self.ready.put(fresh)
            except Exception as exc:  # keep serving; a test that gets no database fails loudly
                print(f"test database factory: {exc}", file=sys.stderr)
                time.sleep(0.5)

    def take(self) -> str:
        name = self.ready.get(timeout=120)
        self.wanted.release()
        return name

    def give_back(self, name: str) -> None:
        self.used.put(name)

    def close(self) -> None:
        self.used.put(None)
        self.worker.join(timeout=120)
        with self.admin.connect() as conn:
            while not self.ready.empty():
                drop_database(conn, self.ready.get())
        self.admin.dispose()


@pytest.fixture(scope="session")
def database_factory(template_database: str) -> Iterator[_DatabaseFactory | None]:
    if not POSTGRES_URL:
        yield None
        return
    factory = _DatabaseFactory(template_database)
    yield factory
    factory.close()


@pytest.fixture
def database_url(
    template_database: str, database_factory: _DatabaseFactory | None, tmp_path: Path
) -> Iterator[str]:
    if database_factory is not None:
        name = database_factory.take()
        yield _pg_url(name)
        database_factory.give_back(name)
    else:
        target = tmp_path / "voucher.db"
        shutil.copyfile(template_database, target)
        yield f"sqlite+aiosqlite:///{target}"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, environment="test", log_level="WARNING",
                    webhook_allowed_networks=["127.0.0.0/8", "::1/128"])


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock, request: pytest.FixtureRequest) -> AsyncIterator[object]:
    """The app under test. After every test, the whole ledger must reconcile (DESIGN
    invariant 6): whatever the test did, no balance may differ from its postings. And the audit
    trail must verify (invariant 7): every journal the test posted has its event, and the chain
    holds — unless the test tampered with it on purpose."""
    from services.voucher.audit import service as audit
    from services.voucher.ledger import service as ledger

    application = create_app(settings, clock=clock)
    yield application
    database = application.state.database
    try:
        if request.node.get_closest_marker("ledger_tampered") is None:
            async with database.unit_of_work(write=False) as session:
                result = await ledger.reconcile(session)
            assert result.is_clean, f"ledger does not reconcile after the test: {result}"
        if request.node.get_closest_marker("audit_tampered") is None:
            await audit.seal_pending(database)
            async with database.snapshot() as session:
                verified = await audit.verify(session, application.state.signer)
            assert verified.is_intact, f"audit trail does not verify after the test: {verified.problems}"
    finally:
        await database.dispose()


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def operator_key(app: object) -> str:
    from tests.support import make_key

    return await make_key(app, "operator")


@pytest.fixture
async def auditor_key(app: object) -> str:
    from tests.support import make_key

    return await make_key(app, "auditor")
