"""The audit chain over a real history: intact, then each kind of tampering made directly in
the database (as someone holding it would), each detected by verification (DESIGN invariant 7).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from services.voucher.settings import sync_database_url
from tests.conftest import ENGINE
from tests.support import assert_problem, auth, create, provider_payload
from tests.world import World, build_world

pytestmark = pytest.mark.audit_tampered

SQLITE_GUARDS = ("audit_event_no_delete", "audit_event_seal_once", "audit_event_seal_shape", "audit_event_written_unsealed",
                 "ledger_account_identity", "ledger_account_no_delete", "ledger_transaction_no_update",
                 "ledger_transaction_no_delete", "ledger_posting_no_update", "ledger_posting_no_delete",
                 "audit_checkpoint_no_update", "audit_checkpoint_no_delete")


TABLES = ("audit_event", "ledger_posting", "ledger_transaction", "ledger_account", "audit_checkpoint")


@pytest.fixture
def raw(database_url: str):
    engine = create_engine(sync_database_url(database_url))
    yield engine
    engine.dispose()


def tamper(raw: Any, *statements: str, params: dict[str, Any] | None = None) -> None:
    """Run statements with the guarding triggers out of the way."""
    with raw.begin() as conn:
        if ENGINE == "postgresql":
            for table in TABLES:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            for name in SQLITE_GUARDS:
                conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        for statement in statements:
            conn.execute(text(statement), params or {})
        if ENGINE == "postgresql":
            for table in TABLES:
                conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    world = await build_world(app, client)
    voucher = await world.issue(1_000_000)
    for order in ("PO-1", "PO-2", "PO-3"):
        response = await world.hold(voucher, 100_000, order=order, path="/v1/redemptions")
        assert response.status_code == 201, response.text
    return world


async def verify(world: World, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await world.post("/v1/audit/verifications", body or {}, key=world.auditor)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def checkpoint(world: World) -> dict[str, Any]:
    response = await world.post("/v1/audit/checkpoints", key=world.auditor)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def kinds(result: dict[str, Any]) -> list[tuple[str, int | None]]:
    return [(p["kind"], p.get("seq")) for p in result["problems"]]


async def test_an_untouched_history_verifies(world: World) -> None:
    result = await verify(world)
    assert result["is_intact"], result["problems"]
    assert result["events_checked"] == result["to_seq"] > 10
    assert result["journals_checked"] >= 5  # funding, issue, three redeems (one journal each)
    head = (await world.client.get("/v1/audit/head", headers=auth(world.auditor))).json()
    assert head["seq"] == result["to_seq"] and head["unsealed"] == 0


def plain_pair(raw: Any) -> int:
    """The first place s > 1 where events s and s + 1 record neither a journal nor an account:
    altering or removing them breaks only the chain."""
    with raw.connect() as conn:
        return int(conn.execute(text(
            "SELECT min(a.seq) FROM audit_event a JOIN audit_event b ON b.seq = a.seq + 1 WHERE a.seq > 1 "
            "AND a.action NOT IN ('ledger.posted', 'ledger.account_opened') "
            "AND b.action NOT IN ('ledger.posted', 'ledger.account_opened')")).scalar_one())


async def test_an_altered_event_is_found_at_its_place(world: World, raw) -> None:
    await verify(world)
    place = plain_pair(raw)
    tamper(raw, f"UPDATE audit_event SET action = 'programme.archived' WHERE seq = {place}")
    assert kinds(await verify(world)) == [("event_altered", place)]


async def test_an_altered_amount_in_an_event_is_found(world: World, raw) -> None:
    await verify(world)
    with raw.connect() as conn:
        seq = conn.execute(text("SELECT max(seq) FROM audit_event WHERE action = 'redemption.captured'")).scalar()
    tamper(raw, "UPDATE audit_event SET after = :after WHERE seq = :seq",
           params={"after": '{"status": "captured", "captured_amount": 1, "released": 0}', "seq": seq})
    assert ("event_altered", seq) in kinds(await verify(world))


async def test_a_deleted_event_is_found(world: World, raw) -> None:
    await verify(world)
    place = plain_pair(raw)
    tamper(raw, f"DELETE FROM audit_event WHERE seq = {place}")
    assert kinds(await verify(world)) == [("event_deleted", place)]


async def test_the_event_after_a_gap_is_named_as_unchecked(world: World, raw) -> None:
    """The event after a deleted one links from it, so what it holds cannot be checked: altered
    too, it had gone unreported, the report implying it was sound (an independent review)."""
    await verify(world)
    place = plain_pair(raw)
    tamper(raw, f"DELETE FROM audit_event WHERE seq = {place}",
           f"UPDATE audit_event SET action = 'programme.archived' WHERE seq = {place + 1}")
    [problem] = (await verify(world))["problems"]
    assert (problem["kind"], problem["seq"], problem["unverifiable_seq"]) == ("event_deleted", place, place + 1)


async def test_an_inserted_event_is_found(world: World, raw) -> None:
    await verify(world)
    with raw.connect() as conn:
        top = conn.execute(text("SELECT max(seq) FROM audit_event")).scalar()
    # make room at 6 (highest first, so the unique index never sees two equal positions)
    statements = [f"UPDATE audit_event SET seq = {s + 1} WHERE seq = {s}" for s in range(top, 5, -1)]
    statements.append(
        "INSERT INTO audit_event (id, occurred_at, actor_role, action, resource_type, resource_id, seq, chain_hash) "
        f"VALUES (:id, :at, 'operator', 'voucher.revoked', 'voucher', :rid, 6, '{'ab' * 32}')")
    at = "2026-03-02 01:00:00" if ENGINE == "sqlite" else "2026-03-02T01:00:00Z"
    uid = uuid.uuid4()
    tamper(raw, *statements, params={"id": uid.hex if ENGINE == "sqlite" else uid,
                                     "rid": uid.hex if ENGINE == "sqlite" else uid, "at": at})
    assert kinds(await verify(world)) == [("event_inserted", 6)]


async def test_reordered_events_are_found(world: World, raw) -> None:
    await verify(world)
    tamper(raw, "UPDATE audit_event SET seq = 1000000 WHERE seq = 8",
           "UPDATE audit_event SET seq = 8 WHERE seq = 9",
           "UPDATE audit_event SET seq = 9 WHERE seq = 1000000")
    assert kinds(await verify(world)) == [("events_reordered", 8)]


async def test_a_posting_written_behind_the_service_is_found(world: World, raw) -> None:
    """A balanced journal inserted straight into the ledger: reconciliation cannot see it if the
    materialised balances are moved too, but it has no audit event."""
    await verify(world)
    with raw.connect() as conn:
        a, b = conn.execute(text("SELECT id FROM ledger_account ORDER BY id LIMIT 2")).scalars().all()
    journal = uuid.uuid4()
    j = journal.hex if ENGINE == "sqlite" else journal
    at = "2026-03-02 01:00:00" if ENGINE == "sqlite" else "2026-03-02T01:00:00Z"
    tamper(raw,
           "INSERT INTO ledger_transaction (id, kind, memo, created_at) VALUES (:j, 'hold_placed', '', :at)",
           "INSERT INTO ledger_posting (transaction_id, account_id, amount, unit, created_at) VALUES (:j, :a, 0 + 1, 'CNY', :at)",
           "INSERT INTO ledger_posting (transaction_id, account_id, amount, unit, created_at) VALUES (:j, :b, 0 - 1, 'CNY', :at)",
           "UPDATE ledger_account SET balance = balance + 1 WHERE id = :a AND is_materialised",
           "UPDATE ledger_account SET balance = balance - 1 WHERE id = :b AND is_materialised",
           params={"j": j, "a": a, "b": b, "at": at})
    problems = (await verify(world))["problems"]
    assert [(p["kind"], p["journal_id"]) for p in problems] == [("posting_without_event", str(journal))]
    # put the books back so the after-test reconciliation passes
    tamper(raw, "DELETE FROM ledger_posting WHERE transaction_id = :j", "DELETE FROM ledger_transaction WHERE id = :j",
           "UPDATE ledger_account SET balance = balance - 1 WHERE id = :a AND is_materialised",
           "UPDATE ledger_account SET balance = balance + 1 WHERE id = :b AND is_materialised",
           params={"j": j, "a": a, "b": b})


async def test_a_rewritten_posting_is_found(world: World, raw) -> None:
    await verify(world)
    with raw.connect() as conn:
        journal, first, second = conn.execute(text(
            "SELECT t.id, min(p.id), max(p.id) FROM ledger_transaction t JOIN ledger_posting p "
            "ON p.transaction_id = t.id WHERE t.kind = 'redeemed' GROUP BY t.id ORDER BY t.id LIMIT 1")).one()
    # both legs shifted by one fen: still balanced, so only the audit event can tell
    tamper(raw, f"UPDATE ledger_posting SET amount = amount - 1 WHERE id = {first}",
           f"UPDATE ledger_posting SET amount = amount + 1 WHERE id = {second}")
    problems = (await verify(world))["problems"]
    assert [p["kind"] for p in problems] == ["postings_differ"]
    assert problems[0]["journal_id"] == str(uuid.UUID(str(journal)))
    backdate = "2026-01-15 01:00:00" if ENGINE == "sqlite" else "2026-01-15T01:00:00Z"
    tamper(raw, f"UPDATE ledger_posting SET amount = amount + 1 WHERE id = {first}",
           f"UPDATE ledger_posting SET amount = amount - 1 WHERE id = {second}")
    assert (await verify(world))["is_intact"]
    # backdating a journal moves every point-in-time balance: the event recorded its times
    tamper(raw, f"UPDATE ledger_posting SET created_at = :at WHERE id IN ({first}, {second})", params={"at": backdate})
    assert [p["kind"] for p in (await verify(world))["problems"]] == ["postings_differ"]



@pytest.mark.parametrize("column", ["redemption_id", "voucher_id", "programme_id", "memo"])
async def test_a_journal_pointed_elsewhere_is_found(world: World, raw, column: str) -> None:
    """A journal's references are what an export, a past balance and a voucher's clawback find
    it by: its event records them, so a journal made to point at another redemption, voucher or
    programme (or given another memo), its postings untouched, no longer verifies."""
    assert (await verify(world))["is_intact"]
    with raw.connect() as conn:
        journal, value = conn.execute(text(
            f"SELECT id, {column} FROM ledger_transaction WHERE redemption_id IS NOT NULL ORDER BY id LIMIT 1")).one()
    elsewhere = uuid.uuid4()
    other = "forged" if column == "memo" else elsewhere.hex if ENGINE == "sqlite" else str(elsewhere)
    tamper(raw, f"UPDATE ledger_transaction SET {column} = :other WHERE id = :id",  # noqa: S608
           params={"other": other, "id": journal})
    problems = (await verify(world))["problems"]
    assert [p["kind"] for p in problems] == ["postings_differ"]
    assert problems[0]["journal_id"] == str(uuid.UUID(str(journal)))
    tamper(raw, f"UPDATE ledger_transaction SET {column} = :value WHERE id = :id",  # noqa: S608
           params={"value": value, "id": journal})
    assert (await verify(world))["is_intact"]


async def test_a_forged_journal_with_a_planted_sealed_event_is_found(world: World, raw) -> None:
    """The attack a review found: a balanced journal between two unmaterialised accounts (no
    balance to adjust) plus an event whose seal is filled in. The database refuses an event
    written sealed, and a position of 0 or less even with the triggers bypassed; planted at the
    chain's end with a made-up link, the event breaks the chain."""
    head = await checkpoint(world)
    with raw.connect() as conn:
        spent, payable = (conn.execute(text(f"SELECT id FROM ledger_account WHERE kind = '{k}' LIMIT 1")).scalar()
                          for k in ("programme_spent", "provider_payable"))
        with pytest.raises(DBAPIError, match="unsealed"):
            conn.execute(text("INSERT INTO audit_event (id, occurred_at, actor_role, action, resource_type, "
                              "resource_id, seq, chain_hash) VALUES (:id, :at, 'system', 'x', 'x', :id, 0, 'x')"),
                         {"id": uuid.uuid4().hex if ENGINE == "sqlite" else uuid.uuid4(),
                          "at": "2026-03-02 01:00:00" if ENGINE == "sqlite" else "2026-03-02T01:00:00Z"})
        conn.rollback()
    with pytest.raises(DBAPIError, match="seq_positive"):
        tamper(raw, "INSERT INTO audit_event (id, occurred_at, actor_role, action, resource_type, resource_id, seq, "
               "chain_hash) VALUES (:id, :at, 'system', 'x', 'x', :id, 0, 'x')",
               params={"id": uuid.uuid4().hex if ENGINE == "sqlite" else uuid.uuid4(),
                       "at": "2026-03-02 01:00:00" if ENGINE == "sqlite" else "2026-03-02T01:00:00Z"})
    from datetime import UTC, datetime

    from services.voucher.audit.rules import journal_record

    journal, at = uuid.uuid4(), datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    sql_at = "2026-03-02 01:00:00" if ENGINE == "sqlite" else "2026-03-02T01:00:00Z"
    legs = [(uuid.UUID(str(spent)), -5_000_000, "CNY", at), (uuid.UUID(str(payable)), 5_000_000, "CNY", at)]
    import json

    j = journal.hex if ENGINE == "sqlite" else journal
    eid = uuid.uuid4()
    tamper(raw,
           "INSERT INTO ledger_transaction (id, kind, memo, created_at) VALUES (:j, 'hold_captured', '', :at)",
           "INSERT INTO ledger_posting (transaction_id, account_id, amount, unit, created_at) VALUES (:j, :s, -5000000, 'CNY', :at)",
           "INSERT INTO ledger_posting (transaction_id, account_id, amount, unit, created_at) VALUES (:j, :p, 5000000, 'CNY', :at)",
           "INSERT INTO audit_event (id, occurred_at, actor_role, action, resource_type, resource_id, journal_id, "
           "after, seq, chain_hash) VALUES (:e, :at, 'system', 'ledger.posted', 'ledger_transaction', :j, :j, :after, "
           ":seq, :h)",
           params={"j": j, "s": spent, "p": payable, "at": sql_at, "e": eid.hex if ENGINE == "sqlite" else eid,
                   "h": "ab" * 32, "after": json.dumps(journal_record("hold_captured", at, legs)),
                   "seq": head["seq"] + 1})
    problems = (await verify(world))["problems"]
    assert [(p["kind"], p.get("seq")) for p in problems] == [("event_altered", head["seq"] + 1)], problems
    tamper(raw, "DELETE FROM ledger_posting WHERE transaction_id = :j", "DELETE FROM ledger_transaction WHERE id = :j",
           "DELETE FROM audit_event WHERE journal_id = :j", params={"j": j})


