"""The application lifecycle over HTTP: submission (eligibility, window, one open application,
one subsidy per contract), review (approve within request, cap and budget; reject), publicity
with objections, withdrawal, the illegal-transition matrix, tenancy, the public 公示 notice,
issuance at the end of publicity (on read, on list, by the job) and the response language.

Every refusal is checked to change nothing: the application keeps its status and a request of
the right size still fits exactly the budget or cap that was left."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support import (
    assert_problem,
    auth,
    create,
    enterprise_payload,
    fresh_key,
    make_key,
    programme_payload,
    provider_payload,
)
from tests.world import World, build_world

# Programme terms of the default desk: small numbers, so each limit is easy to reach exactly.
BUDGET = 100_000_000
CAP = 30_000_000
MAX_PER_VOUCHER = 20_000_000
PUBLICITY_DAYS = 5
VALIDITY_DAYS = 365
MODEST = 18_000_000  # the default rules refuse a request above this
INELIGIBLE_AMOUNT = MODEST + 1_000_000
RULES = {"all": [
    {"id": "region", "check": "region_in", "regions": ["330110"]},
    {"id": "modest", "fact": "request.requested_amount", "op": "<=", "value": MODEST},
]}
ACTION_PATHS = {"approve": "approve", "reject": "reject", "objection": "objections", "withdraw": "withdraw"}
REVIEW_ACTIONS = ("approve", "reject", "objection")


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def contract(provider_id: str, number: str = "HZC-2026-0001", amount: int = 50_000_000) -> dict[str, Any]:
    return {"number": number, "provider_id": provider_id, "amount": amount,
            "signed_on": "2026-02-20", "starts_on": "2026-03-01", "ends_on": "2026-12-31"}


def action_body(action: str, amount: int) -> dict[str, Any]:
    return {
        "approve": {"amount": amount},
        "reject": {"reason": "outside the programme's scope"},
        "objection": {"statement": "the applicant and the provider share a shareholder", "objector": "a letter"},
        "withdraw": {"reason": "project postponed"},
    }[action]


@dataclass
class Desk:
    """The programme office of one test: a World plus the application calls."""

    app: Any
    world: World

    @property
    def client(self) -> httpx.AsyncClient:
        return self.world.client

    @property
    def programme_id(self) -> str:
        return str(self.world.programme["id"])

    async def submit(
        self, amount: int = 10_000_000, *, key: str | None = None, contracts: list[dict[str, Any]] | None = None,
        idem: str | None = None, programme_id: str | None = None, **headers: str,
    ) -> httpx.Response:
        body: dict[str, Any] = {"programme_id": programme_id or self.programme_id, "requested_amount": amount,
                                "purpose": "fine-tuning an inspection model"}
        if contracts is not None:
            body["contracts"] = contracts
        idempotency = {"Idempotency-Key": idem or str(uuid.uuid4())}
        return await self.client.post("/v1/applications", json=body,
                                      headers=auth(key or self.world.enterprise_key, **idempotency, **headers))

    async def apply(self, amount: int = 10_000_000, **kwargs: Any) -> dict[str, Any]:
        response = await self.submit(amount, **kwargs)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def act(self, application: dict[str, Any], action: str, *, amount: int | None = None,
                  key: str | None = None, **headers: str) -> httpx.Response:
        """approve / reject / objection by the operator, withdraw by the enterprise (by default)."""
        default = self.world.enterprise_key if action == "withdraw" else self.world.operator
        body = action_body(action, amount if amount is not None else application["requested_amount"])
        return await self.client.post(f"/v1/applications/{application['id']}/{ACTION_PATHS[action]}", json=body,
                                      headers=auth(key or default, **fresh_key(), **headers))

    async def done(self, application: dict[str, Any], action: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.act(application, action, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def read(self, application: dict[str, Any], key: str | None = None, **headers: str) -> httpx.Response:
        return await self.client.get(f"/v1/applications/{application['id']}",
                                     headers=auth(key or self.world.operator, **headers))

    async def status(self, application: dict[str, Any]) -> dict[str, Any]:
        response = await self.read(application)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def history(self, application: dict[str, Any]) -> list[dict[str, Any]]:
        response = await self.client.get(f"/v1/applications/{application['id']}/history",
                                         headers=auth(self.world.operator))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def listing(self, key: str | None = None, **params: str) -> list[dict[str, Any]]:
        response = await self.client.get("/v1/applications", params=params, headers=auth(key or self.world.operator))
        assert response.status_code == 200, response.text
        return response.json()["items"]  # type: ignore[no-any-return]

    async def other_enterprise(self) -> tuple[dict[str, Any], str]:
        """Another enterprise registered in the office, with its own key."""
        enterprise = await create(self.client, self.world.operator, "/v1/enterprises",
                                  enterprise_payload(name="杭州另一家科技有限公司"))
        return enterprise, await make_key(self.app, "enterprise", enterprise_id=enterprise["id"])

    async def issue_direct(self, face_value: int, enterprise_id: str | None = None) -> httpx.Response:
        body = {"programme_id": self.programme_id, "enterprise_id": enterprise_id or self.world.enterprise["id"],
                "face_value": face_value}
        return await self.client.post("/v1/vouchers", json=body, headers=auth(self.world.operator, **fresh_key()))

    async def notice(self, programme_id: str | None = None) -> httpx.Response:
        return await self.client.get(f"/v1/programmes/{programme_id or self.programme_id}/publicity")

    async def assert_clean(self) -> None:
        recon = await self.world.reconciliation()
        assert recon["is_clean"], recon
        assert recon["commitment_differences"] == [], recon


async def open_desk(app: Any, client: httpx.AsyncClient, **terms: Any) -> Desk:
    defaults = {"budget_total": BUDGET, "enterprise_cap": CAP, "max_per_voucher": MAX_PER_VOUCHER,
                "publicity_days": PUBLICITY_DAYS, "voucher_validity_days": VALIDITY_DAYS, "eligibility_rules": RULES}
    return Desk(app, await build_world(app, client, **{**defaults, **terms}))


@pytest.fixture
async def desk(app: Any, client: httpx.AsyncClient) -> Desk:
    return await open_desk(app, client)


async def reach(desk: Desk, state: str, clock: Any) -> dict[str, Any]:
    """An application of the desk's enterprise in `state`, by the legal road there."""
    if state == "ineligible":
        application = await desk.apply(INELIGIBLE_AMOUNT)
        assert application["status"] == "ineligible"
        return application
    application = await desk.apply(10_000_000)
    if state == "rejected":
        await desk.done(application, "reject")
    elif state == "withdrawn":
        await desk.done(application, "withdraw")
    elif state in ("publicity", "issued"):
        await desk.done(application, "approve")
        if state == "issued":
            clock.advance(days=PUBLICITY_DAYS)
    current = await desk.status(application)
    assert current["status"] == state, current
    return current


def assert_invalid_transition(response: httpx.Response, current: str) -> dict[str, Any]:
    problem = assert_problem(response, 409, "invalid_transition")
    assert problem["current_status"] == current, problem
    return problem


