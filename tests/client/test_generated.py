"""The generated client covers the committed OpenAPI document, exactly and up to date, and the
client package stands alone (no server internals). The client is the `voucher-client`
distribution in clients/python; its generator, clients/python/generate.py, is a repository tool
outside the package, loaded here from its file."""

from __future__ import annotations

import ast
import inspect
import json
import shutil
import subprocess
import sys
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from types import ModuleType

import pytest
import voucher_client as client
from voucher_client import AsyncVoucherClient, VoucherClient

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "clients" / "python" / "generate.py"


def _load_generator() -> ModuleType:
    spec = spec_from_file_location("voucher_client_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


generate = _load_generator()
DOCUMENT = generate.DOCUMENT
PACKAGE = Path(client.__file__).parent


def _operations(document: dict) -> dict[str, tuple[str, str]]:
    found = {}
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in generate.METHODS:
                found[op["operationId"]] = (method.upper(), path)
    return found


def test_every_operation_id_has_a_sync_and_an_async_method() -> None:
    operations = _operations(json.loads(DOCUMENT.read_text(encoding="utf-8")))
    assert len(operations) > 50  # the document really was read
    missing_sync = [op for op in operations if not callable(getattr(VoucherClient, op, None))]
    missing_async = [op for op in operations
                     if not inspect.iscoroutinefunction(getattr(AsyncVoucherClient, op, None))]
    assert not missing_sync, f"operations without a VoucherClient method: {missing_sync}; run `make client`"
    assert not missing_async, f"operations without an AsyncVoucherClient method: {missing_async}; run `make client`"
    # and each method calls the operation it is named after
    for op, (method, path) in operations.items():
        spec = client.OPERATIONS[op]
        assert (spec.method, spec.path) == (method, path), op


def test_the_generated_module_is_up_to_date() -> None:
    expected = generate.render(DOCUMENT.read_text(encoding="utf-8"))
    current = generate.TARGET.read_text(encoding="utf-8")
    assert current == expected, "clients/python/voucher_client/_generated.py is stale: run `make client`"
    assert generate.main(["--check"]) == 0


def test_check_fails_when_the_document_gains_an_operation(tmp_path: Path) -> None:
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    output = tmp_path / "_generated.py"
    source = tmp_path / "openapi.json"
    source.write_text(json.dumps(document), encoding="utf-8")
    assert generate.main(["--document", str(source), "--output", str(output)]) == 0
    assert generate.main(["--document", str(source), "--output", str(output), "--check"]) == 0
    document["paths"]["/v1/new-thing/{thing_id}"] = {"get": {
        "operationId": "get_new_thing", "summary": "A new thing",
        "parameters": [{"in": "path", "name": "thing_id", "required": True, "schema": {"type": "string"}},
                       {"in": "query", "name": "when", "schema": {"type": "string", "format": "date-time"}}],
        "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}},
    }}
    source.write_text(json.dumps(document), encoding="utf-8")
    assert generate.main(["--document", str(source), "--output", str(output), "--check"]) == 1
    assert generate.main(["--document", str(source), "--output", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    assert "def get_new_thing(self, thing_id: str, *, when: str | datetime | None = None) -> Health:" in text
    assert "async def get_new_thing(" in text


def test_generation_is_deterministic_and_ruff_clean(tmp_path: Path) -> None:
    text = DOCUMENT.read_text(encoding="utf-8")
    assert generate.render(text) == generate.render(text)
    compile(generate.render(text), "_generated.py", "exec")
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    result = subprocess.run([ruff, "check", str(generate.TARGET)], capture_output=True, text=True,
                            cwd=generate.ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_client_imports_nothing_from_the_server() -> None:
    """voucher_client is its own distribution and stands alone: only itself, httpx and the
    standard library (the import-linter contract in pyproject.toml says the same)."""
    allowed_external = {"httpx"}
    offenders = []
    for file in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: must stay inside the package
                    if node.level > 1:
                        offenders.append(f"{file.name}: relative import above the package")
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "voucher_client":
                    continue
                if top == "services":
                    offenders.append(f"{file.name}: {name}")
                elif top not in sys.stdlib_module_names and top not in allowed_external:
                    offenders.append(f"{file.name}: third-party {name}")
    assert not offenders, offenders


def test_importing_the_client_loads_no_server_module() -> None:
    code = ("import sys, voucher_client as c; c.VoucherClient; c.AsyncVoucherClient; c.OPERATIONS; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'services', 'fastapi', 'starlette', 'sqlalchemy', 'sqlmodel', 'pydantic'}); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=generate.ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
