"""Retries, Idempotency-Key handling and typed errors against scripted answers (httpx
MockTransport): what is retried, how often, after how long, and with which key."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import httpx
import pytest
from voucher_client import (
    NO_RETRIES,
    ApiConnectionError,
    AsyncVoucherClient,
    AuthenticationError,
    ConcurrentUpdateError,
    ConflictError,
    IdempotencyInProgressError,
    IdempotencyKeyReusedError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RetryPolicy,
    RetrySleepError,
    ServerError,
    ServiceUnavailableError,
    UnansweredWriteError,
    UnreadableResponseError,
    ValidationError,
    VoucherClient,
)

VOUCHER_ID = "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e11"
HOLD = {"voucher_code": "X", "enterprise_uscc": "Y", "order_reference": "PO-1", "line_items": []}


def problem(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"type": f"/v1/problems/{code}", "title": code, "status": status, "detail": f"{code} detail",
            "code": code, "request_id": "req-1"}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json",
                                                      "x-request-id": "req-1", **headers})


class Script:
    """Answers requests from a list (the last answer repeats) and remembers what was sent."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):  # a fresh response per request (one whose body is read as it is sent)
            return answer()
        return answer

    @property
    def keys(self) -> list[str | None]:
        return [r.headers.get("idempotency-key") for r in self.requests]


def sync_client(script: Script, sleeps: list[float], **kwargs) -> VoucherClient:
    kwargs.setdefault("retries", RetryPolicy(max_attempts=3, sleep=sleeps.append))
    return VoucherClient("http://api.test", api_key="vk_test", transport=httpx.MockTransport(script), **kwargs)


def async_client(script: Script, sleeps: list[float], **kwargs) -> AsyncVoucherClient:
    kwargs.setdefault("retries", RetryPolicy(max_attempts=3, sleep=sleeps.append))
    return AsyncVoucherClient("http://api.test", api_key="vk_test", transport=httpx.MockTransport(script), **kwargs)


def ok(status: int = 201, body: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json=body or {"id": "r-1", "status": "captured"})


def test_a_write_gets_a_fresh_key_reused_on_its_retries_and_a_new_one_per_call() -> None:
    script, sleeps = Script(problem(503, "unavailable"), ok()), []
    with sync_client(script, sleeps) as api:
        assert api.redeem(HOLD) == {"id": "r-1", "status": "captured"}
        first, second = script.keys
        assert first and first == second and uuid.UUID(first)
        assert len(sleeps) == 1
        api.redeem(HOLD)
        assert script.keys[2] not in (None, first)
        assert api.last_response is not None and api.last_response.status_code == 201
    sent = script.requests[0]
    assert sent.headers["authorization"] == "Bearer vk_test"
    assert json.loads(sent.content) == HOLD and sent.url.path == "/v1/redemptions"
    assert script.requests[1].content == sent.content  # byte-identical on the retry


def test_an_explicit_idempotency_key_is_used_as_given() -> None:
    script = Script(ok())
    with sync_client(script, []) as api:
        api.redeem(HOLD, idempotency_key="my-key-1")
    assert script.keys == ["my-key-1"]


def test_429_waits_for_retry_after_then_succeeds() -> None:
    script, sleeps = Script(problem(429, "rate_limited", **{"Retry-After": "7"}), ok(200, {"id": VOUCHER_ID})), []
    with sync_client(script, sleeps) as api:
        assert api.get_voucher(VOUCHER_ID) == {"id": VOUCHER_ID}
    assert len(sleeps) == 1 and 7.0 <= sleeps[0] <= 7.7 and len(script.requests) == 2


def test_retry_after_is_a_minimum_with_a_little_jitter_unless_jitter_is_off() -> None:
    # Clients told the same instant do not all come back at it: up to a tenth more, at most 1 s.
    waits: list[float] = []
    for _ in range(200):
        script, sleeps = Script(problem(503, "unavailable", **{"Retry-After": "30"}), ok()), []
        with sync_client(script, sleeps) as api:
            api.redeem(HOLD)
        waits.extend(sleeps)
    assert all(30.0 <= w <= 31.0 for w in waits) and len(set(waits)) > 100
    script, sleeps = Script(problem(503, "unavailable", **{"Retry-After": "2"}), ok()), []
    with sync_client(script, sleeps, retries=RetryPolicy(jitter=False, sleep=sleeps.append)) as api:
        api.redeem(HOLD)
    assert sleeps == [2.0]