async def test_a_ledger_account_only_ever_changes_its_balance(world: World, raw) -> None:
    """Who an account belongs to decides what exports and balances show: the database refuses
    to change it, or to remove an account."""
    for statement in ("UPDATE ledger_account SET enterprise_id = NULL, code = code || '-x'",
                      "UPDATE ledger_account SET kind = 'programme_spent'",
                      "DELETE FROM ledger_account"):
        with raw.connect() as conn, pytest.raises(DBAPIError, match="only ever changes its balance"):
            conn.execute(text(statement))
            conn.commit()


async def test_an_account_given_to_another_owner_is_found(world: World, raw) -> None:
    """Whose an account is decides who its balance is paid to. A journal's event names its
    accounts by id only: with the identity trigger off, the provider's payable given to another
    provider (a review found it passed verification and reconciliation) now differs from its
    `ledger.account_opened` event."""
    result = await verify(world)
    assert result["is_intact"] and result["accounts_checked"] >= 6 + 3 + 2, result
    other = await create(world.client, world.operator, "/v1/providers", provider_payload())
    with raw.connect() as conn:
        account, code, owner = conn.execute(text(
            "SELECT id, code, provider_id FROM ledger_account WHERE kind = 'provider_payable'")).one()
    elsewhere = uuid.UUID(other["id"])
    tamper(raw, "UPDATE ledger_account SET provider_id = :other, code = :code WHERE id = :id",
           params={"other": elsewhere.hex if ENGINE == "sqlite" else elsewhere,
                   "code": code.replace(str(uuid.UUID(str(owner))), str(elsewhere)), "id": account})
    problems = (await verify(world))["problems"]
    assert [(p["kind"], p["account_id"]) for p in problems] == [("account_differs", str(uuid.UUID(str(account))))]
    assert problems[0]["recorded"]["provider_id"] == str(uuid.UUID(str(owner)))
    assert problems[0]["ledger"]["provider_id"] == str(elsewhere)
    genuine = problems[0]["seq"]
    # An event planted to record the new owner, with an id that sorts before every real one:
    # the account's own event (sealed first) is still compared, and still differs (a review
    # of this check found only the repeat reported, at the genuine event's place).
    planted = uuid.UUID(int=1)
    with raw.begin() as conn:
        conn.execute(text(
            "INSERT INTO audit_event (id, occurred_at, actor_role, action, resource_type, resource_id, after) "
            "VALUES (:id, :at, 'system', 'ledger.account_opened', 'ledger_account', :account, :after)"),
            {"id": planted.hex if ENGINE == "sqlite" else planted, "account": account,
             "at": "2026-03-02 01:00:00.000000" if ENGINE == "sqlite" else "2026-03-02T01:00:00Z",
             "after": json.dumps(problems[0]["ledger"])})
    found = [(p["kind"], p.get("seq")) for p in (await verify(world))["problems"]]
    [(_, sealed)] = [f for f in found if f[0] == "account_event_repeated"]  # the verification sealed it
    assert found == [("account_differs", genuine), ("account_event_repeated", sealed)], found
    tamper(raw, "UPDATE ledger_account SET provider_id = :owner, code = :code WHERE id = :id",
           params={"owner": owner, "code": code, "id": account})
    # the owner back, the planted event (sealed now, for good) is what differs
    found = [(p["kind"], p.get("seq")) for p in (await verify(world))["problems"]]
    assert found == [("account_event_repeated", sealed), ("account_differs", sealed)], found


