"""HEAD is answered as the GET of the same URL, without the body (RFC 9110 §9.3.2): a 405 whose
own Allow header named HEAD had been the answer, in process and through a real server."""

from __future__ import annotations

import uuid

import httpx

from tests.live_server import LiveServer
from tests.support import assert_problem, auth
from tests.world import World, build_world

#: Headers that must agree between a GET and its HEAD (the request id and timing differ).
SAME = ("content-type", "content-length", "etag", "content-language", "cache-control")


async def test_head_answers_what_get_answers_without_the_body(app, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    voucher = await world.issue()
    path = f"/v1/vouchers/{voucher['id']}"
    got = await client.get(path, headers=auth(world.enterprise_key))
    head = await client.head(path, headers=auth(world.enterprise_key))
    assert (head.status_code, got.status_code) == (200, 200)
    assert head.content == b""
    assert {h: head.headers.get(h) for h in SAME} == {h: got.headers.get(h) for h in SAME}
    assert int(head.headers["content-length"]) == len(got.content) > 0


async def test_head_passes_the_same_checks_as_get(app, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    other = await build_world(app, client)
    voucher = await world.issue()
    path = f"/v1/vouchers/{voucher['id']}"
    for key, status in ((None, 401), ("vk_0000000000_nope", 401), (other.enterprise_key, 404),
                        (world.provider_key, 403), (world.auditor, 200)):
        headers = auth(key) if key else {}
        got, head = await client.get(path, headers=headers), await client.head(path, headers=headers)
        assert (head.status_code, got.status_code) == (status, status), key
        assert head.content == b""
        assert head.headers.get("content-type") == got.headers.get("content-type")
    missing = await client.head(f"/v1/vouchers/{uuid.uuid4()}", headers=auth(world.operator))
    assert missing.status_code == 404 and missing.content == b""


async def test_head_on_a_route_without_get_is_405_and_allow_does_not_name_it(
        client: httpx.AsyncClient, operator_key: str) -> None:
    head = await client.head("/v1/audit/verifications", headers=auth(operator_key))
    assert head.status_code == 405 and head.content == b""
    assert "HEAD" not in head.headers["allow"] and "POST" in head.headers["allow"]
    listed = await client.delete("/v1/programmes", headers=auth(operator_key))
    assert_problem(listed, 405, "method_not_allowed")
    assert "HEAD" in listed.headers["allow"].split(", ")
    assert (await client.head("/v1/programmes", headers=auth(operator_key))).status_code == 200


async def test_head_through_a_real_server(database_url: str, app, client: httpx.AsyncClient) -> None:
    """The server (uvicorn) is told nothing follows the headers: a HEAD with a Content-Length and
    no body must not break the connection, and the next request on it is answered."""
    world: World = await build_world(app, client)
    voucher = await world.issue()
    with LiveServer(database_url) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for _ in range(3):  # one keep-alive connection, reused
                head = await http.head(f"/v1/vouchers/{voucher['id']}", headers=auth(world.operator))
                assert head.status_code == 200 and head.content == b""
                assert int(head.headers["content-length"]) > 0
            got = await http.get(f"/v1/vouchers/{voucher['id']}", headers=auth(world.operator))
            assert got.status_code == 200 and int(head.headers["content-length"]) == len(got.content)
            assert (await http.head("/healthz")).status_code == 200
        assert "Response content shorter" not in server.log_tail()
        assert "Traceback" not in server.log_tail()
