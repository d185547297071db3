"""The storage port of the log: SQL verbs over asyncpg. The `EventStore` facade speaks the domain verbs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from agentlog.eventstore.postgres.errors import translated_errors
from agentlog.eventstore.postgres.queries import QUERIES
from agentlog.eventstore.records import START, LogPosition, RecordedEvent


class Executor(Protocol):
    """A pool or a connection: both run statements."""

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[asyncpg.Record]: ...

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> asyncpg.Record | None: ...

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any: ...

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...


@dataclass(frozen=True, slots=True)
class EventRows:
    """A batch to insert, as the parallel arrays `append_events` takes (one element per event)."""

    stream_ids: list[str]
    expected_versions: list[int | None]
    event_ids: list[UUID]
    event_types: list[str]
    schema_versions: list[int]
    data: list[bytes]
    """Each payload as JSON, encoded once by the caller."""
    metadata: list[bytes]


@dataclass(frozen=True, slots=True)
class HandlerLag:
    name: str
    position: LogPosition
    events_behind: int
    seconds_behind: float
    updated_at: datetime
    events_skipped: int


@dataclass(frozen=True, slots=True)
class SkippedEvent:
    """An event a handler passed without applying, because it could not decode it."""

    position: LogPosition
    event_id: UUID
    stream_id: str
    event_type: str
    schema_version: int
    reason: str
    skipped_at: datetime


def _recorded(rows: Sequence[asyncpg.Record]) -> list[RecordedEvent]:
    # The SELECT lists name the columns in RecordedEvent's field order.
    return [RecordedEvent(*row) for row in rows]


async def insert_events(executor: Executor, rows: EventRows) -> list[asyncpg.Record]:
    with translated_errors():
        if len(rows.event_ids) == 1:
            return await executor.fetch(QUERIES["append_event"], *_single_event(rows, rows.expected_versions[0]))
        return await executor.fetch(
            QUERIES["append_events"],
            rows.stream_ids,
            rows.expected_versions,
            rows.event_ids,
            rows.event_types,
            rows.schema_versions,
            rows.data,
            rows.metadata,
        )


async def insert_one_stream(executor: Executor, rows: EventRows, after: int | None) -> list[asyncpg.Record]:
    """The one-call append of events to one stream in their own transaction: every row when it simply succeeded,
    none (or a unique violation) when `insert_events` must decide. With `after`, the events go right after that
    version, which the stream is known to have reached; without, after the head looked up."""
    if len(rows.event_ids) == 1:
        return await executor.fetch(
            QUERIES["append_one_to_stream"],
            rows.stream_ids[0],
            rows.expected_versions[0],
            after,
            rows.event_ids[0],
            rows.event_types[0],
            rows.schema_versions[0],
            rows.data[0],
            rows.metadata[0],
        )
    return await executor.fetch(
        QUERIES["append_to_stream"],
        rows.stream_ids[0],
        rows.expected_versions[0],
        after,
        rows.event_ids,
        rows.event_types,
        rows.schema_versions,
        rows.data,
        rows.metadata,
    )


def _single_event(rows: EventRows, version: int | None) -> tuple[Any, ...]:
    """The scalar parameters of a one-event append, in the order of the one-event queries."""
    return (
        rows.stream_ids[0],
        version,
        rows.event_ids[0],
        rows.event_types[0],
        rows.schema_versions[0],
        rows.data[0],
        rows.metadata[0],
    )


async def select_stream(executor: Executor, stream_id: str, from_version: int, limit: int) -> list[RecordedEvent]:
    with translated_errors():
        return _recorded(await executor.fetch(QUERIES["select_stream"], stream_id, from_version, limit))


async def select_stream_version(executor: Executor, stream_id: str) -> int:
    with translated_errors():
        return int(await executor.fetchval(QUERIES["select_stream_version"], stream_id))


async def select_log(executor: Executor, after: LogPosition, limit: int) -> list[RecordedEvent]:
    with translated_errors():
        return _recorded(await executor.fetch(QUERIES["select_log"], after[0], after[1], limit))


async def select_category(executor: Executor, category: str, after: LogPosition, limit: int) -> list[RecordedEvent]:
    with translated_errors():
        return _recorded(await executor.fetch(QUERIES["select_category"], category, after[0], after[1], limit))


async def select_held_back(executor: Executor, after: LogPosition, category: str | None = None) -> bool:
    """Whether a reader whose read after `after` came back empty should read again soon (see the query)."""
    with translated_errors():
        if category is not None:
            return bool(await executor.fetchval(QUERIES["select_held_back_in_category"], category, *after))
        return bool(await executor.fetchval(QUERIES["select_held_back"], after[0], after[1]))


async def select_head(executor: Executor) -> LogPosition:
    with translated_errors():
        row = await executor.fetchrow(QUERIES["select_head"])
    return START if row is None else LogPosition(row[0], row[1])


async def select_position_of(executor: Executor, global_position: int) -> LogPosition | None:
    with translated_errors():
        row = await executor.fetchrow(QUERIES["select_position_of"], global_position)
    return None if row is None else LogPosition(row[0], row[1])


async def notify(executor: Executor, channel: str, origin: str) -> None:
    await executor.execute(QUERIES["notify"], channel, origin)


async def try_lock_handler(executor: Executor, name: str) -> bool:
    return bool(await executor.fetchval(QUERIES["try_lock_handler"], name))


async def handler_lock_held(executor: Executor, name: str) -> bool:
    return bool(await executor.fetchval(QUERIES["handler_lock_held"], name))


async def load_checkpoint(executor: Executor, name: str) -> LogPosition:
    """The handler's checkpoint, created at the start of the log the first time."""
    with translated_errors():
        await executor.execute(QUERIES["ensure_checkpoint"], name)
        row = await executor.fetchrow(QUERIES["select_checkpoint"], name)
    assert row is not None
    return LogPosition(row[0], row[1])


