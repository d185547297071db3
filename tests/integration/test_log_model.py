"""Property-based: random appends (expected versions, duplicates, batches, failures) against an in-memory model.

The model is the simplest log there is: a list of event ids in append order and, per stream, its events. After
every step the database must agree with it: the category read (canonical order) and every stream (version order).
Appends go through two stores, so each finds the stream heads it remembers overtaken by the other's appends.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from agentlog.eventstore import (
    ANY,
    NO_STREAM,
    EventIdConflictError,
    EventStore,
    InvalidStreamIdError,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersionError,
)
from agentlog.eventstore.postgres.connections import connect
from agentlog.eventstore.records import StreamVersionExpectation
from tests.support.events import Tick

STREAM_COUNT = 4
EXPECTATIONS = ("any", "no_stream", "exact", "ahead", "behind")


@dataclass
class LogModel:
    order: list[uuid.UUID] = field(default_factory=list)
    streams: dict[str, list[uuid.UUID]] = field(default_factory=dict)
    content: dict[uuid.UUID, int] = field(default_factory=dict)

    def version(self, stream: str) -> int:
        return len(self.streams.get(stream, []))

    def expectation(self, stream: str, kind: str) -> tuple[StreamVersionExpectation, bool]:
        """The expected-version argument for `kind`, and whether the log should accept it."""
        version = self.version(stream)
        if kind == "any":
            return ANY, True
        if kind == "no_stream":
            return NO_STREAM, version == 0
        if kind == "exact":
            return version, True
        if kind == "behind" and version > 0:
            return version - 1, False
        return version + 1, False

    def record(self, stream: str, events: list[NewEvent]) -> None:
        for event in events:
            self.order.append(event.event_id)
            self.streams.setdefault(stream, []).append(event.event_id)
            assert isinstance(event.event, Tick)
            self.content[event.event_id] = event.event.n


WRITERS = st.integers(0, 1)


class LogMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop
    store: EventStore
    other_store: EventStore

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"m{uuid.uuid4().hex[:12]}"
        self.model = LogModel()
        self.appends: list[tuple[str, list[NewEvent]]] = []
        self.counter = 0

    def run(self, awaitable):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(awaitable)

    def writer(self, number: int) -> EventStore:
        return self.other_store if number else self.store

    def stream(self, index: int) -> str:
        return f"{self.prefix}-{index}"

    def new_events(self, count: int) -> list[NewEvent]:
        self.counter += count
        return [NewEvent(Tick(n=self.counter - index)) for index in range(count)]

    @rule(
        index=st.integers(0, STREAM_COUNT - 1),
        count=st.integers(1, 3),
        kind=st.sampled_from(EXPECTATIONS),
        writer=WRITERS,
    )
    def append(self, index: int, count: int, kind: str, writer: int) -> None:
        stream = self.stream(index)
        expected, accepted = self.model.expectation(stream, kind)
        events = self.new_events(count)
        if accepted:
            result = self.run(self.writer(writer).append(stream, events, expected))
            assert result.stream_version == self.model.version(stream) + count
            self.model.record(stream, events)
            self.appends.append((stream, events))
        else:
            with pytest.raises(WrongExpectedVersionError):
                self.run(self.writer(writer).append(stream, events, expected))

    @rule(
        parts=st.lists(
            st.tuples(st.integers(0, STREAM_COUNT - 1), st.integers(1, 3), st.sampled_from(EXPECTATIONS)),
            min_size=2,
            max_size=3,
            unique_by=lambda part: part[0],
        ),
        writer=WRITERS,
    )
    def append_batch(self, parts: list[tuple[int, int, str]], writer: int) -> None:
        batch = []
        everything_accepted = True
        for index, count, kind in parts:
            expected, accepted = self.model.expectation(self.stream(index), kind)
            everything_accepted &= accepted
            batch.append(StreamAppend(self.stream(index), tuple(self.new_events(count)), expected))
        if not everything_accepted:
            with pytest.raises(WrongExpectedVersionError):
                self.run(self.writer(writer).append_batch(batch))
            return
        self.run(self.writer(writer).append_batch(batch))
        for part in batch:
            events = [event for event in part.events if isinstance(event, NewEvent)]
            self.model.record(part.stream_id, events)
            self.appends.append((part.stream_id, events))

    @precondition(lambda self: self.appends)
    @rule(pick=st.integers(0, 10_000), kind=st.sampled_from(EXPECTATIONS), writer=WRITERS)
    def retry_an_earlier_append(self, pick: int, kind: str, writer: int) -> None:
        """The same events again, whatever the expectation: recorded once, original positions returned."""
        stream, events = self.appends[pick % len(self.appends)]
        expected, _ = self.model.expectation(stream, kind)
        result = self.run(self.writer(writer).append(stream, events, expected))
        assert result.duplicate
        positions = self.model.streams[stream]
        assert [positions[event.stream_version - 1] for event in result.events] == [
            event.event_id for event in events
        ]

    @precondition(lambda self: self.appends)
    @rule(pick=st.integers(0, 10_000))
    def reuse_an_event_id_for_other_content(self, pick: int) -> None:
        stream, events = self.appends[pick % len(self.appends)]
        impostor = NewEvent(Tick(n=-1), event_id=events[0].event_id)
        with pytest.raises(EventIdConflictError):
            self.run(self.store.append(stream, [impostor]))

    @precondition(lambda self: self.appends)
    @rule(pick=st.integers(0, 10_000), new_first=st.booleans(), kind=st.sampled_from(EXPECTATIONS))
    def mix_recorded_and_new_events(self, pick: int, new_first: bool, kind: str) -> None:
        """Recorded ids next to new ones in one stream's part: refused whole, whatever the order or expectation."""
        stream, events = self.appends[pick % len(self.appends)]
        expected, _ = self.model.expectation(stream, kind)
        fresh = self.new_events(1)
        mixed = [*fresh, *events] if new_first else [*events, *fresh]
        with pytest.raises((EventIdConflictError, WrongExpectedVersionError)):
            self.run(self.store.append(stream, mixed, expected))

    @rule(bad=st.sampled_from(["", "has space", "tab\there", "x" * 201]))
    def append_to_an_invalid_stream(self, bad: str) -> None:
        with pytest.raises(InvalidStreamIdError):
            self.run(self.store.append(bad, self.new_events(1)))

    @rule(index=st.integers(0, STREAM_COUNT - 1), count=st.integers(1, 3))
    def append_in_a_transaction_that_rolls_back(self, index: int, count: int) -> None:
        async def attempt() -> None:
            connection = await connect(self.store.url)
            try:
                transaction = connection.transaction()
                await transaction.start()
                await self.store.append(self.stream(index), self.new_events(count), connection=connection)
                await transaction.rollback()
            finally:
                await connection.close()

        self.run(attempt())

    async def _read_category_past_the_barrier(self) -> list[RecordedEvent]:
        """The category read in canonical order. It shows only what lies below the visibility barrier, and a
        transaction that is still committing anywhere (a store's NOTIFY takes a transaction id too) can hold the
        newest events back for a moment: read again until the barrier has passed everything the model holds."""
        async with asyncio.timeout(5):
            while True:
                found = await self.store.read_category(self.prefix, limit=10_000)
                if len(found) >= len(self.model.order):
                    return found
                await asyncio.sleep(0.005)

    @invariant()
    def database_agrees_with_the_model(self) -> None:
        in_order = self.run(self._read_category_past_the_barrier())
        assert [event.event_id for event in in_order] == self.model.order
        for stream, event_ids in self.model.streams.items():
            recorded = self.run(self.store.read_stream(stream))
            assert [event.event_id for event in recorded] == event_ids
            assert [event.stream_version for event in recorded] == list(range(1, len(event_ids) + 1))
            assert [event.data["n"] for event in recorded] == [self.model.content[i] for i in event_ids]


def test_the_log_behaves_like_its_model(loop_and_store: tuple[asyncio.AbstractEventLoop, EventStore]) -> None:
    LogMachine.loop, LogMachine.store = loop_and_store
    other = EventStore.open(LogMachine.store.url, catalogue=LogMachine.store.catalogue, notify_interval=0.001)
    LogMachine.other_store = LogMachine.loop.run_until_complete(other.__aenter__())
    try:
        run_state_machine_as_test(
            LogMachine,
            settings=settings(
                max_examples=60,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        LogMachine.loop.run_until_complete(other.__aexit__(None, None, None))
