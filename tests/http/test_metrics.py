"""Prometheus metrics: scraped from /metrics and parsed as Prometheus would parse them.

Metrics are per process and these tests share the process, so each test compares a scrape
after its requests with one before, or uses labels only it can produce (its own programme)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.voucher import driver, metrics
from services.voucher.redemption import service as redemption
from tests.conftest import ENGINE
from tests.live_server import ROOT
from tests.support import assert_problem, auth
from tests.world import World, build_world

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def world(app: Any, client: httpx.AsyncClient) -> World:
    return await build_world(app, client, budget_total=1_000_000_000, enterprise_cap=200_000_000,
                             max_per_voucher=100_000_000, rate_table={"accelerator:domestic": 3000})


async def test_requests_are_labelled_by_route_template_never_by_raw_path(
    client: httpx.AsyncClient, operator_key: str
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(2)]
    before = await scrape(client)
    for voucher_id in ids:
        assert_problem(await client.get(f"/v1/vouchers/{voucher_id}", headers=auth(operator_key)), 404, "not_found")
    assert (await client.get("/v1/problems", headers=auth(operator_key))).status_code == 200
    assert (await client.get(f"/no/such/{ids[0]}")).status_code == 404
    assert (await client.get(f"/also/not/here/{ids[1]}")).status_code == 404
    assert (await client.get("/docs-assets/favicon.png")).status_code == 200  # a mounted app
    assert (await client.get("/console/sign-in")).status_code == 200  # a route of a mounted app
    after_text = (await client.get("/metrics")).text
    after = parse(after_text)

    template = {"method": "GET", "route": "/v1/vouchers/{voucher_id}"}
    requests, duration = "voucher_http_requests_total", "voucher_http_request_duration_seconds_count"
    assert value(after, requests, **template, status="404") - value(before, requests, **template, status="404") == 2
    assert value(after, duration, **template) - value(before, duration, **template) == 2
    problems = {"method": "GET", "route": "/v1/problems", "status": "200"}
    assert value(after, requests, **problems) - value(before, requests, **problems) == 1
    unmatched = {"method": "GET", "route": metrics.UNMATCHED, "status": "404"}
    assert value(after, requests, **unmatched) - value(before, requests, **unmatched) == 2
    assets = {"method": "GET", "route": "/docs-assets/{path}", "status": "200"}
    assert value(after, requests, **assets) - value(before, requests, **assets) == 1
    console = {"method": "GET", "route": "/console/sign-in", "status": "200"}  # was "/sign-in"
    assert value(after, requests, **console) - value(before, requests, **console) == 1
    for voucher_id in ids:  # no raw path, id or unmatched path became a label
        assert voucher_id not in after_text
    assert "/no/such" not in after_text and "/also/not/here" not in after_text


async def test_a_made_up_method_is_labelled_other(client: httpx.AsyncClient) -> None:
    """Servers other than httptools pass any method through to a 405: each made-up one had been a
    series of its own, and anyone without a key could grow /metrics without bound."""
    before = await scrape(client)
    for n in range(3):
        assert (await client.request(f"XMADEUP{n}", "/v1/me")).status_code == 405
    after_text = (await client.get("/metrics")).text
    labels = {"method": "other", "route": "/v1/me", "status": "405"}
    assert value(parse(after_text), "voucher_http_requests_total", **labels) - value(
        before, "voucher_http_requests_total", **labels) == 3
    assert "XMADEUP" not in after_text


async def test_metrics_need_no_key_and_count_themselves_by_template(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    after = await scrape(client)
    labels = {"method": "GET", "route": "/metrics", "status": "200"}
    assert value(after, "voucher_http_requests_total", **labels) - value(
        before, "voucher_http_requests_total", **labels) == 1


async def test_redemptions_and_subsidy_count_only_what_commits(
    world: World, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = {"programme_id": world.programme["id"], "kind": "compute"}
    voucher = await world.issue(3_000_000)

    redeemed = await world.hold(voucher, 4_000_000, order="PO-1", path="/v1/redemptions")
    assert redeemed.status_code == 201 and redeemed.json()["captured_amount"] == 1_200_000
    hold = await world.hold(voucher, 2_000_000, order="PO-2")
    assert hold.status_code == 201 and hold.json()["held_amount"] == 600_000
    captured = await world.post(f"/v1/redemptions/{hold.json()['id']}/capture", {"amount": 500_000})
    assert captured.status_code == 200, captured.text
    samples = await scrape(client)
    assert value(samples, "voucher_redemptions_total", **labels) == 2
    assert value(samples, "voucher_subsidy_amount_total", **labels, unit="CNY") == 1_700_000

    # A refusal moves nothing and counts nothing.
    assert_problem(await world.hold(voucher, 4_000_000, order="PO-1", key="again", path="/v1/redemptions"), 409,
                   "order_already_subsidised")
    # A capture that got as far as the counting point and then failed is rolled back: not counted.
    async def fail(*_: Any, **__: Any) -> None:
        raise RuntimeError("the database went away after the capture was posted")

    monkeypatch.setattr(redemption, "_settle", fail)  # after the capture was counted
    failed = await world.hold(voucher, 1_000_000, order="PO-3", path="/v1/redemptions")
    assert_problem(failed, 500, "internal_error")
    monkeypatch.undo()

    samples = await scrape(client)
    assert value(samples, "voucher_redemptions_total", **labels) == 2
    assert value(samples, "voucher_subsidy_amount_total", **labels, unit="CNY") == 1_700_000
    assert (await world.voucher(voucher["id"]))["balances"]["used"] == 1_700_000  # it really rolled back


async def test_expired_holds_count_when_their_release_commits(
    app: Any, world: World, client: httpx.AsyncClient, clock: Any
) -> None:
    labels = {"programme_id": world.programme["id"]}
    voucher = await world.issue(10_000_000)
    for order in ("PO-1", "PO-2"):
        assert (await world.hold(voucher, 1_000_000, order=order)).status_code == 201
    clock.advance(seconds=1801)

    class Abort(Exception):
        pass

    with pytest.raises(Abort):  # the job's transaction rolls back: nothing expired, nothing counted
        async with app.state.database.unit_of_work() as session:
            assert await redemption.expire_holds(session, clock()) == 2
            raise Abort
    assert value(await scrape(client), "voucher_holds_expired_total", **labels) == 0

    # A new hold on the voucher releases both expired holds in its own transaction.
    assert (await world.hold(voucher, 1_000_000, order="PO-3")).status_code == 201
    assert value(await scrape(client), "voucher_holds_expired_total", **labels) == 2
    clock.advance(seconds=1801)
    async with app.state.database.unit_of_work() as session:
        assert await redemption.expire_holds(session, clock()) == 1
    assert value(await scrape(client), "voucher_holds_expired_total", **labels) == 3


async def test_an_increment_inside_a_rolled_back_savepoint_is_dropped(app: Any) -> None:
    counted: list[str] = []
    async with app.state.database.unit_of_work() as session:
        metrics.on_commit(session, lambda: counted.append("outer"))
        savepoint = await session.begin_nested()
        metrics.on_commit(session, lambda: counted.append("rolled back"))
        await savepoint.rollback()
        async with session.begin_nested():
            metrics.on_commit(session, lambda: counted.append("released"))
        assert counted == []  # nothing before the commit
    assert counted == ["outer", "released"]


async def test_job_and_webhook_metrics(client: httpx.AsyncClient) -> None:
    job = f"test_job_{uuid.uuid4().hex[:8]}"
    metrics.job_ran(job, "ok", 0.2, items=3, lag_seconds=42.5)
    metrics.job_ran(job, "error", 0.1, items=0, lag_seconds=7)
    before = await scrape(client)
    metrics.webhook_delivery("delivered")
    metrics.webhook_delivery("delivered")
    metrics.webhook_delivery("failed")
    after = await scrape(client)

    assert value(after, "voucher_job_runs_total", job=job, outcome="ok") == 1
    assert value(after, "voucher_job_runs_total", job=job, outcome="error") == 1
    assert value(after, "voucher_job_items_total", job=job) == 3
    assert value(after, "voucher_job_duration_seconds_count", job=job) == 2
    assert value(after, "voucher_job_duration_seconds_sum", job=job) == pytest.approx(0.3)
    assert value(after, "voucher_job_lag_seconds", job=job) == 7  # the last run's lag
    delivered = value(after, "voucher_webhook_deliveries_total", outcome="delivered")
    assert delivered - value(before, "voucher_webhook_deliveries_total", outcome="delivered") == 2
    failed = value(after, "voucher_webhook_deliveries_total", outcome="failed")
    assert failed - value(before, "voucher_webhook_deliveries_total", outcome="failed") == 1


def test_workers_share_one_view_in_multiprocess_mode(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two worker processes, each with its own registry: with PROMETHEUS_MULTIPROC_DIR a scrape
    of any process reports the sum over all of them (what uvicorn --workers N needs)."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {**os.environ, metrics.MULTIPROC_ENV: str(directory)}
    work = (
        "import sys; from services.voucher import metrics\n"
        "for _ in range(int(sys.argv[1])): metrics.http_request('GET', '/v1/problems/{code}', 200, 0.01)\n"
        "metrics.webhook_delivery('delivered')\n"
    )
    workers = [subprocess.Popen([sys.executable, "-c", work, str(n)], cwd=ROOT, env=env) for n in (5, 7)]
    assert [w.wait(60) for w in workers] == [0, 0]

    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(directory))
    samples = parse(metrics.exposition().decode())
    labels = {"method": "GET", "route": "/v1/problems/{code}"}
    assert value(samples, "voucher_http_requests_total", **labels, status="200") == 12
    assert value(samples, "voucher_http_request_duration_seconds_count", **labels) == 12
    assert value(samples, "voucher_webhook_deliveries_total", outcome="delivered") == 2


async def test_with_a_token_set_metrics_need_it(app: Any, client: httpx.AsyncClient) -> None:
    """Issue 19, finding 9: /metrics is not public where the operator set a token."""
    from pydantic import SecretStr

    token = "m" * 24
    app.state.settings = app.state.settings.model_copy(update={"metrics_token": SecretStr(token)})
    for headers in ({}, {"Authorization": "Bearer " + "x" * 24}, {"Authorization": f"Basic {token}"}):
        refused = await client.get("/metrics", headers=headers)
        assert_problem(refused, 401, "unauthenticated")
        assert refused.headers["www-authenticate"] == "Bearer"
    assert (await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})).status_code == 200


async def test_production_without_a_token_does_not_serve_metrics(app: Any, client: httpx.AsyncClient) -> None:
    app.state.settings = app.state.settings.model_construct(**{**dict(app.state.settings), "environment": "production"})
    assert_problem(await client.get("/metrics"), 404, "not_found")


def test_a_metrics_token_is_long_enough_and_empty_means_none() -> None:
    from services.voucher.settings import Settings

    assert Settings(metrics_token="").metrics_token is None
    with pytest.raises(ValueError, match="at least 16"):
        Settings(metrics_token="short")


@pytest.mark.skipif(ENGINE != "postgresql", reason="round trips are counted on PostgreSQL (SQLite has none)")
async def test_a_requests_round_trips_are_counted_by_the_time_it_is_answered(
    world: World, client: httpx.AsyncClient
) -> None:
    """Round trips are gathered per process and added to the counter once per request: the
    counter holds a request's own by the time its answer is out, scrape or no scrape."""
    voucher = await world.issue(5_000_000)
    driver.flush_counts()
    before = driver.ROUND_TRIPS._value.get()  # noqa: SLF001
    assert (await world.hold(voucher, 1_000_000, order="PO-counted")).status_code == 201
    assert driver.ROUND_TRIPS._value.get() - before >= 2  # noqa: SLF001 - the claim and locks, then the commit
    scraped = await scrape(client)  # the scrape itself sends nothing to the database
    assert value(scraped, "voucher_db_round_trips_total") == driver.ROUND_TRIPS._value.get()  # noqa: SLF001
