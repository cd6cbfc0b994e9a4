"""The blocking client against a real server over a socket: a full redeem, sync."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from voucher_client import ConflictError, RetryPolicy, VoucherClient

from services.voucher.clock import system_clock
from tests.client.office import hold
from tests.live_server import LiveServer
from tests.support import enterprise_payload, programme_payload, provider_payload

pytestmark = pytest.mark.timeout(120)
GUIDE = (Path(__file__).resolve().parents[2] / "docs" / "client.md").read_text(encoding="utf-8")


@pytest.fixture
def clock():  # the live server runs on the real clock; so does this test's app
    return system_clock


def _programme_with_a_provider(operator: VoucherClient) -> tuple[dict[str, Any], dict[str, Any], str]:
    """An open programme, an enterprise, and a provider enrolled in it: (programme, enterprise,
    the provider's key)."""
    programme = operator.create_programme(programme_payload(tiers=[], stacking_ceiling_bps=10_000))
    operator.open_programme(programme["id"])
    enterprise = operator.register_enterprise(enterprise_payload())
    provider = operator.register_provider(provider_payload())
    operator.approve_provider(provider["id"], {"reason": "ok"})
    operator.enrol_provider(programme["id"], provider["id"])
    key = operator.create_api_key({"role": "provider", "name": "billing", "provider_id": provider["id"]})["key"]
    return dict(programme), dict(enterprise), key


async def test_the_sync_client_redeems_against_a_live_server(app, operator_key: str, database_url: str) -> None:
    retries = RetryPolicy(max_attempts=3, sleep=lambda seconds: None)
    with LiveServer(database_url) as server, VoucherClient(server.url, api_key=operator_key, retries=retries) as operator:
        assert operator.healthz()["status"] == "ok"
        programme, enterprise, key = _programme_with_a_provider(operator)
        voucher = operator.issue_voucher({"programme_id": programme["id"], "enterprise_id": enterprise["id"],
                                          "face_value": 10_000_000})

        with VoucherClient(server.url, api_key=key, retries=retries) as billing:
            body = hold(voucher["code"], enterprise["uscc"], "PO-live-1", 10_000_000)
            redeemed = billing.redeem(body, idempotency_key="live-redeem-1")
            again = billing.redeem(body, idempotency_key="live-redeem-1")  # a repeat: the first answer
            assert again == redeemed and billing.last_response.headers["idempotent-replayed"] == "true"  # type: ignore[union-attr]
            with pytest.raises(ConflictError) as refused:  # the order is already subsidised
                billing.redeem(body)
            assert refused.value.code == "order_already_subsidised"

        assert redeemed["status"] == "captured" and redeemed["captured_amount"] == 3_000_000
        after = operator.get_voucher(voucher["id"])
        assert after["balances"] == {"available": 7_000_000, "held": 0, "used": 3_000_000}


async def test_the_guides_first_example_runs_as_written(app, operator_key: str, database_url: str) -> None:
    """docs/client.md's first example, run from the file against a live server, only its
    placeholders given: it had issued and redeemed with one key (a 403 that its
    `except ConflictError` let through; an independent review)."""
    example = re.search(r"```python\n(.*?)```", GUIDE, re.S).group(1)  # type: ignore[union-attr]
    retries = RetryPolicy(max_attempts=3, sleep=lambda seconds: None)
    with LiveServer(database_url) as server, VoucherClient(server.url, api_key=operator_key, retries=retries) as office:
        programme, enterprise, provider_key = _programme_with_a_provider(office)
        names = {"office_key": operator_key, "provider_key": provider_key, "p": programme["id"],
                 "e": enterprise["id"], "uscc": enterprise["uscc"]}
        exec(example.replace("https://vouchers.example.gov.cn", server.url), names)  # noqa: S102 (our own guide)
    assert names["redeemed"]["status"] == "captured" and names["redeemed"]["captured_amount"] > 0