async def select_checkpoint(executor: Executor, name: str) -> LogPosition | None:
    """The handler's checkpoint, or None when it has none yet."""
    with translated_errors():
        row = await executor.fetchrow(QUERIES["select_checkpoint"], name)
    return None if row is None else LogPosition(row[0], row[1])


async def advance_checkpoint(
    executor: Executor, name: str, expected: LogPosition, new: LogPosition, recorded_at: datetime, events: int
) -> bool:
    """Compare-and-set past `events` more events; False when another instance moved the checkpoint."""
    row = await executor.fetchrow(
        QUERIES["advance_checkpoint"], name, expected[0], expected[1], new[0], new[1], recorded_at, events
    )
    return row is not None


async def claim_batch(
    executor: Executor, name: str, checkpoint: LogPosition, limit: int
) -> tuple[list[RecordedEvent], bool]:
    """In the caller's transaction: the events after `checkpoint` and whether the checkpoint moved past them."""
    with translated_errors():
        rows = await executor.fetch(QUERIES["claim_batch"], name, checkpoint[0], checkpoint[1], limit)
    if not rows:
        return [], True
    return [RecordedEvent(*row[:11]) for row in rows], rows[0]["moved"] == 1


async def begin_batch(connection: asyncpg.Connection) -> None:
    with translated_errors():
        await connection.execute(QUERIES["begin_batch"])


async def commit_batch(connection: asyncpg.Connection) -> bool:
    """Commit the open batch and begin the next (see `begin_batch`): one round trip on the latency path.

    False when nothing was committed: the transaction had failed earlier (someone caught a statement's error and
    carried on), and PostgreSQL answers such a COMMIT with ROLLBACK, not with an error.
    """
    with translated_errors():
        status = await connection.execute(QUERIES["commit_batch"])
    return status == "COMMIT"


async def abandon_batch(connection: asyncpg.Connection) -> None:
    """Roll the open batch back and begin the next."""
    with translated_errors():
        await connection.execute(QUERIES["abandon_batch"])


async def commit_durably(executor: Executor) -> None:
    await executor.execute(QUERIES["commit_durably"])


async def select_handler_lag(executor: Executor, names: Sequence[str] | None = None) -> list[HandlerLag]:
    with translated_errors():
        rows = await executor.fetch(QUERIES["select_handler_lag"], None if names is None else list(names))
    return [
        HandlerLag(
            name=row["name"],
            position=LogPosition(row["transaction_id"], row["global_position"]),
            events_behind=row["events_behind"],
            seconds_behind=row["seconds_behind"],
            updated_at=row["updated_at"],
            events_skipped=row["events_skipped"],
        )
        for row in rows
    ]


async def insert_skipped(executor: Executor, name: str, events: Sequence[tuple[RecordedEvent, str]]) -> None:
    """Record that handler `name` skips these events (each with its reason), in the caller's transaction."""
    if not events:
        return
    with translated_errors():
        await executor.execute(
            QUERIES["insert_skipped"],
            name,
            [event.global_position for event, _ in events],
            [event.transaction_id for event, _ in events],
            [event.event_id for event, _ in events],
            [event.stream_id for event, _ in events],
            [event.event_type for event, _ in events],
            [event.schema_version for event, _ in events],
            [reason for _, reason in events],
        )


async def select_skipped(executor: Executor, name: str, limit: int = 1000) -> list[SkippedEvent]:
    with translated_errors():
        rows = await executor.fetch(QUERIES["select_skipped"], name, limit)
    return [
        SkippedEvent(
            LogPosition(row["transaction_id"], row["global_position"]),
            row["event_id"],
            row["stream_id"],
            row["event_type"],
            row["schema_version"],
            row["reason"],
            row["skipped_at"],
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class BarrierHolder:
    """A transaction that holds the visibility barrier back: a session's, or a prepared one (in no session)."""

    kind: str
    """'session' or 'prepared transaction'."""
    pid: int | None
    prepared_gid: str | None
    age_seconds: float
    database_name: str | None
    user_name: str | None
    application_name: str | None
    state: str | None
    query: str | None

    def describe(self) -> str:
        """One line an operator can act on."""
        if self.kind == "prepared transaction":
            return (
                f"prepared transaction {self.prepared_gid!r} (database {self.database_name}, owner {self.user_name}),"
                f" held {self.age_seconds:.0f} s: COMMIT PREPARED or ROLLBACK PREPARED it"
            )
        return (
            f"session pid {self.pid} ({self.application_name or 'no application name'}, user {self.user_name},"
            f" database {self.database_name}, {self.state}), in a transaction for {self.age_seconds:.0f} s:"
            f" end it or pg_terminate_backend({self.pid})"
        )


async def select_barrier_holders(executor: Executor) -> list[BarrierHolder]:
    with translated_errors():
        rows = await executor.fetch(QUERIES["select_barrier_holders"])
    return [BarrierHolder(*row) for row in rows]


async def select_schema_ready(executor: Executor) -> bool:
    with translated_errors():
        return bool(await executor.fetchval(QUERIES["select_schema_ready"]))
