"""What an auditor proves from the exports alone (an independent review of exports and audit,
December 2026): each test below failed before its fix."""

from __future__ import annotations

import httpx

from tests.exports.helpers import export, rows_of


async def test_a_filtered_audit_trail_accounts_for_every_journal_of_the_same_filtered_ledger_export(
    app, client: httpx.AsyncClient, clock
) -> None:
    """Every journal of a filtered ledger-entries export has its `ledger.posted` event in the
    audit-events export with the same filter. The provider filter had matched only events that
    name the provider, and a journal's event names none: its captures', refunds' and payments'
    journals, which post to its payable, were missing from its trail."""
    from tests.exports.history import build_history

    history = await build_history(app, client, clock)
    world = history.world
    missing: dict[str, list[str]] = {}
    for name, value in (("provider_id", world.provider["id"]), ("voucher_id", history.vouchers[0]["id"]),
                        ("programme_id", world.programme["id"]), ("enterprise_id", world.enterprise["id"])):
        entries = rows_of("jsonl", (await export(client, world.auditor, "ledger-entries", **{name: value})).content)
        events = rows_of("jsonl", (await export(client, world.auditor, "audit-events", **{name: value})).content)
        journals = {r["journal_id"] for r in entries}
        assert journals, name
        recorded = {e["journal_id"] for e in events if e["journal_id"]}
        if journals - recorded:
            missing[name] = sorted(journals - recorded)
        listed = await client.get("/v1/audit/events", params={name: value, "limit": 500},
                                  headers={"Authorization": f"Bearer {world.auditor}"})
        assert listed.status_code == 200, listed.text
        assert journals <= {e["journal_id"] for e in listed.json()["items"] if e["journal_id"]}, name
    assert not missing, f"journals without their event in the same-filtered audit trail: {missing}"
