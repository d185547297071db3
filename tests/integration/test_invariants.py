"""One test (or a few) per invariant of DESIGN.md; each fails if its invariant breaks."""

from __future__ import annotations

import asyncio
import uuid
from typing import ClassVar

import asyncpg
import orjson
import pytest

from agentlog.eventstore import (
    ANY,
    NO_STREAM,
    START,
    EventIdConflictError,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersionError,
    derived_event_id,
)
from agentlog.eventstore.postgres import recorder
from agentlog.handlers import HandlerBatch, HandlerRunner
from tests.support.events import Tick, test_catalogue, ticks
from tests.support.owner import create_handler_table


@pytest.fixture
async def log(database_url: str) -> EventStore:
    async with EventStore.open(
        database_url, catalogue=test_catalogue, notify_interval=0.001, poll_interval=0.2
    ) as store:
        yield store


async def count_events(connection: asyncpg.Connection | asyncpg.Pool) -> int:
    return int(await connection.fetchval("SELECT count(*) FROM agentlog.events"))


async def collect(store: EventStore, count: int, *, timeout: float = 10.0, **kwargs: object) -> list[RecordedEvent]:
    """Subscribe and gather `count` events (fails on timeout)."""
    subscription = await store.subscribe(**kwargs)  # type: ignore[arg-type]
    seen: list[RecordedEvent] = []

    async def gather() -> None:
        async for batch in subscription:
            seen.extend(batch)
            if len(seen) >= count:
                subscription.close()

    await asyncio.wait_for(gather(), timeout)
    return seen


# 1. Immutable ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE agentlog.events SET data = '{\"n\": 99}'",
        "DELETE FROM agentlog.events",
        "TRUNCATE agentlog.events",
    ],
)
async def test_recorded_events_cannot_be_changed_or_removed(
    log: EventStore, owner_database_url: str, statement: str
) -> None:
    """Not even by the owner (the application role may not try: see test_roles.py)."""
    await log.append("test-1", ticks(3))
    owner = await asyncpg.connect(owner_database_url)
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only") as raised:
            await owner.execute(statement)
    finally:
        await owner.close()
    assert raised.value.sqlstate == "AL000"
    assert [event.data["n"] for event in await log.read_stream("test-1")] == [0, 1, 2]


# 2. Optimistic concurrency -----------------------------------------------------------------------------------


async def test_stale_expected_version_names_the_actual_version_and_appends_nothing(log: EventStore) -> None:
    await log.append("test-1", ticks(2), NO_STREAM)
    with pytest.raises(WrongExpectedVersionError) as raised:
        await log.append("test-1", ticks(1), 1)
    assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
    with pytest.raises(WrongExpectedVersionError):
        await log.append("test-1", ticks(1), NO_STREAM)
    assert await log.stream_version("test-1") == 2
    assert await count_events(log.pool) == 2


async def test_racing_appends_with_the_same_expected_version_have_one_winner(log: EventStore) -> None:
    await log.append("test-1", ticks(1), NO_STREAM)
    outcomes = await asyncio.gather(
        *(log.append("test-1", [Tick(n=writer)], 1) for writer in range(8)), return_exceptions=True
    )
    winners = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, WrongExpectedVersionError)]
    assert (len(winners), len(losers)) == (1, 7)
    versions = [event.stream_version for event in await log.read_stream("test-1")]
    assert versions == [1, 2]


async def test_appends_with_any_version_never_share_a_stream_version(log: EventStore) -> None:
    await asyncio.gather(*(log.append("test-1", ticks(3, writer=writer)) for writer in range(10)))
    versions = [event.stream_version for event in await log.read_stream("test-1")]
    assert versions == list(range(1, 31))


# 3. Idempotent -----------------------------------------------------------------------------------------------


async def test_reappending_an_event_id_returns_its_original_position(log: EventStore) -> None:
    event = NewEvent(Tick(n=1))
    first = await log.append("test-1", [event], NO_STREAM)
    await log.append("test-1", ticks(2))
    again = await log.append("test-1", [event], NO_STREAM)  # stale expectation: a retry of the first append
    assert again.duplicate and not first.duplicate
    assert again.events[0].position == first.events[0].position
    assert again.events[0].stream_version == 1
    assert await count_events(log.pool) == 3


async def test_same_event_id_with_other_content_is_an_error(log: EventStore) -> None:
    event_id = uuid.uuid4()
    await log.append("test-1", [NewEvent(Tick(n=1), event_id=event_id)])
    with pytest.raises(EventIdConflictError):
        await log.append("test-1", [NewEvent(Tick(n=2), event_id=event_id)])
    with pytest.raises(EventIdConflictError):
        await log.append("test-2", [NewEvent(Tick(n=1), event_id=event_id)])
    with pytest.raises(EventIdConflictError, match="mixes"):
        await log.append("test-1", [NewEvent(Tick(n=1), event_id=event_id), NewEvent(Tick(n=3))])
    assert await count_events(log.pool) == 1


