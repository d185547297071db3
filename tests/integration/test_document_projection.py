"""The documents projection counts work, not leaving: `last_activity_at` follows joins, edits and activations
(issue 10, item 4), as the agent manager's eviction order does; edits are not history rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agentlog.domains.documents.events import (
    DocumentActivated,
    DocumentEdited,
    DocumentIdled,
    PersonJoined,
    PersonLeft,
)
from agentlog.eventstore import ANY, EventStore
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
