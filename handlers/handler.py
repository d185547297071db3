"""What a handler is: a name, the event types it wants, and `handle(batch)` run inside the runner's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agentlog.eventstore import ANY, AgentlogError, AppendResult, Event, EventStore, NewEvent, RecordedEvent, TypedEvent
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
    `search_path`), and hooks for handlers that keep state in memory between batches: `session_started()`,
    called when its instance becomes active (the database may have moved on meanwhile; it may be a coroutine,
    awaited before the first batch), `batch_committed()`, called after a batch's transaction committed (a batch
    that fails is retried, and the memory must not run ahead of the database), and `session_ended()`, called when
    the instance stops being active (stopped, or its session lost: another process may hold the lock next).

    A database error caught inside `handle` leaves the batch's transaction failed unless it was caught around a
    savepoint (`SAVEPOINT s` ... `ROLLBACK TO SAVEPOINT s`): the runner then rolls the batch back and retries it
    (`BatchAbortedError`), as for any failed batch.

    A handler that cannot handle one event however often it is retried (its rules do not cover an odd event that
    still decodes) raises `UndecidableEventError` naming it: the runner isolates that event in a batch of its own
    and records it as skipped, as it does for an event it cannot decode, rather than retry the batch forever.
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


MAX_REASON_CHARS = 2_000
"""A skip's reason keeps the start of the error: enough to tell what went wrong, never a payload's worth."""


class UndecidableEventError(AgentlogError):
    """A handler cannot handle this event, however often it is retried; the runner records it as skipped.

    Raise it only for a cause in the event (a rule that does not cover it), never for a transient one (a lost
    connection, a serialization failure): those are retried, and the event is handled once they pass.
    """

    def __init__(self, handler: str, event: RecordedEvent, cause: BaseException) -> None:
        self.handler = handler
        self.event_id = event.event_id
        self.reason = f"{handler} cannot handle it: {type(cause).__name__}: {cause}"[:MAX_REASON_CHARS]
        super().__init__(
            f"handler {handler} cannot handle {event.event_type} {event.event_id} at position "
            f"{event.global_position} ({self.reason}); it is skipped"
        )
