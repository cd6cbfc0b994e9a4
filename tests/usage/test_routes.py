"""A provider's crafted usage file against our books over HTTP: each kind of difference, the
report kept for auditors, tenancy."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import assert_problem, auth, fresh_key
from tests.world import World, build_world


async def _redeem(world: World, voucher: dict[str, Any], order: str, amount: int) -> dict[str, Any]:
    response = await world.post("/v1/redemptions", {
        "voucher_code": voucher["code"], "enterprise_uscc": world.enterprise["uscc"], "order_reference": order,
        "line_items": [{"category": "accelerator:domestic", "amount": amount, "accelerator": "Ascend 910B",
                        "hours_milli": 1000}]})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_crafted_file_shows_each_kind_of_difference(app, client: httpx.AsyncClient, clock) -> None:
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])
    voucher = await world.issue(10_000_000)
    await _redeem(world, voucher, "PO-MATCH", 1_000_000)        # subsidy 300_000
    await _redeem(world, voucher, "PO-DIFF", 2_000_000)         # subsidy 600_000
    refunded = await _redeem(world, voucher, "PO-REFUND", 1_000_000)
    refund = await world.post(f"/v1/redemptions/{refunded['id']}/refunds", {"amount": 100_000, "reason": "partial"})
    assert refund.status_code == 201, refund.text
    await _redeem(world, voucher, "PO-OURS-ONLY", 500_000)     # subsidy 150_000
    clock.advance(days=1)
    await _redeem(world, voucher, "PO-NEXT-DAY", 500_000)      # outside the period
    clock.advance(days=1)
    csv_text = ("\ufefforder_reference,amount,subsidy\r\n"
                "PO-MATCH,1000000,300000\r\n"
                "PO-DIFF,2000000,700000\r\n"
                "PO-REFUND,1000000,200000\r\n"
                "PO-THEIRS-ONLY,800000,240000\r\n")
    body = {"programme_id": world.programme["id"], "period_start": "2026-03-02", "period_end": "2026-03-02",
            "csv": csv_text}
    response = await client.post("/v1/usage-reconciliations", json=body,
                                 headers=auth(world.provider_key, **fresh_key()))
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["summary"] == {"matched": 2, "mismatched": 1, "missing_ours": 1, "missing_theirs": 1,
                                 "their_subsidy": 1_440_000, "our_subsidy": 1_250_000}
    assert [m["order_reference"] for m in report["matched"]] == ["PO-MATCH", "PO-REFUND"]
    assert report["mismatched"] == [{"order_reference": "PO-DIFF", "theirs": {"amount": 2_000_000, "subsidy": 700_000},
                                     "ours": {"amount": 2_000_000, "subsidy": 600_000}, "subsidy_difference": 100_000}]
    assert report["missing_ours"] == [{"order_reference": "PO-THEIRS-ONLY",
                                       "theirs": {"amount": 800_000, "subsidy": 240_000}}]
    assert report["missing_theirs"] == [{"order_reference": "PO-OURS-ONLY", "ours": {"amount": 500_000, "subsidy": 150_000}}]
    assert report["source_format"] == "csv" and report["record_count"] == 4

    # Kept for auditors, whole; listed in summary.
    kept = await client.get(f"/v1/usage-reconciliations/{report['id']}", headers=auth(world.auditor))
    assert kept.status_code == 200 and kept.json() == report
    listed = (await client.get("/v1/usage-reconciliations", headers=auth(world.auditor))).json()["items"]
    assert [(r["id"], r["summary"], r["matched"]) for r in listed] == [(report["id"], report["summary"], None)]

    # The same records as JSON give the same comparison.
    records = [{"order_reference": r, "amount": a, "subsidy": s} for r, a, s in (
        ("PO-MATCH", 1_000_000, 300_000), ("PO-DIFF", 2_000_000, 700_000), ("PO-REFUND", 1_000_000, 200_000),
        ("PO-THEIRS-ONLY", 800_000, 240_000))]
    as_json = await client.post("/v1/usage-reconciliations", json={**body, "csv": None, "records": records},
                                headers=auth(world.provider_key, **fresh_key()))
    assert as_json.status_code == 201, as_json.text
    assert as_json.json()["summary"] == report["summary"]


async def test_refusals_and_tenancy(app, client: httpx.AsyncClient, clock) -> None:
    world = await build_world(app, client)
    clock.advance(days=1)
    base = {"programme_id": world.programme["id"], "period_start": "2026-03-02", "period_end": "2026-03-02"}
    post = (lambda body, key=world.provider_key:  # noqa: E731
            client.post("/v1/usage-reconciliations", json=body, headers=auth(key, **fresh_key())))
    problem = assert_problem(await post({**base, "csv": "order_reference,amount,subsidy\nA,1,0\nA,2,0\n"}),
                             422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/csv/3/order_reference"]  # the file's third line
    assert_problem(await post({**base, "csv": "x", "records": []}), 422, "validation_failed")
    assert_problem(await post({**base, "period_end": "2026-03-03", "records": []}), 422, "validation_failed")
    assert_problem(await post({**base, "records": []}, world.operator), 403, "insufficient_scope")
    assert_problem(await post({**base, "records": []}, world.enterprise_key), 403, "insufficient_scope")
    mine = await post({**base, "records": []})
    assert mine.status_code == 201, mine.text
    other = await build_world(app, client)
    assert_problem(await client.get(f"/v1/usage-reconciliations/{mine.json()['id']}",
                                    headers=auth(other.provider_key)), 404, "not_found")
    assert (await client.get("/v1/usage-reconciliations", headers=auth(other.provider_key))).json()["items"] == []


async def test_a_large_body_of_many_tiny_values_is_refused_before_it_is_parsed(
    app, client: httpx.AsyncClient, clock
) -> None:
    """15 MiB of `{},` — within the upload's byte limit, but 5 million records the model can
    never take — had been parsed into Python objects before the model refused it: about 800 MiB
    and 1.5 s of the event loop per request (an independent review, December 2026). A large
    body's JSON values are counted first, without building any; the largest real upload
    (20,000 records, pretty-printed) still goes through."""
    import json
    import tracemalloc

    world = await build_world(app, client)
    clock.advance(days=1)
    head = json.dumps({"programme_id": world.programme["id"], "period_start": "2026-03-02",
                       "period_end": "2026-03-02"}).encode()[:-1] + b', "records": ['
    body = head + b",".join([b"{}"] * ((15_000_000 - len(head)) // 3)) + b"]}"
    headers = auth(world.provider_key, **fresh_key(), **{"Content-Type": "application/json"})
    tracemalloc.start()
    try:
        refused = await client.post("/v1/usage-reconciliations", content=body, headers=headers)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    problem = assert_problem(refused, 413, "payload_too_large")
    assert problem["max_values"] == 200_000
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MiB for a {len(body) / 2**20:.0f} MiB body"
    records = [{"order_reference": f"PO-{i:012d}", "amount": 10**12, "subsidy": 10**11} for i in range(20_000)]
    largest = json.dumps({"programme_id": world.programme["id"], "period_start": "2026-03-02",
                          "period_end": "2026-03-02", "records": records}, indent=2).encode()
    assert len(largest) > 1_048_576  # counted, and within the limit
    accepted = await client.post("/v1/usage-reconciliations", content=largest,
                                 headers=auth(world.provider_key, **fresh_key(), **{"Content-Type": "application/json"}))
    assert accepted.status_code == 201, accepted.text[:500]


async def test_a_period_with_more_orders_than_an_upload_holds_is_refused(
    app, client: httpx.AsyncClient, clock, monkeypatch
) -> None:
    """A header-only upload over a year had its report list every one of our orders of that
    year as missing on the provider's side, kept twice (the report and the Idempotency-Key's
    answer), however many (an independent review of uploads, December 2026). One file holds
    at most MAX_RECORDS records, so a period with more of our orders could never be matched:
    it is refused, naming the limit, and nothing is kept."""
    from services.voucher.usage import rules as usage_rules

    monkeypatch.setattr(usage_rules, "MAX_RECORDS", 2)
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000}, tiers=[])
    voucher = await world.issue(10_000_000)
    for order in ("PO-1", "PO-2", "PO-3"):
        await _redeem(world, voucher, order, 100_000)
    clock.advance(days=1)
    base = {"programme_id": world.programme["id"], "period_start": "2026-03-02", "period_end": "2026-03-02"}
    refused = await client.post("/v1/usage-reconciliations", json={**base, "records": []},
                                headers=auth(world.provider_key, **fresh_key()))
    problem = assert_problem(refused, 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/period_end"] and "2" in problem["errors"][0]["message"]
    listed = await client.get("/v1/usage-reconciliations", headers=auth(world.provider_key))
    assert listed.json()["items"] == []
    monkeypatch.setattr(usage_rules, "MAX_RECORDS", 3)
    accepted = await client.post("/v1/usage-reconciliations", json={**base, "records": []},
                                 headers=auth(world.provider_key, **fresh_key()))
    assert accepted.status_code == 201 and accepted.json()["summary"]["missing_theirs"] == 3, accepted.text


def test_counting_a_hostile_body_is_linear() -> None:
    """The first form of the count took strings out with a pattern that failed on an
    unterminated string and was tried again from every later quote: 80 KB of `\\"` took 20 s
    and 1.1 MB about an hour, holding the interpreter (a review of the guard). The scan is
    linear because an attempt from any quote matches, up to the closing quote or the end of the
    body: held here for every quote of each hostile shape, without timing anything."""
    from services.voucher.http.gate import _JSON_STRING, MAX_JSON_VALUES, json_values

    shapes = [b'{"csv": "' + b'\\"' * 2_000, b'{"csv": "' + b'\\",' * 2_000, b'{"a": "' + b'x,' * 2_000 + b'\\',
              b'"a",' * 2_000, b'{"a": "b", "c": "d\\"e", "f": ["\\\\", "g"]}']
    for body in shapes:
        quotes = [i for i, byte in enumerate(body) if byte == ord('"')]
        assert all(_JSON_STRING.match(body, i) is not None for i in quotes), body[:40]
    assert json_values(b'{"csv": "' + b'\\",' * 5_000_000) > MAX_JSON_VALUES  # refused, not hung
    assert json_values(b'{"csv": "' + b'\\"' * 550_000) == 1


async def test_a_large_body_sent_as_text_plain_is_counted_too(app, client: httpx.AsyncClient, clock) -> None:
    """The Idempotency-Key's fingerprint reads any body as JSON, whatever its Content-Type: sent
    as text/plain, 15 MiB of `{},` had been parsed whole (405 MiB) before the 415 (a review of
    the guard)."""
    import json
    import tracemalloc

    world = await build_world(app, client)
    clock.advance(days=1)
    head = json.dumps({"programme_id": world.programme["id"], "period_start": "2026-03-02",
                       "period_end": "2026-03-02"}).encode()[:-1] + b', "records": ['
    body = head + b",".join([b"{}"] * ((15_000_000 - len(head)) // 3)) + b"]}"
    tracemalloc.start()
    try:
        refused = await client.post("/v1/usage-reconciliations", content=body,
                                    headers=auth(world.provider_key, **fresh_key(), **{"Content-Type": "text/plain"}))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_problem(refused, 413, "payload_too_large")
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MiB"
