"""Limits shared between processes (issue 19, finding 6): with `VOUCHER_RATE_LIMIT_STORAGE`
pointing at Redis, two server processes give a principal ONE allowance and an address ONE
budget of failed logins, not one each. Runs against a real `redis-server` when
VOUCHER_TEST_REDIS_URL is set (`.ci/run` starts one as it starts PostgreSQL)."""

from __future__ import annotations

import json
import os
import secrets

import httpx
import pytest

from tests.live_server import LiveServer
from tests.support import assert_problem, auth, make_key

REDIS_URL = os.environ.get("VOUCHER_TEST_REDIS_URL")
pytestmark = [pytest.mark.skipif(not REDIS_URL, reason="set VOUCHER_TEST_REDIS_URL to a Redis (.ci/run does)"),
              pytest.mark.timeout(120)]


@pytest.fixture
def clock():  # the live servers run on the real clock; so does this test's app
    from services.voucher.clock import system_clock

    return system_clock


async def test_two_processes_count_in_one_redis(app, database_url: str) -> None:
    import redis

    assert REDIS_URL
    redis.Redis.from_url(REDIS_URL).flushdb()  # a database of the tests' own: counts from earlier runs go
    key = await make_key(app, "operator")
    env = {"VOUCHER_RATE_LIMIT_STORAGE": REDIS_URL, "VOUCHER_RATE_LIMITS": json.dumps({"operator": "6/minute"}),
           "VOUCHER_AUTH_FAILURE_LIMIT": "4/minute"}
    with LiveServer(database_url, env=env) as one, LiveServer(database_url, env=env) as two:
        async with httpx.AsyncClient(base_url=one.url, timeout=30) as a, \
                httpx.AsyncClient(base_url=two.url, timeout=30) as b:
            remaining = []
            for http in (a, b, a, b, a, b):
                response = await http.get("/v1/programmes", headers=auth(key))
                assert response.status_code == 200, response.text
                remaining.append(int(response.headers["ratelimit-remaining"]))
            assert remaining == [5, 4, 3, 2, 1, 0]  # one window across both processes
            for http in (a, b):
                assert_problem(await http.get("/v1/programmes", headers=auth(key)), 429, "rate_limited")

            for http in (a, b, a, b):  # four unknown keys from this address, two to each process
                bad = "vk_" + secrets.token_hex(5) + "_" + secrets.token_urlsafe(32)
                assert_problem(await http.get("/v1/me", headers=auth(bad)), 401, "invalid_api_key")
            for http in (a, b):
                bad = "vk_" + secrets.token_hex(5) + "_" + secrets.token_urlsafe(32)
                refused = await http.get("/v1/me", headers=auth(bad))
                assert_problem(refused, 429, "authentication_throttled")
                assert int(refused.headers["retry-after"]) >= 1
