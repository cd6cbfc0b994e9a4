"""Every event a subscriber can receive is listed where integrators read (a review, December 2026:
settlement.created was announced in README.md but not in the Chinese README)."""

from __future__ import annotations

from pathlib import Path

from services.voucher.events.rules import EventType

ROOT = Path(__file__).resolve().parents[2]


def test_every_event_type_is_listed_in_both_readmes() -> None:
    for readme in ("README.md", "README.zh-CN.md"):
        text = (ROOT / readme).read_text(encoding="utf-8")
        missing = [t.value for t in EventType if f"`{t.value}`" not in text]
        assert not missing, f"{readme} does not list {missing}"