async def test_an_account_opened_behind_the_service_or_removed_is_found(world: World, raw) -> None:
    """An account inserted straight into the ledger has no event; an account's event whose
    account is gone names it; an event planted before an account's own (by id), recording
    something other than an object, differs from it, and makes its own event a repeat."""
    assert (await verify(world))["is_intact"]
    plain = (lambda u: u.hex) if ENGINE == "sqlite" else (lambda u: u)
    at = "2026-03-02 01:00:00.000000" if ENGINE == "sqlite" else "2026-03-02T01:00:00Z"
    planted, gone, odd = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    events = [uuid.uuid4(), uuid.uuid4(), uuid.UUID(int=1)]  # the last sorts before every real event
    programme = uuid.UUID(world.programme["id"])
    with raw.begin() as conn:  # INSERTs only: the guards allow them
        conn.execute(text(
            "INSERT INTO ledger_account (id, code, kind, unit, programme_id, is_non_negative, is_materialised, "
            "balance, created_at) VALUES (:id, :code, 'programme_spent', 'CNY', :p, false, false, 0, :at)"),
            {"id": plain(planted), "code": f"planted:{planted}", "p": plain(programme), "at": at})
        existing = conn.execute(text("SELECT id FROM ledger_account WHERE id <> :id ORDER BY id LIMIT 1"),
                                {"id": plain(planted)}).scalar()
        for event, account, after in ((events[0], plain(gone), '{"id": "x"}'), (events[1], plain(odd), '"x"'),
                                      (events[2], existing, '"x"')):
            conn.execute(text(
                "INSERT INTO audit_event (id, occurred_at, actor_role, action, resource_type, resource_id, after) "
                "VALUES (:id, :at, 'system', 'ledger.account_opened', 'ledger_account', :account, :after)"),
                {"id": plain(event), "at": at, "account": account, "after": after})
    found = {(p["kind"], p["account_id"]) for p in (await verify(world))["problems"]}
    assert found == {("account_without_event", str(planted)), ("event_without_account", str(gone)),
                     ("event_without_account", str(odd)), ("account_differs", str(uuid.UUID(str(existing)))),
                     ("account_event_repeated", str(uuid.UUID(str(existing))))}
    tamper(raw, "DELETE FROM ledger_account WHERE id = :a", "DELETE FROM audit_event WHERE id IN (:e0, :e1, :e2)",
           params={"a": plain(planted), **{f"e{i}": plain(e) for i, e in enumerate(events)}})
    assert (await verify(world))["is_intact"]


