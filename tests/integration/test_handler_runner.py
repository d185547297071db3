"""The runner in this process: what an idle handler's session holds, and batches retried after a transient failure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from agentlog.eventstore import ANY, START, ConcurrencyRetryError, EventStore, RecordedEvent
from agentlog.eventstore.postgres import recorder
from agentlog.handlers import HandlerBatch, HandlerRunner
from tests.support.events import test_catalogue, ticks
from tests.support.owner import create_handler_table


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    async with EventStore.open(database_url, catalogue=test_catalogue, poll_interval=0.2) as opened:
        yield opened


class Recording:
    """Notes every event it is handed; fails its first `failures` batches with a retryable error."""

    name = "recording"
    event_types: frozenset[str] | None = None
    raw_events = True

    def __init__(self, failures: int = 0) -> None:
        self.seen: list[RecordedEvent] = []
        self.failures = failures

    async def handle(self, batch: HandlerBatch) -> None:
        # A write inside the batch's transaction: rolled back with it when the batch fails.
        await batch.connection.execute("SELECT pg_advisory_xact_lock(42)")
        if self.failures:
            self.failures -= 1
            raise ConcurrencyRetryError("a serialization failure, as the server would report it")
        self.seen.extend(batch.records)


async def wait_for_count(handler: Recording, count: int) -> None:
    async with asyncio.timeout(20):
        while len(handler.seen) < count:
            await asyncio.sleep(0.01)


async def test_an_idle_handler_holds_no_lock_snapshot_or_transaction_id(
    store: EventStore, owner_database_url: str
) -> None:
    """Between batches the handler's session waits in a transaction that has run nothing: it must not hold back
    vacuum or the visibility barrier (no xmin, no xid) nor block DDL (no table lock)."""
    handler = Recording()
    runner = HandlerRunner(store, [handler])
    task = asyncio.create_task(runner.run())
    try:
        await store.append("test-1", ticks(3), ANY)
        await wait_for_count(handler, 3)
        await asyncio.sleep(0.2)  # the claim after the batch finds nothing and ends its transaction
        other = await asyncpg.connect(owner_database_url)  # only the owner may lock the log
        try:
            session = await other.fetchrow(
                "SELECT state, backend_xid, backend_xmin FROM pg_stat_activity WHERE application_name = $1",
                "agentlog handler recording",
            )
            assert session is not None
            assert (session["backend_xid"], session["backend_xmin"]) == (None, None)
            async with other.transaction():
                await other.execute("SET LOCAL lock_timeout = '2s'")
                await other.execute(
                    "LOCK TABLE agentlog.events, agentlog.checkpoints IN ACCESS EXCLUSIVE MODE"
                )  # raises LockNotAvailableError if the idle handler still held a lock
        finally:
            await other.close()
        await store.append("test-1", ticks(2, start=3), ANY)
        await wait_for_count(handler, 5)
    finally:
        runner.stop.set()
        await task
    assert [event.stream_version for event in handler.seen] == [1, 2, 3, 4, 5]


async def test_a_batch_failing_with_a_retryable_error_is_rolled_back_and_applied_once(store: EventStore) -> None:
    handler = Recording(failures=2)
    runner = HandlerRunner(store, [handler])
    task = asyncio.create_task(runner.run())
    try:
        await store.append("test-1", ticks(4), ANY)
        await wait_for_count(handler, 4)
        await store.append("test-1", ticks(1, start=4), ANY)
        await wait_for_count(handler, 5)
    finally:
        runner.stop.set()
        await task
    assert handler.failures == 0
    assert [event.stream_version for event in handler.seen] == [1, 2, 3, 4, 5]
    assert runner.instances[0].batches_applied == 2


async def test_events_are_stamped_when_appended_not_when_their_transaction_began(store: EventStore) -> None:
    """Handler batches run in transactions begun ahead of time; timers are due at `recorded_at` plus a delay."""
    async with store.pool.acquire() as connection, connection.transaction():
        began = await connection.fetchval("SELECT now()")
        await asyncio.sleep(0.3)
        await store.append("test-1", ticks(1), ANY, connection=connection)
        await store.append("test-1", ticks(1, start=1), ANY, connection=connection)  # the batch function too
    events = await store.read_stream("test-1")
    assert all((event.recorded_at - began).total_seconds() >= 0.25 for event in events)


class AppendsToBusyStream:
    """For every event of `test-in`, appends to `test-busy`, which another writer appends to while the batch runs
    (after the batch's claim gave its transaction an id, as a hammering writer would)."""

    name = "busy-appender"
    event_types: frozenset[str] | None = frozenset({"Tick"})
    raw_events = True  # Tick is the tests' own type, not in the catalogue of `store`

    def __init__(self, other: EventStore) -> None:
        self.other = other
        self.attempts = 0

    async def handle(self, batch: HandlerBatch) -> None:
        for event in batch.records:
            if event.stream_id != "test-in":
                continue
            self.attempts += 1
            await self.other.append("test-busy", ticks(1, writer=1))  # commits now, with a newer transaction id
            await batch.append("test-busy", ticks(1, start=event.stream_version, writer=2))


async def test_a_handler_appending_to_a_busy_stream_is_never_refused(store: EventStore, database_url: str) -> None:
    """Its batch's transaction is older than the stream's head by the time it appends; that must neither fail
    the batch nor reorder the stream (issue 9, item 5: handlers starved on hammered streams)."""
    async with EventStore.open(database_url, catalogue=test_catalogue) as other:
        handler = AppendsToBusyStream(other)
        runner = HandlerRunner(store, [handler], batch_size=1)
        task = asyncio.create_task(runner.run())
        try:
            await store.append("test-in", ticks(5), ANY)
            async with asyncio.timeout(20):
                while len([e for e in await store.read_stream("test-busy") if e.data["writer"] == 2]) < 5:
                    await asyncio.sleep(0.02)
        finally:
            runner.stop.set()
            await task
    assert handler.attempts == 5  # one attempt per event: no batch was refused and retried
    busy = await store.read_stream("test-busy")
    assert [event.stream_version for event in busy] == list(range(1, 11))
    in_log_order = [event for event in await store.read_all(limit=100) if event.stream_id == "test-busy"]
    assert [event.stream_version for event in in_log_order] == list(range(1, 11))


class Careless:
    """Records each event in a table and, while `swallowing`, runs a failing statement and ignores its error: the
    mistake that leaves the batch's transaction failed, though no error reaches the runner."""

    name = "careless"
    event_types: frozenset[str] | None = None
    raw_events = True

    def __init__(self, *, savepoint: bool = False) -> None:
        self.swallowing = True
        self.savepoint = savepoint
        self.attempts = 0
        self.commits = 0

    async def handle(self, batch: HandlerBatch) -> None:
        self.attempts += 1
        ids = [event.event_id for event in batch.records]
        await batch.connection.execute("INSERT INTO applied_events (event_id) SELECT unnest($1::uuid[])", ids)
        if self.swallowing and self.savepoint:  # the right way: only what follows the savepoint is undone
            await batch.connection.execute("SAVEPOINT risky")
            try:
                await batch.connection.execute("SELECT 1/0")
            except asyncpg.PostgresError:
                await batch.connection.execute("ROLLBACK TO SAVEPOINT risky")
        elif self.swallowing:
            with contextlib.suppress(asyncpg.PostgresError):
                await batch.connection.execute("SELECT 1/0")

    def batch_committed(self) -> None:
        self.commits += 1


def logged(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


async def test_a_batch_whose_handler_swallowed_a_database_error_is_rolled_back_not_counted(
    store: EventStore, owner_database_url: str
) -> None:
    """PostgreSQL answers the COMMIT of a failed transaction with ROLLBACK and no error: the runner must not count
    such a batch as applied, nor call its hooks, nor move on; it logs what was swallowed and retries."""
    await create_handler_table(
        owner_database_url, "CREATE TABLE applied_events (event_id uuid NOT NULL)", "applied_events"
    )
    await store.append("test-1", ticks(3), ANY)
    handler = Careless()
    runner = HandlerRunner(store, [handler])
    instance = runner.instances[0]
    with capture_logs() as logs:
        task = asyncio.create_task(runner.run())
        try:
            async with asyncio.timeout(20):
                while handler.attempts < 3 and not handler.commits:  # retried twice, or (wrongly) taken as done
                    await asyncio.sleep(0.01)
            assert handler.commits == 0, "batch_committed() was called for a batch that was rolled back"
            assert instance.batches_applied == 0
            assert await recorder.select_checkpoint(store.pool, handler.name) == START
            assert await store.pool.fetchval("SELECT count(*) FROM applied_events") == 0
            aborted = logged(logs, "handler.batch_aborted")
            assert len(aborted) >= 2
            assert {(entry["handler"], entry["sqlstate"], entry["error"]) for entry in aborted} == {
                ("careless", "22012", "division by zero")
            }
            handler.swallowing = False  # fixed: the same batch now commits, once
            async with asyncio.timeout(20):
                while await recorder.select_checkpoint(store.pool, handler.name) != await store.head():
                    await asyncio.sleep(0.01)
            await store.append("test-1", ticks(2, start=3), ANY)
            async with asyncio.timeout(20):
                while await recorder.select_checkpoint(store.pool, handler.name) != await store.head():
                    await asyncio.sleep(0.01)
        finally:
            runner.stop.set()
            await task
    events = await store.read_stream("test-1")
    applied = await store.pool.fetch("SELECT event_id FROM applied_events")
    assert sorted(row["event_id"] for row in applied) == sorted(event.event_id for event in events)
    assert handler.commits == instance.batches_applied == 2
    assert instance.position == events[-1].position
    assert not logged(logs, "handler.connection_lost"), "the runner thought another instance moved its checkpoint"


async def test_an_error_caught_around_a_savepoint_leaves_the_batch_to_commit(
    store: EventStore, owner_database_url: str
) -> None:
    await create_handler_table(
        owner_database_url, "CREATE TABLE applied_events (event_id uuid NOT NULL)", "applied_events"
    )
    await store.append("test-1", ticks(3), ANY)
    handler = Careless(savepoint=True)
    runner = HandlerRunner(store, [handler])
    with capture_logs() as logs:
        task = asyncio.create_task(runner.run())
        try:
            async with asyncio.timeout(20):
                while await recorder.select_checkpoint(store.pool, handler.name) != await store.head():
                    await asyncio.sleep(0.01)
        finally:
            runner.stop.set()
            await task
    assert (handler.attempts, handler.commits, runner.instances[0].batches_applied) == (1, 1, 1)
    assert await store.pool.fetchval("SELECT count(*) FROM applied_events") == 3
    assert not logged(logs, "handler.batch_aborted")


async def test_a_handler_held_back_by_the_barrier_reads_again_soon_however_long_it_waits(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events committed behind an older open transaction (one that may never append, so never notify) are read
    again within `HELD_BACK_MAX_RETRY_S` of its end, not after a back-off grown to the fallback poll (a second):
    the planner's first step used to wait a second after a request one time in ten."""
    from agentlog.eventstore.subscription import HELD_BACK_MAX_RETRY_S
    from agentlog.handlers import runner as runner_module

    waits: list[float] = []
    real_sleep = runner_module._sleep_unless

    async def recorded_sleep(stop: asyncio.Event, seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(stop, seconds)

    monkeypatch.setattr(runner_module, "_sleep_unless", recorded_sleep)
    seen = asyncio.Event()

    class Watcher:
        name = "held-back-watcher"
        event_types = None

        async def handle(self, batch: HandlerBatch) -> None:
            if batch.events:
                seen.set()

    async with EventStore.open(database_url, catalogue=test_catalogue, poll_interval=1.0) as store:
        runner = HandlerRunner(store, [Watcher()], lock_retry_interval=0.05)
        running = asyncio.create_task(runner.run())
        try:
            holder = await asyncpg.connect(database_url)
            try:
                transaction = holder.transaction()
                await transaction.start()
                await holder.fetchval("SELECT pg_current_xact_id()")  # an id below the next append's
                await store.append("test-held", ticks(1))
                await asyncio.sleep(1.5)  # held back all along: the runner retries, backing off
                assert not seen.is_set()
                await transaction.rollback()
            finally:
                await holder.close()
            await asyncio.wait_for(seen.wait(), 10)
        finally:
            runner.stop.set()
            await running
    held_back = [seconds for seconds in waits if seconds != 0.05]  # but the lock retries
    assert held_back and max(held_back) <= HELD_BACK_MAX_RETRY_S, sorted(set(held_back))


async def test_an_event_committed_between_a_read_and_its_barrier_check_is_read_again_soon(database_url: str) -> None:
    """A reader that found nothing asks whether to read again soon (`select_held_back`). An event that was held
    behind the barrier at the read and below it at the check (the older transaction ended in between, and its
    NOTIFY, if any, was consumed before the read) is not held back any more, yet unread: the answer must be yes,
    else the reader sleeps until the fallback poll (the planner's first step waited a second, one time in ten)."""
    async with EventStore.open(database_url, catalogue=test_catalogue) as store:
        await store.append("test-unread", ticks(1))
        assert (await store.read_all())[0].stream_id == "test-unread"  # visible: below the barrier
        assert await recorder.select_held_back(store.pool, START), "an unread event after the position"
        assert not await recorder.select_held_back(store.pool, (await store.read_all())[-1].position)
