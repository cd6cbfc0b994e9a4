"""Every class of failure answers with problem+json, a stable code and the request id."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Request
from sqlalchemy import text

from tests.support import assert_problem, auth, enterprise_payload


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert_problem(response, 404, "not_found")
    assert response.headers["content-language"] == "en"  # the library default (docs/errors.md)


async def test_wrong_method_is_a_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/programmes")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"]  # Starlette names the methods of the first matching route


async def test_malformed_json_is_a_400_problem(client: httpx.AsyncClient, operator_key: str) -> None:
    response = await client.post(
        "/v1/enterprises",
        content=b'{"uscc": "91330110',
        headers=auth(operator_key, **{"content-type": "application/json"}),
    )
    assert_problem(response, 400, "malformed_json")


async def test_validation_failure_lists_each_bad_field(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    body = enterprise_payload(uscc="91330110MA2H0W1P4K", region_code="33011", headcount=-1)
    response = await client.post("/v1/enterprises", json=body, headers=auth(operator_key))
    problem = assert_problem(response, 422, "validation_failed")
    pointers = {e["pointer"]: e for e in problem["errors"]}
    assert set(pointers) == {"/uscc", "/region_code", "/headcount"}
    assert pointers["/uscc"]["type"] == "uscc_check_character"
    assert pointers["/uscc"]["context"]["expected_check_character"] == "8"
    assert "91330110MA2H0W1P4K" not in response.text  # input is never echoed


async def test_missing_key_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/programmes")
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_unknown_key_is_401(client: httpx.AsyncClient) -> None:
    assert_problem(
        await client.get("/v1/programmes", headers=auth("vk_0000000000_nope")), 401, "invalid_api_key"
    )


async def test_missing_scope_is_403(client: httpx.AsyncClient, auditor_key: str) -> None:
    response = await client.post("/v1/enterprises", json=enterprise_payload(), headers=auth(auditor_key))
    problem = assert_problem(response, 403, "insufficient_scope")
    assert problem["required_scopes"] == ["enterprises:write"]


async def test_domain_refusal_is_a_409_problem(client: httpx.AsyncClient, operator_key: str) -> None:
    body = enterprise_payload()
    first = await client.post("/v1/enterprises", json=body, headers=auth(operator_key))
    assert first.status_code == 201
    again = await client.post("/v1/enterprises", json=body, headers=auth(operator_key))
    assert_problem(again, 409, "already_exists")


async def test_unexpected_exception_is_a_500_problem_without_internals(
    app, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode() -> None:
        raise RuntimeError("secret internal detail")

    app.add_api_route("/v1/test-explode", explode, methods=["GET", "POST"])
    for method in ("GET", "POST"):
        response = await client.request(method, "/v1/test-explode")
        problem = assert_problem(response, 500, "internal_error")
        assert "secret internal detail" not in response.text
        assert "RuntimeError" not in response.text
        assert problem["request_id"]


async def test_request_id_is_echoed_when_sane_and_minted_otherwise(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "lb-1234567890abcdef"})
    assert given.headers["x-request-id"] == "lb-1234567890abcdef"
    odd = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert odd.headers["x-request-id"] != "bad id with spaces"
    assert len(odd.headers["x-request-id"]) == 32


async def test_every_problem_type_resolves(client: httpx.AsyncClient) -> None:
    catalogue = (await client.get("/v1/problems")).json()
    codes = {p["code"] for p in catalogue}
    assert {"not_found", "validation_failed", "idempotency_key_reused", "insufficient_scope"} <= codes
    assert {"malformed_json", "method_not_allowed", "internal_error"} <= codes
    assert all(p["title_en"] and p["title_zh"] and p["title"] == p["title_en"] for p in catalogue)
    one = await client.get("/v1/problems/idempotency_key_reused")
    assert one.json()["status"] == 422
    assert_problem(await client.get("/v1/problems/no_such_code"), 404, "not_found")


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PATCH", "/v1/programmes", "GET, HEAD, POST"),
    ("DELETE", "/v1/programmes/0190d5d2-0000-7000-8000-000000000000", "GET, HEAD, PATCH"),
    ("POST", "/healthz", "GET, HEAD"),
])
async def test_a_405_allows_every_method_of_the_path_not_only_the_first_routes(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allow


async def test_a_405_on_a_route_outside_the_document_still_names_its_methods(client: httpx.AsyncClient) -> None:
    response = await client.post("/openapi.json")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] and "GET" in response.headers["allow"]


async def test_a_missing_column_on_a_database_at_this_builds_revision_is_our_bug_a_500(
        app, client: httpx.AsyncClient) -> None:
    """A missing table or column means `voucher db upgrade` was skipped only when the database
    is behind this build: at its revision, it is a bug in the build, answered 500 with the
    traceback logged, not 503 `not_ready` telling the operator to run an upgrade that changes
    nothing (an independent review)."""
    async def route(request: Request) -> dict[str, str]:
        await request.scope["state"]["unit"].session.execute(text("SELECT programme_nmae FROM programme"))
        return {}

    app.router.add_api_route("/v1/review-bug", route, methods=["GET"])
    app.middleware_stack = None  # rebuilt with the route
    assert_problem(await client.get("/v1/review-bug"), 500, "internal_error")


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/v1/redemptions/holds", "POST"),
    ("GET", "/v1/redemptions/quote", "POST"),
    ("HEAD", "/v1/redemptions/holds", "POST"),
])
async def test_a_collections_path_is_not_read_as_an_id_by_another_methods_route(
    client: httpx.AsyncClient, operator_key: str, method: str, path: str, allow: str
) -> None:
    """GET /v1/redemptions/{id} matches /v1/redemptions/holds too; "holds" is POST's path, so the
    answer is 405 naming POST, not 422 about an id nobody sent."""
    response = await client.request(method, path, headers=auth(operator_key))
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    if method != "HEAD":
        assert_problem(response, 405, "method_not_allowed")


async def test_a_bad_id_on_a_path_with_parameters_is_still_a_422(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    response = await client.get("/v1/redemptions/not-an-id", headers=auth(operator_key))
    assert_problem(response, 422, "validation_failed")


@pytest.mark.parametrize(("method", "path", "query"), [
    ("GET", "/v1/problems", b"\xff=1"), ("GET", "/v1/programmes", b"limit=\xff"),
    ("POST", "/v1/enterprises", b"\xff=1"), ("GET", "/v1/nothing", b"\xff"), ("GET", "/v1/programmes/", b"\xff"),
])
async def test_query_bytes_no_utf8_reads_are_refused_not_a_500(
    app, operator_key: str, method: str, path: str, query: bytes
) -> None:
    """uvicorn turns such bytes away itself, but another ASGI server may pass them: the problem's
    `instance`, the Idempotency-Key's fingerprint and the framework's trailing-slash redirect had
    read request.url, whose strict decode of the query raised (an independent review). They are
    refused before anything reads them."""
    from tests.http.test_body_limits import Call

    headers = [(b"authorization", f"Bearer {operator_key}".encode()), (b"content-type", b"application/json"),
               (b"idempotency-key", b"raw-query-1"), (b"content-length", b"2")]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 5000), "server": ("test", 80)}
    made = Call([b"{}"])
    await app(scope, made.receive, made.send)
    assert made.status == 400, made.messages
    assert made.body["code"] == "bad_request" and "UTF-8" in made.body["detail"]


@pytest.mark.parametrize("path", ["/console", "/console/login", "/console/operator", "/console/language/zh"])
async def test_the_console_takes_query_bytes_no_utf8_reads_without_a_500(app, path: str) -> None:
    from tests.http.test_body_limits import Call

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"next=\xff", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 5000), "server": ("test", 80)}
    made = Call([b""])
    await app(scope, made.receive, made.send)
    assert made.status < 500, made.messages
