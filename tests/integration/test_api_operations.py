"""Conflict detection through the API (issue 13 item 5, seed 002): an operation on an entity key refuses other
agents inside its window (409 naming it and its agent), never its own agent; finished or past its window it
refuses nobody; bad keys are refused naming the field, with nothing appended."""

from __future__ import annotations

import asyncio

import httpx

from agentlog.eventstore import EventStore
from tests.support.api import RunningApi, api_running
from tests.support.coordination import settled


async def agent(api: RunningApi, agent_id: str) -> httpx.AsyncClient:
    client = api.client("agent", agent_id)
    assert (await client.put(f"/agents/{agent_id}", json={})).status_code == 201
    return client


async def test_a_second_agent_on_one_key_is_told_who_is_on_it(store: EventStore) -> None:
    async with api_running(store) as api:
        ada, bob = await agent(api, "ada"), await agent(api, "bob")
        first = await ada.post("/operations", json={"key": "email-123", "action": "reply", "operation_id": "r1"})
        assert first.status_code == 201 and first.json()["in_window"] is True, first.text
        refused = await bob.post("/operations", json={"key": " email-123 ", "action": "reply"})
        assert refused.status_code == 409, refused.text
        body = refused.json()
        assert body["holder"] == "ada" and body["conflicts"][0]["operation_id"] == "r1", body
        again = await ada.post("/operations", json={"key": "email-123", "action": "reply", "operation_id": "r1"})
        assert again.status_code == 201, "its own operation again is the one under way, not a conflict"
        other_step = await ada.post("/operations", json={"key": "email-123", "action": "file it"})
        assert other_step.status_code == 201, "an agent is never in conflict with itself"
        await settled(store)
        listed = (await bob.get("/operations", params={"key": "email-123"})).json()
        assert [row["agent_id"] for row in listed] == ["ada", "ada"]

        assert (await bob.post("/operations/r1/finish", json={"key": "email-123"})).status_code == 409
        done = await ada.post("/operations/r1/finish", json={"key": "email-123", "outcome": "sent"})
        assert done.status_code == 200 and done.json()["state"] == "finished", done.text
        assert (await ada.post("/operations/r1/finish", json={"key": "email-123"})).status_code == 404
        assert (await bob.post("/operations", json={"key": "email-123", "action": "reply"})).status_code == 409, \
            "ada's second operation is still in its window"  # fmt: skip

        short = await ada.post("/operations", json={"key": "customer-9", "action": "refund", "window_s": 0.2,
                                                    "ttl_s": 30})  # fmt: skip
        assert short.status_code == 201
        async with asyncio.timeout(20):
            while (await bob.post("/operations", json={"key": "customer-9", "action": "refund"})).status_code == 409:
                await asyncio.sleep(0.05)


async def test_bad_operations_are_refused_naming_the_field(store: EventStore) -> None:
    async with api_running(store) as api:
        ada = await agent(api, "ada")
        await settled(store)
        before = await api.event_count()
        for body, field in (
            ({"key": "   ", "action": "x"}, "key"),
            ({"key": "a\nb", "action": "x"}, "key"),
            ({"key": "k", "action": "x", "window_s": 90, "ttl_s": 60}, "window_s"),
            ({"key": "k", "action": "x", "operation_id": "no spaces"}, "operation_id"),
            ({"key": "k"}, "action"),
        ):
            answer = await ada.post("/operations", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["detail"][0]["loc"][-1] == field, (body, answer.text)
        person = api.client("person", "ada-person")
        assert (await person.post("/operations", json={"key": "k", "action": "x"})).status_code == 403
        await settled(store)
        assert await api.event_count() == before
        entry = (await ada.get("/agents/ada")).json()
        assert entry["activity"] == "active" and entry["last_active_at"] is not None, entry
