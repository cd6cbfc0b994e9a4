"""Migrations are the only way the schema is made (DESIGN §6, CONVENTIONS habit 8).

Each test runs on the engine under test (SQLite, or PostgreSQL when VOUCHER_TEST_POSTGRES_URL is
set): the models and the migrations describe the same schema, every revision can be reverted and
re-applied, and the revision history is one straight line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, pool, text

from services.voucher import tables  # noqa: F401  (registers every table on the metadata)
from services.voucher.cli import alembic_config
from services.voucher.db import metadata
from services.voucher.settings import sync_database_url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    sync_engine = create_engine(sync_database_url(database_url), poolclass=pool.NullPool)
    yield sync_engine
    sync_engine.dispose()


def _drift(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "render_as_batch": conn.dialect.name == "sqlite",
            },
        )
        return list(compare_metadata(context, metadata))


def _revisions_base_to_head() -> list[Script]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return list(reversed(list(script.walk_revisions("base", "heads"))))


def _current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _leftovers(engine: Engine) -> dict[str, list[str]]:
    """Schema objects still present after a downgrade to base (alembic_version aside)."""
    found: dict[str, list[str]] = {
        "tables": sorted(set(inspect(engine).get_table_names()) - {"alembic_version"}),
    }
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            queries = {
                "types": "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
                " WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'c')"
                " AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid)",
                "functions": "SELECT p.proname FROM pg_proc p JOIN pg_namespace n"
                " ON n.oid = p.pronamespace WHERE n.nspname = 'public'",
                "sequences": "SELECT sequence_name FROM information_schema.sequences"
                " WHERE sequence_schema = 'public'",
                "views": "SELECT table_name FROM information_schema.views WHERE table_schema = 'public'",
            }
        else:
            queries = {
                "indexes/triggers/views": "SELECT type || ' ' || name FROM sqlite_master"
                " WHERE type IN ('index', 'trigger', 'view') AND name NOT LIKE 'sqlite_%'"
                " AND tbl_name != 'alembic_version'",
            }
        for kind, sql in queries.items():
            found[kind] = sorted(str(row[0]) for row in conn.execute(text(sql)))
    return {kind: names for kind, names in found.items() if names}


def test_models_and_migrations_describe_the_same_schema(engine: Engine) -> None:
    """`alembic revision --autogenerate` on a migrated database would produce nothing."""
    assert _drift(engine) == []


#: Every guard trigger at head, by table: what makes the ledger, the audit chain, redemptions,
#: refunds, settlements, vouchers, manifests and events append-only or fixed once written (the
#: migrations up to 0029). On SQLite, Alembic's batch mode copies a table to alter it and the
#: copy has none of its triggers: a later migration that forgets to put them back fails here.
GUARD_TRIGGERS = {
    "sqlite": {
        "application_transition": {"key0_kept", "no_delete", "no_replace", "no_update"},
        "audit_checkpoint": {"key0_kept", "no_delete", "no_replace", "no_update"},
        "audit_event": {"key0_kept", "key1_kept", "key2_kept", "no_delete", "no_replace", "seal_once", "seal_shape",
                        "written_unsealed"},
        "audit_verification": {"key0_kept", "no_delete", "no_replace", "no_update"},
        "export_manifest": {"fixed", "never_deleted", "no_replace"},
        "ledger_account": {"code_kept", "identity", "key0_kept", "no_delete", "no_replace"},
        "ledger_posting": {"key0_kept", "no_delete", "no_replace", "no_update"},
        "ledger_transaction": {"key0_kept", "no_delete", "no_replace", "no_update"},
        "outbox_event": {"dedupe_kept", "fixed", "never_deleted", "no_replace", "seq_kept"},
        "redemption": {"moves_forward", "never_deleted", "no_replace", "terms_fixed"},
        "redemption_refund": {"fixed", "never_deleted", "no_replace", "pair"},
        "settlement": {"figures_fixed", "key0_kept", "key1_kept", "no_delete", "no_replace", "paid_immutable",
                       "payee_fixed"},
        "settlement_item": {"draft_only", "fixed", "key0_kept", "key1_kept", "key2_kept", "never_moves", "no_delete",
                            "no_replace", "paid_immutable"},
        "programme": {"key0_kept", "key1_kept", "never_deleted", "no_replace", "terms_fixed"},
        "voucher": {"identity_fixed", "never_deleted", "no_replace"},
    },
    "postgresql": {
        "application_transition": {"immutable", "no_truncate"},
        "audit_checkpoint": {"immutable", "no_truncate"},
        "audit_event": {"guard", "no_truncate"},
        "audit_verification": {"immutable", "no_truncate"},
        "export_manifest": {"fixed", "never_deleted", "no_truncate"},
        "ledger_account": {"identity"},
        "ledger_posting": {"append_only", "balanced", "no_truncate"},
        "ledger_transaction": {"append_only", "no_truncate"},
        "outbox_event": {"fixed", "never_deleted", "no_truncate"},
        "redemption": {"moves_forward", "never_deleted", "no_truncate", "terms_fixed"},
        "redemption_refund": {"fixed", "never_deleted", "no_truncate", "pair"},
        "settlement": {"figures_fixed", "no_delete", "no_truncate", "paid_immutable", "payee_fixed"},
        "settlement_item": {"draft_only", "fixed", "never_moves", "no_delete", "no_truncate", "paid_immutable"},
        "programme": {"never_deleted", "no_truncate", "terms_fixed"},
        "voucher": {"identity_fixed", "never_deleted", "no_truncate"},
    },
}


def _triggers(engine: Engine) -> dict[str, set[str]]:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            rows = conn.execute(text("SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                                     "WHERE NOT t.tgisinternal"))
        else:
            rows = conn.execute(text("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"))
        found: dict[str, set[str]] = {}
        for table, name in rows:
            assert name.startswith(f"{table}_"), (table, name)
            found.setdefault(table, set()).add(name.removeprefix(f"{table}_"))
    return found


def test_every_guard_trigger_is_in_place_at_head(engine: Engine) -> None:
    assert _triggers(engine) == GUARD_TRIGGERS[engine.dialect.name]


def test_every_revision_downgrades_and_upgrades_again(database_url: str, engine: Engine) -> None:
    """Down to base leaves nothing behind; each revision then goes up, down and up again."""
    config = alembic_config(database_url)
    revisions = _revisions_base_to_head()
    assert _current(engine) == revisions[-1].revision

    command.downgrade(config, "base")
    assert _current(engine) is None
    assert _leftovers(engine) == {}

    for revision in revisions:
        command.upgrade(config, revision.revision)
        assert _current(engine) == revision.revision
        command.downgrade(config, revision.down_revision or "base")  # type: ignore[arg-type]
        assert _current(engine) == revision.down_revision
        command.upgrade(config, revision.revision)
        assert _current(engine) == revision.revision

    assert _drift(engine) == []
    # Every guard is back: a downgrade that rebuilt a table on SQLite (a batch drop of a column)
    # had dropped its triggers, and upgrading again only added the column (0032's, an
    # independent review, December 2026), which the comparison of tables and columns missed.
    assert _triggers(engine) == GUARD_TRIGGERS[engine.dialect.name]


def test_revision_history_is_one_straight_line() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, f"several heads: {script.get_heads()}"
    assert len(script.get_bases()) == 1, f"several bases: {script.get_bases()}"

    revisions = _revisions_base_to_head()
    previous: str | None = None
    for revision in revisions:
        assert not revision.is_merge_point, f"{revision.revision} merges branches"
        assert not revision.is_branch_point, f"{revision.revision} starts a branch"
        assert revision.down_revision == previous, (
            f"{revision.revision} follows {revision.down_revision!r}, expected {previous!r}"
        )
        assert callable(getattr(revision.module, "downgrade", None)), revision.revision
        previous = revision.revision
    assert previous == script.get_current_head()
    assert len({r.revision for r in revisions}) == len(list(script.walk_revisions()))


def test_0010_stops_on_live_numbers_that_share_a_key() -> None:
    """Two live references whose numbers differ only by O/0 or I/1 are one contract subsidised
    twice: the upgrade names them instead of choosing (issue 19, finding 5)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "migrations" / "versions" / "20261202_0010_reference_keys.py"
    spec = importlib.util.spec_from_file_location("migration_0010", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.key("HZC-2O26-I") == "HZC-2026-1"
    rows = [("a", "p1", "HZC-2026", True), ("b", "p1", "HZC-2O26", True), ("c", "p2", "HZC-2O26", True),
            ("d", "p1", "HZC-2O26", False)]
    assert module.clashes("contract_reference", rows) == ["contract_reference a and b ('HZC-2O26' under provider p1)"]
    assert module.clashes("contract_reference", [r for r in rows if r[0] != "b"]) == []


def test_0026_reads_brackets_as_one_form_and_stops_on_live_numbers_that_become_one() -> None:
    import importlib.util
    from pathlib import Path

    from services.voucher.applications.rules import reference_key

    path = Path(__file__).resolve().parents[1] / "migrations" / "versions" / "20261206_0026_bracket_keys.py"
    spec = importlib.util.spec_from_file_location("migration_0026", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for typed in ("浙杭合〔2O26〕第12号", "A[1]【2】《3》「4」『5』{6}", "HZC-2026-0042"):
        assert module.key(typed) == reference_key(typed)  # the service's key as of this revision
        assert module.earlier_key(typed) == module.key(typed) or "〔" in typed or "[" in typed
    rows = [("a", "p1", "浙杭合〔2026〕第12号", True), ("b", "p1", "浙杭合[2026]第12号", True),
            ("c", "p2", "浙杭合[2026]第12号", True), ("d", "p1", "浙杭合(2026)第12号", False)]
    assert module.clashes(rows) == ["contract_reference a and b ('浙杭合[2026]第12号' under provider p1)"]
    assert module.clashes([r for r in rows if r[0] != "b"]) == []


def test_0012_keeps_numbers_without_a_code_per_provider() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "migrations" / "versions" / "20261202_0012_invoice_identity.py"
    spec = importlib.util.spec_from_file_location("migration_0012", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.identity("p1", "26332000000012345670") == "digital:26332000000012345670"
    assert module.identity("p1", "44031234") == "provider:p1:44031234"  # no code was kept: per provider


async def test_0010_rekeys_real_rows_and_its_downgrade_puts_the_typed_numbers_back(
    app, client, database_url: str, engine: Engine
) -> None:
    """Over rows the service wrote: a claim on the fully digital invoice 2633200000001234567O (a
    letter O at the end) with contract HZC-2O26; 0012 gives the invoice its national identity."""
    import uuid

    from tests.claims.test_routes import _file, claim_body
    from tests.world import build_world

    world = await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000})
    voucher = await world.issue(10_000_000)
    filed = await _file(world, claim_body(world, voucher, invoice="2633200000001234567O", code=None,
                                         contract="HZC-2O26"))
    assert filed.status_code == 201, filed.text
    await app.state.database.engine.dispose()  # the app's pooled connections hold no locks now
    config = alembic_config(database_url)

    def stored() -> tuple[str, str | None]:
        with engine.connect() as conn:
            number = conn.execute(text("SELECT number FROM contract_reference")).scalar_one()
            columns = {c["name"] for c in inspect(conn).get_columns("claim")}
            key = conn.execute(text("SELECT invoice_key FROM claim")).scalar_one() if "invoice_key" in columns else None
        return number, key

    assert stored() == ("HZC-2026", "digital:26332000000012345670")
    command.downgrade(config, "0011")
    assert stored() == ("HZC-2026", "26332000000012345670")  # 0012's downgrade: a key per provider again
    command.downgrade(config, "0009")
    assert stored() == ("HZC-2O26", None)  # as typed again, for the old comparison
    command.upgrade(config, "head")
    assert stored() == ("HZC-2026", "digital:26332000000012345670")

    # a second live reference of the same contract, typed with letters: the upgrade names both
    command.downgrade(config, "0009")
    with engine.begin() as conn:
        row = conn.execute(text("SELECT provider_id, enterprise_id, created_at FROM contract_reference")).one()
        new_id = uuid.uuid4()
        conn.execute(text("INSERT INTO contract_reference (id, provider_id, number, enterprise_id, created_at) "
                          "VALUES (:id, :p, 'HZC-2026', :e, :c)"),
                     {"id": new_id.hex if engine.dialect.name == "sqlite" else new_id, "p": row[0], "e": row[1],
                      "c": row[2]})
    with pytest.raises(RuntimeError, match="HZC-2026"):
        command.upgrade(config, "head")
    with engine.begin() as conn:
        conn.execute(text("UPDATE contract_reference SET released_at = created_at WHERE number = 'HZC-2026'"))
    command.upgrade(config, "head")
    assert _current(engine) == _revisions_base_to_head()[-1].revision


async def test_0026_rekeys_an_application_contract_and_its_downgrade_puts_the_earlier_key_back(
    app, client, database_url: str, engine: Engine
) -> None:
    from tests.applications.test_lifecycle import contract, open_desk

    desk = await open_desk(app, client)
    applied = await desk.apply(10_000_000, contracts=[contract(desk.world.provider["id"], "浙杭合〔2O26〕第12号")])
    assert applied["status"] == "under_review"
    await app.state.database.engine.dispose()
    config = alembic_config(database_url)

    def stored() -> str:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT number FROM contract_reference")).scalar_one())

    assert stored() == "浙杭合(2026)第12号"
    command.downgrade(config, "0025")
    assert stored() == "浙杭合〔2026〕第12号"  # the earlier key: O read as 0, the brackets as typed
    command.upgrade(config, "head")
    assert stored() == "浙杭合(2026)第12号"


async def test_0021_records_every_account_already_there_as_the_service_would(
    app, client, database_url: str, engine: Engine
) -> None:
    """Accounts opened before 0021 have no `ledger.account_opened` event: the upgrade records
    each (and only those), in the form the service records, so the first verification after it
    matches every account; its downgrade drops only the verifications' new count."""
    import uuid

    from tests.support import auth
    from tests.world import build_world

    world = await build_world(app, client)
    voucher = await world.issue(1_000_000)
    redeemed = await world.hold(voucher, 100_000, order="PO-1", path="/v1/redemptions")
    assert redeemed.status_code == 201, redeemed.text
    await app.state.database.engine.dispose()
    config = alembic_config(database_url)
    command.downgrade(config, "0020")
    sqlite = engine.dialect.name == "sqlite"
    older = [uuid.uuid4() for _ in range(3)]
    with engine.begin() as conn:
        for number, account in enumerate(older):
            conn.execute(text(
                "INSERT INTO ledger_account (id, code, kind, unit, programme_id, enterprise_id, is_non_negative, "
                "is_materialised, balance, created_at) VALUES (:id, :code, 'enterprise_payable', 'CNY', :p, :e, "
                ":non_negative, true, 0, :at)"),
                {"id": account.hex if sqlite else account, "code": f"older:{account}", "non_negative": number % 2 == 0,
                 "p": uuid.UUID(world.programme["id"]).hex if sqlite else uuid.UUID(world.programme["id"]),
                 "e": uuid.UUID(world.enterprise["id"]).hex if sqlite else uuid.UUID(world.enterprise["id"]),
                 "at": f"2026-02-0{number + 1} 0{number}:30:15.00012{number}"})
    command.upgrade(config, "head")

    with engine.connect() as conn:
        events = conn.execute(text(
            "SELECT resource_id, count(*) FROM audit_event WHERE action = 'ledger.account_opened' "
            "GROUP BY resource_id")).all()
        accounts = conn.execute(text("SELECT count(*) FROM ledger_account")).scalar_one()
    assert len(events) == accounts and all(n == 1 for _, n in events)  # one each: none recorded twice
    verified = await client.post("/v1/audit/verifications", json={},
                                 headers=auth(world.auditor, **{"Idempotency-Key": "after-0021"}))
    assert verified.status_code == 201, verified.text
    assert verified.json()["is_intact"], verified.json()["problems"]
    assert verified.json()["accounts_checked"] == accounts
    page = await client.get("/v1/audit/events", params={"resource_id": str(older[0])}, headers=auth(world.auditor))
    [event] = page.json()["items"]
    assert event["action"] == "ledger.account_opened" and event["after"]["backfilled"] is True
    assert event["after"]["created_at"] == "2026-02-01T00:30:15.000120Z"
    assert event["after"]["is_non_negative"] is True and event["after"]["enterprise_id"] == world.enterprise["id"]


def test_two_upgrades_at_once_both_end_at_head(database_url: str, engine: Engine) -> None:
    """Two containers starting together each run `voucher db upgrade`: on PostgreSQL the second
    had raced the first to create the same types and failed (a review). Each now holds the
    migration lock for its transaction; the second finds the schema at head."""
    import subprocess
    import sys

    if engine.dialect.name != "postgresql":
        pytest.skip("the migration lock is PostgreSQL's; SQLite is one process's file")
    command.downgrade(alembic_config(database_url), "base")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VOUCHER_DATABASE_URL")}
    url = sync_database_url(database_url)
    runs = [subprocess.Popen([sys.executable, "-m", "services.voucher.cli", "db", "upgrade", "--database-url", url],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    assert [code for code, _, _ in results] == [0, 0], results
    assert _current(engine) == _revisions_base_to_head()[-1].revision
    assert _drift(engine) == []


def test_a_full_operator_key_made_before_0007_is_still_full_at_head(database_url: str, engine: Engine) -> None:
    """0007 gives full operator keys the audit scopes. It had compared a key with today's roles
    (which hold scopes later revisions added), so no key of 0006 counted as full, the grant never
    happened, 0008 then found the key not full either, and the office's full key came out of the
    upgrade narrowed: no longer able to provision tenants' keys (an independent review of keys,
    December 2026). 0007 now compares with 0006's roles, written out."""
    import json
    import uuid

    from services.voucher.apikeys.rules import ROLE_SCOPES, Role

    config = alembic_config(database_url)
    command.downgrade(config, "0006")
    sqlite = engine.dialect.name == "sqlite"
    principal, full, narrowed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def as_id(value: uuid.UUID) -> object:
        return value.hex if sqlite else value

    scopes_0006 = ["applications:read", "applications:review", "claims:read", "claims:review", "enterprises:read",
                   "enterprises:write", "keys:read", "keys:self", "keys:write", "ledger:read", "programmes:read",
                   "programmes:write", "providers:read", "providers:write", "redemptions:read", "settlements:read",
                   "settlements:write", "vouchers:read", "vouchers:write"]
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO principal (id, role, name, created_at) VALUES (:id, 'operator', 'office', "
                          ":at)"), {"id": as_id(principal), "at": "2026-02-01 00:00:00"})
        for key, scopes, prefix in ((full, scopes_0006, "vk_0123456789"), (narrowed, ["keys:read"], "vk_0123456780")):
            conn.execute(text(
                "INSERT INTO api_key (id, principal_id, name, prefix, secret_hash, scopes, created_at) VALUES "
                "(:id, :p, 'k', :prefix, :h, :s, :at)"),
                {"id": as_id(key), "p": as_id(principal), "prefix": prefix, "h": prefix.ljust(64, "0"),
                 "s": json.dumps(scopes), "at": "2026-02-01 00:00:00"})
    command.upgrade(config, "head")
    with engine.connect() as conn:
        held = {key: conn.execute(text("SELECT scopes FROM api_key WHERE id = :id"), {"id": as_id(key)}).scalar_one()
                for key in (full, narrowed)}
    scopes = {key: set(json.loads(v) if isinstance(v, str) else v) for key, v in held.items()}
    assert scopes[full] == {s.value for s in ROLE_SCOPES[Role.OPERATOR]}, sorted(scopes[full])
    assert scopes[narrowed] == {"keys:read"}


async def test_0031_gives_claims_filed_with_a_code_from_2_on_the_identity_of_their_twenty_digits(
    app, client, database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim filed with a 12-digit code starting with 2 kept `vat:<code>:<number>`, and the same
    twenty digits typed as one number were claimed again as `digital:` (a review of claims,
    December 2026). 0031 rekeys it; if the invoice is already claimed both ways, it stops and
    names the two claims; the downgrade gives the claim its `vat:` identity back."""
    from services.voucher.claims import rules as claim_rules
    from services.voucher.claims import service as claim_service
    from tests.claims.test_routes import _file, claim_body
    from tests.support import assert_problem, auth, fresh_key
    from tests.world import build_world

    world = await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000},
                              tiers=[])
    voucher = await world.issue(10_000_000)
    number, code, tail = "26332000000012345678", "263320000000", "12345678"

    def old_identity(number_key: str, code_key: str | None) -> tuple[str | None, list]:  # the build before
        if code_key is not None and len(code_key) == 12 and code_key.isdigit() and len(number_key) == 8:
            return f"vat:{code_key}:{number_key}", []
        return claim_rules.invoice_identity(number_key, code_key)

    monkeypatch.setattr(claim_service, "invoice_identity", old_identity)
    with_code = await _file(world, claim_body(world, voucher, invoice=tail, code=code, contract="HT-1", document="a"))
    assert with_code.status_code == 201, with_code.text
    whole = await _file(world, claim_body(world, voucher, invoice=number, code=None, contract="HT-2", document="b"))
    assert whole.status_code == 201, whole.text  # the double claim the old build let through
    monkeypatch.undo()
    await app.state.database.engine.dispose()
    config = alembic_config(database_url)
    command.downgrade(config, "0030")
    with pytest.raises(RuntimeError) as stopped:
        command.upgrade(config, "head")
    assert with_code.json()["id"] in str(stopped.value) and whole.json()["id"] in str(stopped.value)
    command.upgrade(config, "0030")  # still there: nothing of 0031 was applied
    review = await client.post(f"/v1/claims/{whole.json()['id']}/review", headers=auth(world.operator, **fresh_key()))
    assert review.status_code == 200, review.text
    rejected = await client.post(f"/v1/claims/{whole.json()['id']}/reject", json={"reason": "claimed twice"},
                                 headers=auth(world.operator, **fresh_key()))
    assert rejected.status_code == 200, rejected.text
    await app.state.database.engine.dispose()
    command.upgrade(config, "head")
    with engine.connect() as conn:
        key = conn.execute(text("SELECT invoice_key FROM claim WHERE invoice_code = :c"), {"c": code}).scalar_one()
    assert key == f"digital:{number}"
    for invoice, given in ((number, None), (tail, code)):  # neither spelling is claimed again
        again = await _file(world, claim_body(world, voucher, invoice=invoice, code=given, contract="HT-3",
                                              document=f"c-{given}"))
        assert_problem(again, 409, "invoice_already_claimed")
    await app.state.database.engine.dispose()
    command.downgrade(config, "0030")
    with engine.connect() as conn:
        key = conn.execute(text("SELECT invoice_key FROM claim WHERE invoice_code = :c"), {"c": code}).scalar_one()
    assert key == f"vat:{code}:{tail}"
    command.upgrade(config, "head")


async def test_0024_gives_claims_of_a_run_together_older_invoice_its_identity(
    app, client, database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim filed before the run-together rule as `digital:0…` kept that identity, so the same
    invoice was claimed again once the new build read it as `vat:<code>:<number>` (a review of
    the rule). 0024 rekeys it; if the invoice is already claimed both ways, it stops and names
    the two claims."""
    from services.voucher.claims import rules as claim_rules
    from services.voucher.claims import service as claim_service
    from tests.claims.test_routes import _file, claim_body
    from tests.support import assert_problem, auth, fresh_key
    from tests.world import build_world

    world = await build_world(app, client, mode="enterprise_claim", rate_table={"accelerator:domestic": 3000},
                              tiers=[])
    voucher = await world.issue(10_000_000)
    number, code, tail = "03300210061112345678", "033002100611", "12345678"

    def old_identity(number_key: str, code_key: str | None) -> tuple[str | None, list]:  # the build before
        if code_key is None and len(number_key) == 20 and number_key.isdigit():
            return f"digital:{number_key}", []
        return claim_rules.invoice_identity(number_key, code_key)

    with_code = await _file(world, claim_body(world, voucher, invoice=tail, code=code, contract="HT-1", document="a"))
    assert with_code.status_code == 201, with_code.text
    monkeypatch.setattr(claim_service, "invoice_identity", old_identity)
    run_together = await _file(world, claim_body(world, voucher, invoice=number, code=None, contract="HT-2",
                                                 document="b"))
    assert run_together.status_code == 201, run_together.text  # the double claim the old build let through
    monkeypatch.undo()
    await app.state.database.engine.dispose()
    config = alembic_config(database_url)
    command.downgrade(config, "0023")
    with pytest.raises(RuntimeError) as stopped:
        command.upgrade(config, "head")
    assert with_code.json()["id"] in str(stopped.value) and run_together.json()["id"] in str(stopped.value)
    command.upgrade(config, "0023")  # still there: nothing of 0024 was applied
    review = await client.post(f"/v1/claims/{with_code.json()['id']}/review", headers=auth(world.operator,
                                                                                          **fresh_key()))
    assert review.status_code == 200, review.text
    rejected = await client.post(f"/v1/claims/{with_code.json()['id']}/reject", json={"reason": "claimed twice"},
                                 headers=auth(world.operator, **fresh_key()))
    assert rejected.status_code == 200, rejected.text
    await app.state.database.engine.dispose()
    command.upgrade(config, "head")
    with engine.connect() as conn:
        key = conn.execute(text("SELECT invoice_key FROM claim WHERE invoice_number = :n"), {"n": number}).scalar_one()
    assert key == f"vat:{code}:{tail}"
    for invoice, given in ((number, None), (tail, code)):  # neither spelling is claimed again
        again = await _file(world, claim_body(world, voucher, invoice=invoice, code=given, contract="HT-3",
                                              document=f"c-{given}"))
        assert_problem(again, 409, "invoice_already_claimed")
    await app.state.database.engine.dispose()
    command.downgrade(config, "0023")
    with engine.connect() as conn:
        key = conn.execute(text("SELECT invoice_key FROM claim WHERE invoice_number = :n"), {"n": number}).scalar_one()
    assert key == f"digital:{number}"
    command.upgrade(config, "head")
