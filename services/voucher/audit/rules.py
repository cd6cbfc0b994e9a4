"""The audit chain's arithmetic: canonical encoding, links, and how a break is classified. Pure.

An event's digest is SHA-256 over its canonical encoding (JSON, keys sorted, no whitespace,
UTF-8, times as RFC 3339 UTC with microseconds). Link n is SHA-256(link n-1 ‖ digest n), link 0
being 32 zero bytes. The position (`seq`) is not part of the digest: the chain itself fixes it,
so moving an event breaks the links around it rather than hiding in a renumbering.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum, StrEnum
from typing import Any

GENESIS = "0" * 64
#: The fields an event's digest covers, in the order the table declares them.
CONTENT_FIELDS = (
    "id", "occurred_at", "actor_principal_id", "actor_role", "actor_key_id", "action",
    "resource_type", "resource_id", "programme_id", "enterprise_id", "provider_id", "voucher_id",
    "before", "after", "request_id", "idempotency_key", "rule_version", "journal_id",
)
SYSTEM_ROLE = "system"
#: The action of the event that records a ledger account as it was opened.
ACCOUNT_OPENED = "ledger.account_opened"
#: What an account's event records: everything about it but its balance, which its postings
#: (each recorded by its journal's event) account for.
ACCOUNT_FIELDS = ("id", "code", "kind", "unit", "programme_id", "voucher_id", "provider_id", "enterprise_id",
                  "is_non_negative", "is_materialised", "created_at")


class ProblemKind(StrEnum):
    EVENT_DELETED = "event_deleted"
    EVENT_INSERTED = "event_inserted"
    EVENTS_REORDERED = "events_reordered"
    #: The event does not hash to its link: its content changed (or an event before it was
    #: removed and the rest renumbered, which looks the same from here).
    EVENT_ALTERED = "event_altered"
    #: The chain is shorter than, or different from, what a signed checkpoint pinned.
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    CHECKPOINT_SIGNATURE_INVALID = "checkpoint_signature_invalid"
    #: A journal transaction in the ledger with no `ledger.posted` event.
    POSTING_WITHOUT_EVENT = "posting_without_event"
    #: The ledger's postings for a journal differ from what its event recorded.
    POSTINGS_DIFFER = "postings_differ"
    #: A `ledger.posted` event whose journal transaction is gone from the ledger.
    EVENT_WITHOUT_POSTING = "event_without_posting"
    #: An event carrying a position the chain does not have (planted with its seal filled in).
    EVENT_OUTSIDE_CHAIN = "event_outside_chain"
    #: A ledger account with no `ledger.account_opened` event.
    ACCOUNT_WITHOUT_EVENT = "account_without_event"
    #: A ledger account's owner, kind or unit differs from what its event recorded.
    ACCOUNT_DIFFERS = "account_differs"
    #: A `ledger.account_opened` event whose account is gone from the ledger.
    EVENT_WITHOUT_ACCOUNT = "event_without_account"
    #: A second `ledger.account_opened` event for one account.
    ACCOUNT_EVENT_REPEATED = "account_event_repeated"


def plain(value: Any, *, strict: bool = True) -> Any:
    """A value as the canonical JSON keeps it: uuids, dates and enums become strings. Floats
    are refused when recording (a money field is an integer; a float would not round-trip
    exactly); when hashing a stored row (`strict=False`) whatever is there is hashed, so a
    row planted behind the service can never stop the sealer."""
    if value is None or isinstance(value, bool | int | str) or (not strict and isinstance(value, float)):
        return value
    if isinstance(value, Enum):
        return plain(value.value, strict=strict)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v, strict=strict) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v, strict=strict) for v in value]
        return sorted(items, key=canonical) if isinstance(value, set | frozenset) else items
    if not strict:
        return repr(value)
    raise TypeError(f"{type(value).__name__} cannot go into an audit event")


@functools.lru_cache(maxsize=256)
def timestamp(value: datetime) -> str:
    """An aware time as the chain's text. Cached: one operation stamps the same `now` on every
    event, posting and answer it writes, and formatting it was 1.3 % of a redeem's CPU. (Equal
    datetimes are one instant, whose UTC text is the same whatever their zones.)"""
    if value.tzinfo is None:
        raise ValueError("audit times are aware UTC datetimes")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def content(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: plain(row[name], strict=False) for name in CONTENT_FIELDS}


def digest(row: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(canonical(content(row))).digest()


def link(previous: str, event_digest: bytes) -> str:
    """The chain's next link. A previous link that is not hexadecimal (a row written behind the
    service; the sealer never writes one) is taken as its text, so the walk and the sealer go on
    and the event that holds it shows as altered, where they had failed on every run for good."""
    try:
        before = bytes.fromhex(previous)
    except (TypeError, ValueError):
        before = str(previous).encode("utf-8", "surrogatepass")
    return hashlib.sha256(before + event_digest).hexdigest()


def checkpoint_message(seq: int, chain_hash: str, signed_at: datetime) -> bytes:
    """What a checkpoint's signature covers; an auditor can rebuild it from the checkpoint."""
    return canonical({"chain_hash": chain_hash, "seq": seq, "signed_at": timestamp(signed_at),
                      "statement": "voucher-audit-checkpoint/1"})


