"""`voucher export --format xlsx`: a workbook written to the file named, matching the manifest
printed with it; to stdout it is refused in one line, exit 2 (a zip is no stream to pipe)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from services.voucher.cli import app as cli
from services.voucher.settings import get_settings
from tests.exports import xlsx
from tests.exports.history import History, build_history


@pytest.fixture
async def history(app, client: httpx.AsyncClient, clock) -> History:
    return await build_history(app, client, clock)


async def _voucher(*args: str) -> Result:
    # The command runs its own event loop; it gets a thread of its own, as it would a process.
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def test_the_cli_writes_an_xlsx_export_to_a_file(
    history: History, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)  # the command sets it; put back afterwards
    monkeypatch.setenv("VOUCHER_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    try:
        target = tmp_path / "redemptions.xlsx"
        result = await _voucher("export", "redemptions", "--format", "xlsx", "-o", str(target),
                                "--database-url", database_url)
        assert result.exit_code == 0, result.output
        manifest = json.loads(result.stderr.strip().splitlines()[-1])
        data = target.read_bytes()
        assert manifest["format"] == "xlsx" and hashlib.sha256(data).hexdigest() == manifest["sha256"]
        header, records = xlsx.as_records(xlsx.read(data))
        assert manifest["row_count"] == len(records) == len(history.redemptions)
        assert "line_item_count" in header and "computation" not in header

        refused = await _voucher("export", "redemptions", "--format", "xlsx", "--database-url", database_url)
        assert refused.exit_code == 2
        assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: ")
        assert "--output" in refused.stderr and refused.stdout == ""
    finally:
        get_settings.cache_clear()