def test_a_retry_after_longer_than_the_policy_allows_is_not_waited_for() -> None:
    script, sleeps = Script(problem(429, "rate_limited", **{"Retry-After": "3600"}), ok(200)), []
    with sync_client(script, sleeps) as api, pytest.raises(RateLimitedError) as raised:
        api.get_voucher(VOUCHER_ID)
    assert raised.value.retry_after == 3600 and sleeps == [] and len(script.requests) == 1


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried_with_growing_jittered_backoff_then_raise(status: int) -> None:
    script, sleeps = Script(problem(status, "unavailable")), []
    policy = RetryPolicy(max_attempts=4, backoff_base=0.5, backoff_max=1.5, sleep=sleeps.append)
    with sync_client(script, sleeps, retries=policy) as api, pytest.raises(ServiceUnavailableError) as raised:
        api.redeem(HOLD)
    assert len(script.requests) == 4 and len(set(script.keys)) == 1
    assert len(sleeps) == 3 and all(0 <= s <= cap for s, cap in zip(sleeps, [0.5, 1.0, 1.5], strict=True))
    assert raised.value.status == status and raised.value.idempotency_key == script.keys[0]


def test_business_refusals_and_500_are_never_retried() -> None:
    for answer, error in ((problem(409, "voucher_exhausted"), ConflictError),
                          (problem(404, "not_found"), NotFoundError),
                          (problem(401, "unauthenticated"), AuthenticationError),
                          (problem(500, "internal_error"), ServerError)):
        script, sleeps = Script(answer, ok()), []
        with sync_client(script, sleeps) as api, pytest.raises(error) as raised:
            api.redeem(HOLD)
        assert len(script.requests) == 1 and sleeps == []
        assert raised.value.code == answer.json()["code"] and raised.value.request_id == "req-1"
        assert raised.value.problem == answer.json()


def test_a_write_without_an_idempotency_key_is_not_retried_once_it_may_have_been_sent() -> None:
    # enrol_provider (PUT) and lookup_voucher (POST) document no Idempotency-Key
    script, sleeps = Script(problem(503, "unavailable"), ok()), []
    with sync_client(script, sleeps) as api, pytest.raises(ServiceUnavailableError):
        api.enrol_provider(VOUCHER_ID, VOUCHER_ID)
    assert len(script.requests) == 1 and script.keys == [None]
    script = Script(httpx.ReadError("reset"), ok())
    with sync_client(script, sleeps) as api, pytest.raises(ApiConnectionError) as raised:
        api.lookup_voucher({"voucher_code": "X", "enterprise_uscc": "Y"})
    assert len(script.requests) == 1 and raised.value.idempotency_key is None


def test_a_connection_that_never_opened_is_retried_for_any_method() -> None:
    script, sleeps = Script(httpx.ConnectError("refused"), ok(200)), []
    with sync_client(script, sleeps) as api:
        api.enrol_provider(VOUCHER_ID, VOUCHER_ID)
    assert len(script.requests) == 2


def test_reads_and_keyed_writes_are_retried_after_a_lost_answer() -> None:
    script, sleeps = Script(httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("closed"), ok()), []
    with sync_client(script, sleeps) as api:
        api.redeem(HOLD)
    assert len(script.requests) == 3 and len(set(script.keys)) == 1


def test_giving_up_on_a_write_hands_back_its_key_for_a_safe_manual_retry() -> None:
    script = Script(httpx.ReadError("reset"))
    with sync_client(script, [], retries=NO_RETRIES) as api, pytest.raises(ApiConnectionError) as raised:
        api.redeem(HOLD)
    assert raised.value.idempotency_key == script.keys[0] and len(script.requests) == 1


def test_a_replay_still_in_progress_is_retried_but_other_409s_are_not() -> None:
    script, sleeps = Script(problem(409, "idempotency_request_in_progress"), ok()), []
    with sync_client(script, sleeps) as api:
        api.redeem(HOLD)
    assert len(script.requests) == 2
    script = Script(problem(409, "idempotency_request_in_progress"))
    with sync_client(script, [], retries=NO_RETRIES) as api, pytest.raises(IdempotencyInProgressError):
        api.redeem(HOLD)
    script = Script(problem(409, "insufficient_balance"))  # a business refusal: final
    with sync_client(script, []) as api, pytest.raises(ConflictError):
        api.redeem(HOLD)
    assert len(script.requests) == 1