async def test_verifying_against_a_kept_checkpoint_rechecks_history_before_it(world: World, raw) -> None:
    """An alteration before the kept checkpoint is found too: the chain is always walked from
    its first event, the kept checkpoint pinning it at its position."""
    taken = await checkpoint(world)
    tamper(raw, "UPDATE audit_event SET action = 'programme.archived' WHERE seq = 5")
    kept = {k: taken[k] for k in ("seq", "chain_hash", "signed_at", "signature")}
    assert ("event_altered", 5) in kinds(await verify(world, {"checkpoint": kept, "check_ledger": False}))


async def test_a_journal_removed_from_the_ledger_is_found(world: World, raw) -> None:
    await verify(world)
    journal = uuid.uuid4()
    await_event = ("INSERT INTO audit_event (id, occurred_at, actor_role, action, resource_type, resource_id, journal_id, "
                   "after) VALUES (:id, :at, 'system', 'ledger.posted', 'ledger_transaction', :j, :j, :after)")
    j = journal.hex if ENGINE == "sqlite" else journal
    at = "2026-03-02 01:00:00" if ENGINE == "sqlite" else "2026-03-02T01:00:00Z"
    eid = uuid.uuid4()
    tamper(raw, await_event, params={"id": eid.hex if ENGINE == "sqlite" else eid, "j": j, "at": at,
                                     "after": '{"kind": "hold_placed", "at": "2026-03-02T01:00:00.000000Z", "legs": []}'})
    problems = (await verify(world))["problems"]
    assert [p["kind"] for p in problems] == ["event_without_posting"]