async def test_racing_duplicates_append_once(log: EventStore) -> None:
    event = NewEvent(Tick(n=7))
    results = await asyncio.gather(*(log.append(f"test-{index % 2}", [event]) for index in range(1)))
    results += await asyncio.gather(*(log.append("test-0", [event]) for _ in range(6)))
    assert sum(not result.duplicate for result in results) == 1
    assert await count_events(log.pool) == 1


REPEATED_ID_BATCHES = {
    "other content, one stream": [("test-1", {"n": 1}), ("test-1", {"n": 2})],
    "same content, one stream": [("test-1", {"n": 1}), ("test-1", {"n": 1})],
    "other content, two streams": [("test-1", {"n": 1}), ("test-2", {"n": 2})],
}


@pytest.mark.parametrize("batch", REPEATED_ID_BATCHES.values(), ids=REPEATED_ID_BATCHES.keys())
async def test_a_batch_repeating_an_event_id_is_refused_whole_through_sql(
    log: EventStore, database_url: str, batch: list[tuple[str, dict[str, int]]]
) -> None:
    """Whatever its content: the same id twice in one call is AL002 and nothing is appended (issue 9, item 3)."""
    event_id = uuid.uuid4()
    connection = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.PostgresError, match="more than once") as raised:
            await connection.fetch(
                "SELECT * FROM agentlog.append_events($1::text[], $2::bigint[], $3::uuid[], $4::text[], "
                "$5::integer[], $6::jsonb[], $7::jsonb[])",
                [stream for stream, _ in batch],
                [None] * len(batch),
                [event_id] * len(batch),
                ["Tick"] * len(batch),
                [1] * len(batch),
                [orjson.dumps(data).decode() for _, data in batch],
                ["{}"] * len(batch),
            )
        assert raised.value.sqlstate == "AL002"
        if len({stream for stream, _ in batch}) == 1:  # the client's own one-stream path refuses it the same way
            with pytest.raises(asyncpg.PostgresError, match="more than once"):
                await connection.fetch(
                    "SELECT * FROM agentlog.append_to_stream($1, NULL, NULL, $2::uuid[], $3::text[], "
                    "$4::integer[], $5::jsonb[], $6::jsonb[])",
                    batch[0][0],
                    [event_id] * len(batch),
                    ["Tick"] * len(batch),
                    [1] * len(batch),
                    [orjson.dumps(data).decode() for _, data in batch],
                    ["{}"] * len(batch),
                )
    finally:
        await connection.close()
    assert await count_events(log.pool) == 0


@pytest.mark.parametrize("batch", REPEATED_ID_BATCHES.values(), ids=REPEATED_ID_BATCHES.keys())
async def test_a_batch_repeating_an_event_id_is_refused_by_the_client_before_sending(
    log: EventStore, batch: list[tuple[str, dict[str, int]]]
) -> None:
    event_id = uuid.uuid4()
    appends = [StreamAppend(stream, (NewEvent(Tick(**data), event_id=event_id),)) for stream, data in batch]
    with pytest.raises(EventIdConflictError, match="more than once"):
        await log.append_batch(appends)
    with pytest.raises(EventIdConflictError, match="more than once"):
        await log.append(batch[0][0], [append.events[0] for append in appends])
    assert await count_events(log.pool) == 0


# 4. Atomic batches -------------------------------------------------------------------------------------------


async def test_a_batch_over_several_streams_commits_whole_or_not_at_all(log: EventStore) -> None:
    await log.append("test-c", ticks(1))
    failing = [
        StreamAppend("test-a", tuple(ticks(2)), NO_STREAM),
        StreamAppend("test-b", tuple(ticks(3)), NO_STREAM),
        StreamAppend("test-c", tuple(ticks(1)), NO_STREAM),  # test-c exists: the whole batch fails
    ]
    with pytest.raises(WrongExpectedVersionError):
        await log.append_batch(failing)
    assert await count_events(log.pool) == 1

    results = await log.append_batch(failing[:2])
    assert [result.stream_version for result in results] == [2, 3]
    transaction_ids = {event.position.transaction_id for result in results for event in result.events}
    assert len(transaction_ids) == 1
    assert await count_events(log.pool) == 6


# 5. Gap-safe delivery ----------------------------------------------------------------------------------------


