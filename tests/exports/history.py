"""A scripted history for the export and point-in-time tests: one programme with two vouchers,
holds, captures, a one-step redemption, a refund and a settlement, at known instants, plus a
second programme so filters have something to leave out."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support import auth, create, programme_payload
from tests.world import World, build_world

START = datetime(2026, 2, 20, 2, 0, tzinfo=UTC)


def utc(text_: str) -> datetime:
    return datetime.fromisoformat(text_).astimezone(UTC)


@dataclass
class History:
    world: World
    other_programme: dict[str, Any]
    vouchers: list[dict[str, Any]] = field(default_factory=list)
    redemptions: list[dict[str, Any]] = field(default_factory=list)
    settlement: dict[str, Any] | None = None


async def settle_february(world: World) -> dict[str, Any]:
    """The provider's settlement of February 2026, drawn up by the office."""
    settlement = await world.post("/v1/settlements", {
        "provider_id": world.provider["id"], "programme_id": world.programme["id"],
        "period_start": "2026-02-01", "period_end": "2026-02-28"}, key=world.operator)
    assert settlement.status_code == 201, settlement.text
    return settlement.json()  # type: ignore[no-any-return]


async def build_history(app: Any, client: httpx.AsyncClient, clock: Any) -> History:
    clock.current = START
    world = await build_world(app, client, rate_table={"accelerator:domestic": 3000})
    other = await create(client, world.operator, "/v1/programmes", programme_payload(tiers=[]))
    opened = await client.post(f"/v1/programmes/{other['id']}/open", headers=auth(world.operator))
    assert opened.status_code == 200, opened.text
    history = History(world, opened.json())
    clock.current = utc("2026-02-21T02:00:00+00:00")
    history.vouchers = [await world.issue(5_000_000), await world.issue(3_000_000)]
    clock.current = utc("2026-02-22T02:00:00+00:00")
    held = await world.hold(history.vouchers[0], 1_000_000, order="PO-1")
    assert held.status_code == 201, held.text
    clock.current = utc("2026-02-22T02:10:00+00:00")  # within the hold's 30 minutes
    captured = await world.post(f"/v1/redemptions/{held.json()['id']}/capture", {"amount": 200_000})
    assert captured.status_code == 200, captured.text
    clock.current = utc("2026-02-24T02:00:00+00:00")
    one_step = await world.hold(history.vouchers[1], 2_000_000, order="PO-2", path="/v1/redemptions")
    assert one_step.status_code == 201, one_step.text
    clock.current = utc("2026-02-25T02:00:00+00:00")
    refunded = await world.post(f"/v1/redemptions/{one_step.json()['id']}/refunds",
                                {"amount": 100_000, "reason": "not delivered"})
    assert refunded.status_code == 201, refunded.text
    clock.current = utc("2026-03-02T02:00:00+00:00")
    history.settlement = await settle_february(world)
    history.redemptions = []
    for made in (captured.json(), one_step.json()):  # as they stand now (after the refund)
        found = await client.get(f"/v1/redemptions/{made['id']}", headers=auth(world.operator))
        assert found.status_code == 200, found.text
        history.redemptions.append(found.json())
    clock.current = utc("2026-03-03T02:00:00+00:00")
    return history


#: What a CSV's amount column adds to its name (its figures are in minor units; the .xlsx's are in
#: the unit): read as the plain name, as a reader of both files lines them up.
MINOR_UNITS_NOTE = " (minor units)"


def read_csv(body: bytes) -> list[dict[str, str]]:
    assert body.startswith("\ufeff".encode()), body[:20]
    rows = csv.reader(io.StringIO(body.decode("utf-8-sig"), newline=""))
    header = [name.removesuffix(MINOR_UNITS_NOTE) for name in next(rows, [])]
    return [dict(zip(header, row, strict=True)) for row in rows]


def read_jsonl(body: bytes) -> list[dict[str, Any]]:
    assert not body.startswith("\ufeff".encode())
    text_ = body.decode("utf-8")
    assert text_ == "" or text_.endswith("\n")
    return [json.loads(line) for line in text_.splitlines()]