def pointers(problem: dict[str, Any]) -> list[str]:
    return [e["pointer"] for e in problem["errors"]]


# -- submission -----------------------------------------------------------------------------------


async def test_eligible_submission_is_under_review(desk: Desk, clock: Any) -> None:
    response = await desk.submit(12_000_000)
    assert response.status_code == 201, response.text
    application = response.json()
    assert response.headers["location"] == f"/v1/applications/{application['id']}"
    assert application["status"] == "under_review"
    assert application["enterprise_id"] == desk.world.enterprise["id"]
    assert application["requested_amount"] == 12_000_000 and application["approved_amount"] is None
    assert application["eligibility"]["passed"] is True and application["eligibility"]["failed"] == []
    assert application["eligibility"]["version"] == desk.world.programme["eligibility_version"]
    assert ts(application["submitted_at"]) == clock()
    assert application["decided_at"] is None and application["voucher_id"] is None
    steps = [(h["from_status"], h["to_status"]) for h in await desk.history(application)]
    assert steps == [(None, "submitted"), ("submitted", "under_review")]


async def test_ineligible_submission_lists_every_failed_rule(app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    rules = {"all": [
        {"id": "region", "check": "region_in", "regions": ["310000"]},          # fails: 330110
        {"id": "small-team", "check": "headcount_at_most", "value": 10},        # fails: 20
        {"id": "sme", "check": "has_certifications", "certifications": ["sme"]},  # passes
    ]}
    desk = await open_desk(app, client, eligibility_rules=rules)
    application = await desk.apply(10_000_000)
    assert application["status"] == "ineligible"
    assert ts(application["decided_at"]) == clock()
    eligibility = application["eligibility"]
    assert eligibility["passed"] is False
    assert [f["rule"] for f in eligibility["failed"]] == ["region", "small-team"]
    assert [f["reason"] for f in eligibility["failed"]] == ["region 330110 is not in 310000", "headcount 20 > 10"]
    assert [r["passed"] for r in eligibility["result"]["rules"]] == [False, False, True]
    last = (await desk.history(application))[-1]
    assert (last["from_status"], last["to_status"]) == ("submitted", "ineligible")
    assert last["details"] == {"failed_rules": ["region", "small-team"]}


async def test_request_above_max_per_voucher_is_refused(desk: Desk) -> None:
    problem = assert_problem(await desk.submit(MAX_PER_VOUCHER + 1), 422, "validation_failed")
    assert pointers(problem) == ["/requested_amount"]
    assert await desk.listing() == []
    assert (await desk.apply(MAX_PER_VOUCHER - 2_000_000))["status"] == "under_review"


@pytest.mark.parametrize(("window", "advance"), [
    pytest.param({"application_closes_at": "2026-03-01T01:00:00Z"}, 0, id="closed-yesterday"),
    pytest.param({"application_closes_at": "2026-03-03T01:00:00Z"}, 1, id="clock-reaches-close"),
    pytest.param({"application_opens_at": "2026-03-03T01:00:00Z"}, 0, id="not-yet-open"),
])
async def test_submission_outside_the_window_is_refused(
    app: Any, client: httpx.AsyncClient, clock: Any, window: dict[str, str], advance: int
) -> None:
    desk = await open_desk(app, client, **window)
    clock.advance(days=advance)
    problem = assert_problem(await desk.submit(), 409, "application_window_closed")
    assert problem["current_status"] == "open"
    assert await desk.listing() == []


async def test_submission_to_a_closed_programme_is_refused(desk: Desk) -> None:
    closed = await desk.client.post(f"/v1/programmes/{desk.programme_id}/close", headers=auth(desk.world.operator))
    assert closed.status_code == 200, closed.text
    problem = assert_problem(await desk.submit(), 409, "application_window_closed")
    assert problem["current_status"] == "closed"
    assert await desk.listing() == []


async def test_second_open_application_is_refused(desk: Desk) -> None:
    first = await desk.apply(10_000_000)
    problem = assert_problem(await desk.submit(5_000_000), 409, "application_already_open")
    assert problem["application_id"] == first["id"] and problem["current_status"] == "under_review"
    await desk.done(first, "approve")
    problem = assert_problem(await desk.submit(5_000_000), 409, "application_already_open")
    assert problem["current_status"] == "publicity"
    assert [a["id"] for a in await desk.listing()] == [first["id"]]


@pytest.mark.parametrize("ending", ["withdraw", "reject", "ineligible"])
async def test_a_closed_application_makes_room_for_a_new_one(desk: Desk, ending: str) -> None:
    if ending == "ineligible":
        first = await desk.apply(INELIGIBLE_AMOUNT)
        assert first["status"] == "ineligible"
    else:
        first = await desk.apply(10_000_000)
        await desk.done(first, ending)
    second = await desk.apply(8_000_000)
    assert second["status"] == "under_review" and second["id"] != first["id"]
    assert len(await desk.listing()) == 2


async def test_replayed_submission_returns_the_same_application(desk: Desk) -> None:
    first = await desk.submit(10_000_000, idem="apply-once")
    again = await desk.submit(10_000_000, idem="apply-once")
    assert first.status_code == again.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert [a["id"] for a in await desk.listing()] == [first.json()["id"]]
    body = {"programme_id": desk.programme_id, "requested_amount": 1, "purpose": "no key"}
    keyless = await desk.client.post("/v1/applications", json=body, headers=auth(desk.world.enterprise_key))
    assert_problem(keyless, 428, "idempotency_key_required")


@pytest.mark.parametrize("read_first", [True, False])
async def test_an_issued_application_makes_room_for_a_new_one(desk: Desk, clock: Any, read_first: bool) -> None:
    first = await desk.apply(10_000_000)
    await desk.done(first, "approve")
    clock.advance(days=PUBLICITY_DAYS)
    if read_first:
        assert (await desk.status(first))["status"] == "issued"
    response = await desk.submit(5_000_000)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "under_review"
    assert (await desk.status(first))["status"] == "issued"


# -- contracts ------------------------------------------------------------------------------------


async def test_contract_required_when_the_programme_asks(app: Any, client: httpx.AsyncClient) -> None:
    desk = await open_desk(app, client, application_requires_contract=True)
    problem = assert_problem(await desk.submit(contracts=[]), 422, "validation_failed")
    assert pointers(problem) == ["/contracts"]
    assert await desk.listing() == []
    application = await desk.apply(contracts=[contract(desk.world.provider["id"])])
    assert application["status"] == "under_review"


async def test_contract_used_by_another_enterprise_is_refused_after_normalising(desk: Desk) -> None:
    provider_id = desk.world.provider["id"]
    first = await desk.apply(contracts=[contract(provider_id, "hzc 2026-01")])
    assert first["contracts"][0]["number"] == "HZC2026-01"
    _, other_key = await desk.other_enterprise()
    refused = await desk.submit(key=other_key, contracts=[contract(provider_id, "HZC2026-01")])
    problem = assert_problem(refused, 409, "contract_already_used")
    assert problem["contract_number"] == "HZC2026-01" and problem["provider_id"] == provider_id
    assert await desk.listing(other_key) == []
    # the same number with another provider is another contract
    other_provider = await create(desk.client, desk.world.operator, "/v1/providers", provider_payload())
    accepted = await desk.apply(key=other_key, contracts=[contract(other_provider["id"], "HZC2026-01")])
    assert accepted["status"] == "under_review"


async def test_an_enterprise_with_an_open_application_learns_nothing_of_others_contracts(desk: Desk) -> None:
    """Told `application_already_open` whatever contract it names: asked about contracts first,
    it could probe another enterprise's contract numbers at no cost, each refusal writing nothing
    (an independent review). A malformed contract is still a 422 first."""
    provider_id = desk.world.provider["id"]
    await desk.apply(contracts=[contract(provider_id, "HZC-SECRET-1")])
    _, other_key = await desk.other_enterprise()
    await desk.apply(key=other_key, contracts=[contract(provider_id, "HZC-MINE-1")])
    for number in ("HZC-SECRET-1", "HZC-NOBODY-1"):
        refused = await desk.submit(key=other_key, contracts=[contract(provider_id, number)])
        assert_problem(refused, 409, "application_already_open")
    bad = await desk.submit(key=other_key, contracts=[contract(provider_id, "\u041dZ\u0421-1")])
    assert_problem(bad, 422, "validation_failed")


async def test_a_contract_with_a_related_party_fails_no_related_party_contracts(app: Any, client: httpx.AsyncClient) -> None:
    """Beijing's 'no related-party purchase', judged at submission by the rule that redemption and
    claims apply later: an application whose contract's provider shares a shareholder with the
    enterprise (or is the enterprise itself) is ineligible, the contract named; an unrelated
    provider's contract passes. Before the check, such an application went to review and an
    approval committed budget to a voucher no contract of it could use."""
    rules = {"all": [*RULES["all"], {"id": "arm's length", "check": "no_related_party_contracts"}]}
    desk = await open_desk(app, client, eligibility_rules=rules)
    world = desk.world
    party = {"role": "shareholder", "party_id": "sha256:00aa11bb22cc33dd"}
    for path in (f"/v1/enterprises/{world.enterprise['id']}", f"/v1/providers/{world.provider['id']}"):
        etag = (await client.get(path, headers=auth(world.operator))).headers["etag"]
        patched = await client.patch(path, json={"related_parties": [party]},
                                     headers=auth(world.operator, **{"If-Match": etag}))
        assert patched.status_code == 200, patched.text
    unrelated = await create(client, world.operator, "/v1/providers", provider_payload())
    related = await desk.apply(contracts=[contract(unrelated["id"], "HZC-A"), contract(world.provider["id"], "HZC-B")])
    assert related["status"] == "ineligible"
    outcome = {r["rule"]: r for r in related["eligibility"]["result"]["rules"]}["arm's length"]
    assert outcome["passed"] is False and "HZC-B" in outcome["reason"] and "HZC-A" not in outcome["reason"]
    clean = await desk.apply(contracts=[contract(unrelated["id"], "HZC-C")])
    assert clean["status"] == "under_review"
    outcome = {r["rule"]: r for r in clean["eligibility"]["result"]["rules"]}["arm's length"]
    assert (outcome["passed"], outcome["reason"]) == (True, "no contract is with a related party of the enterprise")


@pytest.mark.parametrize("ending", ["reject", "withdraw", "ineligible"])
async def test_contract_is_freed_when_the_application_ends_without_subsidy(desk: Desk, ending: str) -> None:
    provider_id = desk.world.provider["id"]
    contracts = [contract(provider_id, "HZC-7")]
    if ending == "ineligible":
        first = await desk.apply(INELIGIBLE_AMOUNT, contracts=contracts)
        assert first["status"] == "ineligible"
    else:
        first = await desk.apply(contracts=contracts)
        _, other_key = await desk.other_enterprise()
        assert_problem(await desk.submit(key=other_key, contracts=contracts), 409, "contract_already_used")
        await desk.done(first, ending)
    _, third_key = await desk.other_enterprise()
    assert (await desk.apply(key=third_key, contracts=[contract(provider_id, "hzc-7")]))["status"] == "under_review"


async def test_a_look_alike_contract_number_is_the_same_contract_or_refused(desk: Desk) -> None:
    """Issue 19, finding 5: Cyrillic Н and С, or the letter O for zero, do not make another contract."""
    provider_id = desk.world.provider["id"]
    await desk.apply(contracts=[contract(provider_id, "HZC-2026-0042")])
    _, other_key = await desk.other_enterprise()
    refused = await desk.submit(key=other_key, contracts=[contract(provider_id, "\u041dZ\u0421-2026-0042")])
    problem = assert_problem(refused, 422, "validation_failed")
    assert problem["errors"][0]["pointer"] == "/contracts/0/number" and "U+041D" in problem["errors"][0]["message"]
    same = await desk.submit(key=other_key, contracts=[contract(provider_id, "HZC-2O26-OO42")])
    assert_problem(same, 409, "contract_already_used")


async def test_contract_stays_blocked_through_publicity_and_issuance(desk: Desk, clock: Any) -> None:
    contracts = [contract(desk.world.provider["id"], "HZC-9")]
    application = await desk.apply(contracts=contracts)
    await desk.done(application, "approve")
    _, other_key = await desk.other_enterprise()
    assert_problem(await desk.submit(key=other_key, contracts=contracts), 409, "contract_already_used")
    clock.advance(days=PUBLICITY_DAYS)
    assert (await desk.status(application))["status"] == "issued"
    assert_problem(await desk.submit(key=other_key, contracts=contracts), 409, "contract_already_used")
    assert await desk.listing(other_key) == []


async def test_contract_with_an_unknown_provider_is_refused(desk: Desk) -> None:
    contracts = [contract(desk.world.provider["id"], "A-1"), contract(str(uuid.uuid4()), "A-2")]
    problem = assert_problem(await desk.submit(contracts=contracts), 422, "validation_failed")
    assert pointers(problem) == ["/contracts/1/provider_id"]
    assert await desk.listing() == []


async def test_contract_listed_twice_in_one_request_is_refused(desk: Desk) -> None:
    provider_id = desk.world.provider["id"]
    contracts = [contract(provider_id, "ab-1"), contract(provider_id, "AB - 1")]
    problem = assert_problem(await desk.submit(contracts=contracts), 422, "validation_failed")
    assert pointers(problem) == ["/contracts/1/number"]
    assert await desk.listing() == []


# -- approval -------------------------------------------------------------------------------------


async def test_approval_above_the_request_is_refused(desk: Desk) -> None:
    application = await desk.apply(10_000_000)
    problem = assert_problem(await desk.act(application, "approve", amount=10_000_001), 422, "validation_failed")
    assert pointers(problem) == ["/amount"]
    assert (await desk.status(application))["status"] == "under_review"
    assert (await desk.done(application, "approve", amount=10_000_000))["approved_amount"] == 10_000_000


async def test_approval_above_the_cap_left_is_refused_and_changes_nothing(desk: Desk) -> None:
    assert (await desk.issue_direct(20_000_000)).status_code == 201  # 10M of the 30M cap left
    application = await desk.apply(15_000_000)
    problem = assert_problem(await desk.act(application, "approve", amount=10_000_001), 409,
                             "enterprise_cap_exceeded")
    assert (problem["granted"], problem["committed"], problem["remaining"]) == (20_000_000, 0, 10_000_000)
    current = await desk.status(application)
    assert current["status"] == "under_review" and current["approved_amount"] is None
    await desk.assert_clean()
    approved = await desk.done(application, "approve", amount=10_000_000)
    assert approved["status"] == "publicity" and approved["approved_amount"] == 10_000_000


async def test_approval_above_the_uncommitted_budget_is_refused_and_changes_nothing(
    app: Any, client: httpx.AsyncClient
) -> None:
    desk = await open_desk(app, client, budget_total=30_000_000)
    first = await desk.apply(18_000_000)
    await desk.done(first, "approve")  # 12M uncommitted left
    other, other_key = await desk.other_enterprise()
    second = await desk.apply(15_000_000, key=other_key)
    problem = assert_problem(await desk.act(second, "approve", amount=12_000_001), 409, "budget_exhausted")
    assert problem["remaining"] == 12_000_000
    current = await desk.status(second)
    assert current["status"] == "under_review" and current["approved_amount"] is None
    await desk.assert_clean()
    assert (await desk.done(second, "approve", amount=12_000_000))["status"] == "publicity"
    # the budget is now fully committed: not one unit more, for an approval or a direct grant
    assert_problem(await desk.issue_direct(1, other["id"]), 409, "budget_exhausted")
    await desk.assert_clean()


async def test_approval_starts_publicity(desk: Desk, clock: Any) -> None:
    application = await desk.apply(15_000_000)
    clock.advance(hours=3)
    approved = await desk.done(application, "approve", amount=12_000_000)
    assert approved["status"] == "publicity"
    assert approved["approved_amount"] == 12_000_000
    assert ts(approved["approved_at"]) == clock()
    assert ts(approved["publicity_ends_at"]) == clock() + timedelta(days=PUBLICITY_DAYS)
    assert approved["voucher_id"] is None
    steps = [h["to_status"] for h in await desk.history(application)]
    assert steps == ["submitted", "under_review", "approved", "publicity"]
    await desk.assert_clean()


async def test_replayed_approval_commits_once(desk: Desk) -> None:
    application = await desk.apply(18_000_000)
    url = f"/v1/applications/{application['id']}/approve"
    headers = auth(desk.world.operator, **{"Idempotency-Key": "approve-once"})
    first = await desk.client.post(url, json={"amount": 18_000_000}, headers=headers)
    again = await desk.client.post(url, json={"amount": 18_000_000}, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    assert [h["to_status"] for h in await desk.history(application)].count("approved") == 1
    # 18M of the 30M cap committed, not 36M
    assert_problem(await desk.issue_direct(12_000_001), 409, "enterprise_cap_exceeded")
    assert (await desk.issue_direct(12_000_000)).status_code == 201
    await desk.assert_clean()


async def test_approval_without_publicity_issues_at_once(app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    desk = await open_desk(app, client, publicity_days=0, voucher_validity_days=90)
    application = await desk.apply(15_000_000)
    approved = await desk.done(application, "approve", amount=14_000_000)
    assert approved["status"] == "issued" and approved["publicity_ends_at"] is None
    assert ts(approved["issued_at"]) == clock()
    voucher = await desk.world.voucher(approved["voucher_id"])
    assert voucher["face_value"] == 14_000_000
    assert voucher["enterprise_id"] == desk.world.enterprise["id"]
    assert ts(voucher["valid_from"]) == clock()
    assert ts(voucher["expires_at"]) == clock() + timedelta(days=90)
    steps = [h["to_status"] for h in await desk.history(application)]
    assert steps == ["submitted", "under_review", "approved", "issued"]
    await desk.assert_clean()


async def test_direct_issuance_counts_the_approved_commitment(desk: Desk, clock: Any) -> None:
    application = await desk.apply(18_000_000)
    await desk.done(application, "approve")  # 18M of the 30M cap committed
    problem = assert_problem(await desk.issue_direct(12_000_001), 409, "enterprise_cap_exceeded")
    assert (problem["granted"], problem["committed"], problem["remaining"]) == (0, 18_000_000, 12_000_000)
    assert (await desk.issue_direct(12_000_000)).status_code == 201
    clock.advance(days=PUBLICITY_DAYS)
    issued = await desk.status(application)  # the commitment is honoured with the cap fully used
    assert issued["status"] == "issued"
    assert (await desk.world.voucher(issued["voucher_id"]))["face_value"] == 18_000_000
    await desk.assert_clean()


# -- rejection and objections ---------------------------------------------------------------------


async def test_rejection_keeps_the_reason(desk: Desk, clock: Any) -> None:
    application = await desk.apply()
    rejected = await desk.done(application, "reject")
    assert rejected["status"] == "rejected"
    assert rejected["status_reason"] == "outside the programme's scope"
    assert ts(rejected["decided_at"]) == clock() and rejected["approved_amount"] is None
    last = (await desk.history(application))[-1]
    assert (last["from_status"], last["to_status"], last["reason"]) == (
        "under_review", "rejected", "outside the programme's scope")


async def test_an_objection_holds_the_commitment_until_the_office_decides(
        app: Any, client: httpx.AsyncClient) -> None:
    """DESIGN: approval commits; "objection upheld" releases. Lodged, an objection stops
    publicity and returns the application to review with its commitment held: the budget it
    holds is no one else's meanwhile. Rejecting it (the objection upheld) gives back exactly
    that commitment."""
    desk = await open_desk(app, client, budget_total=18_000_000, enterprise_cap=18_000_000,
                           max_per_voucher=18_000_000)
    application = await desk.apply(18_000_000)
    await desk.done(application, "approve")  # the whole budget is committed
    other, _ = await desk.other_enterprise()
    assert assert_problem(await desk.issue_direct(1, other["id"]), 409, "budget_exhausted")["remaining"] == 0
    objected = await desk.done(application, "objection")
    assert objected["status"] == "under_review"
    assert objected["approved_amount"] == 18_000_000 and objected["publicity_ends_at"] is None
    assert objected["decided_at"] is None
    last = (await desk.history(application))[-1]
    assert (last["from_status"], last["to_status"]) == ("publicity", "under_review")
    assert last["reason"] == "the applicant and the provider share a shareholder"
    assert last["details"] == {"objector": "a letter", "held_amount": 18_000_000}
    # The applicant learns what was objected, not who objected or which official acted.
    own = await desk.client.get(f"/v1/applications/{application['id']}/history",
                                headers=auth(desk.world.enterprise_key))
    assert own.status_code == 200, own.text
    steps = own.json()
    assert steps[-1]["details"] == {"held_amount": 18_000_000}
    assert steps[-1]["reason"] == "the applicant and the provider share a shareholder"
    assert steps[-1]["principal_id"] is None and steps[0]["principal_id"] is not None  # its own submission
    notice = (await desk.notice()).json()
    assert notice["items"] == []
    await desk.assert_clean()
    # still held: nothing is left for anyone else while the objection is examined
    assert assert_problem(await desk.issue_direct(1, other["id"]), 409, "budget_exhausted")["remaining"] == 0
    rejected = await desk.done(application, "reject")  # the objection upheld
    assert rejected["status"] == "rejected" and rejected["approved_amount"] is None
    assert (await desk.history(application))[-1]["details"] == {"released_amount": 18_000_000}
    await desk.assert_clean()
    # exactly the commitment came back: a grant of all of it fits, then nothing is left
    assert (await desk.issue_direct(18_000_000, other["id"])).status_code == 201
    third, _ = await desk.other_enterprise()
    assert_problem(await desk.issue_direct(1, third["id"]), 409, "budget_exhausted")


async def test_an_objection_of_the_longest_statement_allowed_is_kept_whole(app, client: httpx.AsyncClient) -> None:
    """2,000 characters are allowed, and kept as received in the application's reason and its
    history step: a prefix had made the reason 2,011, and PostgreSQL refused the objection."""
    desk = await open_desk(app, client)
    application = await desk.apply(1_000_000)
    await desk.done(application, "approve")
    statement = "异议" * 1000
    response = await desk.client.post(f"/v1/applications/{application['id']}/objections",
                                      json={"statement": statement}, headers=auth(desk.world.operator, **fresh_key()))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "under_review" and response.json()["status_reason"] == statement
    assert (await desk.history(application))[-1]["reason"] == statement
    await desk.assert_clean()


async def test_a_baseless_objection_does_not_cost_the_applicant_its_award(
        app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    """The review's case: budget for two, A approved, an objection lodged against A, B and C
    then apply for the rest. Released when lodged, A's budget went to them and A, the objection
    dismissed, was refused `budget_exhausted`. Held, only what is left is theirs, and A is
    approved again and issued."""
    desk = await open_desk(app, client, budget_total=30_000_000, enterprise_cap=15_000_000,
                           max_per_voucher=15_000_000)
    first = await desk.apply(15_000_000)
    await desk.done(first, "approve")
    await desk.done(first, "objection")
    others = [await desk.other_enterprise() for _ in range(2)]
    second = await desk.apply(15_000_000, key=others[0][1])
    third = await desk.apply(15_000_000, key=others[1][1])
    assert (await desk.done(second, "approve"))["status"] == "publicity"
    assert_problem(await desk.act(third, "approve", amount=15_000_000), 409, "budget_exhausted")
    again = await desk.done(first, "approve", amount=15_000_000)  # the objection dismissed
    assert again["status"] == "publicity" and again["approved_amount"] == 15_000_000
    step = [h for h in await desk.history(first) if h["to_status"] == "approved"][-1]
    assert step["details"] == {"approved_amount": 15_000_000, "held_amount": 15_000_000}
    await desk.assert_clean()
    clock.advance(days=PUBLICITY_DAYS)
    issued = await desk.status(first)
    assert issued["status"] == "issued"
    assert (await desk.world.voucher(issued["voucher_id"]))["face_value"] == 15_000_000
    await desk.assert_clean()


async def test_approving_again_for_more_than_held_needs_the_budget_and_the_cap(
        app: Any, client: httpx.AsyncClient) -> None:
    """Only the difference moves, in the cap period of the first approval; refused, the
    application stays under review, its commitment still held."""
    desk = await open_desk(app, client, budget_total=16_000_000, enterprise_cap=16_000_000,
                           max_per_voucher=16_000_000)
    other, _ = await desk.other_enterprise()
    assert (await desk.issue_direct(4_000_000, other["id"])).status_code == 201
    application = await desk.apply(15_000_000)
    await desk.done(application, "approve", amount=10_000_000)  # 2,000,000 left in the budget
    await desk.done(application, "objection")
    refused = assert_problem(await desk.act(application, "approve", amount=15_000_000), 409, "budget_exhausted")
    assert refused["remaining"] == 2_000_000
    held = await desk.status(application)
    assert (held["status"], held["approved_amount"]) == ("under_review", 10_000_000)
    await desk.assert_clean()
    more = await desk.done(application, "approve", amount=12_000_000)
    assert more["approved_amount"] == 12_000_000
    await desk.assert_clean()
    assert_problem(await desk.issue_direct(1, other["id"]), 409, "budget_exhausted")


async def test_a_closed_programme_honours_an_approval_an_objection_interrupted(desk: Desk) -> None:
    """A closed programme honours its approvals in publicity: an objection found baseless after
    the close must not end one (the review found it could only be rejected then). Approving it
    again for no more than it holds is allowed; for more, the programme is not open."""
    application = await desk.apply(18_000_000)
    await desk.done(application, "approve", amount=15_000_000)
    closed = await desk.client.post(f"/v1/programmes/{desk.programme_id}/close", headers=auth(desk.world.operator))
    assert closed.status_code == 200, closed.text
    await desk.done(application, "objection")
    assert_problem(await desk.act(application, "approve", amount=15_000_001), 409, "programme_not_open")
    less = await desk.done(application, "approve", amount=12_000_000)
    assert less["status"] == "publicity" and less["approved_amount"] == 12_000_000
    await desk.assert_clean()  # 3,000,000 went back to the pool and the cap


async def test_objection_after_publicity_is_too_late(desk: Desk, clock: Any) -> None:
    application = await desk.apply(15_000_000)
    await desk.done(application, "approve")
    clock.advance(days=PUBLICITY_DAYS, seconds=1)
    problem = assert_invalid_transition(await desk.act(application, "objection"), "issued")
    assert problem["allowed"] == []
    issued = await desk.status(application)
    assert issued["status"] == "issued" and issued["approved_amount"] == 15_000_000
    voucher = await desk.world.voucher(issued["voucher_id"])
    assert voucher["face_value"] == 15_000_000 and voucher["status"] == "active"
    await desk.assert_clean()


async def test_reapproval_after_objection(desk: Desk, clock: Any) -> None:
    application = await desk.apply(18_000_000)
    await desk.done(application, "approve")
    clock.advance(days=1)
    await desk.done(application, "objection")
    clock.advance(days=1)
    again = await desk.done(application, "approve", amount=15_000_000)
    assert again["status"] == "publicity" and again["approved_amount"] == 15_000_000
    assert ts(again["publicity_ends_at"]) == clock() + timedelta(days=PUBLICITY_DAYS)
    await desk.assert_clean()
    clock.advance(days=PUBLICITY_DAYS)
    issued = await desk.status(application)
    assert issued["status"] == "issued"
    assert (await desk.world.voucher(issued["voucher_id"]))["face_value"] == 15_000_000
    steps = [h["to_status"] for h in await desk.history(application)]
    assert steps == ["submitted", "under_review", "approved", "publicity", "under_review", "approved", "publicity",
                     "issued"]
    # the cap counts the 15M granted, not the 18M first approved
    assert_problem(await desk.issue_direct(15_000_001), 409, "enterprise_cap_exceeded")
    assert (await desk.issue_direct(15_000_000)).status_code == 201


# -- withdrawal -----------------------------------------------------------------------------------


async def test_enterprise_withdraws_under_review(desk: Desk, clock: Any) -> None:
    application = await desk.apply()
    withdrawn = await desk.done(application, "withdraw")
    assert withdrawn["status"] == "withdrawn"
    assert withdrawn["status_reason"] == "project postponed"
    assert ts(withdrawn["decided_at"]) == clock()
    first, *_, last = await desk.history(application)
    assert (last["from_status"], last["to_status"]) == ("under_review", "withdrawn")
    assert last["principal_id"] == first["principal_id"]  # the applicant itself


async def test_withdrawal_after_an_objection_leaves_nothing_committed(desk: Desk) -> None:
    application = await desk.apply(18_000_000)
    await desk.done(application, "approve")
    await desk.done(application, "objection")
    withdrawn = await desk.done(application, "withdraw")
    assert withdrawn["status"] == "withdrawn" and withdrawn["approved_amount"] is None
    assert (await desk.history(application))[-1]["details"] == {"released_amount": 18_000_000}
    await desk.assert_clean()
    assert (await desk.issue_direct(CAP - MAX_PER_VOUCHER)).status_code == 201
    assert (await desk.issue_direct(MAX_PER_VOUCHER)).status_code == 201  # the whole cap is free again


async def test_withdrawal_during_publicity_is_refused(desk: Desk) -> None:
    application = await desk.apply(15_000_000)
    await desk.done(application, "approve")
    problem = assert_invalid_transition(await desk.act(application, "withdraw"), "publicity")
    assert problem["allowed"] == ["issued", "under_review"]
    current = await desk.status(application)
    assert current["status"] == "publicity" and current["approved_amount"] == 15_000_000
    await desk.assert_clean()


async def test_only_the_applicant_can_withdraw(desk: Desk) -> None:
    application = await desk.apply()
    assert_problem(await desk.act(application, "withdraw", key=desk.world.operator), 403, "insufficient_scope")
    _, other_key = await desk.other_enterprise()
    assert_problem(await desk.act(application, "withdraw", key=other_key), 404, "not_found")
    assert (await desk.status(application))["status"] == "under_review"


# -- the illegal-transition matrix ------------------------------------------------------------------

LEGAL = {"under_review": {"approve", "reject", "withdraw"}, "publicity": {"objection"}}
ALLOWED = {"under_review": ["approved", "rejected", "withdrawn"], "publicity": ["issued", "under_review"]}


@pytest.mark.parametrize("state", ["under_review", "publicity", "issued", "rejected", "withdrawn", "ineligible"])
async def test_illegal_transitions_are_refused_and_change_nothing(desk: Desk, clock: Any, state: str) -> None:
    application = await reach(desk, state, clock)
    illegal = [a for a in (*REVIEW_ACTIONS, "withdraw") if a not in LEGAL.get(state, set())]
    assert illegal
    for action in illegal:
        problem = assert_invalid_transition(await desk.act(application, action, amount=1), state)
        assert problem["allowed"] == ALLOWED.get(state, []), (action, problem)
        after = await desk.status(application)
        assert (after["status"], after["approved_amount"]) == (state, application["approved_amount"]), action
    await desk.assert_clean()


async def test_every_action_after_publicity_ended_sees_issued(desk: Desk, clock: Any) -> None:
    """Nobody has read it since: the stored status is still publicity, but it is issued."""
    application = await desk.apply(15_000_000)
    await desk.done(application, "approve")
    clock.advance(days=PUBLICITY_DAYS)
    for action in (*REVIEW_ACTIONS, "withdraw"):
        problem = assert_invalid_transition(await desk.act(application, action, amount=1), "issued")
        assert problem["allowed"] == [], action
    issued = await desk.status(application)
    assert issued["status"] == "issued" and issued["approved_amount"] == 15_000_000
    assert (await desk.world.voucher(issued["voucher_id"]))["face_value"] == 15_000_000
    await desk.assert_clean()


# -- tenancy and roles ------------------------------------------------------------------------------


async def test_another_enterprise_sees_nothing_of_it(desk: Desk) -> None:
    application = await desk.apply()
    _, other_key = await desk.other_enterprise()
    assert_problem(await desk.read(application, key=other_key), 404, "not_found")
    history = await desk.client.get(f"/v1/applications/{application['id']}/history", headers=auth(other_key))
    assert_problem(history, 404, "not_found")
    assert await desk.listing(other_key) == []
    assert await desk.listing(other_key, enterprise_id=desk.world.enterprise["id"]) == []
    assert [a["id"] for a in await desk.listing(desk.world.enterprise_key)] == [application["id"]]


async def test_provider_keys_cannot_read_applications(desk: Desk) -> None:
    application = await desk.apply()
    provider = auth(desk.world.provider_key)
    assert_problem(await desk.client.get("/v1/applications", headers=provider), 403, "insufficient_scope")
    assert_problem(await desk.read(application, key=desk.world.provider_key), 403, "insufficient_scope")


async def test_auditor_reads_but_cannot_review(desk: Desk) -> None:
    application = await desk.apply()
    read = await desk.read(application, key=desk.world.auditor)
    assert read.status_code == 200 and read.json()["id"] == application["id"]
    assert [a["id"] for a in await desk.listing(desk.world.auditor)] == [application["id"]]
    for action in REVIEW_ACTIONS:
        assert_problem(await desk.act(application, action, key=desk.world.auditor), 403, "insufficient_scope")
    assert (await desk.status(application))["status"] == "under_review"
    await desk.assert_clean()


async def test_only_enterprises_submit(desk: Desk) -> None:
    for key in (desk.world.operator, desk.world.auditor, desk.world.provider_key):
        assert_problem(await desk.submit(key=key), 403, "insufficient_scope")
    assert await desk.listing() == []


# -- the public publicity notice ------------------------------------------------------------------


async def test_publicity_notice_shows_only_what_is_public(desk: Desk, clock: Any) -> None:
    application = await desk.apply(15_000_000)
    await desk.apply(10_000_000, key=(await desk.other_enterprise())[1])  # under review: not public
    approved = await desk.done(application, "approve", amount=12_000_000)
    response = await desk.notice()  # no Authorization header at all
    assert response.status_code == 200, response.text
    notice = response.json()
    programme = desk.world.programme
    assert (notice["programme_code"], notice["programme_name"], notice["unit"]) == (
        programme["code"], programme["name"], "CNY")
    assert len(notice["items"]) == 1
    item = notice["items"][0]
    assert set(item) == {"enterprise_name", "uscc_masked", "approved_amount", "publicity_ends_at"}
    uscc = desk.world.enterprise["uscc"]
    assert item["uscc_masked"] == uscc[:6] + "********" + uscc[-4:]
    assert item["enterprise_name"] == desk.world.enterprise["name"]
    assert item["approved_amount"] == 12_000_000
    assert ts(item["publicity_ends_at"]) == ts(approved["publicity_ends_at"])
    clock.advance(days=PUBLICITY_DAYS, seconds=-1)
    assert len((await desk.notice()).json()["items"]) == 1
    clock.advance(seconds=1)
    assert (await desk.notice()).json()["items"] == []


async def test_publicity_notice_of_a_draft_programme_is_not_found(desk: Desk) -> None:
    draft = await create(desk.client, desk.world.operator, "/v1/programmes", programme_payload())
    assert_problem(await desk.notice(draft["id"]), 404, "not_found")
    assert_problem(await desk.notice(str(uuid.uuid4())), 404, "not_found")


# -- the end of publicity ---------------------------------------------------------------------------


async def test_publicity_end_issues_the_voucher_on_read(desk: Desk, clock: Any) -> None:
    application = await desk.apply(15_000_000)
    approved = await desk.done(application, "approve")
    ends = ts(approved["publicity_ends_at"])
    clock.advance(days=PUBLICITY_DAYS, seconds=-1)
    assert (await desk.status(application))["status"] == "publicity"
    clock.advance(days=2)  # read late: validity still runs from the end of publicity
    read = await desk.read(application, key=desk.world.enterprise_key)
    assert read.status_code == 200, read.text
    issued = read.json()
    assert issued["status"] == "issued" and ts(issued["issued_at"]) == clock()
    voucher = await desk.world.voucher(issued["voucher_id"])
    assert voucher["face_value"] == 15_000_000
    assert ts(voucher["valid_from"]) == ends
    assert ts(voucher["expires_at"]) == ends + timedelta(days=VALIDITY_DAYS)
    assert (await desk.status(application))["voucher_id"] == issued["voucher_id"]  # issued once
    await desk.assert_clean()


async def test_closing_the_programme_honours_approvals_in_publicity(desk: Desk, clock: Any) -> None:
    application = await desk.apply(15_000_000)
    await desk.done(application, "approve")
    closed = await desk.client.post(f"/v1/programmes/{desk.programme_id}/close", headers=auth(desk.world.operator))
    assert closed.status_code == 200, closed.text
    assert len((await desk.notice()).json()["items"]) == 1  # still public while it runs
    clock.advance(days=PUBLICITY_DAYS)
    issued = await desk.status(application)
    assert issued["status"] == "issued"
    assert (await desk.world.voucher(issued["voucher_id"]))["face_value"] == 15_000_000
    await desk.assert_clean()


async def test_listing_issues_the_due_vouchers(desk: Desk, clock: Any) -> None:
    _, other_key = await desk.other_enterprise()
    first = await desk.apply(15_000_000)
    second = await desk.apply(10_000_000, key=other_key)
    for application in (first, second):
        await desk.done(application, "approve")
    clock.advance(days=PUBLICITY_DAYS)
    listed = {a["id"]: a for a in await desk.listing(programme_id=desk.programme_id)}
    assert {a["status"] for a in listed.values()} == {"issued"}
    for application in (first, second):
        voucher = await desk.world.voucher(listed[application["id"]]["voucher_id"])
        assert voucher["face_value"] == application["requested_amount"]
    await desk.assert_clean()


async def test_end_publicity_job_issues_due_applications_once(app: Any, desk: Desk, clock: Any) -> None:
    from services.voucher import jobs

    application = await desk.apply(15_000_000)
    approved = await desk.done(application, "approve")
    assert await jobs.run_once(app.state.database, "end-publicity", clock()) == 0
    clock.advance(days=PUBLICITY_DAYS + 1)
    assert await jobs.run_once(app.state.database, "end-publicity", clock()) == 1
    assert await jobs.run_once(app.state.database, "end-publicity", clock()) == 0
    issued = await desk.status(application)
    assert issued["status"] == "issued"
    voucher = await desk.world.voucher(issued["voucher_id"])
    assert ts(voucher["valid_from"]) == ts(approved["publicity_ends_at"])
    assert [h["to_status"] for h in await desk.history(application)].count("issued") == 1
    await desk.assert_clean()


# -- response language ------------------------------------------------------------------------------


async def test_reasons_follow_accept_language(app: Any, client: httpx.AsyncClient) -> None:
    rules = {"all": [{"id": "region", "check": "region_in", "regions": ["310000"]},
                     {"id": "small-team", "check": "headcount_at_most", "value": 10}]}
    desk = await open_desk(app, client, eligibility_rules=rules)
    zh = await desk.submit(**{"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert zh.status_code == 201, zh.text
    assert zh.headers["content-language"] == "zh-CN"
    assert [f["reason"] for f in zh.json()["eligibility"]["failed"]] == ["注册地 330110 不属于 310000", "员工人数 20 超过 10"]
    assert zh.json()["eligibility"]["result"]["reason"] == "2 项条件中有 2 项不满足"
    english = await desk.read(zh.json())
    assert english.headers["content-language"] == "en"
    assert [f["reason"] for f in english.json()["eligibility"]["failed"]] == [
        "region 330110 is not in 310000", "headcount 20 > 10"]
    again = await desk.read(zh.json(), **{"Accept-Language": "zh-CN"})
    assert again.headers["content-language"] == "zh-CN"
    assert again.json()["eligibility"]["failed"] == zh.json()["eligibility"]["failed"]


async def test_application_history_is_append_only_in_the_database(desk: Desk, clock: Any, database_url: str) -> None:
    """The history an applicant and auditors read cannot be rewritten behind the service."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    from services.voucher.settings import sync_database_url

    await reach(desk, "under_review", clock)
    engine = create_engine(sync_database_url(database_url))
    try:
        for statement in ("UPDATE application_transition SET reason = 'rewritten'",
                          "DELETE FROM application_transition"):
            with engine.connect() as conn, pytest.raises(DBAPIError, match="never changed or removed"):
                conn.execute(text(statement))
                conn.commit()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM application_transition")).scalar() == 2
    finally:
        engine.dispose()


async def test_a_voucher_approved_in_one_cap_year_counts_there_when_issued_across_the_year_end(
        app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    """The cap period a grant counts against is the one it was decided in: for an application,
    its approval's, where budget and cap were committed, even when publicity ends in the next
    year. The new year's cap is whole (docs/decisions.md, "Issuance locks...")."""
    clock.current = datetime(2026, 12, 30, 2, 0, tzinfo=UTC)  # 10:00 on 30 December in Beijing
    desk = await open_desk(app, client, eligibility_rules=None)
    application = await desk.apply(MAX_PER_VOUCHER)
    await desk.done(application, "approve")
    clock.advance(days=PUBLICITY_DAYS)  # publicity ends on 4 January 2027
    issued = await desk.status(application)
    assert issued["status"] == "issued", issued
    voucher = await desk.world.voucher(issued["voucher_id"])
    assert voucher["issued_at"].startswith("2027-01-04") and voucher["period_key"] == "2026", voucher
    for face_value in (MAX_PER_VOUCHER, CAP - MAX_PER_VOUCHER):  # 2027's whole cap
        response = await desk.issue_direct(face_value)
        assert response.status_code == 201 and response.json()["period_key"] == "2027", response.text
    over = await desk.issue_direct(1)
    assert over.status_code == 409, over.text
    await desk.assert_clean()


async def objected_over_the_new_year(app: Any, client: httpx.AsyncClient, clock: Any) -> tuple[Desk, dict[str, Any]]:
    """Approved for 5,000,000 of 18,000,000 on 30 December (Beijing), objected to on the 31st;
    the clock then on 3 January 2027. The cap is 20,000,000 a year."""
    clock.current = datetime(2026, 12, 30, 2, 0, tzinfo=UTC)  # 10:00 on 30 December in Beijing
    desk = await open_desk(app, client, eligibility_rules=None, enterprise_cap=20_000_000,
                           max_per_voucher=20_000_000)
    application = await desk.apply(18_000_000)
    await desk.done(application, "approve", amount=5_000_000)
    clock.advance(days=1)
    await desk.done(application, "objection")
    clock.advance(days=3)
    return desk, application


async def test_approved_again_for_more_in_the_next_cap_year_counts_whole_in_that_year(
        app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    """The review's case: approved for 5,000,000 on 30 December, objected to, approved again for
    18,000,000 in January once 2027's cap was spent. Kept in 2026, the increase decided in 2027
    escaped 2027's cap. The whole approval now counts in the year it was last decided for more:
    2026's cap gets the 5,000,000 back, and 2027's full cap refuses it. For no more than it
    holds, the approval stays in 2026."""
    desk, application = await objected_over_the_new_year(app, client, clock)
    assert (await desk.issue_direct(20_000_000)).json()["period_key"] == "2027"
    refused = assert_problem(await desk.act(application, "approve", amount=18_000_000), 409, "enterprise_cap_exceeded")
    assert refused["period"] == "2027"
    held = await desk.status(application)
    assert (held["status"], held["approved_amount"]) == ("under_review", 5_000_000)
    await desk.assert_clean()
    same = await desk.done(application, "approve", amount=5_000_000)  # no more than held: stays in 2026
    assert same["status"] == "publicity"
    await desk.assert_clean()
    clock.advance(days=PUBLICITY_DAYS)
    issued = await desk.status(application)
    assert (await desk.world.voucher(issued["voucher_id"]))["period_key"] == "2026"


async def test_approved_again_for_more_in_the_next_cap_year_moves_there(
        app: Any, client: httpx.AsyncClient, clock: Any) -> None:
    desk, application = await objected_over_the_new_year(app, client, clock)
    more = await desk.done(application, "approve", amount=18_000_000)
    assert more["approved_amount"] == 18_000_000
    step = [h for h in await desk.history(application) if h["to_status"] == "approved"][-1]
    assert step["details"] == {"approved_amount": 18_000_000, "held_amount": 5_000_000, "period_key": "2027"}
    await desk.assert_clean()  # 2026's committed cap is 0 again, 2027's is 18,000,000
    assert (await desk.issue_direct(2_000_000)).json()["period_key"] == "2027"
    assert_problem(await desk.issue_direct(1), 409, "enterprise_cap_exceeded")
    clock.advance(days=PUBLICITY_DAYS)
    issued = await desk.status(application)
    assert (await desk.world.voucher(issued["voucher_id"]))["period_key"] == "2027"
    await desk.assert_clean()


async def test_one_contract_typed_with_other_brackets_is_refused(app, client: httpx.AsyncClient) -> None:
    """A document number's year is written 〔2026〕 by the standard and typed in other brackets
    as often: each way is the same contract (an independent review reserved it four times)."""
    desk = await open_desk(app, client)
    provider_id = desk.world.provider["id"]
    first = await desk.apply(10_000_000, contracts=[contract(provider_id, "浙杭合〔2026〕第12号")])
    assert first["status"] == "under_review"
    for typed in ("浙杭合[2026]第12号", "浙杭合(2026)第12号", "浙杭合【2026】第12号", "浙杭合（2026）第12号"):
        _, key = await desk.other_enterprise()
        refused = await desk.submit(10_000_000, key=key, contracts=[contract(provider_id, typed)])
        assert_problem(refused, 409, "contract_already_used")


async def test_a_purpose_an_objector_and_a_voucher_reference_are_text_a_person_writes(
        app: Any, client: httpx.AsyncClient) -> None:
    """An application's purpose, an objector and a voucher's reference end up on the office's
    pages, in exports and in audit events: a right-to-left override, a bell or an escape
    sequence, and a purpose of only spaces had been stored and echoed as sent (an independent
    review). Refused, naming the field; what a person writes (Chinese, several lines of purpose)
    is kept."""
    desk = await open_desk(app, client)
    for purpose in ("   \u200b\n", "fine\x07-tuning", "\x1b[31m"):
        body = {"programme_id": desk.programme_id, "requested_amount": 10_000_000, "purpose": purpose}
        refused = await client.post("/v1/applications", json=body,
                                    headers=auth(desk.world.enterprise_key, **fresh_key()))
        assert [e["pointer"] for e in assert_problem(refused, 422, "validation_failed")["errors"]] == ["/purpose"]
    application = await desk.apply()
    await desk.done(application, "approve")
    for objector in ("\x1b[31m\u202eevil", "a\nletter", "\u202e"):
        refused = await client.post(f"/v1/applications/{application['id']}/objections",
                                    json={"statement": "a shared shareholder", "objector": objector},
                                    headers=auth(desk.world.operator, **fresh_key()))
        assert [e["pointer"] for e in assert_problem(refused, 422, "validation_failed")["errors"]] == ["/objector"]
    assert (await desk.status(application))["status"] == "publicity"  # every refusal changed nothing
    kept = await client.post(f"/v1/applications/{application['id']}/objections",
                             json={"statement": "a shared shareholder", "objector": " 匿名来信 "},
                             headers=auth(desk.world.operator, **fresh_key()))
    assert kept.status_code == 200, kept.text
    assert (await desk.history(application))[-1]["details"]["objector"] == "匿名来信"
    for reference in ("\x1b\u202e   ", "line\nbreak"):
        body = {"programme_id": desk.programme_id, "enterprise_id": desk.world.enterprise["id"],
                "face_value": 1_000_000, "reference": reference}
        refused = await client.post("/v1/vouchers", json=body, headers=auth(desk.world.operator, **fresh_key()))
        assert [e["pointer"] for e in assert_problem(refused, 422, "validation_failed")["errors"]] == ["/reference"]
        bulk = await client.post("/v1/vouchers/bulk", json={"programme_id": desk.programme_id, "grants": [
            {"enterprise_id": desk.world.enterprise["id"], "face_value": 1_000_000, "reference": reference}]},
            headers=auth(desk.world.operator, **fresh_key()))
        assert [e["pointer"] for e in assert_problem(bulk, 422, "validation_failed")["errors"]] == [
            "/grants/0/reference"]
    none = await client.post("/v1/vouchers", json={  # "" is no reference, as before
        "programme_id": desk.programme_id, "enterprise_id": desk.world.enterprise["id"], "face_value": 1_000_000,
        "reference": ""}, headers=auth(desk.world.operator, **fresh_key()))
    assert none.status_code == 201 and none.json()["reference"] is None, none.text
