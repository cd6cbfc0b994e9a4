"""uuid7: version and variant bits, strict order within the process, and time order."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest

from services.voucher import ids
from services.voucher.ids import uuid7


def _millis(value: uuid.UUID) -> int:
    return value.int >> 80


def _counter(value: uuid.UUID) -> int:
    return (value.int >> 64) & 0xFFF


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A clock the test sets, in milliseconds, and a fresh generator state."""
    clock = SimpleNamespace(ms=1_767_225_600_000)  # 2026-01-01T00:00:00Z
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: clock.ms * 1_000_000 + 999))
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_counter", 0)
    return clock


def test_version_and_variant() -> None:
    for _ in range(100):
        value = uuid7()
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert (value.int >> 76) & 0xF == 7
        assert (value.int >> 62) & 0b11 == 0b10


def test_strictly_increasing_over_ten_thousand_calls() -> None:
    values = [uuid7() for _ in range(10_000)]
    assert len(set(values)) == 10_000
    for earlier, later in zip(values, values[1:], strict=False):
        assert earlier < later
        assert str(earlier) < str(later)  # text order (what a cursor compares) agrees
        assert earlier.bytes < later.bytes  # and so does byte order (PostgreSQL uuid, BLOB)


def test_timestamp_is_the_creation_time() -> None:
    before = time.time_ns() // 1_000_000
    values = [uuid7() for _ in range(1_000)]
    after = time.time_ns() // 1_000_000
    # A burst of > 4096 ids in one millisecond may borrow the following milliseconds.
    assert before <= _millis(values[0]) <= _millis(values[-1]) <= after + 1


def test_ids_made_later_sort_later(fake_time: SimpleNamespace) -> None:
    first = uuid7()
    fake_time.ms += 1
    second = uuid7()
    fake_time.ms += 60_000
    third = uuid7()
    assert _millis(first) + 1 == _millis(second)
    assert _millis(second) + 60_000 == _millis(third)
    assert first < second < third


def test_same_millisecond_counts_up(fake_time: SimpleNamespace) -> None:
    values = [uuid7() for _ in range(100)]
    assert {_millis(v) for v in values} == {fake_time.ms}
    counters = [_counter(v) for v in values]
    assert counters[0] < 0x400  # a fresh millisecond starts low, leaving room to count
    assert counters == list(range(counters[0], counters[0] + 100))


def test_counter_overflow_borrows_the_next_millisecond(fake_time: SimpleNamespace) -> None:
    values = [uuid7() for _ in range(5_000)]  # more than 4096 in one frozen millisecond
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    millis = sorted({_millis(v) for v in values})
    assert millis == [fake_time.ms, fake_time.ms + 1]
    # The real clock catching up to the borrowed millisecond does not reuse it.
    fake_time.ms += 1
    nxt = uuid7()
    assert nxt > values[-1]


def test_clock_going_backwards_keeps_order(fake_time: SimpleNamespace) -> None:
    first = uuid7()
    fake_time.ms -= 5_000  # NTP step backwards
    second = uuid7()
    assert second > first
    assert _millis(second) == _millis(first)
