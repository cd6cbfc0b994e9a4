"""Lists that stand for sets name each member once, and a blacklist record is not lifted before
it was made (both accepted as sent until December 2026: a provider stored as offering
`["compute", "compute"]`, a record lifted the year before it was recorded)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.support import (
    assert_problem,
    auth,
    create,
    enterprise_payload,
    new_uscc,
    provider_payload,
)


def _pointers(problem: dict[str, Any]) -> set[str]:
    return {e["pointer"] for e in problem["errors"]}


async def test_a_provider_offering_a_kind_twice_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    body = provider_payload(kinds=["compute", "compute"])
    response = await client.post("/v1/providers", json=body, headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert _pointers(problem) == {"/kinds"}
    assert "compute" in problem["errors"][0]["message"]
    listed = await client.get("/v1/providers", params={"limit": 200}, headers=auth(operator_key))
    assert body["uscc"] not in {p["uscc"] for p in listed.json()["items"]}


async def test_a_provider_update_naming_a_kind_twice_is_refused(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    provider = await create(client, operator_key, "/v1/providers", provider_payload(kinds=["compute"]))
    response = await client.patch(f"/v1/providers/{provider['id']}", json={"kinds": ["model", "model"]},
                                  headers=auth(operator_key, **{"If-Match": '"v1"'}))
    assert _pointers(assert_problem(response, 422, "validation_failed")) == {"/kinds"}
    again = await client.get(f"/v1/providers/{provider['id']}", headers=auth(operator_key))
    assert again.json()["kinds"] == ["compute"]
    assert again.headers["etag"] == '"v1"'


@pytest.mark.parametrize("again", ["sme", "SME", " Sme", "ｓｍｅ"])  # the same certification by case, space, width
@pytest.mark.parametrize("method", ["post", "patch"])
async def test_an_enterprise_certification_listed_twice_is_refused(
    client: httpx.AsyncClient, operator_key: str, method: str, again: str
) -> None:
    if method == "post":
        response = await client.post("/v1/enterprises", json=enterprise_payload(certifications=["sme", "high_tech", again]),
                                     headers=auth(operator_key))
    else:
        enterprise = await create(client, operator_key, "/v1/enterprises", enterprise_payload())
        response = await client.patch(f"/v1/enterprises/{enterprise['id']}", json={"certifications": ["sme", again]},
                                      headers=auth(operator_key, **{"If-Match": '"v1"'}))
    problem = assert_problem(response, 422, "validation_failed")
    assert _pointers(problem) == {"/certifications"}
    assert again in problem["errors"][0]["message"]


async def test_a_blacklist_record_lifted_before_it_was_made_is_refused_and_names_the_record(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    records = [
        {"recorded_on": "2023-05-01", "authority": "市场监督管理局", "lifted_on": "2024-05-01"},
        {"recorded_on": "2024-06-10", "authority": "市场监督管理局", "lifted_on": "2024-06-09"},
    ]
    body = enterprise_payload(uscc=new_uscc(), blacklist_records=records)
    response = await client.post("/v1/enterprises", json=body, headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert _pointers(problem) == {"/blacklist_records/1/lifted_on"}
    assert "2024-06-10" in problem["errors"][0]["message"]
    chinese = await client.post("/v1/enterprises", json=body, headers=auth(operator_key, **{"Accept-Language": "zh-CN"}))
    detail = assert_problem(chinese, 422, "validation_failed")["errors"][0]["message"]
    assert "2024-06-10" in detail and "record" not in detail
    listed = await client.get("/v1/enterprises", params={"uscc": body["uscc"]}, headers=auth(operator_key))
    assert listed.json()["items"] == []


async def test_a_record_lifted_the_day_it_was_made_stands(client: httpx.AsyncClient, operator_key: str) -> None:
    records = [{"recorded_on": "2024-06-10", "authority": "市场监督管理局", "lifted_on": "2024-06-10"}]
    created = await create(client, operator_key, "/v1/enterprises", enterprise_payload(blacklist_records=records))
    assert created["blacklist_records"][0]["lifted_on"] == "2024-06-10"


async def _write(app: Any, statement: str, **params: Any) -> None:
    """What a row written before the rules may hold: the old schema stored lists as sent."""
    async with app.state.database.unit_of_work() as session:
        await session.execute(text(statement), params)


async def test_rows_recorded_before_the_rules_still_read_and_can_be_corrected(
    app: Any, client: httpx.AsyncClient, operator_key: str
) -> None:
    """The rules are for input: the office must be able to read an old row to correct it."""
    provider = await create(client, operator_key, "/v1/providers", provider_payload(kinds=["compute"]))
    enterprise = await create(client, operator_key, "/v1/enterprises", enterprise_payload())
    await _write(app, "UPDATE provider SET kinds = :k WHERE uscc = :u", k='["compute", "compute"]',
                 u=provider["uscc"])
    await _write(app, "UPDATE enterprise SET certifications = :c, blacklist_records = :b WHERE uscc = :u",
                 c='["sme", "sme"]', u=enterprise["uscc"],
                 b='[{"recorded_on": "2024-06-10", "authority": "x", "reason": "", "lifted_on": "2024-06-09"}]')
    read = await client.get(f"/v1/providers/{provider['id']}", headers=auth(operator_key))
    assert read.status_code == 200, read.text
    assert read.json()["kinds"] == ["compute", "compute"]
    one = await client.get(f"/v1/enterprises/{enterprise['id']}", headers=auth(operator_key))
    assert one.status_code == 200, one.text
    assert one.json()["blacklist_records"][0]["lifted_on"] == "2024-06-09"
    listing = await client.get("/v1/enterprises", headers=auth(operator_key))
    assert listing.status_code == 200, listing.text[:300]
    fixed = await client.patch(f"/v1/enterprises/{enterprise['id']}", json={"certifications": ["sme"]},
                               headers=auth(operator_key, **{"If-Match": one.headers["etag"]}))
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["certifications"] == ["sme"]
    renamed = await client.patch(f"/v1/providers/{provider['id']}", json={"kinds": ["compute"]},
                                 headers=auth(operator_key, **{"If-Match": read.headers["etag"]}))
    assert renamed.status_code == 200, renamed.text
