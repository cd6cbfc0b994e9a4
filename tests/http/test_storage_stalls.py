"""A Redis that accepts connections and never answers does not slow every request (an
independent review, December 2026): each command gives up after REDIS_TIMEOUT_SECONDS, and a
failed storage is left alone for PAUSE_SECONDS, so only the first request after a failure waits
on it. Redis had added 5 s to each of a request's two commands: 10 s on every authenticated
request, while /readyz said ready."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.voucher.settings import Settings
from tests.support import assert_problem, auth, make_key


class BlackHole:
    """A TCP server that accepts every connection and answers nothing."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


@pytest.fixture
def settings(database_url: str, black_hole: BlackHole) -> Settings:
    return Settings(database_url=database_url, environment="test", log_level="WARNING",
                    auth_failure_limit="5/30 seconds", rate_limit_storage=f"redis://127.0.0.1:{black_hole.port}/0")


async def test_a_silent_redis_is_tried_once_then_left_alone(
    app: Any, client: httpx.AsyncClient, black_hole: BlackHole
) -> None:
    good = await make_key(app, "operator")
    for _ in range(10):
        response = await client.get("/v1/programmes", headers=auth(good))
        assert response.status_code == 200, response.text
        assert "ratelimit-limit" not in response.headers  # not counted: the storage did not answer
        assert_problem(await client.get("/v1/me", headers=auth("vk_0000000000_" + "x" * 43)), 401, "invalid_api_key")
    # One try for the rate limits, one for the throttle; without the pause, each request had
    # opened a connection again (a timed-out connection is dropped) and waited on it.
    assert black_hole.accepted <= 2, black_hole.accepted