async def test_a_consistent_rewrite_is_caught_by_the_signed_checkpoint(world: World, raw, app) -> None:
    """Someone who alters an event and recomputes every later link passes the chain check, but
    not a checkpoint signed before the rewrite."""
    from services.voucher.audit.rules import digest, link

    await checkpoint(world)
    with raw.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM audit_event ORDER BY seq")).all()]
    # rebuild the chain with event 3 altered, through the service's own arithmetic
    statements, previous = [], "0" * 64
    for row in rows:
        if row["seq"] == 3:
            row["action"] = "programme.archived"
        row = _as_python(row)
        previous = link(previous, digest(row))
        statements.append(f"UPDATE audit_event SET chain_hash = '{previous}' WHERE seq = {row['seq']}")
    tamper(raw, "UPDATE audit_event SET action = 'programme.archived' WHERE seq = 3", *statements)
    result = await verify(world, {"check_ledger": False})
    assert [p["kind"] for p in result["problems"]] == ["checkpoint_mismatch"]


def _as_python(row: dict[str, Any]) -> dict[str, Any]:
    """A raw row as the ORM would hand it back (SQLite keeps uuids as hex and times as text)."""
    import json
    from datetime import UTC, datetime

    out = dict(row)
    for key in ("id", "actor_principal_id", "actor_key_id", "resource_id", "programme_id", "enterprise_id",
                "provider_id", "voucher_id", "journal_id"):
        if out[key] is not None and not isinstance(out[key], uuid.UUID):
            out[key] = uuid.UUID(str(out[key]))
    if isinstance(out["occurred_at"], str):
        out["occurred_at"] = datetime.fromisoformat(out["occurred_at"]).replace(tzinfo=UTC)
    for key in ("before", "after"):
        if isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


async def test_events_removed_from_the_end_are_caught_by_the_checkpoint(world: World, raw) -> None:
    taken = await checkpoint(world)
    tamper(raw, f"DELETE FROM audit_event WHERE seq = {taken['seq']}")
    result = await verify(world, {"check_ledger": False})
    assert [p["kind"] for p in result["problems"]] == ["checkpoint_mismatch"]


async def test_a_forged_stored_checkpoint_is_found(world: World, raw) -> None:
    taken = await checkpoint(world)
    forged = base64.b64encode(bytes(64)).decode()
    tamper(raw, "UPDATE audit_checkpoint SET signature = :s", params={"s": forged})
    result = await verify(world, {"check_ledger": False})
    assert ("checkpoint_signature_invalid", taken["seq"]) in kinds(result)


async def test_verifying_from_a_kept_checkpoint(world: World) -> None:
    taken = await checkpoint(world)
    voucher = await world.issue(500_000)
    assert (await world.hold(voucher, 100_000, order="PO-9", path="/v1/redemptions")).status_code == 201
    kept = {k: taken[k] for k in ("seq", "chain_hash", "signed_at", "signature")}
    result = await verify(world, {"checkpoint": kept})
    assert result["is_intact"], result["problems"]
    assert result["from_seq"] == 0 and result["to_seq"] > taken["seq"]
    assert result["events_checked"] == result["to_seq"]


