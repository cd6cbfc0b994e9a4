"""The chain's arithmetic, without a database."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.voucher.audit.rules import (
    CONTENT_FIELDS,
    GENESIS,
    Link,
    ProblemKind,
    canonical,
    checkpoint_message,
    classify,
    digest,
    journal_compared,
    journal_record,
    journal_refs,
    link,
    plain,
)


def _event(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {name: None for name in CONTENT_FIELDS}
    row.update(id=uuid.UUID(int=1), occurred_at=datetime(2026, 3, 2, 1, 0, tzinfo=UTC), actor_role="system",
               action="voucher.issued", resource_type="voucher", resource_id=uuid.UUID(int=2),
               after={"face_value": 100, "名称": "算力券"})
    row.update(overrides)
    return row


def test_canonical_encoding_is_sorted_compact_utf8() -> None:
    assert canonical({"b": 1, "a": "券"}) == '{"a":"券","b":1}'.encode()


def test_digest_covers_every_content_field() -> None:
    base = digest(_event())
    for name in CONTENT_FIELDS:
        changed = _event(**{name: "x" if name not in ("after", "before") else {"x": 1}})
        assert digest(changed) != base, name


def test_seal_fields_are_not_part_of_the_digest() -> None:
    """The position is fixed by the links, not by the content: sealing does not change a digest."""
    assert digest({**_event(), "seq": 5, "chain_hash": "ab" * 32}) == digest(_event())


def test_times_are_normalised_to_utc() -> None:
    shanghai = timezone(timedelta(hours=8))
    assert digest(_event(occurred_at=datetime(2026, 3, 2, 9, 0, tzinfo=shanghai))) == digest(_event())
    with pytest.raises(ValueError):
        plain(datetime(2026, 3, 2, 1, 0))


def test_floats_never_enter_an_event() -> None:
    with pytest.raises(TypeError):
        plain({"amount": 1.5})


def test_link_is_sha256_of_previous_and_digest() -> None:
    d = digest(_event())
    assert link(GENESIS, d) == hashlib.sha256(bytes(32) + d).hexdigest()


def _chain(n: int) -> list[Link]:
    links, previous = [], GENESIS
    for i in range(n):
        d = digest(_event(id=uuid.UUID(int=100 + i)))
        previous = link(previous, d)
        links.append(Link(i + 1, previous, d))
    return links


def test_classify_alteration_insertion_and_swap() -> None:
    a, b, c = _chain(3)
    altered = Link(b.seq, b.chain_hash, digest(_event(id=uuid.UUID(int=999))))
    assert classify(a.chain_hash, altered, c) is ProblemKind.EVENT_ALTERED
    inserted = Link(b.seq, "ee" * 32, digest(_event(id=uuid.UUID(int=998))))
    assert classify(a.chain_hash, inserted, b) is ProblemKind.EVENT_INSERTED
    # b and c swapped places, each keeping its own link
    assert classify(a.chain_hash, c, b) is ProblemKind.EVENTS_REORDERED
    assert classify(a.chain_hash, altered, None) is ProblemKind.EVENT_ALTERED


def test_checkpoint_message_pins_position_hash_and_time() -> None:
    at = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    message = checkpoint_message(7, "ab" * 32, at)
    assert message != checkpoint_message(8, "ab" * 32, at)
    assert message != checkpoint_message(7, "ac" * 32, at)
    assert message != checkpoint_message(7, "ab" * 32, at + timedelta(microseconds=1))


def test_a_journal_is_recorded_in_one_order_with_its_kind_and_times() -> None:
    a, b = uuid.UUID(int=1), uuid.UUID(int=2)
    at = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    one = journal_record("hold_placed", at, [(b, 5, "CNY", at), (a, -5, "CNY", at)])
    assert one == journal_record("hold_placed", at, [(a, -5, "CNY", at), (b, 5, "CNY", at)])
    assert one != journal_record("refund", at, [(a, -5, "CNY", at), (b, 5, "CNY", at)])
    earlier = at - timedelta(days=30)
    assert one != journal_record("hold_placed", at, [(a, -5, "CNY", earlier), (b, 5, "CNY", earlier)])
    assert one["at"] == "2026-03-02T01:00:00.000000Z"


def test_hashing_a_stored_row_never_fails_on_what_recording_refuses() -> None:
    """A float planted behind the service must not stop the sealer for good."""
    assert digest(_event(after={"amount": 1.5})) != digest(_event(after={"amount": 1}))


def test_a_journal_is_compared_with_what_its_event_recorded() -> None:
    """An event that records the journal's references is held to them; one written before they
    were recorded is held to its kind, time and postings alone."""
    at = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    legs = [(uuid.UUID(int=1), -5, "CNY", at), (uuid.UUID(int=2), 5, "CNY", at)]
    refs = journal_refs(uuid.UUID(int=3), uuid.UUID(int=4).hex, None, "refund: x")
    assert refs == {"programme_id": str(uuid.UUID(int=3)), "voucher_id": str(uuid.UUID(int=4)),
                    "redemption_id": None, "memo": "refund: x"}
    rebuilt = journal_record("refund", at, legs, refs)
    recorded, ledger = journal_compared(rebuilt, rebuilt)
    assert recorded == ledger == rebuilt
    elsewhere = journal_record("refund", at, legs, {**refs, "voucher_id": str(uuid.UUID(int=5))})
    recorded, ledger = journal_compared(elsewhere, rebuilt)
    assert recorded != ledger
    older = journal_record("refund", at, legs)
    assert "refs" not in older
    recorded, ledger = journal_compared(older, rebuilt)
    assert recorded == ledger == older
    recorded, ledger = journal_compared({**older, "legs": []}, rebuilt)
    assert recorded != ledger
