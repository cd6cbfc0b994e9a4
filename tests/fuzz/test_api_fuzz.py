"""API fuzzing with schemathesis against the committed OpenAPI document (issue 8): requests
generated from every operation's schema, sent over a socket to a real server loaded with the
demo, authenticated as each role. No answer may be a 5xx, every answer must conform to the
schema documented for its status, and every error must be problem+json.

`make test` runs a short, deterministic pass (VOUCHER_FUZZ_EXAMPLES, default 2 per operation and
role); `make fuzz` runs it long and random. The short pass sends a caller without a key only the
public operations: that every other operation answers such a caller 401 is what the
authorisation matrix checks, operation by operation (tests/test_authorization_matrix.py), and
fuzzing them anonymously had cost CI about 40 s per database for 401s alone. `make fuzz` sends
anonymous callers everything.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("VOUCHER_FUZZ_EXAMPLES", "2"))
RANDOM = os.environ.get("VOUCHER_FUZZ_RANDOM", "") == "1"
ROLES = ("operator", "auditor", "enterprise", "provider", "anonymous") if RANDOM else (
    "operator", "auditor", "enterprise", "provider")

schema = schemathesis.openapi.from_path(ROOT / "openapi" / "openapi.json")
# The metrics exposition is Prometheus text, not JSON; it is parsed by its own test.
schema = schema.exclude(operation_id="metrics")
#: The operations anyone may call: those the document gives no security requirement.
PUBLIC = sorted(operation["operationId"] for path in json.loads((ROOT / "openapi" / "openapi.json").read_text())[
    "paths"].values() for operation in path.values() if isinstance(operation, dict) and "operationId" in operation
    and "security" not in operation and operation["operationId"] != "metrics")
public = schema.include(operation_id=PUBLIC)

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def demo(template_database: str, database_factory: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A real server on a database of its own, loaded with the demo; the demo's key per role."""
    from tests.conftest import _pg_url

    if database_factory is not None:
        name = database_factory.take()  # type: ignore[attr-defined]
        url = _pg_url(name)
    else:
        path = tmp_path_factory.mktemp("fuzz") / "voucher.db"
        shutil.copyfile(template_database, path)
        url = f"sqlite+aiosqlite:///{path}"
    env = {**os.environ, "DATABASE_URL": url, "VOUCHER_LOG_LEVEL": "WARNING"}
    loaded = subprocess.run([sys.executable, "-m", "services.voucher.cli", "demo"], cwd=ROOT, env=env,  # noqa: S603
                            capture_output=True, text=True, timeout=120, check=True)
    keys = dict(re.findall(r"^\s+(operator|auditor|enterprise|provider)\s+(vk_\S+)\s*$", loaded.stdout, re.M))
    with LiveServer(url, env={"VOUCHER_RATE_LIMIT_ENABLED": "false"}) as server:
        yield server.url, keys
    if database_factory is not None:
        database_factory.give_back(name)  # type: ignore[attr-defined]


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_answer_is_documented_and_no_5xx(case: schemathesis.Case, role: str,
                                               demo: tuple[str, dict[str, str]]) -> None:
    _check(case, role, demo)


@pytest.mark.skipif(RANDOM, reason="make fuzz sends anonymous callers every operation")
@public.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_a_caller_without_a_key_gets_documented_answers_from_public_operations(
        case: schemathesis.Case, demo: tuple[str, dict[str, str]]) -> None:
    _check(case, "anonymous", demo)


def _check(case: schemathesis.Case, role: str, demo: tuple[str, dict[str, str]]) -> None:
    url, keys = demo
    headers = {"Authorization": f"Bearer {keys[role]}"} if role in keys else {}
    response = case.call(base_url=url, headers=headers, timeout=30)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                             content_type_conformance])
    if response.status_code >= 400:
        content_type = (response.headers.get("content-type") or [""])[0]
        assert content_type.startswith("application/problem+json"), (
            case.method, case.formatted_path, response.status_code, content_type, response.text[:300])
