"""A poison event cannot stop the fleet (issue 9, item 8): the SQL path refuses payloads failing their schema
where it can, and every handler treats an event it cannot decode as a recorded, deterministic skip — live, in a
rebuild and in a refold alike — while an event from a newer release holds a handler rather than being skipped."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import ClassVar

import asyncpg
import pytest
from structlog.testing import capture_logs

from agentlog.domains.documents.events import PersonJoined
from agentlog.eventstore import ANY, EventStore, TypedEvent
from agentlog.eventstore.decoding import decode_wanted
from agentlog.eventstore.postgres import recorder
from agentlog.handlers import Handler, HandlerBatch, HandlerRunner
from agentlog.handlers.decider import DecisionHandler, verify_decider
from agentlog.handlers.documents.activity import DocumentActivity
from agentlog.handlers.projection_handler import ProjectionHandler
from agentlog.projections import installed_projections
from agentlog.projections.replay import rebuild, verify

ROOT = Path(__file__).resolve().parents[2]

# Passes every check the SQL path can make (fields and their JSON types), fails the model (people_present >= 1).
POISON = '{"user_id": "mallory", "people_present": 0, "connection_id": "c-x", "server_id": "s"}'


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    async with EventStore.open(database_url, poll_interval=0.1) as opened:
        yield opened


def joined(user: str) -> PersonJoined:
    return PersonJoined(user_id=user, people_present=1, connection_id=f"c-{user}", server_id="s")


async def run_until_caught_up(store: EventStore, handlers: Sequence[Handler]) -> None:
    runner = HandlerRunner(store, handlers, batch_size=2)
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(20):
            while True:
                head = await store.head()
                checkpoints = [await recorder.select_checkpoint(store.pool, handler.name) for handler in handlers]
                if all(checkpoint == head for checkpoint in checkpoints):
                    break
                await asyncio.sleep(0.02)
    finally:
        runner.stop.set()
        await task


async def test_the_sql_path_refuses_a_payload_without_its_fields(store: EventStore) -> None:
    with pytest.raises(asyncpg.PostgresError, match="missing field"):
        await store.pool.execute("SELECT agentlog.append_event('document-x', 'PersonJoined', '{\"bogus\": true}')")
    assert await store.read_all() == []


async def test_a_poison_event_is_skipped_recorded_and_the_deciders_go_on(store: EventStore) -> None:
    await store.pool.execute(
        "SELECT agentlog.append_event('document-poisoned', 'PersonJoined', $1::jsonb, schema_version => 2)",
        json.loads(POISON),
    )
    await store.append("document-healthy", [joined("ada")], ANY)
    decider = DocumentActivity(idle_grace_s=30)
    projection = installed_projections().found["document_activity"]
    with capture_logs() as logs:
        await run_until_caught_up(store, [DecisionHandler(decider), ProjectionHandler(projection)])

    # The fleet goes on: the healthy document was activated after the poison, and its activity projected.
    activated = [e.stream_id for e in await store.read_all(limit=100) if e.event_type == "DocumentActivated"]
    assert activated == ["document-healthy"]
    rows = await store.pool.fetch("SELECT document_id, status FROM projections.documents")
    assert [tuple(row) for row in rows] == [("healthy", "active")]

    # The skip is visible: recorded per handler, in the lag, in a report, in a log line naming it.
    for name in ("document-activity", "document_activity"):
        (skipped,) = await recorder.select_skipped(store.pool, name)
        assert skipped.stream_id == "document-poisoned" and skipped.event_type == "PersonJoined"
        assert "people_present" in skipped.reason
    lags = {lag.name: lag.events_skipped for lag in await recorder.select_handler_lag(store.pool)}
    assert lags == {"document-activity": 1, "document_activity": 1}
    report = await store.pool.fetch("SELECT handler, stream_id FROM reports.skipped_events")
    assert sorted(tuple(row) for row in report) == [
        ("document-activity", "document-poisoned"),
        ("document_activity", "document-poisoned"),
    ]
    warnings = [entry for entry in logs if entry["event"] == "handler.event_skipped"]
    assert {entry["handler"] for entry in warnings} == {"document-activity", "document_activity"}
    assert all(entry["stream_id"] == "document-poisoned" for entry in warnings)

    # A refold skips it the same way: the recorded decisions are the refolded ones.
    until = await recorder.select_checkpoint(store.pool, decider.name)
    assert until is not None
    assert await verify_decider(store, DocumentActivity(idle_grace_s=30), until=until) == []

    # And so does a rebuild: the same tables, the same one skip, now recorded by the rebuilt projection.
    assert (await verify(store, projection)).differences == []
    await rebuild(store, projection)
    assert len(await recorder.select_skipped(store.pool, "document_activity")) == 1
    assert [tuple(row) for row in await store.pool.fetch("SELECT document_id, status FROM projections.documents")] == [
        ("healthy", "active")
    ]
    leftovers = await store.pool.fetchval(
        "SELECT count(*) FROM agentlog.skipped_events WHERE handler_name LIKE 'replay.%'"
    )
    assert leftovers == 0


async def test_agentlog_handler_skipped_lists_them(store: EventStore, database_url: str) -> None:
    await store.pool.execute(
        "SELECT agentlog.append_event('document-poisoned', 'PersonJoined', $1::jsonb, schema_version => 2)",
        json.loads(POISON),
    )
    await run_until_caught_up(store, [ProjectionHandler(installed_projections().found["document_activity"])])
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTLOG_")}
    env["AGENTLOG_DATABASE_URL"] = database_url
    for arguments in (["skipped", "document_activity", "--json"], ["skipped", "document_activity"], ["lag"]):
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "agentlog.cli", "handler", *arguments],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        if "--json" in arguments:
            (listed,) = json.loads(result.stdout)
            assert listed["stream_id"] == "document-poisoned" and "people_present" in listed["reason"]
        elif "lag" in arguments:
            line = next(line for line in result.stdout.splitlines() if "document_activity" in line)
            assert " 1 " in line  # the skipped column
        else:
            assert "document-poisoned" in result.stdout


async def test_an_event_no_upcaster_can_take_is_skipped_with_the_upcasters_error(
    store: EventStore, owner_database_url: str
) -> None:
    owner = await asyncpg.connect(owner_database_url)
    try:  # written around agentlog's checks: a version-1 payload without its user
        await owner.execute(
            "INSERT INTO agentlog.events (event_id, stream_id, stream_version, event_type, schema_version, data) "
            "VALUES (gen_random_uuid(), 'document-old', 1, 'PersonJoined', 1, '{\"people_present\": 1}')"
        )
    finally:
        await owner.close()
    recorded = await store.read_all()
    typed, undecodable = decode_wanted(store.catalogue, recorded, frozenset({"PersonJoined"}))
    assert typed == []
    (skip,) = undecodable
    assert "cannot be upcast" in skip.reason and "KeyError" in skip.reason


class Counting:
    """Counts the typed events it sees, in a table of its own."""

    name: ClassVar[str] = "counting"
    event_types: ClassVar[frozenset[str] | None] = frozenset({"PersonJoined"})

    def __init__(self) -> None:
        self.seen: list[TypedEvent] = []

    async def handle(self, batch: HandlerBatch) -> None:
        self.seen.extend(batch.events)


async def test_an_event_from_a_newer_release_holds_the_handler_instead_of_being_skipped(
    store: EventStore, owner_database_url: str
) -> None:
    await store.append("document-a", [joined("ada")], ANY)
    owner = await asyncpg.connect(owner_database_url)
    try:  # as a newer release would write it: a schema version this catalogue does not know
        await owner.execute(
            "INSERT INTO agentlog.events (event_id, stream_id, stream_version, event_type, schema_version, data) "
            "VALUES (gen_random_uuid(), 'document-a', 2, 'PersonJoined', 3, '{\"user_id\": \"bob\"}')"
        )
    finally:
        await owner.close()
    await store.append("document-b", [joined("cy")], ANY)
    handler = Counting()
    runner = HandlerRunner(store, [handler], batch_size=1)
    with capture_logs() as logs:
        task = asyncio.create_task(runner.run())
        async with asyncio.timeout(10):
            while not [entry for entry in logs if entry["event"] == "handler.held"]:
                await asyncio.sleep(0.02)
        runner.stop.set()
        await task
    held = next(entry for entry in logs if entry["event"] == "handler.held")
    assert "newer than this catalogue knows" in held["error"]
    assert [event.event.user_id for event in handler.seen] == ["ada"]  # nothing past the newer event
    assert await recorder.select_skipped(store.pool, "counting") == []
