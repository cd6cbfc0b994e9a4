"""docker-compose.yml runs PostgreSQL, a one-shot migration step and the API (DESIGN §6).

No Docker engine runs in CI, so the files are checked for the structure that makes `docker compose
up` start in the right order and keep configuration out of the image.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
SERVICES: dict[str, Any] = COMPOSE["services"]


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    return command.split() if isinstance(command, str) else list(command or [])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- KEY=value` form
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _healthcheck_test(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_four_services_exist() -> None:
    assert {"db", "migrate", "api", "worker"} <= set(SERVICES)


def test_the_worker_runs_every_job_after_the_migration() -> None:
    worker = SERVICES["worker"]
    assert worker["command"] == ["voucher", "worker"]  # `voucher worker` runs every job (JOBS) on its schedule
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["restart"] == "unless-stopped" and worker["stop_signal"] == "SIGTERM"


def test_db_is_postgresql_15_with_a_healthcheck_and_a_named_volume() -> None:
    db = SERVICES["db"]
    assert db["image"].startswith("postgres:15")
    assert "pg_isready" in _healthcheck_test(db)
    volumes = [v if isinstance(v, str) else v["source"] for v in db["volumes"]]
    named = [v.split(":", 1)[0] for v in volumes if not v.startswith((".", "/"))]
    assert named and all(name in (COMPOSE.get("volumes") or {}) for name in named), volumes


@pytest.mark.parametrize("name", ["migrate", "api", "worker"])
def test_app_services_wait_for_a_healthy_database(name: str) -> None:
    depends_on = SERVICES[name]["depends_on"]
    assert depends_on["db"]["condition"] == "service_healthy"


def test_migrate_is_a_one_shot_upgrade_built_from_this_repository() -> None:
    migrate = SERVICES["migrate"]
    assert "build" in migrate
    assert _command(migrate) == ["voucher", "db", "upgrade"]
    assert migrate.get("restart", "no") == "no"


def test_api_starts_after_a_successful_migration() -> None:
    api = SERVICES["api"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api.get("image") == SERVICES["migrate"].get("image") and api.get("image")


def test_api_listens_on_port_8000_and_is_published_on_the_hosts_loopback_by_default() -> None:
    command = _command(SERVICES["api"])
    assert command[:2] == ["voucher", "serve"], command
    assert command[command.index("--host") + 1] == "0.0.0.0"  # inside its container
    assert command[command.index("--port") + 1] == "8000"
    assert SERVICES["api"]["ports"] == ["${VOUCHER_API_PUBLISH:-127.0.0.1:8000}:8000"]  # issue 19, finding 9


def test_metrics_need_a_token_the_operator_sets() -> None:
    environment = SERVICES["api"]["environment"]  # from the x-app anchor
    assert environment["VOUCHER_METRICS_TOKEN"] == "${VOUCHER_METRICS_TOKEN:-}"


def test_api_healthcheck_probes_healthz_without_curl() -> None:
    test = _healthcheck_test(SERVICES["api"])
    assert "/healthz" in test
    assert "python" in test and "urllib" in test
    assert "curl" not in test and "wget" not in test


@pytest.mark.parametrize("name", ["migrate", "api", "worker"])
def test_app_services_are_configured_by_environment_for_production(name: str) -> None:
    env = _environment(SERVICES[name])
    assert env["DATABASE_URL"].startswith("postgresql://"), env
    assert "@db:5432/" in env["DATABASE_URL"]
    assert env["VOUCHER_ENVIRONMENT"] == "production"
    assert env["VOUCHER_DEFAULT_LANGUAGE"] == "${VOUCHER_DEFAULT_LANGUAGE:-zh-CN}"  # the office's language
    # Production refuses to start without a checkpoint signing key; compose must not invent one.
    assert env["VOUCHER_AUDIT_SIGNING_KEY"].startswith("${VOUCHER_AUDIT_SIGNING_KEY:?"), env
    # Nor without the key that seals webhook secrets.
    assert env["VOUCHER_SECRETS_KEY"].startswith("${VOUCHER_SECRETS_KEY:?"), env
    assert env["VOUCHER_SECRETS_RETIRED_KEYS"] == "${VOUCHER_SECRETS_RETIRED_KEYS:-}", env


def test_image_installs_the_locked_dependencies_then_the_package_without_deps() -> None:
    runs = [args for instruction, args in _dockerfile_instructions() if instruction == "RUN"]
    lock_install = [i for i, r in enumerate(runs) if re.search(r"pip install .*-r requirements\.lock", r)]
    package_install = [i for i, r in enumerate(runs) if re.search(r"pip install .*--no-deps", r)]
    assert lock_install and package_install, runs
    assert lock_install[0] < package_install[0]
    assert any(i == "COPY" and "requirements.lock" in a for i, a in _dockerfile_instructions())


def _pins(lock: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith((" ", "#")):
            pins[name.strip().lower()] = version.split(";")[0].strip()
    return pins


def test_the_image_lock_holds_the_runtime_only_and_agrees_with_the_dev_lock() -> None:
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert {"fastapi", "sqlalchemy", "psycopg", "babel"} <= runtime.keys()
    assert not {"pytest", "ruff", "hypothesis", "schemathesis", "import-linter"} & runtime.keys()
    assert {"pytest", "ruff"} <= dev.keys()
    assert {name: dev.get(name) for name in runtime} == runtime  # one version of each, both locks


def test_image_is_python_3_11_slim_and_runs_as_a_non_root_user() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0"), users


def test_no_configuration_or_secret_is_baked_into_the_image() -> None:
    for instruction, args in _dockerfile_instructions():
        if instruction in ("ENV", "ARG"):
            assert not re.search(r"DATABASE_URL|PASSWORD|SECRET|TOKEN|postgres(ql)?://", args, re.I), args
    dockerignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".venv", "var", ".git"} <= set(dockerignore)