async def test_a_kept_checkpoint_that_was_not_signed_by_the_service_is_refused(world: World) -> None:
    taken = await checkpoint(world)
    kept = {k: taken[k] for k in ("seq", "chain_hash", "signed_at", "signature")}
    kept["chain_hash"] = "00" * 32
    response = await world.post("/v1/audit/verifications", {"checkpoint": kept}, key=world.auditor)
    assert_problem(response, 422, "checkpoint_signature_invalid")


async def test_a_kept_checkpoint_the_chain_no_longer_matches(world: World, raw) -> None:
    taken = await checkpoint(world)
    tamper(raw, f"UPDATE audit_event SET chain_hash = '{'cd' * 32}' WHERE seq = {taken['seq']}")
    kept = {k: taken[k] for k in ("seq", "chain_hash", "signed_at", "signature")}
    result = await verify(world, {"checkpoint": kept, "check_ledger": False})
    assert ("checkpoint_mismatch", taken["seq"]) in kinds(result)


async def test_checkpoint_signatures_verify_with_the_served_public_key(world: World) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    taken = await checkpoint(world)
    key = (await world.client.get("/v1/audit/public-key")).json()
    assert key["algorithm"] == "Ed25519" and key["is_development_key"] is True
    Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"])).verify(
        base64.b64decode(taken["signature"]), taken["message"].encode())
    assert f'"seq":{taken["seq"]}' in taken["message"] and taken["chain_hash"] in taken["message"]


@pytest.mark.parametrize("statement", [
    "UPDATE audit_event SET action = 'programme.archived'",
    "UPDATE audit_event SET seq = seq + 1000",
    "UPDATE audit_event SET chain_hash = NULL",
    "DELETE FROM audit_event",
    "UPDATE audit_checkpoint SET seq = 0",
    "DELETE FROM audit_checkpoint",
])
async def test_the_database_refuses_to_change_the_trail(world: World, raw, statement: str) -> None:
    await checkpoint(world)
    with raw.connect() as conn, pytest.raises(DBAPIError, match="never"):
        conn.execute(text(statement))
        conn.commit()
    assert (await verify(world))["is_intact"]


async def test_the_database_refuses_to_change_an_unsealed_event(world: World, raw) -> None:
    """The guard's refusals, on one event and on all of them."""
    one = "WHERE id = (SELECT id FROM audit_event WHERE seq IS NULL ORDER BY id LIMIT 1)"
    for statement in ("UPDATE audit_event SET action = 'x' WHERE seq IS NULL",
                      f"UPDATE audit_event SET seq = 1000000, chain_hash = 'x', action = 'y' {one}",
                      # a seal without its hash; a seal that also rewrites what the event recorded
                      f"UPDATE audit_event SET seq = 1000000 {one}",
                      f"UPDATE audit_event SET seq = 1000000, chain_hash = 'x', \"after\" = NULL {one}",
                      "UPDATE audit_event SET seq = 1, chain_hash = 'x', action = 'y' WHERE seq IS NULL"):
        with raw.connect() as conn, pytest.raises(DBAPIError, match="never"):
            conn.execute(text(statement))
            conn.commit()


async def test_checkpoints_signed_with_a_retired_key_still_verify(world: World, app) -> None:
    """Changing VOUCHER_AUDIT_SIGNING_KEY (off the published development key, say) made every
    later verification report each older checkpoint as `checkpoint_signature_invalid`, for good:
    checkpoints are never removed (an independent review). Listed in
    VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS, the old key checks them; unlisted, the problem says so."""
    import os

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.voucher.audit.signing import Signer

    await checkpoint(world)
    old = app.state.signer
    fresh = Ed25519PrivateKey.from_private_bytes(os.urandom(32))
    try:
        app.state.signer = Signer(fresh, False)
        [problem] = (await verify(world))["problems"]
        assert problem["kind"] == "checkpoint_signature_invalid"
        assert "VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS" in problem["detail"]
        app.state.signer = Signer(fresh, False, (old.public_bytes,))
        assert (await verify(world))["is_intact"]
        second = await checkpoint(world)  # signed with the new key; both verify
        assert (await verify(world))["is_intact"]
        served = (await world.client.get("/v1/audit/public-key")).json()
        assert served["retired_keys"] == [{"key_id": old.key_id,
                                           "public_key": base64.b64encode(old.public_bytes).decode()}]
        assert served["key_id"] != old.key_id
        # a retired key vouches only for what it signed before the current key's first checkpoint
        app.state.signer = old
        late = await checkpoint(world)
        app.state.signer = Signer(fresh, False, (old.public_bytes,))
        problems = (await verify(world))["problems"]
        assert [(p["kind"], p["checkpoint_id"]) for p in problems] == [("checkpoint_signature_invalid", late["id"])]
        assert "retired" in problems[0]["detail"]
        # a key neither held nor listed still fails: only the second checkpoint, signed with it
        app.state.signer = Signer(Ed25519PrivateKey.from_private_bytes(os.urandom(32)), False, (old.public_bytes,))
        problems = (await verify(world))["problems"]
        assert [(p["kind"], p["checkpoint_id"]) for p in problems] == [("checkpoint_signature_invalid", second["id"])]
    finally:
        app.state.signer = old


