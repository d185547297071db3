"""What a handler is: a name, the event types it wants, and `handle(batch)` run inside the runner's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agentlog.eventstore import ANY, AppendResult, Event, EventStore, NewEvent, RecordedEvent, TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.records import StreamVersionExpectation


@runtime_checkable
class Handler(Protocol):
    """A reaction to the log. `event_types` None means every type the catalogue knows; others are not delivered.

    Events arrive decoded and upcast to their newest schema version (`batch.events`, `TypedEvent`s). An event of a
    wanted type that cannot be decoded (its payload fails the schema, or no upcaster can take it) is skipped: the
    runner records it (`agentlog handler skipped NAME`) and the handler never sees it (`eventstore.decoding`). A
    handler that sets `raw_events = True` gets the events as stored instead (`batch.records`, every type, known
    to the catalogue or not, nothing decoded or skipped).

    A handler may also carry `session_settings` (a mapping of PostgreSQL settings for its connection, such as
    `search_path`), and two hooks for handlers that keep state in memory between batches: `session_started()`,
    called when its instance becomes active (the database may have moved on meanwhile), and `batch_committed()`,
    called after a batch's transaction committed (a batch that fails is retried, and the memory must not run
    ahead of the database).

    A database error caught inside `handle` leaves the batch's transaction failed unless it was caught around a
    savepoint (`SAVEPOINT s` ... `ROLLBACK TO SAVEPOINT s`): the runner then rolls the batch back and retries it
    (`BatchAbortedError`), as for any failed batch.
    """

    name: str
    event_types: frozenset[str] | None

    async def handle(self, batch: HandlerBatch) -> None:
        """Apply `batch.events`. Writes go through `batch.connection`; they commit with the checkpoint."""
        ...


@dataclass(slots=True)
class HandlerBatch:
    """One batch of events for one handler, and the open transaction its effects and checkpoint share."""

    handler_name: str
    events: Sequence[TypedEvent]
    """The wanted events, decoded and upcast (empty for a handler that takes raw events)."""
    records: Sequence[RecordedEvent]
    """The wanted events as stored: those of `events` for a decoding handler, every one for a raw handler."""
    connection: Connection
    store: EventStore
    appended: bool = field(default=False)

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event | NewEvent],
        expected_version: StreamVersionExpectation = ANY,
    ) -> AppendResult:
        """Append in this batch's transaction: the events commit if and only if the checkpoint moves past."""
        result = await self.store.append(stream_id, events, expected_version, connection=self.connection)
        self.appended = self.appended or not result.duplicate
        return result