async def test_an_event_whose_transaction_commits_late_is_not_skipped(log: EventStore, database_url: str) -> None:
    slow = await asyncpg.connect(database_url)
    try:
        transaction = slow.transaction()
        await transaction.start()
        # The slow writer inserts first (lower global position), then stays uncommitted.
        await slow.fetch(
            "SELECT * FROM agentlog.append_event('test-slow', 'Tick', '{\"n\": 1, \"writer\": 0}')"
        )
        fast = await log.append("test-fast", [Tick(n=2)])
        subscription = await log.subscribe(poll_interval=0.05)
        seen: list[RecordedEvent] = []

        async def follow() -> None:
            async for batch in subscription:
                seen.extend(batch)
                if len(seen) >= 2:
                    subscription.close()

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.5)
        # Nothing is delivered while a lower transaction is open: delivering the fast event now would move the
        # checkpoint past the slow one, which would then be skipped.
        assert seen == []
        assert await recorder.select_held_back(log.pool, START)
        await transaction.commit()
        await asyncio.wait_for(follower, 5)
    finally:
        await slow.close()
    assert [event.stream_id for event in seen] == ["test-slow", "test-fast"]
    assert seen[1].global_position == fast.events[0].position.global_position
    assert seen[0].global_position < seen[1].global_position


# 6. One canonical order --------------------------------------------------------------------------------------


async def test_a_transaction_older_than_the_streams_head_appends_after_it(log: EventStore, database_url: str) -> None:
    """A transaction that took its id before the stream's head was appended still appends after the head, in
    version order and in the canonical order alike (it records the head's transaction id, not its own older one),
    and is never refused for it: handlers appending to busy streams must make progress (issue 9, item 5)."""
    older = await asyncpg.connect(database_url)
    try:
        from agentlog.eventstore.postgres.connections import configure_connection

        await configure_connection(older)
        async with older.transaction():
            other = await log.append("test-other", [Tick(n=0)], connection=older)  # takes a transaction id now
            first = await log.append("test-s", [Tick(n=1)])  # a newer transaction appends v1 and commits
            second = await log.append("test-s", [Tick(n=2)], connection=older)
    finally:
        await older.close()
    log.committed()
    assert second.stream_version == 2
    own_id = other.events[0].position.transaction_id
    head_id = first.events[0].position.transaction_id
    assert own_id < head_id
    assert second.events[0].position.transaction_id == head_id
    in_order = [event for event in await log.read_all() if event.stream_id == "test-s"]
    assert [event.stream_version for event in in_order] == [1, 2]
    live = await collect(log, 3)
    assert [(event.stream_id, event.stream_version) for event in live] == [
        ("test-other", 1),
        ("test-s", 1),
        ("test-s", 2),
    ]


async def test_live_catch_up_and_full_reads_agree_on_the_order(log: EventStore) -> None:
    live_task = asyncio.create_task(collect(log, 200))
    await asyncio.sleep(0.05)
    await asyncio.gather(
        *(log.append(f"test-{writer % 4}", ticks(10, writer=writer)) for writer in range(20))
    )
    live = await live_task
    catch_up = await collect(log, 200)
    full = await log.read_all(limit=1000)
    assert [event.event_id for event in live] == [event.event_id for event in catch_up]
    assert [event.event_id for event in live] == [event.event_id for event in full]
    for stream in {event.stream_id for event in full}:
        versions = [event.stream_version for event in full if event.stream_id == stream]
        assert versions == sorted(versions)
    category = await log.read_category("test", limit=1000)
    assert [event.event_id for event in category] == [event.event_id for event in full]


# 7. Exactly-once effect on projections -----------------------------------------------------------------------


class FlakyCounter:
    """Counts events into a table; fails after writing on its first batch, to prove the write is rolled back."""

    name = "flaky-counter"
    event_types: ClassVar[frozenset[str] | None] = frozenset({"Tick"})

    def __init__(self) -> None:
        self.failures_left = 1

    async def handle(self, batch: HandlerBatch) -> None:
        for event in batch.events:
            await batch.connection.execute("INSERT INTO counted (event_id) VALUES ($1)", event.event_id)
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("handler failed after writing")


async def test_handler_writes_and_checkpoint_commit_together(log: EventStore, owner_database_url: str) -> None:
    await create_handler_table(owner_database_url, "CREATE TABLE counted (event_id uuid NOT NULL)", "counted")
    await log.append("test-1", ticks(25))
    runner = HandlerRunner(log, [FlakyCounter()], batch_size=10, lock_retry_interval=0.1)
    task = asyncio.create_task(runner.run())
    async with asyncio.timeout(10):
        while await log.pool.fetchval("SELECT count(*) FROM counted") < 25:
            await asyncio.sleep(0.05)
    runner.stop.set()
    await task
    duplicates = await log.pool.fetchval(
        "SELECT count(*) FROM (SELECT event_id FROM counted GROUP BY 1 HAVING count(*) > 1) AS d"
    )
    assert duplicates == 0
    assert await log.pool.fetchval("SELECT count(*) FROM counted") == 25
    (lag,) = await recorder.select_handler_lag(log.pool, ["flaky-counter"])
    assert lag.events_behind == 0
    assert lag.position == (await log.read_all(limit=100))[-1].position