def test_a_lost_race_is_retried_with_the_same_key_but_not_for_a_write_without_one() -> None:
    script, sleeps = Script(problem(409, "concurrent_update"), ok()), []
    with sync_client(script, sleeps) as api:
        api.redeem(HOLD)
    assert len(script.requests) == 2 and len(set(script.keys)) == 1
    script = Script(problem(409, "concurrent_update"))
    with sync_client(script, []) as api, pytest.raises(ConcurrentUpdateError):
        api.update_enterprise(VOUCHER_ID, {"name": "x"}, if_match='"1"')
    assert len(script.requests) == 1


def test_validation_errors_list_the_bad_fields() -> None:
    answer = problem(422, "validation_failed")
    body = {**answer.json(), "errors": [{"location": "body", "pointer": "/face_value", "message": "too small",
                                         "type": "greater_than_equal"}]}
    script = Script(httpx.Response(422, json=body, headers={"content-type": "application/problem+json"}))
    with sync_client(script, []) as api, pytest.raises(ValidationError) as raised:
        api.issue_voucher({"programme_id": VOUCHER_ID, "enterprise_id": VOUCHER_ID, "face_value": 0})
    assert [e["pointer"] for e in raised.value.errors] == ["/face_value"]
    script = Script(problem(422, "idempotency_key_reused"))
    with sync_client(script, []) as api, pytest.raises(IdempotencyKeyReusedError):
        api.redeem(HOLD)


def test_an_error_without_a_problem_body_still_raises_by_status() -> None:
    script = Script(httpx.Response(502, text="<html>bad gateway</html>", headers={"content-type": "text/html"}))
    with sync_client(script, [], retries=NO_RETRIES) as api, pytest.raises(ServiceUnavailableError) as raised:
        api.get_voucher(VOUCHER_ID)
    assert raised.value.code is None and raised.value.problem == {} and "502" in str(raised.value)


def test_parameters_are_encoded_into_path_query_and_headers() -> None:
    from datetime import UTC, datetime

    script = Script(ok(200, {"items": [], "next_cursor": None}), httpx.Response(200, content=b"a,b\n1,2\n",
                                                                                 headers={"content-type": "text/csv"}))
    with sync_client(script, [], accept_language="zh-CN") as api:
        api.list_vouchers(programme_id=uuid.UUID(VOUCHER_ID), status="active", limit=5)
        assert api.export_dataset("redemptions", format="csv", since=datetime(2026, 3, 1, tzinfo=UTC)) == b"a,b\n1,2\n"
    listed, exported = script.requests
    assert listed.url.path == "/v1/vouchers"
    assert dict(listed.url.params) == {"programme_id": VOUCHER_ID, "status": "active", "limit": "5"}
    assert listed.headers["accept-language"] == "zh-CN" and "idempotency-key" not in listed.headers
    assert exported.url.path == "/v1/exports/redemptions"
    assert dict(exported.url.params) == {"format": "csv", "since": "2026-03-01T00:00:00+00:00"}


async def test_the_async_client_retries_the_same_way() -> None:
    script, sleeps = Script(httpx.ReadError("reset"), problem(429, "rate_limited", **{"Retry-After": "2"}), ok()), []
    async with async_client(script, sleeps) as api:
        assert (await api.redeem(HOLD))["id"] == "r-1"
        assert api.last_response is not None and api.last_response.status_code == 201
    assert len(script.requests) == 3 and len(set(script.keys)) == 1 and 2.0 <= sleeps[1] <= 2.2
    script = Script(problem(409, "voucher_exhausted"))
    async with async_client(script, sleeps) as api:
        with pytest.raises(ConflictError):
            await api.redeem(HOLD)
    assert len(script.requests) == 1


async def test_an_async_sleep_hook_is_awaited() -> None:
    awaited: list[float] = []

    async def sleep(seconds: float) -> None:
        awaited.append(seconds)

    script = Script(problem(503, "unavailable", **{"Retry-After": "1"}), ok())
    async with AsyncVoucherClient("http://api.test", transport=httpx.MockTransport(script),
                                  retries=RetryPolicy(sleep=sleep)) as api:
        await api.redeem(HOLD)
    assert len(awaited) == 1 and 1.0 <= awaited[0] <= 1.1




# -- an independent review of the client (December 2026) --------------------------------------