async def test_a_checkpoint_planted_in_the_current_keys_name_does_not_end_a_retired_keys_time(
        world: World, app, raw, clock) -> None:
    """A retired key vouches for what it signed before the current key took over, and the
    takeover was the first stored checkpoint naming the current key, verified or not: one
    INSERTed behind the service (the guards allow inserts) dated 1970 made every genuine
    checkpoint of the retired key refused, kept by the auditor or stored (an independent review,
    December 2026). Only a checkpoint whose signature verifies marks the takeover; the planted
    one is a problem of its own."""
    import os

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.voucher.audit.signing import Signer

    kept = await checkpoint(world)  # signed with the key about to be retired; the auditor keeps it
    old = app.state.signer
    fresh = Signer(Ed25519PrivateKey.from_private_bytes(os.urandom(32)), False, (old.public_bytes,))
    plant = uuid.uuid4()
    try:
        app.state.signer = fresh
        clock.advance(seconds=60)
        await checkpoint(world)  # the current key takes over a minute later
        with raw.begin() as conn:
            conn.execute(text("INSERT INTO audit_checkpoint (id, seq, chain_hash, signed_at, key_id, signature) "
                              "VALUES (:id, 1, :h, :at, :k, 'AAAA')"),
                         {"id": plant.hex if ENGINE == "sqlite" else plant, "h": "0" * 64, "k": fresh.key_id,
                          "at": "1970-01-02 00:00:00.000000" if ENGINE == "sqlite" else "1970-01-02T00:00:00Z"})
        body = {"checkpoint": {k: kept[k] for k in ("seq", "chain_hash", "signed_at", "signature", "key_id")}}
        result = await verify(world, body)
        assert {p.get("checkpoint_id") for p in result["problems"]} == {str(plant)}, result["problems"]
        assert "checkpoint_signature_invalid" in {p["kind"] for p in result["problems"]}
    finally:
        app.state.signer = old
        tamper(raw, "DELETE FROM audit_checkpoint WHERE id = :c", params={"c": plant.hex if ENGINE == "sqlite" else plant})


@pytest.mark.parametrize("place, link", [("next", "zz"), ("next", "AB" * 32), ("top", "ab" * 32),
                                         ("after_next", "ab" * 32), ("first", "ab" * 32)])
async def test_the_database_refuses_a_seal_out_of_place_or_without_a_hash(
        world: World, raw, place: str, link: str) -> None:
    """The guard let the database's ordinary role seal an unsealed event itself, anywhere, with
    any link: `'zz'`, or a place at the top of BIGINT, stopped the sealer and the verification
    for good (an independent review, December 2026; a sealed event never changes again). Only
    the next place, with a SHA-256 link in lower-case hex, is let through: the sealer's."""
    top = (await checkpoint(world))["seq"]
    await world.issue(1_000_000)  # events the sealer has not placed yet
    seq = {"next": top + 1, "top": 2**63 - 1, "after_next": top + 2, "first": 1}[place]
    one = "WHERE id = (SELECT id FROM audit_event WHERE seq IS NULL ORDER BY id LIMIT 1)"
    # a place already taken ("first") is refused by its unique index (on SQLite, migration 0016's
    # guard of that key), any other by the seal's guard
    refusal = "never sealed but at the next place|unique|duplicate|never replaced"
    with raw.connect() as conn, pytest.raises(DBAPIError, match=refusal):
        conn.execute(text(f"UPDATE audit_event SET seq = :seq, chain_hash = :link {one}"), {"seq": seq, "link": link})
        conn.commit()
    assert (await verify(world))["is_intact"]  # and the sealer goes on


async def test_a_link_that_is_not_a_hash_is_found_and_the_chain_goes_on(world: World, raw) -> None:
    """Planted with the guards out of the way, a link that is not hexadecimal is one altered
    event: the verification, the sealer and the exports go on (they had failed on every run)."""
    head = await checkpoint(world)
    one = "WHERE id = (SELECT id FROM audit_event WHERE seq IS NULL ORDER BY id LIMIT 1)"
    await world.issue(1_000_000)  # events the sealer has not placed yet
    tamper(raw, f"UPDATE audit_event SET seq = :seq, chain_hash = 'zz' {one}", params={"seq": head["seq"] + 1})
    await world.issue(1_000_000)
    assert kinds(await verify(world)) == [("event_altered", head["seq"] + 1)]
    assert (await checkpoint(world))["seq"] > head["seq"] + 1
    export = await world.client.get("/v1/exports/audit-events", params={"format": "csv"},
                                    headers=auth(world.auditor))
    assert export.status_code == 200 and "zz" in export.text


