"""The client end to end over ASGI against the real app: the whole programme-office flow, typed
exceptions with their problem bodies, and retries that move value exactly once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from voucher_client import (
    NO_RETRIES,
    ApiConnectionError,
    AsyncVoucherClient,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RetryPolicy,
    ValidationError,
)

from tests.client.office import Office, build_office, hold

NO_SLEEP = RetryPolicy(max_attempts=3, sleep=lambda seconds: None)


class Faulty(httpx.AsyncBaseTransport):
    """Forwards to the app, but for requests `hit` selects, plays `faults` first: "drop" sends
    the request to the app and then loses its answer (a connection reset after the server
    committed); a Response is answered instead of forwarding (a gateway's 503, a 429)."""

    def __init__(self, app: object, hit: Callable[[httpx.Request], bool], faults: list[object]) -> None:
        self.inner = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
        self.hit, self.faults = hit, list(faults)
        self.seen: list[httpx.Request] = []
        self.forwarded = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.hit(request):
            return await self.inner.handle_async_request(request)
        self.seen.append(request)
        fault = self.faults.pop(0) if self.faults else None
        if isinstance(fault, httpx.Response):
            return fault
        self.forwarded += 1
        response = await self.inner.handle_async_request(request)
        if fault == "drop":
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("connection reset after the server answered", request=request)
        return response


def make(app: object, key: str, *, transport: httpx.AsyncBaseTransport | None = None,
         retries: RetryPolicy | None = NO_SLEEP) -> AsyncVoucherClient:
    return AsyncVoucherClient(
        "http://test", api_key=key, retries=retries,
        transport=transport or httpx.ASGITransport(app=app, raise_app_exceptions=False),  # type: ignore[arg-type]
    )


@pytest.fixture
async def operator(app, operator_key: str) -> AsyncIterator[AsyncVoucherClient]:
    async with make(app, operator_key) as api:
        yield api


@pytest.fixture
async def office(operator: AsyncVoucherClient) -> Office:
    return await build_office(operator)


async def test_the_whole_flow_through_the_client(app, operator: AsyncVoucherClient, office: Office) -> None:
    voucher = await operator.issue_voucher({"programme_id": office.programme["id"],
                                            "enterprise_id": office.enterprise["id"], "face_value": 10_000_000})
    assert voucher["status"] == "active" and voucher["balances"]["available"] == 10_000_000

    async with make(app, office.provider_key) as provider:
        redeemed = await provider.redeem(hold(voucher["code"], office.enterprise["uscc"], "PO-1", 10_000_000))
        assert redeemed["status"] == "captured" and redeemed["captured_amount"] == 3_000_000
        refund = await provider.refund_redemption(redeemed["id"], {"amount": 1_000_000, "reason": "1 hour not delivered"})
        assert refund["amount"] == 1_000_000
        assert [r["amount"] for r in await provider.list_refunds(redeemed["id"])] == [1_000_000]

    async with make(app, office.enterprise_key) as enterprise:
        mine = await enterprise.get_voucher(voucher["id"])
        assert mine["balances"] == {"available": 8_000_000, "held": 0, "used": 2_000_000}
        page = await enterprise.list_vouchers()
        assert [v["id"] for v in page["items"]] == [voucher["id"]]
        with pytest.raises(PermissionDeniedError) as refused:  # enterprises issue nothing
            await enterprise.issue_voucher({"programme_id": office.programme["id"],
                                            "enterprise_id": office.enterprise["id"], "face_value": 1})
        assert refused.value.status == 403 and refused.value.code

    async with make(app, office.auditor_key) as auditor:
        verified = await auditor.verify_audit_chain({})
        assert verified["is_intact"] and verified["events_checked"] > 0
        assert (await auditor.reconcile_ledger())["is_clean"]
        exported = await auditor.export_dataset("redemptions", format="csv")
        assert isinstance(exported, bytes) and redeemed["id"].encode() in exported

    # If-Match from the ETag of the last read
    await operator.get_enterprise(office.enterprise["id"])
    etag = operator.last_response.headers["etag"]  # type: ignore[union-attr]
    updated = await operator.update_enterprise(office.enterprise["id"], {"headcount": 21}, if_match=etag)
    assert updated["headcount"] == 21


async def test_typed_exceptions_carry_the_problem(app, operator: AsyncVoucherClient, office: Office) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as not_found:
        await operator.get_voucher(missing)
    error = not_found.value
    assert (error.status, error.code, error.problem["code"]) == (404, "not_found", "not_found")
    assert error.request_id and error.request_id == error.response.headers["x-request-id"]
    assert error.problem["request_id"] == error.request_id and error.title and error.detail

    voucher = await operator.issue_voucher({"programme_id": office.programme["id"],
                                            "enterprise_id": office.enterprise["id"], "face_value": 10_000_000})
    async with make(app, office.provider_key) as provider:
        redeemed = await provider.redeem(hold(voucher["code"], office.enterprise["uscc"], "PO-2", 1_000_000))
        with pytest.raises(ConflictError) as conflict:
            await provider.refund_redemption(redeemed["id"], {"amount": redeemed["captured_amount"] + 1, "reason": "x"})
    assert conflict.value.code == "refund_exceeds_captured" == conflict.value.problem["code"]
    assert conflict.value.problem["status"] == 409 and conflict.value.idempotency_key

    with pytest.raises(ValidationError) as invalid:
        await operator.issue_voucher({"programme_id": office.programme["id"],
                                      "enterprise_id": office.enterprise["id"], "face_value": 0})
    assert invalid.value.status == 422 and invalid.value.errors
    assert any(e["pointer"].endswith("face_value") for e in invalid.value.errors), invalid.value.errors


async def test_a_redeem_whose_answer_was_lost_is_retried_and_moves_value_once(app, operator, office: Office) -> None:
    voucher = await operator.issue_voucher({"programme_id": office.programme["id"],
                                            "enterprise_id": office.enterprise["id"], "face_value": 10_000_000})
    faulty = Faulty(app, lambda r: r.method == "POST" and r.url.path == "/v1/redemptions", ["drop"])
    async with make(app, office.provider_key, transport=faulty) as provider:
        redeemed = await provider.redeem(hold(voucher["code"], office.enterprise["uscc"], "PO-3", 10_000_000))
        assert provider.last_response.headers.get("idempotent-replayed") == "true"  # type: ignore[union-attr]
    keys = [r.headers["idempotency-key"] for r in faulty.seen]
    assert len(keys) == 2 and keys[0] == keys[1] and faulty.forwarded == 2
    after = await operator.get_voucher(voucher["id"])
    assert after["balances"] == {"available": 7_000_000, "held": 0, "used": 3_000_000}
    listed = await operator.list_redemptions(voucher_id=voucher["id"])
    assert [r["id"] for r in listed["items"]] == [redeemed["id"]]


async def test_without_retries_the_lost_answer_is_recovered_with_the_same_key(app, operator, office: Office) -> None:
    voucher = await operator.issue_voucher({"programme_id": office.programme["id"],
                                            "enterprise_id": office.enterprise["id"], "face_value": 10_000_000})
    body = hold(voucher["code"], office.enterprise["uscc"], "PO-4", 10_000_000)
    faulty = Faulty(app, lambda r: r.url.path == "/v1/redemptions", ["drop"])
    async with make(app, office.provider_key, transport=faulty, retries=NO_RETRIES) as provider:
        with pytest.raises(ApiConnectionError) as lost:
            await provider.redeem(body)
        again = await provider.redeem(body, idempotency_key=lost.value.idempotency_key)
    assert again["status"] == "captured"
    assert (await operator.get_voucher(voucher["id"]))["balances"]["used"] == 3_000_000


@pytest.mark.parametrize("status", [429, 503])
async def test_a_refusal_to_serve_now_is_retried_and_then_succeeds(app, operator, office: Office, status: int) -> None:
    voucher = await operator.issue_voucher({"programme_id": office.programme["id"],
                                            "enterprise_id": office.enterprise["id"], "face_value": 10_000_000})
    busy = httpx.Response(status, headers={"retry-after": "4", "content-type": "application/problem+json"},
                          json={"status": status, "code": "busy", "title": "busy", "detail": "later", "type": "x"})
    sleeps: list[float] = []
    faulty = Faulty(app, lambda r: r.url.path == "/v1/redemptions", [busy])
    async with make(app, office.provider_key, transport=faulty,
                    retries=RetryPolicy(max_attempts=3, sleep=sleeps.append)) as provider:
        redeemed = await provider.redeem(hold(voucher["code"], office.enterprise["uscc"], "PO-5", 10_000_000))
    assert redeemed["status"] == "captured" and len(sleeps) == 1 and 4.0 <= sleeps[0] <= 4.4
    assert len(faulty.seen) == 2 and faulty.forwarded == 1
    assert (await operator.get_voucher(voucher["id"]))["balances"]["used"] == 3_000_000


async def test_a_409_is_not_retried(app, operator, office: Office) -> None:
    voucher = await operator.issue_voucher({"programme_id": office.programme["id"],
                                            "enterprise_id": office.enterprise["id"], "face_value": 10_000_000})
    await operator.suspend_voucher(voucher["id"], {"reason": "under investigation"})
    faulty = Faulty(app, lambda r: r.url.path == "/v1/redemptions", [])
    async with make(app, office.provider_key, transport=faulty) as provider:
        with pytest.raises(ConflictError) as refused:
            await provider.redeem(hold(voucher["code"], office.enterprise["uscc"], "PO-6", 10_000_000))
    assert refused.value.code == "voucher_suspended" and len(faulty.seen) == 1
