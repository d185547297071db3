"""The one-statement append paths: remembered stream heads, the stream lock, races with the append function.

The model test (test_log_model) covers their outcomes at random; these tests pin the cases that need a setup it
cannot reach: a remembered head ahead of the database, and appends racing one still in flight.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg
import pytest

from agentlog.eventstore import (
    DatabaseUnavailableError,
    EventIdConflictError,
    EventStore,
    NewEvent,
    StreamAppend,
    new_event_id,
)
from agentlog.eventstore.postgres.connections import connect
from agentlog.eventstore.postgres.queries import QUERIES
from tests.support.events import Tick, test_catalogue


@pytest.fixture
async def log(database_url: str) -> EventStore:
    async with EventStore.open(database_url, catalogue=test_catalogue, pool_size=2) as store:
        yield store


async def test_a_store_forgets_stream_heads_when_its_connections_are_replaced(log: EventStore) -> None:
    """A server that lost committed events (a restore, a failover) restarts: what the store remembers of its
    streams is then worthless, and appending after it would leave a gap in the stream's versions."""
    await log.append("test-s", [Tick(n=1), Tick(n=2)])
    # As if versions 3..40 had been committed, then lost with the server:
    log._heads.reached("test-s", 40, log._heads.epoch)
    await log.pool.execute("SELECT 1")
    admin = await asyncpg.connect(log.url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name = 'agentlog'"
        )
    finally:
        await admin.close()
    try:
        appended = await log.append("test-s", [Tick(n=3)])
    except DatabaseUnavailableError:  # the cut was noticed only when the pool's connection was used
        appended = await log.append("test-s", [Tick(n=3)])
    assert appended.stream_version == 3
    assert [event.stream_version for event in await log.read_stream("test-s")] == [1, 2, 3]


async def test_a_remembered_head_overtaken_by_another_writer_still_appends_at_the_head(
    log: EventStore, database_url: str
) -> None:
    async with EventStore.open(database_url, catalogue=test_catalogue) as other:
        await log.append("test-s", [Tick(n=1)])
        await other.append("test-s", [Tick(n=2), Tick(n=3)])
        appended = await log.append("test-s", [Tick(n=4)])  # log remembers version 1
        assert appended.stream_version == 4
        appended = await other.append("test-s", [Tick(n=5)])  # other remembers version 3
        assert appended.stream_version == 5
    assert [event.data["n"] for event in await log.read_stream("test-s")] == [1, 2, 3, 4, 5]


async def in_flight(url: str, stream_id: str, event_id: UUID, n: int) -> asyncpg.Connection:
    """A one-statement append that has inserted its row and not committed yet (its connection, to commit)."""
    racer = await connect(url)
    await racer.execute("BEGIN")
    await racer.fetch(
        QUERIES["append_one_to_stream"], stream_id, None, None, event_id, "Tick", 1, Tick(n=n).to_json(), b"{}"
    )
    return racer


async def test_one_statement_appends_take_the_stream_lock(log: EventStore) -> None:
    """append_events counts on it: while it holds a stream's lock, no other append has rows of it in flight."""
    holder = await connect(log.url)
    try:
        for attempt in ("head looked up", "after the remembered head"):
            await holder.execute("BEGIN")
            await holder.execute("SELECT pg_advisory_xact_lock(1095524683, hashtext('test-s'))")
            append = asyncio.create_task(log.append("test-s", [Tick(n=1)]))
            await asyncio.sleep(0.2)
            assert not append.done(), f"the append ({attempt}) did not wait for the stream's lock"
            await holder.execute("COMMIT")
            await append
    finally:
        await holder.close()
    assert [event.stream_version for event in await log.read_stream("test-s")] == [1, 2]


async def test_a_retry_through_a_transaction_racing_its_original_is_a_duplicate(
    log: EventStore, database_url: str
) -> None:
    await log.append("test-s", [Tick(n=0)])
    event_id = new_event_id()
    racer = await in_flight(database_url, "test-s", event_id, 1)
    caller = await connect(database_url)
    try:
        async with caller.transaction():
            retry = asyncio.create_task(
                log.append("test-s", [NewEvent(Tick(n=1), event_id=event_id)], connection=caller)
            )
            await asyncio.sleep(0.2)
            await racer.execute("COMMIT")
            result = await retry
    finally:
        await racer.close()
        await caller.close()
    assert [(event.duplicate, event.stream_version) for event in result.events] == [(True, 2)]


async def test_a_batch_with_an_id_its_racing_original_recorded_and_a_new_one_is_refused_whole(
    log: EventStore, database_url: str
) -> None:
    await log.append("test-s", [Tick(n=0)])
    recorded, new = new_event_id(), new_event_id()
    racer = await in_flight(database_url, "test-s", recorded, 1)
    caller = await connect(database_url)
    try:
        with pytest.raises(EventIdConflictError):
            async with caller.transaction():
                batch = asyncio.create_task(
                    log.append(
                        "test-s",
                        [NewEvent(Tick(n=1), event_id=recorded), NewEvent(Tick(n=2), event_id=new)],
                        connection=caller,
                    )
                )
                await asyncio.sleep(0.2)
                await racer.execute("COMMIT")
                await batch
    finally:
        await racer.close()
        await caller.close()
    assert [event.event_id for event in await log.read_stream("test-s")][1:] == [recorded]


async def test_a_batch_over_streams_racing_the_original_of_one_of_its_ids_reports_every_event(
    log: EventStore, database_url: str
) -> None:
    await log.append("test-s", [Tick(n=0)])
    event_id = new_event_id()
    racer = await in_flight(database_url, "test-s", event_id, 1)
    try:
        batch = asyncio.create_task(
            log.append_batch(
                [
                    StreamAppend("test-s", (NewEvent(Tick(n=1), event_id=event_id),)),
                    StreamAppend("test-t", (Tick(n=2),)),
                ]
            )
        )
        await asyncio.sleep(0.2)
        await racer.execute("COMMIT")
        results = await batch
    finally:
        await racer.close()
    assert [[event.duplicate for event in result.events] for result in results] == [[True], [False]]


async def test_an_append_waiting_behind_a_one_statement_append_takes_the_next_version(log: EventStore) -> None:
    racer = await in_flight(log.url, "test-s", new_event_id(), 1)
    try:
        waiting = asyncio.create_task(log.append("test-s", [Tick(n=2)]))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await racer.execute("COMMIT")
        assert (await waiting).stream_version == 2
    finally:
        await racer.close()
    with pytest.raises(asyncpg.UniqueViolationError):  # a remembered head gone stale fails on the key
        await log.pool.fetch(
            QUERIES["append_one_to_stream"], "test-s", None, 1, new_event_id(), "Tick", 1, b'{"n": 3}', b"{}"
        )