@pytest.mark.parametrize("after", ['"x"', '{"kind": 1.5}', '{"kind": 1e400}'])
async def test_a_posting_event_that_records_no_object_is_a_difference(world: World, raw, after: str) -> None:
    """Written with INSERTs only, which the guards allow: a journal and a `ledger.posted` event
    whose `after` is a JSON string, or an object holding a float (which the service never
    records). The verification failed on each with a 500, for good (events are never removed),
    and so did every page of events that listed it; it is a journal that differs from its event,
    and the event is listed as stored."""
    jid, eid = uuid.uuid4(), uuid.uuid4()
    plain = (lambda u: u.hex) if ENGINE == "sqlite" else (lambda u: u)
    at = "2026-03-02 01:00:00.000000" if ENGINE == "sqlite" else "2026-03-02T01:00:00Z"
    with raw.begin() as conn:
        conn.execute(text("INSERT INTO ledger_transaction (id, kind, memo, created_at) VALUES (:id, 'manual', '', :at)"),
                     {"id": plain(jid), "at": at})
        conn.execute(text("INSERT INTO audit_event (id, occurred_at, actor_role, action, resource_type, resource_id, "
                          "after, journal_id) VALUES (:id, :at, 'system', 'ledger.posted', 'ledger_transaction', "
                          ":jid, :after, :jid)"), {"id": plain(eid), "jid": plain(jid), "at": at, "after": after})
    problems = (await verify(world))["problems"]
    assert [(p["kind"], p.get("journal_id")) for p in problems] == [("postings_differ", str(jid))], problems
    listed = await world.client.get("/v1/audit/events", params={"resource_id": str(jid)}, headers=auth(world.auditor))
    assert listed.status_code == 200, listed.text
    if "e400" not in after:  # a number JSON cannot hold (read as inf) is listed, and kept, as null
        assert [e["after"] for e in listed.json()["items"]] == [json.loads(after)]
    tamper(raw, "DELETE FROM ledger_transaction WHERE id = :j", "DELETE FROM audit_event WHERE journal_id = :j",
           params={"j": plain(jid)})


async def test_an_account_event_recording_a_float_is_a_difference_not_a_failure(world: World, raw) -> None:
    """A second `ledger.account_opened` event for a real account, planted with INSERT (which the
    guards allow), whose code is a float: the difference is reported with the value as stored
    (reporting it had raised, and every verification answered 500 from then on)."""
    await world.issue(1_000_000)
    with raw.connect() as conn:
        account_id = conn.execute(text("SELECT id FROM ledger_account ORDER BY code LIMIT 1")).scalar_one()
    eid = uuid.uuid4()
    plain = (lambda u: u.hex) if ENGINE == "sqlite" else (lambda u: u)
    at = "2026-03-02 01:00:00.000000" if ENGINE == "sqlite" else "2026-03-02T01:00:00Z"
    with raw.begin() as conn:
        conn.execute(text("INSERT INTO audit_event (id, occurred_at, actor_role, action, resource_type, resource_id, "
                          "after) VALUES (:id, :at, 'system', 'ledger.account_opened', 'ledger_account', :aid, "
                          "'{\"code\": 1.5}')"), {"id": plain(eid), "aid": account_id, "at": at})
    problems = (await verify(world))["problems"]
    assert ("account_differs", 1.5) in [(p["kind"], (p.get("recorded") or {}).get("code")) for p in problems], problems
    tamper(raw, "DELETE FROM audit_event WHERE id = :e", params={"e": plain(eid)})


@pytest.mark.skipif(ENGINE != "postgresql", reason="TRUNCATE is PostgreSQL's")
async def test_truncating_the_trail_is_refused(world: World, raw) -> None:
    with raw.connect() as conn, pytest.raises(DBAPIError, match="never"):
        conn.execute(text("TRUNCATE audit_event"))
        conn.commit()


@pytest.mark.skipif(ENGINE != "sqlite", reason="the process's one writer is SQLite's")
async def test_a_verification_holds_up_no_other_write(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A verification reads the whole chain and ledger; it ran after its Idempotency-Key claim,
    inside the request's unit of work: on SQLite under the process's one write lock, so every
    hold and redeem waited for it (an independent review, December 2026). It now runs before.
    Here it is held until another write has been answered — were the lock held, that write
    would wait and the test time out — and its answer is the verification's, kept once."""
    import asyncio

    from services.voucher.audit import service
    from tests.support import enterprise_payload, fresh_key

    entered, release = asyncio.Event(), asyncio.Event()
    real = service.verify
    calls = 0

    async def held(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        entered.set()
        await release.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(service, "verify", held)
    verifying = asyncio.create_task(world.post("/v1/audit/verifications", {"check_ledger": True}, key=world.auditor))
    try:
        await asyncio.wait_for(entered.wait(), 10)
        office = await asyncio.wait_for(world.client.post("/v1/enterprises", json=enterprise_payload(),
                                                          headers=auth(world.operator, **fresh_key())), 10)
        assert office.status_code == 201, office.text
    finally:
        release.set()
    verified = await verifying
    assert verified.status_code == 201, verified.text
    assert verified.json()["is_intact"] and calls == 1
    kept = await world.client.get(verified.headers["location"], headers=auth(world.auditor))
    assert kept.json()["events_checked"] == verified.json()["events_checked"]
