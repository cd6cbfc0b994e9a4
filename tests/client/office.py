"""A programme office built through the client only (the same steps as tests/world.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voucher_client import AsyncVoucherClient

from tests.support import enterprise_payload, programme_payload, provider_payload


@dataclass
class Office:
    programme: dict[str, Any]
    enterprise: dict[str, Any]
    provider: dict[str, Any]
    enterprise_key: str
    provider_key: str
    auditor_key: str


async def build_office(operator: AsyncVoucherClient) -> Office:
    programme = await operator.create_programme(programme_payload(tiers=[], stacking_ceiling_bps=10_000))
    programme = await operator.open_programme(programme["id"])
    enterprise = await operator.register_enterprise(enterprise_payload())
    provider = await operator.register_provider(provider_payload())
    await operator.approve_provider(provider["id"], {"reason": "documents checked"})
    enrolment = await operator.enrol_provider(programme["id"], provider["id"])
    assert enrolment["provider_id"] == provider["id"]
    keys = {}
    for role, extra in (("enterprise", {"enterprise_id": enterprise["id"]}),
                        ("provider", {"provider_id": provider["id"]}),
                        ("auditor", {"principal_name": "District audit bureau"})):
        created = await operator.create_api_key({"role": role, "name": f"client test {role}", **extra})  # type: ignore[typeddict-item]
        keys[role] = created["key"]
    return Office(programme=dict(programme), enterprise=dict(enterprise), provider=dict(provider),
                  enterprise_key=keys["enterprise"], provider_key=keys["provider"], auditor_key=keys["auditor"])


def hold(voucher_code: str, uscc: str, order: str, amount: int) -> dict[str, Any]:
    return {"voucher_code": voucher_code, "enterprise_uscc": uscc, "order_reference": order,
            "line_items": [{"category": "accelerator:domestic", "amount": amount,
                            "accelerator": "Ascend 910B", "hours_milli": 1000}]}
