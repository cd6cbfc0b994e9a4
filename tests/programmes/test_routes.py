"""Programmes over HTTP: create, read, update under If-Match with frozen money terms, the status
machine, listing, provider enrolment and idempotent creation."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from services.voucher.clock import FrozenClock
from tests.support import assert_problem, auth, make_key, programme_payload, provider_payload

BASE = "/v1/programmes"
#: The verbs that reach each status from draft.
PATH_TO = {"draft": [], "open": ["open"], "closed": ["open", "close"],
           "archived": ["open", "close", "archive"]}
VERB_TARGET = {"open": "open", "close": "closed", "archive": "archived"}
LEGAL = {("draft", "open"), ("open", "close"), ("closed", "archive")}
ALLOWED_FROM = {"draft": ["open"], "open": ["closed"], "closed": ["archived"], "archived": []}
READ_ONLY = ("id", "code", "status", "version", "eligibility_version", "created_at", "updated_at",
             "opened_at", "closed_at", "archived_at")


# -- helpers ----------------------------------------------------------------------------------


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


async def new_programme(client: httpx.AsyncClient, key: str, **overrides: Any) -> dict[str, Any]:
    response = await client.post(BASE, json=programme_payload(**overrides), headers=auth(key))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def move(client: httpx.AsyncClient, key: str, programme_id: str, *verbs: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for verb in verbs:
        response = await client.post(f"{BASE}/{programme_id}/{verb}", headers=auth(key))
        assert response.status_code == 200, response.text
        body = response.json()
    return body


async def programme_in(
    client: httpx.AsyncClient, key: str, status: str, **overrides: Any
) -> dict[str, Any]:
    created = await new_programme(client, key, **overrides)
    if PATH_TO[status]:
        return await move(client, key, created["id"], *PATH_TO[status])
    return created


async def read(client: httpx.AsyncClient, key: str, programme_id: str) -> httpx.Response:
    response = await client.get(f"{BASE}/{programme_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    return response


async def patch(
    client: httpx.AsyncClient, key: str, programme_id: str, body: dict[str, Any],
    if_match: str | None = "current",
) -> httpx.Response:
    """PATCH with the programme's current ETag (or the given one, or none)."""
    if if_match == "current":
        if_match = (await read(client, key, programme_id)).headers["etag"]
    headers = auth(key) if if_match is None else auth(key, **{"If-Match": if_match})
    return await client.patch(f"{BASE}/{programme_id}", json=body, headers=headers)


async def new_provider(client: httpx.AsyncClient, key: str, kinds: list[str]) -> dict[str, Any]:
    response = await client.post("/v1/providers", json=provider_payload(kinds=kinds), headers=auth(key))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def enrolment_path(programme_id: str, provider_id: str) -> str:
    return f"{BASE}/{programme_id}/enrolments/{provider_id}"