# 8. Liveness -------------------------------------------------------------------------------------------------


async def test_an_append_that_never_notifies_is_found_by_the_fallback_poll(log: EventStore) -> None:
    task = asyncio.create_task(collect(log, 1, poll_interval=0.2))
    await asyncio.sleep(0.1)
    await log.pool.fetch(
        "SELECT * FROM agentlog.append_event('test-quiet', 'Tick', '{\"n\": 1, \"writer\": 0}', notify => false)"
    )
    (event,) = await asyncio.wait_for(task, 3)
    assert event.stream_id == "test-quiet"


async def test_a_subscriber_survives_losing_its_connections(log: EventStore) -> None:
    task = asyncio.create_task(collect(log, 20, poll_interval=0.2, timeout=15))
    await log.append("test-1", ticks(10))
    await asyncio.sleep(0.3)
    terminated = await log.pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    assert terminated >= 1
    await asyncio.sleep(0.3)
    for _ in range(20):  # the pool reconnects lazily; a terminated pooled connection fails once
        try:
            await log.append("test-1", ticks(10, start=10))
            break
        except Exception:
            await asyncio.sleep(0.1)
    seen = await task
    assert [event.data["n"] for event in seen] == list(range(20))


async def test_lag_is_measured_in_events_and_seconds(log: EventStore) -> None:
    await recorder.load_checkpoint(log.pool, "idle-handler")
    await log.append("test-1", ticks(5))
    (lag,) = await recorder.select_handler_lag(log.pool, ["idle-handler"])
    assert lag.events_behind == 5
    assert lag.seconds_behind >= 0
    await asyncio.sleep(0.2)
    (later,) = await recorder.select_handler_lag(log.pool, ["idle-handler"])
    assert later.seconds_behind > lag.seconds_behind


# 9. Determinism ----------------------------------------------------------------------------------------------


class Echo:
    """A decision-shaped handler: for every Tick it appends one Tick to an echo stream, with a derived id."""

    event_types: ClassVar[frozenset[str] | None] = frozenset({"Tick"})

    def __init__(self, name: str = "echo") -> None:
        self.name = name

    async def handle(self, batch: HandlerBatch) -> None:
        for event in batch.events:
            if event.stream_id.startswith("echo-"):
                continue
            echoed = NewEvent(
                Tick(n=event.event.n * 10), event_id=derived_event_id(self.name, event.event_id)
            )
            await batch.append(f"echo-{event.stream_id}", [echoed], ANY)


async def run_until_caught_up(store: EventStore, handler: Echo) -> None:
    runner = HandlerRunner(store, [handler], batch_size=7, lock_retry_interval=0.1)
    task = asyncio.create_task(runner.run())
    async with asyncio.timeout(10):
        while True:
            (lag,) = await recorder.select_handler_lag(store.pool, [handler.name]) or [None]
            if lag is not None and lag.events_behind == 0 and lag.position.global_position > 0:
                break
            await asyncio.sleep(0.05)
    runner.stop.set()
    await task


async def test_rerunning_a_decision_handler_over_the_same_log_appends_nothing_new(log: EventStore) -> None:
    await log.append("test-1", ticks(12))
    await run_until_caught_up(log, Echo())
    first = [(event.event_id, event.data["n"]) for event in await log.read_stream("echo-test-1")]
    assert [n for _, n in first] == [n * 10 for n in range(12)]
    # As after a crash between the effect and any bookkeeping: the handler sees the whole log again.
    await log.pool.execute("DELETE FROM agentlog.checkpoints WHERE name = 'echo'")
    await run_until_caught_up(log, Echo())
    again = [(event.event_id, event.data["n"]) for event in await log.read_stream("echo-test-1")]
    assert again == first
    assert await count_events(log.pool) == 24


async def test_only_catalogued_event_classes_are_appended(log: EventStore) -> None:
    class Impostor(Tick):
        """Same type name and version as Tick, but not the class the catalogue holds."""

    from agentlog.eventstore import UnknownEventTypeError

    with pytest.raises(UnknownEventTypeError, match="claims Tick v1"):
        await log.append("test-1", [Impostor(n=1)])
    assert await count_events(log.pool) == 0