def journal_record(kind: str, at: datetime, postings: list[tuple[Any, int, str, datetime]],
                   refs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A journal as its `ledger.posted` event records it, and as verification rebuilds it from
    the ledger: its kind and time, each posting as [account, amount, unit, time], sorted, and
    what it refers to (`journal_refs`). Whatever a point-in-time balance, a reconciliation or an
    export depends on is in here."""
    record: dict[str, Any] = {
        "kind": kind, "at": timestamp(at),
        "legs": sorted([[str(a), int(n), str(u), timestamp(t)] for a, n, u, t in postings]),
    }
    if refs is not None:
        record["refs"] = refs
    return record


def account_record(account: Mapping[str, Any]) -> dict[str, Any]:
    """A ledger account as its `ledger.account_opened` event records it, and as verification
    rebuilds it from the ledger (`ACCOUNT_FIELDS`): whose it is decides who a balance is paid to."""
    return {name: plain(account[name], strict=False) for name in ACCOUNT_FIELDS}


def account_compared(recorded: Any, account: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what an account's event recorded, what the ledger has), over `ACCOUNT_FIELDS`. An event
    inserted behind the service may record anything: what is not an object records no account."""
    recorded = recorded if isinstance(recorded, Mapping) else {"recorded": recorded}
    return {k: recorded.get(k) for k in account}, account


def journal_refs(programme_id: Any, voucher_id: Any, redemption_id: Any, memo: str) -> dict[str, Any]:
    """The programme, voucher and redemption a journal is about, and its memo: the redemption
    and the voucher are how an export, a past balance and a voucher's clawback find it."""
    def ref(value: Any) -> str | None:
        return None if value is None else str(uuid.UUID(str(value)))

    return {"programme_id": ref(programme_id), "voucher_id": ref(voucher_id), "redemption_id": ref(redemption_id),
            "memo": memo}


def journal_compared(recorded: Mapping[str, Any], rebuilt: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what a `ledger.posted` event recorded, what the ledger has), over what the event must
    record: a journal differs from its event when the two differ. Events written before December
    2026 recorded no `refs`; their journals are compared on the rest (a sealed event cannot lose
    the key without breaking the chain, so a newer one cannot pass for an older one)."""
    ledger = rebuilt if "refs" in recorded else {k: v for k, v in rebuilt.items() if k != "refs"}
    return {k: recorded.get(k) for k in ledger}, ledger


@dataclass(frozen=True)
class Link:
    seq: int
    chain_hash: str
    digest: bytes


def classify(previous: str, current: Link, following: Link | None) -> ProblemKind:
    """Why `current` does not extend `previous`, judged from its neighbour.

    A swapped pair shows as the current event linking from the next one's hash; an inserted
    event as the next one linking straight from `previous`; anything else as an alteration.
    """
    if following is not None:
        if link(previous, following.digest) == following.chain_hash:
            if link(following.chain_hash, current.digest) == current.chain_hash:
                return ProblemKind.EVENTS_REORDERED
            return ProblemKind.EVENT_INSERTED
    return ProblemKind.EVENT_ALTERED
