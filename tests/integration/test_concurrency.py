"""Many writers holding transactions open for random times; one subscriber running throughout.

The subscriber must see every committed event exactly once, each stream in version order, and in the same order
as a full read of the log afterwards. Rolled-back transactions must leave nothing behind for it to see. Half the
writers append in their own one-statement transactions instead (the path that takes no stream lock), through a
store of their own, onto the same streams.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from agentlog.eventstore import ConcurrencyRetryError, EventStore, NewEvent, RecordedEvent
from agentlog.eventstore.postgres.connections import connect
from tests.support.events import Tick, test_catalogue

WRITERS = 8
EVENTS_PER_WRITER = 2_600  # 20,800 committed events in all
STREAMS = 40


async def writer(store: EventStore, number: int, committed: list[uuid.UUID], seed: int) -> int:
    """Append small batches in explicit transactions held open 0-4 ms; roll one in ten back. Return attempts."""
    rng = random.Random(seed)
    connection = await connect(store.url)
    written = attempts = 0
    try:
        while written < EVENTS_PER_WRITER:
            size = min(rng.randint(1, 6), EVENTS_PER_WRITER - written)
            stream = f"load-{rng.randrange(STREAMS)}"
            events = [NewEvent(Tick(n=written + index, writer=number)) for index in range(size)]
            roll_back = rng.random() < 0.1
            attempts += 1
            transaction = connection.transaction()
            await transaction.start()
            try:
                if rng.random() < 0.5:
                    await asyncio.sleep(rng.uniform(0, 0.004))  # open, no transaction id yet
                await store.append(stream, events, connection=connection)
                await asyncio.sleep(rng.uniform(0, 0.004))  # holding a transaction id, uncommitted
            except ConcurrencyRetryError:
                await transaction.rollback()
                continue
            except BaseException:
                await transaction.rollback()
                raise
            if roll_back:
                await transaction.rollback()
                continue
            await transaction.commit()
            store.committed()
            committed.extend(event.event_id for event in events)
            written += size
    finally:
        await connection.close()
    return attempts


async def own_transaction_writer(store: EventStore, number: int, committed: list[uuid.UUID], seed: int) -> int:
    """Append small batches, each in its own transaction (which the store retries itself: nothing to catch)."""
    rng = random.Random(seed)
    written = attempts = 0
    while written < EVENTS_PER_WRITER:
        size = min(rng.randint(1, 6), EVENTS_PER_WRITER - written)
        events = [NewEvent(Tick(n=written + index, writer=number)) for index in range(size)]
        attempts += 1
        await store.append(f"load-{rng.randrange(STREAMS)}", events)
        committed.extend(event.event_id for event in events)
        written += size
        await asyncio.sleep(rng.uniform(0, 0.002))
    return attempts


@pytest.mark.slow
async def test_a_subscriber_sees_every_committed_event_once_in_the_log_order(database_url: str) -> None:
    async with EventStore.open(
        database_url, catalogue=test_catalogue, pool_size=4, notify_interval=0.002, poll_interval=0.5
    ) as store, EventStore.open(database_url, catalogue=test_catalogue, pool_size=4) as other_store:
        committed: list[uuid.UUID] = []
        seen: list[RecordedEvent] = []
        total = WRITERS * EVENTS_PER_WRITER
        subscription = await store.subscribe(batch_size=300)

        async def follow() -> None:
            async for batch in subscription:
                seen.extend(batch)
                if len(seen) >= total:
                    subscription.close()

        follower = asyncio.create_task(follow())
        attempts = await asyncio.gather(
            *(
                writer(store, number, committed, seed=number)
                if number % 2 == 0
                else own_transaction_writer(other_store, number, committed, seed=number)
                for number in range(WRITERS)
            )
        )
        await asyncio.wait_for(follower, 60)
        await asyncio.sleep(0.3)  # anything beyond the expected total would show up as extra events below
        log_order = []
        after = None
        while True:
            page = await store.read_all(limit=5_000) if after is None else await store.read_all(
                after=after, limit=5_000
            )
            if not page:
                break
            log_order.extend(page)
            after = page[-1].position

    assert sum(attempts) > total / 6  # the writers really did interleave many transactions
    assert len(committed) == total
    seen_ids = [event.event_id for event in seen]
    assert len(seen_ids) == len(set(seen_ids)), "an event was delivered twice"
    assert set(seen_ids) == set(committed), "a committed event was missed, or a rolled-back one delivered"
    assert seen_ids == [event.event_id for event in log_order], "live order differs from the full read"
    positions = [event.position for event in seen]
    assert positions == sorted(positions)
    versions: dict[str, list[int]] = {}
    for event in seen:
        versions.setdefault(event.stream_id, []).append(event.stream_version)
    for stream, stream_versions in versions.items():
        assert stream_versions == list(range(1, len(stream_versions) + 1)), f"{stream} out of version order"