async def list_all(client: httpx.AsyncClient, key: str, path: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(path, params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def pointers(problem: dict[str, Any]) -> list[str]:
    return [e["pointer"] for e in problem["errors"]]


# -- create -------------------------------------------------------------------------------------


async def test_create_answers_201_with_location_and_etag(
    client: httpx.AsyncClient, operator_key: str, clock: FrozenClock
) -> None:
    payload = programme_payload(description="30 % on domestic accelerators")
    response = await client.post(BASE, json=payload, headers=auth(operator_key))
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"{BASE}/{body['id']}"
    assert response.headers["etag"] == '"v1"'
    assert uuid.UUID(body["id"]).version == 7
    assert body["status"] == "draft"
    assert (body["version"], body["eligibility_version"]) == (1, 1)
    assert at(body["created_at"]) == at(body["updated_at"]) == clock()
    assert body["opened_at"] is body["closed_at"] is body["archived_at"] is None
    for field in ("code", "name", "description", "kind", "unit", "mode", "budget_total",
                  "rate_table", "tiers", "stacking_ceiling_bps", "enterprise_cap",
                  "max_per_voucher", "publicity_days"):
        assert body[field] == payload[field], field
    # Defaults a programme office would expect (DESIGN §1).
    assert body["cap_period"] == "calendar_year"
    assert body["cap_timezone"] == "Asia/Shanghai"
    assert body["voucher_validity_days"] == 365
    assert body["hold_ttl_seconds"] == 1800
    assert body["expiry_disposition"] == "pool"
    assert body["eligibility_rules"] is None

    again = await client.get(response.headers["location"], headers=auth(operator_key))
    assert again.status_code == 200
    assert again.json() == body
    assert again.headers["etag"] == '"v1"'


async def test_create_a_model_programme_granting_tokens(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    body = await new_programme(
        client, operator_key, kind="model", unit="TOKEN", rate_table={"model:registered": 3000},
        tiers=[], budget_total=10**12, enterprise_cap=10**9, max_per_voucher=10**8,
    )
    assert (body["kind"], body["unit"], body["rate_table"]) == ("model", "TOKEN", {"model:registered": 3000})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"kind": "model", "unit": "GPU_HOUR", "rate_table": {"model:registered": 3000}, "tiers": []},
            ["/unit"], id="unit-not-for-kind",
        ),
        pytest.param(
            {"kind": "compute", "unit": "TOKEN", "tiers": []}, ["/unit"], id="compute-in-tokens",
        ),
        pytest.param(
            {"kind": "model", "rate_table": {"model:registered": 3000, "accelerator:x": 2000},
             "tiers": []},
            ["/rate_table"], id="category-outside-kind",
        ),
        pytest.param(
            {"tiers": [{"spend_up_to": 100, "rate_bps": 5000, "categories": ["accelerator:gpu"]}]},
            ["/tiers/0/categories"], id="tier-category-not-in-table",
        ),
        pytest.param(
            {"tiers": [{"spend_up_to": 200, "rate_bps": 5000}, {"spend_up_to": 200, "rate_bps": 4000}]},
            ["/tiers/1/spend_up_to"], id="tiers-not-increasing",
        ),
        pytest.param(
            {"budget_total": 1_000_000, "enterprise_cap": 1_000_001, "max_per_voucher": 1_000},
            ["/enterprise_cap"], id="cap-above-budget",
        ),
        pytest.param(
            {"enterprise_cap": 1_000_000, "max_per_voucher": 1_000_001},
            ["/max_per_voucher"], id="voucher-above-cap",
        ),
        pytest.param(
            {"application_opens_at": "2026-06-01T00:00:00Z",
             "application_closes_at": "2026-06-01T00:00:00Z"},
            ["/application_closes_at"], id="window-closes-when-it-opens",
        ),
        pytest.param(
            {"application_opens_at": "2026-06-01T00:00:00+08:00",
             "application_closes_at": "2026-05-31T16:00:00Z"},
            ["/application_closes_at"], id="window-equal-across-zones",
        ),
    ],
)
async def test_inconsistent_terms_are_a_422_naming_the_field(
    client: httpx.AsyncClient, operator_key: str, overrides: dict[str, Any], expected: list[str]
) -> None:
    response = await client.post(BASE, json=programme_payload(**overrides), headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert pointers(problem) == expected
    assert all(e["location"] == "body" and e["type"] == "programme_terms" for e in problem["errors"])
    assert await list_all(client, operator_key, BASE) == []  # nothing was created


async def test_every_term_problem_is_listed_at_once(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    payload = programme_payload(
        kind="model", unit="GPU_HOUR", rate_table={"accelerator:x": 3000},
        tiers=[], budget_total=100, enterprise_cap=200, max_per_voucher=300,
    )
    problem = assert_problem(
        await client.post(BASE, json=payload, headers=auth(operator_key)), 422, "validation_failed"
    )
    assert pointers(problem) == ["/unit", "/rate_table", "/enterprise_cap", "/max_per_voucher"]


@pytest.mark.parametrize(
    ("overrides", "pointer"),
    [
        ({"rate_table": {"GPU": 3000}}, "/rate_table"),
        ({"rate_table": {"Accelerator:domestic": 3000}}, "/rate_table"),
        ({"rate_table": {"accelerator domestic": 3000}}, "/rate_table"),
        ({"rate_table": {"accelerator:": 3000}}, "/rate_table"),
        ({"rate_table": {}}, "/rate_table"),
        ({"rate_table": {"accelerator:domestic": 10_001}}, "/rate_table"),
        ({"rate_table": {"accelerator:domestic": -1}}, "/rate_table"),
        ({"rate_table": {"accelerator:domestic": 30.5}}, "/rate_table/accelerator:domestic"),
        ({"budget_total": 0}, "/budget_total"),
        ({"budget_total": 2_500_000.5}, "/budget_total"),
        ({"budget_total": "a lot"}, "/budget_total"),
        ({"budget_total": 10**15 + 1}, "/budget_total"),
        ({"stacking_ceiling_bps": 10_001}, "/stacking_ceiling_bps"),
        ({"kind": "storage"}, "/kind"),
        ({"unit": "USD"}, "/unit"),
        ({"cap_timezone": "Asia/Beijing"}, "/cap_timezone"),
        ({"application_opens_at": "2026-01-01T00:00:00"}, "/application_opens_at"),  # no zone
        # within 1970–9000, like every instant a client gives: a window in 9999 had made every
        # application's refusal a 500 (its Beijing time past year 9999; an independent review)
        ({"application_opens_at": "9999-12-31T20:00:00Z"}, "/application_opens_at"),
        ({"application_closes_at": "0001-01-01T00:00:00Z"}, "/application_closes_at"),
        ({"application_closes_at": 1767225600}, "/application_closes_at"),
        # a place's zone, never the serving machine's own setting or a placeholder
        ({"cap_timezone": "localtime"}, "/cap_timezone"),
        ({"cap_timezone": "Factory"}, "/cap_timezone"),
        ({"cap_timezone": "right/UTC"}, "/cap_timezone"),
        ({"cap_timezone": "posixrules"}, "/cap_timezone"),
        ({"eligibility_rules": {"all": [{"id": "cap", "check": "requested_within_remaining_cap"},
                                        {"id": "cap", "check": "headcount_at_most", "value": 9}]}},
         "/eligibility_rules/all/1/id"),
        ({"code": "Has Spaces"}, "/code"),
        ({"tiers": [{"spend_up_to": 0, "rate_bps": 5000}]}, "/tiers/0/spend_up_to"),
        ({"tiers": [{"spend_up_to": 10, "rate_bps": 5000, "extra": 1}]}, "/tiers/0/extra"),
        ({"surprise": True}, "/surprise"),
        # Amounts and rates are JSON integers: true is not 1 fen, 3000.0 is not 3000 bps.
        ({"budget_total": True}, "/budget_total"),
        ({"enterprise_cap": 800_000_000.0}, "/enterprise_cap"),
        ({"max_per_voucher": "800000000"}, "/max_per_voucher"),
        ({"stacking_ceiling_bps": True}, "/stacking_ceiling_bps"),
        ({"rate_table": {"accelerator:domestic": True}}, "/rate_table/accelerator:domestic"),
        ({"rate_table": {"accelerator:domestic": 3000.0}}, "/rate_table/accelerator:domestic"),
        ({"tiers": [{"spend_up_to": True, "rate_bps": 5000}]}, "/tiers/0/spend_up_to"),
        ({"tiers": [{"spend_up_to": 100, "rate_bps": 5000.0}]}, "/tiers/0/rate_bps"),
    ],
)
async def test_malformed_fields_are_a_422_with_pointers(
    client: httpx.AsyncClient, operator_key: str, overrides: dict[str, Any], pointer: str
) -> None:
    response = await client.post(BASE, json=programme_payload(**overrides), headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    assert pointers(problem) == [pointer]


async def test_a_programme_saved_before_a_check_was_tightened_still_reads(app, client: httpx.AsyncClient,
                                                                          operator_key: str) -> None:
    """The window's bounds and the zone's being a place's are checks on what is saved: a programme
    stored before them (here, made so behind the service) reads as it is — an independent review
    had a read of it, and the list of every programme with it, answer 500 — and a refusal that
    names its window in 9999 reads in UTC."""
    from sqlalchemy import update

    from services.voucher.tables import Programme

    created = await client.post(BASE, json=programme_payload(), headers=auth(operator_key))
    assert created.status_code == 201, created.text
    far = datetime.fromisoformat("9999-12-31T20:00:00+00:00")
    async with app.state.database.unit_of_work() as session:
        await session.execute(update(Programme).where(Programme.id == uuid.UUID(created.json()["id"])).values(
            cap_timezone="localtime", application_opens_at=far,
            application_closes_at=datetime.fromisoformat("9999-12-31T23:00:00+00:00")))
    read = await client.get(f"{BASE}/{created.json()['id']}", headers=auth(operator_key))
    assert read.status_code == 200, read.text
    assert (read.json()["cap_timezone"], read.json()["application_opens_at"]) == ("localtime", "9999-12-31T20:00:00Z")
    listed = await client.get(BASE, headers=auth(operator_key))
    assert listed.status_code == 200 and created.json()["id"] in {p["id"] for p in listed.json()["items"]}


async def test_a_programme_saved_before_a_check_was_tightened_can_still_be_edited(
        app, client: httpx.AsyncClient, operator_key: str) -> None:
    """An open programme with a tier of no categories (refused since December 2026, read as
    written) had every edit refused on that tier — a new closing date, its name — and its money
    terms cannot change once open, so nothing could be edited again (an independent review).
    An edit is refused only for the problems it brings."""
    from sqlalchemy import update

    from services.voucher.tables import Programme

    created = await new_programme(client, operator_key)
    legacy = [{"spend_up_to": 50_000_000, "rate_bps": 5000, "categories": []}]
    async with app.state.database.unit_of_work() as session:  # stored while a draft (0034 fixes it once open)
        await session.execute(update(Programme).where(Programme.id == uuid.UUID(created["id"])).values(
            tiers=legacy, application_opens_at=datetime.fromisoformat("2026-01-01T00:00:00+00:00")))
    opened = await client.post(f"{BASE}/{created['id']}/open", headers=auth(operator_key))
    assert opened.status_code == 200, opened.text
    renamed = await patch(client, operator_key, created["id"], {"name": "Renamed programme"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Renamed programme" and renamed.json()["tiers"] == legacy
    problem = assert_problem(await patch(client, operator_key, created["id"],  # before it opens: what it brings
                                         {"application_closes_at": "2025-12-01T00:00:00Z"}), 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/application_closes_at"], problem
    # A field the change rewrites is judged afresh: a draft's new tiers with the old fault again
    draft = await new_programme(client, operator_key)
    async with app.state.database.unit_of_work() as session:
        await session.execute(update(Programme).where(Programme.id == uuid.UUID(draft["id"])).values(tiers=legacy))
    again = [{"spend_up_to": 40_000_000, "rate_bps": 4000, "categories": []}]
    problem = assert_problem(await patch(client, operator_key, draft["id"], {"tiers": again}), 422, "validation_failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/tiers/0/categories"], problem
    assert (await patch(client, operator_key, draft["id"], {"description": "kept"})).status_code == 200


async def test_category_error_explains_the_expected_shape(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    response = await client.post(
        BASE, json=programme_payload(rate_table={"GPU": 3000}), headers=auth(operator_key)
    )
    problem = assert_problem(response, 422, "validation_failed")
    assert "group:name" in problem["errors"][0]["message"]


async def test_duplicate_code_is_a_409(client: httpx.AsyncClient, operator_key: str) -> None:
    first = await new_programme(client, operator_key)
    response = await client.post(
        BASE, json=programme_payload(code=first["code"], name="Another name"), headers=auth(operator_key)
    )
    problem = assert_problem(response, 409, "already_exists")
    assert first["code"] in problem["detail"]
    assert len(await list_all(client, operator_key, BASE)) == 1


async def test_only_operators_write_programmes(
    client: httpx.AsyncClient, operator_key: str, auditor_key: str
) -> None:
    assert_problem(await client.post(BASE, json=programme_payload()), 401, "unauthenticated")
    response = await client.post(BASE, json=programme_payload(), headers=auth(auditor_key))
    problem = assert_problem(response, 403, "insufficient_scope")
    assert problem["required_scopes"] == ["programmes:write"]
    created = await new_programme(client, operator_key)
    assert (await read(client, auditor_key, created["id"])).json() == created  # but auditors read
    assert_problem(await patch(client, auditor_key, created["id"], {"name": "x"}), 403,
                   "insufficient_scope")
    assert_problem(await client.post(f"{BASE}/{created['id']}/open", headers=auth(auditor_key)),
                   403, "insufficient_scope")


# -- read ---------------------------------------------------------------------------------------


async def test_get_unknown_or_malformed_id(client: httpx.AsyncClient, operator_key: str) -> None:
    missing = uuid.UUID(int=(7 << 76) | (0b10 << 62))
    problem = assert_problem(await client.get(f"{BASE}/{missing}", headers=auth(operator_key)),
                             404, "not_found")
    assert str(missing) in problem["detail"]
    problem = assert_problem(await client.get(f"{BASE}/not-a-uuid", headers=auth(operator_key)),
                             422, "validation_failed")
    assert problem["errors"][0]["location"] == "path"


async def test_drafts_are_hidden_from_providers(
    app: Any, client: httpx.AsyncClient, operator_key: str
) -> None:
    provider = await new_provider(client, operator_key, ["compute"])
    provider_key = await make_key(app, "provider", provider_id=uuid.UUID(provider["id"]))
    draft = await new_programme(client, operator_key)
    opened = await programme_in(client, operator_key, "open")
    assert_problem(await client.get(f"{BASE}/{draft['id']}", headers=auth(provider_key)),
                   404, "not_found")
    assert (await read(client, provider_key, opened["id"])).json()["status"] == "open"
    assert [p["id"] for p in await list_all(client, provider_key, BASE)] == [opened["id"]]
    assert [p["id"] for p in await list_all(client, provider_key, BASE, status="draft")] == []


# -- update -------------------------------------------------------------------------------------


async def test_patch_needs_if_match(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await new_programme(client, operator_key)
    response = await patch(client, operator_key, created["id"], {"name": "New"}, if_match=None)
    assert_problem(response, 428, "precondition_required")
    response = await patch(client, operator_key, created["id"], {"name": "New"}, if_match=" ")
    assert_problem(response, 428, "precondition_required")
    assert (await read(client, operator_key, created["id"])).json()["name"] == created["name"]


async def test_patch_with_a_stale_etag_is_412(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await new_programme(client, operator_key)
    first = await patch(client, operator_key, created["id"], {"name": "First"}, if_match='"v1"')
    assert first.status_code == 200, first.text
    second = await patch(client, operator_key, created["id"], {"name": "Second"}, if_match='"v1"')
    problem = assert_problem(second, 412, "precondition_failed")
    assert problem["current_etag"] == '"v2"'
    assert (await read(client, operator_key, created["id"])).json()["name"] == "First"


async def test_successful_patch_bumps_version_and_etag(
    client: httpx.AsyncClient, operator_key: str, clock: FrozenClock
) -> None:
    created = await new_programme(client, operator_key)
    clock.advance(minutes=5)
    response = await patch(client, operator_key, created["id"], {"name": "Renamed"}, if_match='"v1"')
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"v2"'
    body = response.json()
    assert (body["name"], body["version"]) == ("Renamed", 2)
    assert at(body["updated_at"]) == clock()
    assert at(body["created_at"]) < clock()  # type: ignore[operator]
    fresh = await read(client, operator_key, created["id"])
    assert fresh.headers["etag"] == '"v2"' and fresh.json() == body


@pytest.mark.parametrize("if_match", ['"v1"', 'W/"v1"', '"v7", "v1"'])
async def test_if_match_forms_accepted(
    client: httpx.AsyncClient, operator_key: str, if_match: str
) -> None:
    created = await new_programme(client, operator_key)
    response = await patch(client, operator_key, created["id"], {"name": "Renamed"}, if_match=if_match)
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2


@pytest.mark.parametrize("if_match", ["*", ' * ', '"v1", *'])
async def test_if_match_star_is_refused(client: httpx.AsyncClient, operator_key: str, if_match: str) -> None:
    """Issue 19, finding 9: `*` matches any version, so it would skip the lost-update check."""
    created = await new_programme(client, operator_key)
    response = await patch(client, operator_key, created["id"], {"name": "Renamed"}, if_match=if_match)
    assert_problem(response, 428, "precondition_required")
    assert (await read(client, operator_key, created["id"])).json()["version"] == 1


async def test_patch_that_changes_nothing_keeps_the_version(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    created = await new_programme(client, operator_key)
    response = await patch(client, operator_key, created["id"], {"name": created["name"]})
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"v1"'
    assert response.json()["version"] == 1


async def test_in_draft_every_term_can_change(client: httpx.AsyncClient, operator_key: str) -> None:
    created = await new_programme(client, operator_key)
    changes = {
        "name": "Yuhang 2026 model voucher",
        "description": "Now for registered large models.",
        "kind": "model",
        "unit": "TOKEN",
        "budget_total": 9_000_000,
        "rate_table": {"model:registered": 3000, "model:open_source": 1500},
        "tiers": [{"spend_up_to": 1_000, "rate_bps": 5000, "categories": ["model:registered"]}],
        "stacking_ceiling_bps": 5000,
        "enterprise_cap": 500_000,
        "cap_period": "calendar_quarter",
        "cap_timezone": "UTC",
        "max_per_voucher": 100_000,
        "application_opens_at": "2026-04-01T00:00:00Z",
        "application_closes_at": "2026-09-30T16:00:00Z",
        "voucher_validity_days": 180,
        "publicity_days": 7,
        "hold_ttl_seconds": 600,
        "expiry_disposition": "breakage",
        "eligibility_rules": {"all": [{"check": "region_in", "regions": ["330110"]}]},
    }
    response = await patch(client, operator_key, created["id"], changes)
    assert response.status_code == 200, response.text
    body = response.json()
    for field, value in changes.items():
        if field.startswith("application_"):
            assert at(body[field]) == at(value), field
        else:
            assert body[field] == value, field
    assert body["version"] == 2
    assert body["eligibility_version"] == 2
    assert (await read(client, operator_key, created["id"])).json() == body
    # A programme that pays claims grants money: the mode changes with the unit.
    claims = await patch(client, operator_key, created["id"], {"unit": "CNY", "mode": "enterprise_claim"})
    assert claims.status_code == 200, claims.text
    assert (claims.json()["unit"], claims.json()["mode"]) == ("CNY", "enterprise_claim")


async def test_draft_patch_is_checked_against_the_merged_terms(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    created = await new_programme(client, operator_key)  # cap 800,000,000
    response = await patch(client, operator_key, created["id"], {"budget_total": 1_000})
    problem = assert_problem(response, 422, "validation_failed")
    assert pointers(problem) == ["/enterprise_cap"]
    response = await patch(client, operator_key, created["id"], {"kind": "model"})
    problem = assert_problem(response, 422, "validation_failed")
    assert pointers(problem) == ["/rate_table", "/rate_table"]  # both accelerator categories
    fresh = (await read(client, operator_key, created["id"])).json()
    assert fresh == created  # nothing changed, version still 1


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"budget_total": True}, "/budget_total"),
        ({"enterprise_cap": 1.0}, "/enterprise_cap"),
        ({"rate_table": {"accelerator:domestic": False}}, "/rate_table/accelerator:domestic"),
        ({"tiers": [{"spend_up_to": 10, "rate_bps": True}]}, "/tiers/0/rate_bps"),
    ],
)
async def test_patch_refuses_non_integer_money(
    client: httpx.AsyncClient, operator_key: str, body: dict[str, Any], pointer: str
) -> None:
    created = await new_programme(client, operator_key)
    problem = assert_problem(await patch(client, operator_key, created["id"], body), 422,
                             "validation_failed")
    assert pointers(problem) == [pointer]


async def test_patch_refuses_null_for_required_fields(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    created = await new_programme(client, operator_key, application_closes_at="2026-12-31T00:00:00Z")
    problem = assert_problem(
        await patch(client, operator_key, created["id"], {"name": None}), 422, "validation_failed"
    )
    assert problem["errors"][0]["type"] == "null_not_allowed"
    cleared = await patch(client, operator_key, created["id"], {"application_closes_at": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["application_closes_at"] is None


async def test_patch_refuses_unknown_and_read_only_fields(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    created = await new_programme(client, operator_key)
    for field, value in (("status", "open"), ("code", "new-code"), ("version", 9), ("id", created["id"])):
        response = await patch(client, operator_key, created["id"], {field: value})
        problem = assert_problem(response, 422, "validation_failed")
        assert pointers(problem) == [f"/{field}"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("budget_total", 30_000_000_000),
        ("rate_table", {"accelerator:domestic": 3500, "accelerator:other": 2000}),
        ("tiers", []),
        ("stacking_ceiling_bps", 5000),
        ("enterprise_cap", 700_000_000),
        ("max_per_voucher", 100_000_000),
        ("unit", "GPU_HOUR"),
        ("mode", "enterprise_claim"),
        ("cap_period", "programme"),
        ("cap_timezone", "UTC"),
        ("voucher_validity_days", 30),
        ("expiry_disposition", "breakage"),
        ("application_opens_at", "2026-01-01T00:00:00Z"),
    ],
)
async def test_money_terms_are_frozen_once_open(
    client: httpx.AsyncClient, operator_key: str, field: str, value: Any
) -> None:
    opened = await programme_in(client, operator_key, "open")
    response = await patch(client, operator_key, opened["id"], {field: value})
    problem = assert_problem(response, 409, "terms_frozen")
    assert problem["fields"] == [field]
    assert problem["current_status"] == "open"
    assert (await read(client, operator_key, opened["id"])).json() == opened


async def test_frozen_refusal_lists_every_frozen_field_and_changes_nothing(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    opened = await programme_in(client, operator_key, "open")
    response = await patch(
        client, operator_key, opened["id"],
        {"name": "Allowed on its own", "budget_total": 1, "rate_table": {"accelerator:x": 1},
         "kind": "model"},
    )
    problem = assert_problem(response, 409, "terms_frozen")
    assert problem["fields"] == ["budget_total", "kind", "rate_table"]
    assert (await read(client, operator_key, opened["id"])).json()["name"] == opened["name"]


async def test_resending_the_same_money_terms_is_allowed_once_open(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    payload = programme_payload(
        application_opens_at="2026-01-01T00:00:00Z", application_closes_at="2026-12-31T15:59:59Z",
        eligibility_rules={"all": [{"check": "headcount_at_most", "value": 300}]},
    )
    created = await client.post(BASE, json=payload, headers=auth(operator_key))
    assert created.status_code == 201, created.text
    opened = await move(client, operator_key, created.json()["id"], "open")
    whole = {k: v for k, v in opened.items() if k not in READ_ONLY}
    unchanged = await patch(client, operator_key, opened["id"], whole)
    assert unchanged.status_code == 200, unchanged.text
    assert unchanged.json() == opened  # nothing changed: same version and eligibility version
    # The same document with an equal instant written in another zone is also unchanged.
    same_instant = {**whole, "application_opens_at": "2026-01-01T08:00:00+08:00"}
    assert (await patch(client, operator_key, opened["id"], same_instant)).json() == opened
    renamed = await patch(client, operator_key, opened["id"], {**whole, "name": "Renamed while open"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Renamed while open"
    assert renamed.json()["version"] == opened["version"] + 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Yuhang 2026 compute voucher (extended)"),
        ("description", "Window extended to the end of January."),
        ("application_closes_at", "2027-01-31T15:59:59Z"),
        ("publicity_days", 7),
        ("hold_ttl_seconds", 900),
        ("eligibility_rules", {"all": [{"check": "region_in", "regions": ["330110"]}]}),
    ],
)
async def test_open_programme_still_takes_operational_changes(
    client: httpx.AsyncClient, operator_key: str, field: str, value: Any
) -> None:
    opened = await programme_in(client, operator_key, "open", application_opens_at="2026-01-01T00:00:00Z")
    response = await patch(client, operator_key, opened["id"], {field: value})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (at(body[field]) if field == "application_closes_at" else body[field]) == (
        at(value) if field == "application_closes_at" else value
    )
    assert body["version"] == opened["version"] + 1
    assert response.headers["etag"] == f'"v{opened["version"] + 1}"'


async def test_open_window_change_is_still_checked(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    opened = await programme_in(client, operator_key, "open", application_opens_at="2026-03-01T00:00:00Z")
    response = await patch(
        client, operator_key, opened["id"], {"application_closes_at": "2026-02-01T00:00:00Z"}
    )
    problem = assert_problem(response, 422, "validation_failed")
    assert pointers(problem) == ["/application_closes_at"]


async def test_changing_eligibility_rules_bumps_eligibility_version(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    created = await new_programme(client, operator_key)
    rules_v2 = {"all": [{"check": "region_in", "regions": ["330110"]}]}
    body = (await patch(client, operator_key, created["id"], {"eligibility_rules": rules_v2})).json()
    assert (body["eligibility_version"], body["version"]) == (2, 2)
    body = (await patch(client, operator_key, created["id"], {"name": "Other"})).json()
    assert (body["eligibility_version"], body["version"]) == (2, 3)  # other fields: no bump
    body = (await patch(client, operator_key, created["id"], {"eligibility_rules": rules_v2})).json()
    assert (body["eligibility_version"], body["version"]) == (2, 3)  # same rules: no change
    await move(client, operator_key, created["id"], "open")
    rules_v3 = {"all": [{"check": "region_in", "regions": ["330110", "330106"]}]}
    body = (await patch(client, operator_key, created["id"], {"eligibility_rules": rules_v3})).json()
    assert body["eligibility_rules"] == rules_v3
    assert (body["eligibility_version"], body["version"]) == (3, 5)
    body = (await patch(client, operator_key, created["id"], {"eligibility_rules": None})).json()
    assert body["eligibility_rules"] is None
    assert body["eligibility_version"] == 4


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("name", "Closed programme, renamed", True),
        ("description", "Closed early: budget used up.", True),
        ("application_closes_at", "2027-01-31T15:59:59Z", False),
        ("publicity_days", 7, False),
        ("hold_ttl_seconds", 900, False),
        ("eligibility_rules", {"all": []}, False),
        ("budget_total", 1, False),
    ],
)
async def test_closed_programme_takes_only_name_and_description(
    client: httpx.AsyncClient, operator_key: str, field: str, value: Any, allowed: bool
) -> None:
    closed = await programme_in(client, operator_key, "closed")
    response = await patch(client, operator_key, closed["id"], {field: value})
    if allowed:
        assert response.status_code == 200, response.text
        assert response.json()[field] == value
    else:
        problem = assert_problem(response, 409, "terms_frozen")
        assert (problem["fields"], problem["current_status"]) == ([field], "closed")


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "Archived, renamed"), ("description", "x"), ("publicity_days", 1),
     ("eligibility_rules", {"all": []}), ("budget_total", 1)],
)
async def test_archived_programme_refuses_every_change(
    client: httpx.AsyncClient, operator_key: str, field: str, value: Any
) -> None:
    archived = await programme_in(client, operator_key, "archived")
    problem = assert_problem(await patch(client, operator_key, archived["id"], {field: value}),
                             409, "terms_frozen")
    assert (problem["fields"], problem["current_status"]) == ([field], "archived")
    assert (await read(client, operator_key, archived["id"])).json() == archived


async def test_patch_unknown_programme_is_404(client: httpx.AsyncClient, operator_key: str) -> None:
    response = await patch(client, operator_key, str(uuid.uuid4()), {"name": "x"}, if_match='"v1"')
    assert_problem(response, 404, "not_found")


# -- status machine -----------------------------------------------------------------------------


@pytest.mark.parametrize("start", list(PATH_TO))
@pytest.mark.parametrize("verb", list(VERB_TARGET))
async def test_every_transition_over_http(
    client: httpx.AsyncClient, operator_key: str, clock: FrozenClock, start: str, verb: str
) -> None:
    before = await programme_in(client, operator_key, start)
    clock.advance(hours=1)
    response = await client.post(f"{BASE}/{before['id']}/{verb}", headers=auth(operator_key))
    if (start, verb) in LEGAL:
        assert response.status_code == 200, response.text
        body = response.json()
        target = VERB_TARGET[verb]
        assert body["status"] == target
        stamp = {"open": "opened_at", "closed": "closed_at", "archived": "archived_at"}[target]
        assert at(body[stamp]) == clock()
        assert at(body["updated_at"]) == clock()
        assert body["version"] == before["version"] + 1
        assert response.headers["etag"] == f'"v{body["version"]}"'
        for earlier in ("opened_at", "closed_at", "archived_at"):  # earlier stamps are kept
            if earlier != stamp:
                assert body[earlier] == before[earlier]
    else:
        problem = assert_problem(response, 409, "invalid_transition")
        assert problem["current_status"] == start
        assert problem["allowed"] == ALLOWED_FROM[start]
        assert (await read(client, operator_key, before["id"])).json() == before


async def test_lifecycle_stamps_each_step(
    client: httpx.AsyncClient, operator_key: str, clock: FrozenClock
) -> None:
    created = await new_programme(client, operator_key)
    t0 = clock()
    clock.advance(days=1)
    t1 = clock()
    await move(client, operator_key, created["id"], "open")
    clock.advance(days=30)
    t2 = clock()
    await move(client, operator_key, created["id"], "close")
    clock.advance(days=365)
    t3 = clock()
    body = await move(client, operator_key, created["id"], "archive")
    assert [at(body[k]) for k in ("created_at", "opened_at", "closed_at", "archived_at")] == [
        t0, t1, t2, t3
    ]
    assert body["version"] == 4


async def test_transition_takes_an_optional_reason(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    created = await new_programme(client, operator_key)
    response = await client.post(
        f"{BASE}/{created['id']}/open", json={"reason": "approved by the office"},
        headers=auth(operator_key),
    )
    assert response.status_code == 200, response.text
    response = await client.post(
        f"{BASE}/{created['id']}/close", json={"reason": "x" * 501}, headers=auth(operator_key)
    )
    assert_problem(response, 422, "validation_failed")


async def test_transition_of_unknown_programme_is_404(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    response = await client.post(f"{BASE}/{uuid.uuid4()}/open", headers=auth(operator_key))
    assert_problem(response, 404, "not_found")


# -- list ---------------------------------------------------------------------------------------


async def test_list_filters_and_cursor_walk(client: httpx.AsyncClient, operator_key: str) -> None:
    model = {"kind": "model", "rate_table": {"model:registered": 3000}, "tiers": []}
    made = [
        await programme_in(client, operator_key, "draft"),
        await programme_in(client, operator_key, "open", **model),
        await programme_in(client, operator_key, "open"),
        await programme_in(client, operator_key, "closed", **model),
        await programme_in(client, operator_key, "draft", **model),
    ]
    ids = [p["id"] for p in made]

    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(BASE, params=params, headers=auth(operator_key))).json()
        seen += [p["id"] for p in page["items"]]
        sizes.append(len(page["items"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1]
    assert seen == ids  # creation order, no gaps, no duplicates

    def listed(**params: Any) -> Any:
        return list_all(client, operator_key, BASE, **params)

    assert [p["id"] for p in await listed(status="open")] == [ids[1], ids[2]]
    assert [p["id"] for p in await listed(status="draft")] == [ids[0], ids[4]]
    assert [p["id"] for p in await listed(status="archived")] == []
    assert [p["id"] for p in await listed(kind="model")] == [ids[1], ids[3], ids[4]]
    assert [p["id"] for p in await listed(kind="compute")] == [ids[0], ids[2]]
    assert [p["id"] for p in await listed(kind="model", status="closed")] == [ids[3]]

    # Filters and cursor combine: walk the model programmes one at a time.
    walked: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 1, "kind": "model"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(BASE, params=params, headers=auth(operator_key))).json()
        walked += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == [ids[1], ids[3], ids[4]]


async def test_list_refuses_bad_filters_and_cursors(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    problem = assert_problem(
        await client.get(BASE, params={"status": "paused"}, headers=auth(operator_key)),
        422, "validation_failed",
    )
    assert problem["errors"][0]["location"] == "query"
    assert_problem(await client.get(BASE, params={"kind": "storage"}, headers=auth(operator_key)),
                   422, "validation_failed")
    assert_problem(await client.get(BASE, params={"limit": 0}, headers=auth(operator_key)),
                   422, "validation_failed")
    assert_problem(await client.get(BASE, params={"cursor": "not-a-cursor"}, headers=auth(operator_key)),
                   422, "invalid_cursor")


# -- enrolment ----------------------------------------------------------------------------------


async def test_enrolment_is_201_then_200(
    client: httpx.AsyncClient, operator_key: str, clock: FrozenClock
) -> None:
    programme = await programme_in(client, operator_key, "open")
    provider = await new_provider(client, operator_key, ["compute"])
    first = await client.put(enrolment_path(programme["id"], provider["id"]), headers=auth(operator_key))
    assert first.status_code == 201, first.text
    body = first.json()
    assert body == {
        "programme_id": programme["id"],
        "provider_id": provider["id"],
        "provider_name": provider["name"],
        "enrolled_at": body["enrolled_at"],
        "withdrawn_at": None,
        "is_active": True,
    }
    assert at(body["enrolled_at"]) == clock()
    clock.advance(hours=1)
    again = await client.put(enrolment_path(programme["id"], provider["id"]), headers=auth(operator_key))
    assert again.status_code == 200, again.text
    assert again.json() == body  # enrolling twice changes nothing, not even enrolled_at
    listed = await list_all(client, operator_key, f"{BASE}/{programme['id']}/enrolments")
    assert listed == [body]


async def test_draft_programme_accepts_enrolments(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    programme = await new_programme(client, operator_key)
    provider = await new_provider(client, operator_key, ["compute", "model"])
    response = await client.put(enrolment_path(programme["id"], provider["id"]), headers=auth(operator_key))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("programme_kind", "provider_kinds", "ok"),
    [("compute", ["compute"], True), ("compute", ["model"], False),
     ("model", ["model"], True), ("model", ["compute"], False),
     ("model", ["compute", "model"], True)],
)
async def test_provider_must_offer_the_programme_kind(
    client: httpx.AsyncClient, operator_key: str, programme_kind: str, provider_kinds: list[str],
    ok: bool,
) -> None:
    extra = {} if programme_kind == "compute" else {
        "kind": "model", "rate_table": {"model:registered": 3000}, "tiers": []}
    programme = await programme_in(client, operator_key, "open", **extra)
    provider = await new_provider(client, operator_key, provider_kinds)
    response = await client.put(enrolment_path(programme["id"], provider["id"]), headers=auth(operator_key))
    if ok:
        assert response.status_code == 201, response.text
    else:
        assert_problem(response, 409, "provider_kind_mismatch")
        assert await list_all(client, operator_key, f"{BASE}/{programme['id']}/enrolments",
                              active_only="false") == []


@pytest.mark.parametrize("status", ["closed", "archived"])
async def test_closed_programmes_take_no_enrolments(
    client: httpx.AsyncClient, operator_key: str, status: str
) -> None:
    programme = await programme_in(client, operator_key, status)
    provider = await new_provider(client, operator_key, ["compute"])
    response = await client.put(enrolment_path(programme["id"], provider["id"]), headers=auth(operator_key))
    problem = assert_problem(response, 409, "enrolment_closed")
    assert problem["current_status"] == status


async def test_withdrawal_keeps_the_row_and_re_enrolment_works(
    client: httpx.AsyncClient, operator_key: str, clock: FrozenClock
) -> None:
    programme = await programme_in(client, operator_key, "open")
    provider = await new_provider(client, operator_key, ["compute"])
    path = enrolment_path(programme["id"], provider["id"])
    listing = f"{BASE}/{programme['id']}/enrolments"
    assert (await client.put(path, headers=auth(operator_key))).status_code == 201

    clock.advance(days=2)
    withdrawn = await client.delete(path, headers=auth(operator_key))
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["is_active"] is False
    assert at(withdrawn.json()["withdrawn_at"]) == clock()

    assert await list_all(client, operator_key, listing) == []  # active_only by default
    history = await list_all(client, operator_key, listing, active_only="false")
    assert len(history) == 1
    assert at(history[0]["withdrawn_at"]) == clock()
    assert history[0]["is_active"] is False

    assert_problem(await client.delete(path, headers=auth(operator_key)), 404, "not_found")

    clock.advance(days=1)
    again = await client.put(path, headers=auth(operator_key))
    assert again.status_code == 201, again.text
    assert again.json()["withdrawn_at"] is None and again.json()["is_active"] is True
    assert at(again.json()["enrolled_at"]) == clock()
    history = await list_all(client, operator_key, listing, active_only="false")
    assert len(history) == 1  # the same row, enrolled again
    assert history == await list_all(client, operator_key, listing)


async def test_providers_can_be_withdrawn_from_a_closed_programme(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    programme = await programme_in(client, operator_key, "open")
    provider = await new_provider(client, operator_key, ["compute"])
    path = enrolment_path(programme["id"], provider["id"])
    assert (await client.put(path, headers=auth(operator_key))).status_code == 201
    await move(client, operator_key, programme["id"], "close")
    assert (await client.delete(path, headers=auth(operator_key))).status_code == 200


async def test_enrolment_of_unknown_provider_or_programme_is_404(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    programme = await programme_in(client, operator_key, "open")
    provider = await new_provider(client, operator_key, ["compute"])
    problem = assert_problem(
        await client.put(enrolment_path(programme["id"], str(uuid.uuid4())), headers=auth(operator_key)),
        404, "not_found",
    )
    assert "provider" in problem["detail"]
    problem = assert_problem(
        await client.put(enrolment_path(str(uuid.uuid4()), provider["id"]), headers=auth(operator_key)),
        404, "not_found",
    )
    assert "programme" in problem["detail"]
    assert_problem(
        await client.delete(enrolment_path(programme["id"], provider["id"]), headers=auth(operator_key)),
        404, "not_found",
    )
    assert_problem(
        await client.get(f"{BASE}/{uuid.uuid4()}/enrolments", headers=auth(operator_key)),
        404, "not_found",
    )


async def test_enrolment_list_pages_without_gaps(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    programme = await programme_in(client, operator_key, "open")
    providers = [await new_provider(client, operator_key, ["compute"]) for _ in range(3)]
    for provider in providers:
        response = await client.put(enrolment_path(programme["id"], provider["id"]), headers=auth(operator_key))
        assert response.status_code == 201
    listing = f"{BASE}/{programme['id']}/enrolments"
    first = (await client.get(listing, params={"limit": 2}, headers=auth(operator_key))).json()
    second = (await client.get(listing, params={"limit": 2, "cursor": first["next_cursor"]},
                               headers=auth(operator_key))).json()
    assert second["next_cursor"] is None
    names = [(e["provider_id"], e["provider_name"]) for e in first["items"] + second["items"]]
    assert names == [(p["id"], p["name"]) for p in providers]


# -- idempotent creation ------------------------------------------------------------------------


async def test_idempotency_key_replays_the_first_creation(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    payload = programme_payload()
    headers = auth(operator_key, **{"Idempotency-Key": str(uuid.uuid4())})
    first = await client.post(BASE, json=payload, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    second = await client.post(BASE, json=payload, headers=headers)
    assert second.status_code == 201, second.text
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    programmes = await list_all(client, operator_key, BASE)
    assert [p["id"] for p in programmes] == [first.json()["id"]]

    # Same key, another body: refused, and still only one programme.
    other = await client.post(BASE, json=programme_payload(), headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")
    assert len(await list_all(client, operator_key, BASE)) == 1

    # A fresh key with the same body really runs again (and meets the duplicate code).
    fresh = auth(operator_key, **{"Idempotency-Key": str(uuid.uuid4())})
    assert_problem(await client.post(BASE, json=payload, headers=fresh), 409, "already_exists")


async def test_a_refused_creation_is_replayed_too(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    existing = await new_programme(client, operator_key)
    payload = programme_payload(code=existing["code"])
    headers = auth(operator_key, **{"Idempotency-Key": str(uuid.uuid4())})
    first = await client.post(BASE, json=payload, headers=headers)
    assert_problem(first, 409, "already_exists")
    second = await client.post(BASE, json=payload, headers=headers)
    assert second.status_code == 409
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json()["code"] == "already_exists"


async def test_a_validation_failure_is_not_stored_under_the_key(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    # 422 means "fix your request": it is never replayed, and the key is released, so the
    # corrected request may be sent with the same key.
    payload = programme_payload(enterprise_cap=10**12)  # above the budget
    headers = auth(operator_key, **{"Idempotency-Key": str(uuid.uuid4())})
    for _ in range(2):
        response = await client.post(BASE, json=payload, headers=headers)
        assert_problem(response, 422, "validation_failed")
        assert "idempotent-replayed" not in response.headers
    corrected = await client.post(BASE, json={**payload, "enterprise_cap": 800_000_000}, headers=headers)
    assert corrected.status_code == 201, corrected.text
    assert len(await list_all(client, operator_key, BASE)) == 1
