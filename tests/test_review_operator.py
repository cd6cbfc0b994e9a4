"""Independent review of what an operator runs and watches (December 2026): failing tests."""

from __future__ import annotations

import logging
import os
import stat
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from services.voucher import cli
from services.voucher.cli import alembic_config, app
from services.voucher.observability import redact
from services.voucher.settings import Settings, get_settings
from tests.support import auth, fresh_key
from tests.world import build_world


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'voucher.db'}"
    for name in ("VOUCHER_DATABASE_URL", "VOUCHER_ENVIRONMENT", "VOUCHER_SANDBOX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("VOUCHER_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def voucher(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def main_exit_code(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run `voucher ARGS` as the installed entry point does (cli.main), return its exit code."""
    monkeypatch.setattr(sys, "argv", ["voucher", *args])
    try:
        cli.main()
    except SystemExit as done:
        return int(done.code or 0)
    return 0


# 1. `voucher worker --once` (README: the cron form) exits 0 when no job ran / a job failed ---------


def test_worker_once_on_a_database_at_another_revision_does_not_exit_0(sqlite_db: str) -> None:
    """README: exit 1 when 'a job failed'; docs/decisions.md: on a schema that is not this build's
    the worker 'runs no job ... and counts each job as failed'. From cron that must not be exit 0."""
    head = ScriptDirectory.from_config(alembic_config()).get_revision("head")
    assert voucher("db", "upgrade", str(head.down_revision)).exit_code == 0
    result = voucher("worker", "--once")
    assert result.exit_code != 0, f"exit 0 although no job ran: stdout={result.stdout!r}"


def test_worker_once_exits_1_when_a_job_fails(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.voucher import jobs

    assert voucher("db", "upgrade").exit_code == 0
    real = jobs.run_once

    async def failing(database: Any, job: str, now: Any) -> int:
        if job == "seal-audit":
            raise RuntimeError("the sealer broke")
        return await real(database, job, now)

    monkeypatch.setattr(jobs, "run_once", failing)
    result = voucher("worker", "--once")
    assert result.exit_code == 1, (result.exit_code, result.stdout)


# 2. `voucher jobs run-once` exits 2 (not 1, as README and its --help say) when the job fails ------


def test_jobs_run_once_exits_1_when_the_job_fails(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.voucher import jobs

    assert voucher("db", "upgrade").exit_code == 0

    async def failing(database: Any, job: str, now: Any) -> int:
        raise RuntimeError("the sealer broke")

    monkeypatch.setattr(jobs, "run_once", failing)
    assert main_exit_code(monkeypatch, "jobs", "run-once", "seal-audit") == 1


# 3. A refused export destroys the file it was told to write -----------------------------------


def test_a_refused_export_leaves_an_existing_output_file_alone(sqlite_db: str, tmp_path: Path) -> None:
    assert voucher("db", "upgrade").exit_code == 0
    previous = tmp_path / "settlements.csv"
    previous.write_text("last month's export, handed to the auditors\n")
    result = voucher("export", "settlements", "--format", "csv", "-o", str(previous),
                     "--voucher-id", str(uuid.uuid4()))  # voucher_id does not apply: refused
    assert result.exit_code == 2
    assert previous.read_text() == "last month's export, handed to the auditors\n"


def test_an_output_file_that_cannot_be_written_is_not_reported_as_the_database(
    sqlite_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert voucher("db", "upgrade").exit_code == 0
    code = main_exit_code(monkeypatch, "export", "ledger-entries", "-o", str(tmp_path / "no-such-dir" / "x.jsonl"))
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot open the database" not in err, err


# 4. Secrets that reach output ------------------------------------------------------------------


def test_redact_hides_a_url_password_that_contains_a_slash() -> None:
    """docs/observability.md: the password of DATABASE_URL 'or any other URL' is never logged.
    A base64 password (openssl rand -base64) often holds '/'; SQLAlchemy takes it as the password."""
    from sqlalchemy import make_url

    url = "postgresql://voucher:Zm9v/YmFy+cXV4@db:5432/voucher"
    assert make_url(url).password == "Zm9v/YmFy+cXV4"
    assert "YmFy" not in redact(f"could not connect with {url}")


def test_cli_error_does_not_print_a_password_given_without_a_user(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://:S3cretPw@127.0.0.1:1/voucher")
    monkeypatch.delenv("VOUCHER_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        code = main_exit_code(monkeypatch, "keys", "list")
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert code == 2
    assert "S3cretPw" not in err, err


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, environment="test", log_level="WARNING", database_echo=True,
                    webhook_allowed_networks=["127.0.0.0/8"])


async def test_database_echo_does_not_log_webhook_signing_secrets(
    app: Any, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/observability.md 'Never logged: ... webhook signing secrets (whsec_…)'. VOUCHER_DATABASE_ECHO
    (accepted in production, undocumented) logs statement parameters outside the redacting handler."""
    world = await build_world(app, client)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    response = await client.post("/v1/webhook-endpoints", headers=auth(world.provider_key, **fresh_key()),
                                 json={"url": "http://127.0.0.1:9/hook", "event_types": ["redemption.captured"]})
    assert response.status_code == 201, response.text
    secret = response.json()["secret"]
    assert secret.startswith("whsec_")
    logged = caplog.text + capsys.readouterr().out
    assert secret.removeprefix("whsec_") not in logged


# 5. Bad values accepted silently ------------------------------------------------------------


def test_worker_refuses_a_negative_interval(sqlite_db: str) -> None:
    """`--interval -1`: each loop's wait times out at once, so the worker runs rounds back to back
    against the database (VOUCHER_WORKER_INTERVAL_SECONDS refuses <= 0; the option does not)."""
    assert voucher("db", "upgrade").exit_code == 0
    result = voucher("worker", "--once", "--interval", "-1")
    assert result.exit_code == 2, (result.exit_code, result.output)


def test_a_rate_limit_of_zero_is_refused() -> None:
    """'0/minute' parses, and then every request of that role is 429 for good."""
    with pytest.raises(ValueError):
        Settings(rate_limits={"provider": "0/minute"})


async def test_a_metrics_token_with_a_trailing_newline_is_refused_or_usable(database_url: str) -> None:
    """A token read from a secret file keeps its newline (kubectl create secret --from-file). The
    validator strips it to measure the length but keeps it; the scraper's header cannot carry it
    (and the comparison strips what was sent), so every scrape is 401 and nothing said why."""
    from services.voucher.main import create_app

    token = "m" * 24
    application = create_app(Settings(database_url=database_url, environment="test", log_level="WARNING",
                                      metrics_token=token + "\n"))
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with application.router.lifespan_context(application), \
            httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


def test_every_exposed_metric_is_documented() -> None:
    """docs/observability.md's table is what operators build dashboards and alerts from."""
    from prometheus_client import REGISTRY

    from services.voucher import metrics  # noqa: F401 - registers the service's metrics

    documented = (Path(__file__).resolve().parents[1] / "docs" / "observability.md").read_text()
    ours = sorted({family.name for family in REGISTRY.collect() if family.name.startswith("voucher_")})
    assert ours
    missing = [name for name in ours if f"`{name}" not in documented]
    assert not missing, missing
    assert "VOUCHER_METRICS_TOKEN" in documented, "the doc says /metrics needs no key; production answers 404"


def test_the_worker_job_metrics_reach_a_scrape_in_the_documented_deployment(tmp_path: Path) -> None:
    """README (Operations, Worker): 'Watch voucher_job_runs_total{outcome="error"}'. docker-compose.yml
    and README's production recipe run `voucher worker` as a process of its own, whose counters no
    API process's /metrics sees: it serves them itself (--metrics-port). A worker failing every
    round (here: a database at another revision) shows it there, behind the metrics token."""
    import socket
    import subprocess
    import time

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOUCHER_", "DATABASE_URL", "PROMETHEUS"))}
    token = "t" * 24
    env.update(PYTHONPATH=f"{root}:{root / 'clients' / 'python'}", DATABASE_URL=f"sqlite:///{tmp_path / 'v.db'}",
               VOUCHER_LOG_LEVEL="ERROR", VOUCHER_METRICS_TOKEN=token)
    run = [sys.executable, "-m", "services.voucher.cli"]
    head = ScriptDirectory.from_config(alembic_config()).get_revision("head")
    subprocess.run([*run, "db", "upgrade", str(head.down_revision)], env=env, check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = subprocess.Popen([*run, "worker", "--interval", "0.2", "--metrics-port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        text, refused = "", None
        for _ in range(150):
            time.sleep(0.2)
            try:
                refused = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2,
                                 headers={"Authorization": f"Bearer {token}"}).text
            except httpx.HTTPError:
                continue
            if 'outcome="error"' in text:
                break
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert refused is not None and refused.status_code == 401
    assert 'voucher_job_runs_total{job="seal-audit",outcome="error"}' in text, text[-2000:]


def test_at_log_level_warning_the_access_line_of_a_5xx_is_still_written() -> None:
    """docs/observability.md: the access line is 'level INFO (WARNING for 5xx)'. log_access returns
    early unless INFO is enabled, so with VOUCHER_LOG_LEVEL=WARNING (production's usual quieting) no
    5xx answer leaves an access line."""
    import io

    from services.voucher.observability import configure_logging, log_access

    stream = io.StringIO()
    configure_logging("WARNING", "json", stream)
    try:
        log_access(request_id="r-12345678", method="POST", route="/v1/redemptions", path="/v1/redemptions",
                   status=503, duration_ms=5012.0, principal=None)
    finally:
        configure_logging("WARNING", "json")
    assert '"status": 503' in stream.getvalue(), stream.getvalue()


# A review of these fixes: the export replaces only a regular file, keeping its mode --------------


def test_an_export_keeps_the_permissions_of_the_file_it_overwrites(sqlite_db: str, tmp_path: Path) -> None:
    assert voucher("db", "upgrade").exit_code == 0
    out = tmp_path / "ledger.jsonl"
    out.write_text("last month\n")
    out.chmod(0o600)  # tenants' ledger: readable by the export's owner only
    old = os.umask(0o022)
    try:
        result = voucher("export", "ledger-entries", "-o", str(out))
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600, oct(out.stat().st_mode)


def test_an_export_to_a_symlink_writes_the_file_it_points_to(sqlite_db: str, tmp_path: Path) -> None:
    assert voucher("db", "upgrade").exit_code == 0
    target = tmp_path / "2026-11.jsonl"
    target.write_text("")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    result = voucher("export", "ledger-entries", "-o", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink(), "the symlink was replaced by a regular file"


def test_an_export_to_a_fifo_reaches_its_reader(sqlite_db: str, tmp_path: Path) -> None:
    assert voucher("db", "upgrade").exit_code == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the other end: gzip, gpg, an upload
    try:
        result = voucher("export", "ledger-entries", "-o", str(fifo))
        assert result.exit_code == 0, result.output
        assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the pipe was replaced by a regular file"
    finally:
        os.close(reader)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_worker_metrics_answer_only_with_the_token_on_either_address_family(host: str) -> None:
    import socket

    from services.voucher import metrics

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    except OSError:
        pytest.skip(f"no {host} on this machine")
    stop = metrics.serve(host, port, "w" * 24)
    try:
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 401
        scraped = httpx.get(f"{url}/metrics", timeout=5, headers={"Authorization": f"Bearer {'w' * 24}"})
        assert scraped.status_code == 200 and "voucher_job_runs_total" in scraped.text
        assert httpx.get(f"{url}/", timeout=5).status_code == 404
    finally:
        stop()