def test_a_write_still_running_is_an_unknown_outcome_not_a_refusal() -> None:
    """The docs catch `ConflictError` as "refused": a redeem whose first attempt was still
    running when the retries ran out was raised as one, and may yet be applied (a provider
    would have billed the SME in full while the subsidy was captured)."""
    script = Script(problem(409, "idempotency_request_in_progress"))
    with sync_client(script, []) as api, pytest.raises(OutcomeUnknownError) as raised:
        api.redeem(HOLD)
    assert isinstance(raised.value, IdempotencyInProgressError) and not isinstance(raised.value, ConflictError)
    assert raised.value.idempotency_key == script.keys[0] and len(set(script.keys)) == 1
    with sync_client(Script(httpx.ReadError("reset")), [], retries=NO_RETRIES) as api, \
            pytest.raises(OutcomeUnknownError):
        api.redeem(HOLD)
    with sync_client(Script(problem(422, "idempotency_request_in_progress")), []) as api, \
            pytest.raises(ValidationError):  # the code's class only with its own status
        api.redeem(HOLD)


def test_an_answer_that_cannot_be_read_hands_back_the_key() -> None:
    """A body that cannot be decoded (a proxy's bad Content-Encoding) or a success that is not
    JSON had escaped as httpx's or json's own exception, and the generated key with it: a
    partial refund repeated with a new key is refunded twice."""
    garbled = lambda: httpx.Response(  # noqa: E731
        201, headers={"content-type": "application/json", "content-encoding": "gzip"},
        stream=httpx.ByteStream(b"not gzip at all"))
    script = Script(garbled)
    with sync_client(script, []) as api, pytest.raises(ApiConnectionError) as lost:
        api.refund_redemption(VOUCHER_ID, {"amount": 1, "reason": "x"})
    assert lost.value.idempotency_key == script.keys[0] and len(set(script.keys)) == 1
    assert len(script.requests) == 3  # keyed: retried, the same key each time
    html = httpx.Response(201, headers={"content-type": "text/html"}, content=b"<html>proxy</html>")
    script = Script(html)
    with sync_client(script, []) as api, pytest.raises(UnreadableResponseError) as unread:
        api.refund_redemption(VOUCHER_ID, {"amount": 1, "reason": "x"})
    assert isinstance(unread.value, OutcomeUnknownError) and unread.value.idempotency_key == script.keys[0]


async def test_the_async_client_hands_back_the_key_of_an_unreadable_answer() -> None:
    garbled = lambda: httpx.Response(  # noqa: E731
        201, headers={"content-type": "application/json", "content-encoding": "gzip"},
        stream=httpx.ByteStream(b"not gzip at all"))
    script = Script(garbled)
    async with async_client(script, []) as api:
        with pytest.raises(ApiConnectionError) as lost:
            await api.refund_redemption(VOUCHER_ID, {"amount": 1, "reason": "x"})
    assert lost.value.idempotency_key == script.keys[0]


def test_the_sync_client_refuses_a_coroutine_sleep_before_sending_anything() -> None:
    async def sleep(seconds: float) -> None:
        pass

    script = Script(problem(503, "unavailable"), ok())
    with pytest.raises(TypeError, match="plain function"):
        sync_client(script, [], retries=RetryPolicy(sleep=sleep))
    assert script.requests == []


def test_an_empty_key_given_is_sent_as_given() -> None:
    script = Script(ok())
    with sync_client(script, []) as api:
        api.redeem(HOLD, idempotency_key="")
    assert script.keys == [""]


def test_a_client_gone_leaves_no_response_alive() -> None:
    import gc
    import weakref

    answers = []
    for _ in range(5):
        with sync_client(Script(ok()), []) as api:
            api.redeem(HOLD)
            assert api.last_response is not None
            answers.append(weakref.ref(api.last_response))
        del api
    gc.collect()
    assert [a() for a in answers] == [None] * 5


