"""The one-statement append paths: remembered stream heads, and no stream lock.

The model test (test_log_model) covers their outcomes at random; these tests pin the cases that need a setup it
cannot reach: a remembered head ahead of the database, and a race with an append inside an open transaction.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from eventstore import ConcurrencyRetryError, DatabaseUnavailableError, EventStore, new_event_id
from eventstore.postgres.connections import connect
from eventstore.postgres.queries import QUERIES
from tests.support.events import Tick, test_catalogue


@pytest.fixture
async def log(database_url: str) -> EventStore:
    async with EventStore.open(database_url, catalogue=test_catalogue, pool_size=2) as store:
        yield store


async def test_a_store_forgets_stream_heads_when_its_connections_are_replaced(log: EventStore) -> None:
    """A server that lost committed events (a restore, a failover) restarts: what the store remembers of its
    streams is then worthless, and appending after it would leave a gap in the stream's versions."""
    await log.append("test-s", [Tick(n=1), Tick(n=2)])
    log._heads.reached("test-s", 40)  # as if versions 3..40 had been committed, then lost with the server
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


async def test_an_open_transaction_that_loses_a_version_to_a_one_statement_append_must_retry(
    log: EventStore, database_url: str
) -> None:
    """The one-statement append takes no stream lock, so an append inside a caller's transaction can find the
    version it wanted taken when the other commits: that is a retry, like the order guard, not a crash."""
    racer = await connect(database_url)
    older = await connect(database_url)
    try:
        await racer.execute("BEGIN")
        await racer.fetch(
            QUERIES["append_event_fast"], "test-s", None, new_event_id(), "Tick", 1, b'{"n": 1}', b"{}"
        )  # version 1 inserted, not yet committed
        async with older.transaction():
            blocked = asyncio.create_task(log.append("test-s", [Tick(n=2)], connection=older))
            await asyncio.sleep(0.2)
            assert not blocked.done(), "the append should wait for the uncommitted version 1"
            await racer.execute("COMMIT")
            with pytest.raises(ConcurrencyRetryError):
                await blocked
            raise asyncio.CancelledError  # roll back
    except asyncio.CancelledError:
        pass
    finally:
        await racer.close()
        await older.close()
    assert [event.stream_version for event in await log.read_stream("test-s")] == [1]


async def test_an_append_waiting_behind_a_one_statement_append_takes_the_next_version(log: EventStore) -> None:
    racer = await connect(log.url)
    try:
        await racer.execute("BEGIN")
        await racer.fetch(
            QUERIES["append_event_fast"], "test-s", None, new_event_id(), "Tick", 1, b'{"n": 1}', b"{}"
        )
        waiting = asyncio.create_task(log.append("test-s", [Tick(n=2)]))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await racer.execute("COMMIT")
        assert (await waiting).stream_version == 2
    finally:
        await racer.close()
    with pytest.raises(asyncpg.UniqueViolationError):  # the key, not a lock, keeps versions unique
        await log.pool.fetch(
            QUERIES["append_event_after"], "test-s", 1, new_event_id(), "Tick", 1, b'{"n": 3}', b"{}"
        )
