"""The voucher-client distribution (clients/python) installs on its own: into a fresh virtualenv,
from the package index, it brings httpx and nothing of the server (no FastAPI, Starlette,
SQLAlchemy, SQLModel, pydantic), and from that virtualenv it drives a real server over a socket.

The virtualenv is built once for this module (about 10–30 s: `python -m venv`, then `pip install`
of a copy of clients/python, so the build leaves nothing behind in the repository).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.voucher.clock import system_clock
from tests.client.office import hold
from tests.live_server import LiveServer
from tests.support import enterprise_payload, programme_payload, provider_payload

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"
SERVER_ONLY = ("services", "fastapi", "starlette", "sqlalchemy", "sqlmodel", "pydantic")


def _env() -> dict[str, str]:
    """The environment without anything that would let the venv see the repository's packages."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONSAFEPATH"}}
    env.update({"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PYTHONNOUSERSITE": "1"})
    return env


def _run(args: list[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env or _env(), input=stdin, capture_output=True,  # noqa: S603
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{args[:4]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding `pip install clients/python` and nothing else; its python."""
    base = tmp_path_factory.mktemp("client-distribution")
    source = base / "src"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns(
        "*.egg-info", "build", "dist", "__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "venv", str(base / "venv")], cwd=base, timeout=120)
    python = base / "venv" / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", str(source)], cwd=base, timeout=180)
    return python


PROBE = """
import importlib, importlib.metadata as md, json, sys
from pathlib import Path
import voucher_client
voucher_client.VoucherClient, voucher_client.AsyncVoucherClient, voucher_client.OPERATIONS
missing = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError:
        missing[name] = True
    else:
        missing[name] = False
meta = md.metadata("voucher-client")
print(json.dumps({
    "file": voucher_client.__file__,
    "py_typed": (Path(voucher_client.__file__).parent / "py.typed").is_file(),
    "missing": missing,
    "version": meta["Version"],
    "license": meta.get("License-Expression"),
    "requires": md.requires("voucher-client"),
    "prefix": sys.prefix,
}))
"""


def test_the_client_installs_alone_with_httpx_only(venv: Path) -> None:
    cwd = venv.parents[1]  # not the repository: nothing importable by accident from the cwd
    probe = json.loads(_run([str(venv), "-c", PROBE, *SERVER_ONLY], cwd=cwd, timeout=60).stdout)
    assert Path(probe["file"]).is_relative_to(probe["prefix"]), probe  # the installed copy
    assert not Path(probe["file"]).is_relative_to(ROOT), probe
    assert probe["py_typed"] is True
    assert probe["missing"] == dict.fromkeys(SERVER_ONLY, True), probe["missing"]
    assert probe["version"] == "0.1.0" and probe["license"] == "Apache-2.0"
    assert probe["requires"] == ["httpx>=0.27"]

    listed = json.loads(_run([str(venv), "-m", "pip", "list", "--format=json"], cwd=cwd, timeout=60).stdout)
    names = {p["name"].lower().replace("_", "-") for p in listed}
    assert {"voucher-client", "httpx"} <= names, names
    assert not names & {"fastapi", "starlette", "sqlalchemy", "sqlmodel", "pydantic", "voucher-service"}, names


WALK = """
import json, os, sys
from voucher_client import ConflictError, RetryPolicy, VoucherClient

data = json.load(sys.stdin)
url = os.environ["VOUCHER_URL"]
retries = RetryPolicy(max_attempts=3, sleep=lambda seconds: None)
out = {}
with VoucherClient(url, api_key=os.environ["OP"], retries=retries) as operator:
    out["health"] = operator.healthz()["status"]
    out["me"] = operator.get_me()["role"]
    programme = operator.create_programme(data["programme"])
    operator.open_programme(programme["id"])
    enterprise = operator.register_enterprise(data["enterprise"])
    provider = operator.register_provider(data["provider"])
    operator.approve_provider(provider["id"], {"reason": "ok"})
    operator.enrol_provider(programme["id"], provider["id"])
    key = operator.create_api_key({"role": "provider", "name": "billing", "provider_id": provider["id"]})["key"]
    voucher = operator.issue_voucher({"programme_id": programme["id"], "enterprise_id": enterprise["id"],
                                      "face_value": 10_000_000})
    order = {**data["order"], "voucher_code": voucher["code"], "enterprise_uscc": enterprise["uscc"]}
    with VoucherClient(url, api_key=key, retries=retries) as billing:
        redeemed = billing.redeem(order, idempotency_key="dist-redeem-1")
        again = billing.redeem(order, idempotency_key="dist-redeem-1")
        out["replayed"] = billing.last_response.headers["idempotent-replayed"]
        out["same"] = again == redeemed
        try:
            billing.redeem(order)
        except ConflictError as refused:
            out["refused"] = refused.code
    out["redeemed"] = {k: redeemed[k] for k in ("status", "captured_amount")}
    out["balances"] = operator.get_voucher(voucher["id"])["balances"]
out["server_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in set(sys.argv[1:]))
print(json.dumps(out))
"""


@pytest.fixture
def clock():  # the live server runs on the real clock; so does this test's app
    return system_clock


def test_the_installed_client_redeems_against_a_live_server(
    venv: Path, app, operator_key: str, database_url: str
) -> None:
    data = {"programme": programme_payload(tiers=[], stacking_ceiling_bps=10_000),
            "enterprise": enterprise_payload(), "provider": provider_payload(),
            "order": hold("", "", "PO-dist-1", 10_000_000)}
    with LiveServer(database_url) as server:
        env = {**_env(), "VOUCHER_URL": server.url, "OP": operator_key}
        done = _run([str(venv), "-c", WALK, *SERVER_ONLY], cwd=venv.parents[1], timeout=90, env=env,
                    stdin=json.dumps(data))
    out = json.loads(done.stdout)
    assert out["health"] == "ok" and out["me"] == "operator"
    assert out["redeemed"] == {"status": "captured", "captured_amount": 3_000_000}
    assert out["same"] is True and out["replayed"] == "true"
    assert out["refused"] == "order_already_subsidised"
    assert out["balances"] == {"available": 7_000_000, "held": 0, "used": 3_000_000}
    assert out["server_modules"] == []
