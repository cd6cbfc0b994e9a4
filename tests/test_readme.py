"""The README tells the truth, in English and in Chinese (README.zh-CN.md): its Python client
and sandbox walk-throughs run as written against a real server loaded with the demo, and
`make run`'s in-process worker publishes events."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
READMES = {"en": README, "zh": (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")}


def _section(title: str, language: str = "en") -> str:
    """The `## ` section of that README named `title`; the Chinese README names it in Chinese
    with the English title after it in brackets: `## Python 客户端（The Python client）`."""
    text = READMES[language]
    found = re.search(rf"^## (?:[^\n]*（)?{re.escape(title)}）?\n", text, re.M)
    assert found, (language, title)
    end = text.find("\n## ", found.start() + 1)
    return text[found.start() : end if end != -1 else None]


def _subsection(section: str, title: str) -> str:
    found = re.search(rf"^### (?:[^\n]*（)?{re.escape(title)}）?\n", section, re.M)
    assert found, title
    return section[found.end():]


def _demo(database_url: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "VOUCHER_LOG_LEVEL": "WARNING"}
    env.pop("VOUCHER_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "services.voucher.cli", "demo"], cwd=ROOT, env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=True)
    keys = dict(re.findall(r"^\s+(operator|auditor|enterprise|provider)\s+(vk_\S+)\s*$", done.stdout, re.M))
    assert len(keys) == 4, done.stdout
    return {"OP": keys["operator"], "AUD": keys["auditor"], "ENT": keys["enterprise"], "PROV": keys["provider"]}


def _one_script(fence: str, said: dict[str, str]) -> str:
    """The first `fence` block of a walk-through, which both READMEs show alike: it runs once
    for both."""
    scripts = {language: re.findall(rf"```{fence}\n(.*?)```", text, re.S)[:1] for language, text in said.items()}
    assert scripts["en"] and scripts["en"] == scripts["zh"], scripts
    return scripts["en"][0]


def test_the_python_walkthrough_runs_as_written(database_url: str) -> None:
    """The walk-through's script, the same in both READMEs, run once."""
    script = _one_script("python", {language: _section("The Python client", language) for language in READMES})
    keys = _demo(database_url)
    server = LiveServer(database_url, env={"VOUCHER_WORKER_IN_PROCESS": "true",
                                           "VOUCHER_WORKER_INTERVAL_SECONDS": "0.2"})
    with server:
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT,  # noqa: S603
                              env={**os.environ, **keys, "VOUCHER_URL": server.url},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        lines = done.stdout.splitlines()
        assert lines[0].startswith("voucher CV-") and lines[1].startswith("subsidy ")
        assert lines[2].startswith("refused: order_reference_conflict"), lines
        assert lines[3] == "audit chain intact: True"
        # The in-process worker (as `make run` starts it) publishes the capture for the provider.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            events = httpx.get(f"{server.url}/v1/events", params={"type": "redemption.captured"},
                               headers={"Authorization": f"Bearer {keys['PROV']}"}, timeout=10).json()["items"]
            if events:
                break
            time.sleep(0.2)
        assert len(events) == 1, "the worker did not publish the redemption"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_readme_names_every_make_target_it_uses(language: str) -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    for used in set(re.findall(r"`make ([a-z-]+)`", READMES[language])):
        assert used in targets, used


def test_the_two_readmes_show_the_same_commands_and_link_each_other() -> None:
    """Every code block of the English README is in the Chinese one and the other way round, so
    neither language runs behind; each links to the other first thing."""
    def blocks(text: str) -> list[str]:
        return sorted(re.findall(r"```[a-z]*\n.*?```", text, re.S))
    assert blocks(READMES["en"]) == blocks(READMES["zh"])
    assert "[简体中文](README.zh-CN.md)" in README.split("\n## ", 1)[0]
    assert "[English](README.md)" in READMES["zh"].split("\n## ", 1)[0]


def test_the_sandbox_walkthrough_runs_as_written(database_url: str, tmp_path: Path) -> None:
    """Every command of "Time passing: the sandbox clock", in order, in bash, against a server
    started as `make run` starts it (sandbox mode, the worker inside, zh-CN); only its address
    is the test's own. The commands are the same in both READMEs and run once; what each README
    says they show is what they show."""
    said = {language: _subsection(_section("Trying it: five minutes as each role", language),
                                  "Time passing: the sandbox clock") for language in READMES}
    script = _one_script("sh", said)
    keys = _demo(database_url)
    env = {"VOUCHER_SANDBOX": "true", "VOUCHER_WORKER_IN_PROCESS": "true", "VOUCHER_DEFAULT_LANGUAGE": "zh-CN"}
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    with LiveServer(database_url, env=env) as server:
        address = server.url.removeprefix("http://")
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script.replace("localhost:8000", address)],  # noqa: S603, S607
                              cwd=tmp_path, env={**os.environ, "OP": keys["OP"], "ENT": keys["ENT"],
                                                 "PROV": keys["PROV"]},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
        lines = done.stdout.splitlines()
        assert len(lines) == 9, lines
        for language, text in said.items():
            balances = re.findall(r"`(\{'available'[^`]*)`", text)
            assert lines[1:] == [balances[0], lines[2], "expired", balances[1], "1000000", lines[6], lines[7],
                                 "1000000"], (language, lines)
        times = [datetime.fromisoformat(lines[i].replace("Z", "+00:00")) for i in (0, 2, 6, 7)]
        assert timedelta(minutes=31) <= times[1] - times[0] < timedelta(minutes=32), times
        local = times[2].astimezone(ZoneInfo("Asia/Shanghai"))
        assert (local.day, local.hour, local.minute) == (1, 0, 0), local
        assert timedelta(minutes=5) <= times[3] - times[2] < timedelta(minutes=6), times
        statement = (tmp_path / "statement.csv").read_text(encoding="utf-8-sig")
        assert "PO-SANDBOX-2" in statement and "PO-SANDBOX-1" not in statement, statement[:2000]


@pytest.mark.parametrize("page", ["errors", "eligibility", "sandbox", "client"])
def test_each_chinese_guide_shows_its_english_pages_commands_and_links_it(page: str) -> None:
    english = (ROOT / "docs" / f"{page}.md").read_text(encoding="utf-8")
    chinese = (ROOT / "docs" / "zh" / f"{page}.md").read_text(encoding="utf-8")

    def blocks(text: str) -> list[str]:
        return sorted(re.findall(r"```[a-z]*\n.*?```", text, re.S))
    assert blocks(english) == blocks(chinese)
    assert f"[简体中文](zh/{page}.md)" in english and f"[English](../{page}.md)" in chinese
