"""The documents projection counts work, not leaving: `last_activity_at` follows joins, edits and activations
(issue 10, item 4), as the agent manager's eviction order does; edits are not history rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agentlog.domains.agents.events import ManagerStarted, ManagerStopped
from agentlog.domains.documents.events import (
    DocumentActivated,
    DocumentEdited,
    DocumentIdled,
    PersonJoined,
    PersonLeft,
)
from agentlog.domains.documents.presence import Presence
from agentlog.eventstore import ANY, Event, EventStore
from agentlog.eventstore.postgres import recorder
from agentlog.handlers import HandlerRunner
from agentlog.handlers.projection_handler import ProjectionHandler
from agentlog.projections import installed_projections
from agentlog.projections.replay import verify


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    async with EventStore.open(database_url, poll_interval=0.1) as opened:
        yield opened


async def project(store: EventStore) -> None:
    runner = HandlerRunner(store, [ProjectionHandler(installed_projections().found["document_activity"])], batch_size=2)
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(20):
            while await recorder.select_checkpoint(store.pool, "document_activity") != await store.head():
                await asyncio.sleep(0.02)
    finally:
        runner.stop.set()
        await task


async def test_last_activity_is_the_latest_join_edit_or_activation_never_a_leave(store: EventStore) -> None:
    ada = {"user_id": "ada", "connection_id": "c1", "server_id": "s1"}
    stream = "document-trip"
    await store.append(stream, [PersonJoined(**ada, people_present=1)], ANY)
    await store.append(stream, [DocumentActivated(document_id="trip", people_present=1, server_id="s1")], ANY)
    await store.append(stream, [DocumentEdited(document_id="trip", server_id="s1", updates=12)], ANY)
    await store.append(stream, [PersonLeft(**ada, people_present=0)], ANY)
    await store.append(stream, [DocumentIdled(document_id="trip", reason="nobody came back")], ANY)
    await project(store)
    times = {event.event_type: event.recorded_at for event in await store.read_stream(stream)}
    row = await store.pool.fetchrow("SELECT * FROM projections.documents WHERE document_id = 'trip'")
    assert row is not None
    assert row["last_activity_at"] == times["DocumentEdited"], "leaving or idling counted as activity"
    assert (row["status"], row["people_present"], row["activations"]) == ("idle", 0, 1)
    history = await store.pool.fetch("SELECT event_type FROM projections.document_activity ORDER BY global_position")
    assert [r["event_type"] for r in history] == ["user_joined", "active", "user_left", "idle"]
    assert (await verify(store, installed_projections().found["document_activity"])).differences == []


def _started(server: str, incarnation: str) -> ManagerStarted:
    return ManagerStarted(manager_id=server, incarnation=incarnation, host="h", pid=1, max_agents=1, document_url="ws://h")


async def test_people_present_follows_the_domains_presence_rule(store: EventStore) -> None:
    """Who is present is the documents domain's rule, in the projection as in the deciders: a connection counts
    from its join to its leave, the same connection joining twice counts once, and a server that restarts (a new
    incarnation) or stops takes its people with it, though it never sent their leaves."""
    events: list[tuple[str, Event]] = [
        ("manager-s1", _started("s1", "one")),
        ("manager-s2", _started("s2", "one")),
        ("document-trip", PersonJoined(user_id="ada", connection_id="a1", server_id="s1", people_present=1)),
        ("document-trip", PersonJoined(user_id="ada", connection_id="a1", server_id="s1", people_present=1)),
        ("document-trip", PersonJoined(user_id="bob", connection_id="b1", server_id="s2", people_present=1)),
        ("document-plan", PersonJoined(user_id="cy", connection_id="c1", server_id="s1", people_present=1)),
        ("document-plan", PersonLeft(user_id="cy", connection_id="zz", server_id="s1", people_present=0)),
        ("manager-s1", _started("s1", "two")),  # s1 restarted: ada and cy are gone with its first life
        ("document-trip", PersonJoined(user_id="dee", connection_id="d1", server_id="s1", people_present=1)),
        ("manager-s2", ManagerStopped(manager_id="s2", incarnation="one", how="lost", reason="test")),
    ]
    presence = Presence()
    for stream_id, event in events:
        await store.append(stream_id, [event], ANY)
        presence.fold(stream_id, event)
    await project(store)
    rows = await store.pool.fetch("SELECT document_id, people_present FROM projections.documents ORDER BY 1")
    assert {row["document_id"]: row["people_present"] for row in rows} == {
        "plan": presence.people_in("plan"),
        "trip": presence.people_in("trip"),
    } == {"plan": 0, "trip": 1}
    assert (await verify(store, installed_projections().found["document_activity"])).differences == []
