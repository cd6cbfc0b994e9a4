"""The sandbox over HTTP only, against a real server in sandbox mode (issue 16's acceptance):
the clock moves and every time-dependent rule follows — a hold's TTL, a settlement period,
publicity, a voucher's expiry, the enterprise's cap year in Asia/Shanghai."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.voucher.clock import system_clock
from tests.live_server import LiveServer
from tests.world import World, build_world, hold_body

pytestmark = pytest.mark.timeout(180)
BEIJING = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def clock():  # the world is built on real time, which is where the sandbox clock starts
    return system_clock


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Api:
    def __init__(self, http: httpx.Client, world: World) -> None:
        self.http, self.world = http, world

    def call(self, method: str, path: str, key: str, body: Any = None, status: int = 200, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        if method == "POST":
            headers["Idempotency-Key"] = str(uuid.uuid4())
        response = self.http.request(method, path, json=body, headers=headers, params=params or None)
        assert response.status_code == status, (path, response.text)
        assert "voucher-sandbox-clock" in response.headers
        return response.json()

    def move(self, **body: str) -> datetime:
        return _at(self.call("POST", "/v1/sandbox/clock", self.world.operator, body)["now"])

    def now(self) -> datetime:
        return _at(self.call("GET", "/v1/sandbox/clock", self.world.provider_key)["now"])

    def balances(self, voucher: dict[str, Any]) -> dict[str, int]:
        return self.call("GET", f"/v1/vouchers/{voucher['id']}", self.world.operator)["balances"]  # type: ignore[no-any-return]

    def issue(self, face_value: int, status: int = 201) -> Any:
        return self.call("POST", "/v1/vouchers", self.world.operator, {
            "programme_id": self.world.programme["id"], "enterprise_id": self.world.enterprise["id"],
            "face_value": face_value}, status=status)

    def redeem(self, voucher: dict[str, Any], order: str, amount: int, path: str = "/v1/redemptions") -> Any:
        body = hold_body(voucher["code"], self.world.enterprise["uscc"], order, [("accelerator:domestic", amount)])
        return self.call("POST", path, self.world.provider_key, body, status=201)


@pytest.fixture
async def world(app, client: httpx.AsyncClient) -> World:
    rules = {"all": [{"id": "region", "check": "region_in", "regions": ["330110"]}]}
    return await build_world(app, client, eligibility_rules=rules, publicity_days=5, budget_total=1_000_000_000,
                             enterprise_cap=30_000_000, max_per_voucher=30_000_000, tiers=[])


def test_time_passes_over_http_in_a_sandbox_server(database_url: str, world: World) -> None:
    with LiveServer(database_url, env={"VOUCHER_SANDBOX": "true"}) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        api = Api(http, world)
        trial = f"/v1/programmes/{world.programme['id']}/trial-balance"

        # The cap year: used up late on 31 December, it starts again at 16:00 UTC, midnight in Beijing.
        year = api.now().astimezone(BEIJING).year
        eve = datetime(year, 12, 31, 15, 59, tzinfo=UTC)
        assert api.move(to=eve.isoformat()) == eve
        first = api.issue(30_000_000)
        assert first["period_key"] == str(year)
        assert api.issue(1, status=409)["code"] == "enterprise_cap_exceeded"
        assert api.move(to=(eve + timedelta(minutes=1)).isoformat()).astimezone(BEIJING).year == year + 1
        voucher = api.issue(30_000_000)
        assert voucher["period_key"] == str(year + 1)

        # A hold's TTL: 31 minutes on, every read shows the value available again.
        held = api.redeem(voucher, "PO-HOLD", 1_000_000, path="/v1/redemptions/holds")
        assert api.balances(voucher) == {"available": 29_700_000, "held": 300_000, "used": 0}
        api.move(advance="PT31M")
        assert api.balances(voucher) == {"available": 30_000_000, "held": 0, "used": 0}
        quote = api.call("POST", "/v1/vouchers/lookup", world.provider_key,
                         {"code": voucher["code"], "enterprise_uscc": world.enterprise["uscc"]})
        assert quote["available"] == 30_000_000
        lines = api.call("GET", trial, world.auditor)["accounts"]
        mine = {a["kind"]: a["balance"] for a in lines if a["voucher_id"] == voucher["id"]}
        assert (mine["voucher_available"], mine["voucher_held"]) == (30_000_000, 0)
        redemption = api.call("GET", f"/v1/redemptions/{held['id']}", world.provider_key)
        assert (redemption["status"], redemption["void_reason"]) == ("voided", "expired")
        refused = api.call("POST", f"/v1/redemptions/{held['id']}/capture", world.provider_key, {}, status=409)
        assert (refused["code"], refused["current_status"]) == ("hold_not_active", "voided")  # the move posted it

        # A settlement for the day the move closed.
        redeemed = api.redeem(voucher, "PO-SETTLE", 1_000_000)
        day = _at(redeemed["captured_at"]).astimezone(BEIJING).date().isoformat()
        settle = {"provider_id": world.provider["id"], "programme_id": world.programme["id"],
                  "period_start": day, "period_end": day}
        assert api.call("POST", "/v1/settlements", world.operator, settle, status=422)["code"] == "validation_failed"
        api.move(advance_to="next_day")  # the day is over ...
        assert api.call("POST", "/v1/settlements", world.operator, settle, status=422)["code"] == "validation_failed"
        api.move(advance="PT5M")  # ... and its captures have had time to commit
        settlement = api.call("POST", "/v1/settlements", world.operator, settle, status=201)
        assert settlement["total"] == 300_000

        # Publicity: five days on, the approved application's voucher is issued.
        other = api.call("POST", "/v1/enterprises", world.operator, {
            "uscc": "91330110MA2L9E5U38", "name": "杭州样例科技有限公司", "region_code": "330110", "headcount": 20,
            "annual_revenue": 500_000_000, "founded_on": "2020-05-01", "certifications": ["sme"]}, status=201)
        other_key = api.call("POST", "/v1/api-keys", world.operator, {
            "role": "enterprise", "name": "sme", "enterprise_id": other["id"]}, status=201)["key"]
        application = api.call("POST", "/v1/applications", other_key, {
            "programme_id": world.programme["id"], "requested_amount": 10_000_000, "purpose": "training"},
            status=201)
        approved = api.call("POST", f"/v1/applications/{application['id']}/approve", world.operator,
                            {"amount": 10_000_000})
        assert approved["status"] == "publicity"
        api.move(advance="P5DT1M")
        issued = api.call("GET", f"/v1/applications/{application['id']}", world.operator)
        assert issued["status"] == "issued" and issued["voucher_id"]

        # Expiry: past expires_at the voucher is expired, and a refund goes back to the pool.
        api.move(to=voucher["expires_at"])
        read = api.call("GET", f"/v1/vouchers/{voucher['id']}", world.operator)
        assert read["status"] == "expired"
        refund = api.call("POST", f"/v1/redemptions/{redeemed['id']}/refunds", world.provider_key,
                          {"amount": 100_000, "reason": "late return"}, status=201)
        assert refund["destination"] == "pool"

        recon = api.call("GET", "/v1/ledger/reconciliation", world.auditor)
        assert recon["is_clean"], recon
        moves = api.call("GET", "/v1/audit/events", world.auditor, action="sandbox.clock_moved", limit=50)["items"]
        assert len(moves) == 7
