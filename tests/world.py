"""A small programme office for value-moving tests: an open compute programme, an approved
provider enrolled in it, an enterprise, and keys for each role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.support import (
    auth,
    create,
    enterprise_payload,
    make_key,
    programme_payload,
    provider_payload,
)


@dataclass
class World:
    client: httpx.AsyncClient
    operator: str
    auditor: str
    programme: dict[str, Any]
    enterprise: dict[str, Any]
    enterprise_key: str
    provider: dict[str, Any]
    provider_key: str

    async def issue(self, face_value: int = 10_000_000, **extra: Any) -> dict[str, Any]:
        body = {"programme_id": self.programme["id"], "enterprise_id": self.enterprise["id"],
                "face_value": face_value, **extra}
        return await create(self.client, self.operator, "/v1/vouchers", body)

    async def hold(
        self, voucher: dict[str, Any], amount: int, *, order: str, key: str | None = None,
        category: str = "accelerator:domestic", path: str = "/v1/redemptions/holds",
        provider_key: str | None = None, uscc: str | None = None,
    ) -> httpx.Response:
        return await self.client.post(
            path,
            json=hold_body(voucher["code"], uscc or self.enterprise["uscc"], order, [(category, amount)]),
            headers=auth(provider_key or self.provider_key, **{"Idempotency-Key": key or f"hold-{order}"}),
        )

    async def voucher(self, voucher_id: str, key: str | None = None) -> dict[str, Any]:
        response = await self.client.get(f"/v1/vouchers/{voucher_id}", headers=auth(key or self.operator))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def computation(self, redemption: httpx.Response | dict[str, Any], key: str | None = None) -> dict[str, Any]:
        """A redemption's whole computation, as the office (or `key`) reads it: a provider's own
        answer leaves out the enterprise's figures across providers."""
        body = redemption.json() if isinstance(redemption, httpx.Response) else redemption
        response = await self.client.get(f"/v1/redemptions/{body['id']}", headers=auth(key or self.operator))
        assert response.status_code == 200, response.text
        return response.json()["computation"]  # type: ignore[no-any-return]

    async def post(self, path: str, body: dict[str, Any] | None = None, *, key: str | None = None,
                   idem: str | None = None) -> httpx.Response:
        headers = auth(key or self.provider_key, **{"Idempotency-Key": idem or str(uuid.uuid4())})
        return await self.client.post(path, json=body or {}, headers=headers)

    async def refunded_to_the_pool(self, clock: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """A voucher of 300,000 used up by one redeem, and 100,000 of it refunded after the
        voucher's validity (`clock` moved past it): to the programme's pool. The voucher, the
        redemption and the refund."""
        voucher = await self.issue(300_000)
        redeemed = (await self.hold(voucher, 1_000_000, order="PO-1", path="/v1/redemptions")).json()
        assert redeemed["captured_amount"] == 300_000
        clock.current = datetime.fromisoformat(voucher["expires_at"]) + timedelta(seconds=1)
        refund = await self.post(f"/v1/redemptions/{redeemed['id']}/refunds", {"amount": 100_000, "reason": "late"})
        assert refund.status_code == 201 and refund.json()["destination"] == "pool", refund.text
        return voucher, redeemed, refund.json()

    async def reconciliation(self) -> dict[str, Any]:
        response = await self.client.get("/v1/ledger/reconciliation", headers=auth(self.auditor))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


def line(category: str, amount: int) -> dict[str, Any]:
    if category.startswith("model:"):
        return {"category": category, "amount": amount, "model": "qwen-max", "tokens": 1000}
    return {"category": category, "amount": amount, "accelerator": "Ascend 910B", "hours_milli": 1000}


def hold_body(code: str, uscc: str, order: str, items: list[tuple[str, int]]) -> dict[str, Any]:
    return {"voucher_code": code, "enterprise_uscc": uscc, "order_reference": order,
            "line_items": [line(c, a) for c, a in items]}


async def build_world(app: Any, client: httpx.AsyncClient, **programme: Any) -> World:
    operator = await make_key(app, "operator")
    auditor = await make_key(app, "auditor")
    body = programme_payload(**{"tiers": [], "stacking_ceiling_bps": 10_000, **programme})
    prog = await create(client, operator, "/v1/programmes", body)
    opened = await client.post(f"/v1/programmes/{prog['id']}/open", headers=auth(operator))
    assert opened.status_code == 200, opened.text
    enterprise = await create(client, operator, "/v1/enterprises", enterprise_payload())
    provider = await create(client, operator, "/v1/providers", provider_payload())
    approved = await client.post(f"/v1/providers/{provider['id']}/approve", json={"reason": "ok"}, headers=auth(operator))
    assert approved.status_code == 200, approved.text
    enrolled = await client.put(f"/v1/programmes/{prog['id']}/enrolments/{provider['id']}", headers=auth(operator))
    assert enrolled.status_code == 201, enrolled.text
    return World(
        client=client, operator=operator, auditor=auditor, programme=opened.json(), enterprise=enterprise,
        enterprise_key=await make_key(app, "enterprise", enterprise_id=uuid.UUID(enterprise["id"])),
        provider=provider, provider_key=await make_key(app, "provider", provider_id=uuid.UUID(provider["id"])),
    )
