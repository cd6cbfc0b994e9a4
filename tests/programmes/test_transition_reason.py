"""The reason an operator gives for opening, closing or archiving a programme reaches the audit
trail; it had been validated and then dropped (found by an independent review)."""

from __future__ import annotations

import httpx

from tests.support import auth, create, programme_payload


async def _event(client: httpx.AsyncClient, auditor_key: str, programme_id: str, action: str) -> dict:
    events = await client.get("/v1/audit/events", params={"resource_id": programme_id, "action": action},
                              headers=auth(auditor_key))
    assert events.status_code == 200, events.text
    [event] = events.json()["items"]
    return event  # type: ignore[no-any-return]


async def test_the_reason_for_a_programmes_transition_is_recorded(
        client: httpx.AsyncClient, operator_key: str, auditor_key: str) -> None:
    programme = await create(client, operator_key, "/v1/programmes", programme_payload())
    opened = await client.post(f"/v1/programmes/{programme['id']}/open", json={"reason": "council approved"},
                               headers=auth(operator_key))
    assert opened.status_code == 200, opened.text
    closed = await client.post(f"/v1/programmes/{programme['id']}/close", headers=auth(operator_key))
    assert closed.status_code == 200, closed.text
    assert (await _event(client, auditor_key, programme["id"], "programme.open"))["after"] == {
        "status": "open", "reason": "council approved"}
    assert (await _event(client, auditor_key, programme["id"], "programme.closed"))["after"] == {"status": "closed"}