@pytest.mark.parametrize("answer", [502, 504, 503])
def test_a_keyed_write_a_gateway_still_answers_is_an_unknown_outcome(answer: int) -> None:
    """A gateway's 504 may come after the service applied the write (a review of the fix): a
    keyed write still answered so once the retries run out is an `OutcomeUnknownError` with its
    key. The service's own 503 says nothing changed; a read answered so is not a write."""
    script = Script(httpx.Response(answer, text="<html>gateway</html>", headers={"content-type": "text/html"}))
    with sync_client(script, []) as api, pytest.raises(UnansweredWriteError) as raised:
        api.redeem(HOLD)
    assert isinstance(raised.value, OutcomeUnknownError) and isinstance(raised.value, ServiceUnavailableError)
    assert raised.value.idempotency_key == script.keys[0] and len(set(script.keys)) == 1
    with sync_client(Script(problem(503, "database_unavailable")), []) as api, \
            pytest.raises(ServiceUnavailableError) as own:
        api.redeem(HOLD)
    assert not isinstance(own.value, OutcomeUnknownError)
    with sync_client(Script(httpx.Response(answer)), []) as api, pytest.raises(ServiceUnavailableError) as read:
        api.get_voucher(VOUCHER_ID)
    assert not isinstance(read.value, OutcomeUnknownError)


def test_a_sleep_that_returns_an_awaitable_raises_with_the_key() -> None:
    import asyncio

    script = Script(problem(503, "unavailable"), ok())
    with sync_client(script, [], retries=RetryPolicy(sleep=lambda seconds: asyncio.sleep(seconds))) as api, \
            pytest.raises(RetrySleepError) as raised:
        api.redeem(HOLD)
    assert isinstance(raised.value, OutcomeUnknownError) and raised.value.idempotency_key == script.keys[0]


def test_a_body_the_service_timed_out_on_is_sent_again() -> None:
    """408 `request_timeout`: the body came too slowly and nothing ran; retried like a 503."""
    script, sleeps = Script(problem(408, "request_timeout"), ok()), []
    with sync_client(script, sleeps) as api:
        assert api.redeem(HOLD)["id"] == "r-1"
    assert len(script.requests) == 2 and len(set(script.keys)) == 1


class FakeClock:
    """`monotonic` for the retry loop, moved on by the injected sleep only."""

    def __init__(self) -> None:
        self.now, self.sleeps = 1000.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_no_attempt_starts_later_than_max_elapsed_after_the_call_began(monkeypatch: pytest.MonkeyPatch) -> None:
    from voucher_client import _retry

    clock = FakeClock()
    monkeypatch.setattr(_retry, "monotonic", clock)
    policy = RetryPolicy(max_attempts=10, max_elapsed=60.0, jitter=False, sleep=clock.sleep)
    script = Script(problem(503, "unavailable", **{"Retry-After": "25"}))
    with sync_client(script, [], retries=policy) as api, pytest.raises(ServiceUnavailableError) as raised:
        api.redeem(HOLD)
    # Attempts at 0 s and 25 s; the next would start at 50 s, then 75 s: past 60, so the
    # third answer is final, and the write's key goes with the error.
    assert clock.sleeps == [25.0, 25.0] and len(script.requests) == 3
    assert raised.value.idempotency_key == script.keys[0] and len(set(script.keys)) == 1
    # A connection that never opens: backoff waits count the same way.
    clock.sleeps.clear()
    policy = RetryPolicy(max_attempts=10, backoff_base=8.0, backoff_max=40.0, max_elapsed=60.0, jitter=False,
                         sleep=clock.sleep)
    script = Script(httpx.ConnectError("refused"))
    with sync_client(script, [], retries=policy) as api, pytest.raises(ApiConnectionError):
        api.get_voucher(VOUCHER_ID)
    assert clock.sleeps == [8.0, 16.0, 32.0] and len(script.requests) == 4  # the next, 40 s more, ends past 60


async def test_the_async_client_keeps_max_elapsed_too_and_none_means_no_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from voucher_client import _retry

    clock = FakeClock()
    monkeypatch.setattr(_retry, "monotonic", clock)
    script = Script(problem(429, "rate_limited", **{"Retry-After": "20"}))
    async with async_client(script, [], retries=RetryPolicy(max_attempts=10, max_elapsed=30.0, jitter=False,
                                                            sleep=clock.sleep)) as api:
        with pytest.raises(RateLimitedError):
            await api.get_voucher(VOUCHER_ID)
    assert clock.sleeps == [20.0] and len(script.requests) == 2
    clock.sleeps.clear()
    script = Script(problem(429, "rate_limited", **{"Retry-After": "20"}))
    async with async_client(script, [], retries=RetryPolicy(max_attempts=6, max_elapsed=None, jitter=False,
                                                            sleep=clock.sleep)) as api:
        with pytest.raises(RateLimitedError):
            await api.get_voucher(VOUCHER_ID)
    assert clock.sleeps == [20.0] * 5 and len(script.requests) == 6
