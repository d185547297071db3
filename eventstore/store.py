"""`EventStore`: the log's domain verbs (append, read, subscribe) over the storage port in `postgres.recorder`."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import orjson
import structlog
from pydantic_core import PydanticSerializationError

from agentlog.eventstore.errors import (
    AgentlogError,
    ClosedError,
    ConcurrencyRetryError,
    EventIdConflictError,
    EventSchemaError,
    EventTooLargeError,
    InvalidEventError,
    SchemaNotReadyError,
    UnknownEventTypeError,
    UnstorableValueError,
)
from agentlog.eventstore.events import Event, EventCatalogue, catalogue
from agentlog.eventstore.identifiers import new_event_id, validate_stream_id
from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.postgres.connections import Connection, StatementPool, create_pool
from agentlog.eventstore.postgres.errors import is_retryable, is_taken_version, is_unique_violation, translate
from agentlog.eventstore.postgres.notifications import Notifier, Waiter, Wakeups
from agentlog.eventstore.postgres.recorder import EventRows
from agentlog.eventstore.records import (
    START,
    AppendedEvent,
    AppendResult,
    ExpectedVersion,
    LogPosition,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamVersionExpectation,
    expected_version_argument,
)
from agentlog.eventstore.storable import MAX_EVENT_DATA_BYTES, find_unstorable
from agentlog.eventstore.stream_heads import StreamHeads
from agentlog.eventstore.subscription import Subscription

log = structlog.get_logger("eventstore.store")

APPEND_ATTEMPTS = 10


class EventStore:
    """The log. Open it with `async with EventStore.open(url) as store:`."""

    def __init__(
        self,
        url: str,
        pool: StatementPool,
        *,
        catalogue: EventCatalogue,
        notify_interval: float,
        poll_interval: float,
        heads: StreamHeads | None = None,
    ) -> None:
        self.url = url
        self.catalogue = catalogue
        self.poll_interval = poll_interval
        self._pool = pool
        self._heads = heads or StreamHeads()
        self._origin = secrets.token_hex(8)
        """Names this store's NOTIFYs, which its own listener ignores: its own readers were woken at the commit."""
        self._notifier = Notifier(url, notify_interval, self._origin)
        self._wakeups: Wakeups | None = None
        self._closed = False
        self._registered_classes: set[type[Event]] = set()
        """Event classes already found in the catalogue (the check costs a metaclass isinstance per event)."""

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str,
        *,
        catalogue: EventCatalogue = catalogue,
        pool_size: int = 10,
        notify_interval: float = 0.002,
        poll_interval: float = 1.0,
    ) -> AsyncIterator[EventStore]:
        heads = StreamHeads()
        pool = await create_pool(url, max_size=pool_size, on_connect=heads.forget_all)
        store = cls(
            url, pool, catalogue=catalogue, notify_interval=notify_interval, poll_interval=poll_interval, heads=heads
        )
        try:
            if not await recorder.select_schema_ready(pool):
                raise SchemaNotReadyError()
            yield store
        finally:
            await store.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._notifier.close()
        if self._wakeups is not None:
            await self._wakeups.close()
        await self._pool.close()

    @property
    def pool(self) -> StatementPool:
        return self._pool

    # -- writing ---------------------------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event | NewEvent],
        expected_version: StreamVersionExpectation = ExpectedVersion.ANY,
        *,
        connection: Connection | None = None,
    ) -> AppendResult:
        """Append events to one stream. With `connection`, inside the caller's open transaction."""
        (result,) = await self.append_batch(
            [StreamAppend(stream_id, tuple(events), expected_version)], connection=connection
        )
        return result

    async def append_batch(
        self, appends: Sequence[StreamAppend], *, connection: Connection | None = None
    ) -> list[AppendResult]:
        """Append to several streams atomically: everything commits or nothing does.

        Without `connection` the batch is its own transaction, retried when it loses the race for a stream's
        order, and subscribers are woken after the commit. With `connection` it joins the caller's transaction;
        the caller retries on `ConcurrencyRetryError` and calls `committed()` after committing.
        """
        if self._closed:
            raise ClosedError("cannot append: the event store is closed")
        rows = self._encode(appends)
        if connection is not None:
            try:
                inserted = await recorder.insert_events(connection, rows)
            except Exception as error:
                if is_retryable(error):
                    raise ConcurrencyRetryError(
                        "a stream of this batch was appended to by a newer transaction; retry the transaction"
                    ) from error
                raise
            return _results(appends, inserted, len(rows.event_ids))
        if len(appends) == 1:
            fast = await self._append_fast(rows)
            if fast:
                self.committed()
                return _results(appends, fast, len(rows.event_ids))
        for attempt in range(1, APPEND_ATTEMPTS + 1):
            epoch = self._heads.epoch
            try:
                inserted = await recorder.insert_events(self._pool, rows)
            except Exception as error:
                if not is_retryable(error) or attempt == APPEND_ATTEMPTS:
                    if is_retryable(error):
                        raise ConcurrencyRetryError() from error
                    raise
                await asyncio.sleep(random.uniform(0, 0.001 * attempt))
                continue
            results = _results(appends, inserted, len(rows.event_ids))
            for result in results:
                self._heads.reached(result.stream_id, result.stream_version, epoch)
            if not all(result.duplicate for result in results):
                self.committed()
            return results
        raise AssertionError("unreachable")

    async def _append_fast(self, rows: EventRows) -> list[Any]:
        """One stream in its own transaction, as one statement; an empty list sends the append down the path that
        decides every case. The statement is atomic and only ever succeeds plainly: a unique violation (a racing
        append, an id already recorded, a remembered head gone stale) or no row (a stale expected version) undid
        all of it."""
        stream_id, expected = rows.stream_ids[0], rows.expected_versions[0]
        try:
            async with self._pool.acquire() as connection:
                # Asked only now: taking the connection may have made the store forget what it knew.
                epoch = self._heads.epoch
                after = self._heads.append_after(stream_id, expected)
                inserted = await recorder.insert_one_stream(connection, rows, after)
        except Exception as error:
            if is_unique_violation(error) or is_retryable(error):
                if expected is None and is_taken_version(error):
                    self._heads.contended(stream_id)
                return []
            better = translate(error)
            if better is None or better is error:
                raise
            raise better from error
        if len(inserted) != len(rows.event_ids):
            return []
        self._heads.reached(stream_id, max(row[2] for row in inserted), epoch)
        return inserted

    def committed(self) -> None:
        """Wake subscribers after an append committed: this store's own at once, everyone else's by NOTIFY.

        Called by the store after its own transactions, and by a caller that appended through `connection` once
        it committed.
        """
        if self._wakeups is not None:
            self._wakeups.wake_local()
        self._notifier.committed()

    def _encode(self, appends: Sequence[StreamAppend]) -> EventRows:
        if not appends:
            raise InvalidEventError("nothing to append: give at least one event")
        rows = EventRows([], [], [], [], [], [], [])
        seen_ids: set[UUID] = set()
        for append in appends:
            validate_stream_id(append.stream_id)
            if not append.events:
                raise InvalidEventError(f"nothing to append to stream {append.stream_id!r}: no events")
            expected: int | None = expected_version_argument(append.expected_version)
            for item in append.events:
                if isinstance(item, NewEvent):
                    event, event_id = item.event, item.event_id
                    metadata = _plain_metadata(getattr(event, "event_type", type(event).__name__), item.metadata)
                else:
                    event, event_id, metadata = item, new_event_id(), EMPTY_OBJECT
                event_class = type(event)
                if event_class not in self._registered_classes:
                    self._check_registered(event)
                    self._registered_classes.add(event_class)
                data = _event_data(event)
                if len(data) > MAX_EVENT_DATA_BYTES:
                    raise EventTooLargeError(event.event_type, len(data), MAX_EVENT_DATA_BYTES)
                if event_id in seen_ids:
                    raise EventIdConflictError(
                        f"event id {event_id} appears more than once in one append; each event needs its own id; "
                        "nothing was appended"
                    )
                seen_ids.add(event_id)
                rows.stream_ids.append(append.stream_id)
                rows.expected_versions.append(expected)
                rows.event_ids.append(event_id)
                rows.event_types.append(event.event_type)
                rows.schema_versions.append(event.schema_version)
                rows.data.append(data)
                rows.metadata.append(metadata)
                expected = None
        return rows

    def _check_registered(self, event: Event) -> None:
        if not isinstance(event, Event):
            raise InvalidEventError(f"cannot append {type(event).__name__}: events are eventstore.Event models")
        entry = self.catalogue.version(event.event_type, event.schema_version)
        if type(event) is not entry.model:
            raise UnknownEventTypeError(
                f"{type(event).__name__} claims {event.event_type} v{event.schema_version}, "
                f"which the catalogue holds as {entry.model.__name__}"
            )

    # -- reading ---------------------------------------------------------------------------------------------

    async def read_stream(self, stream_id: str, *, from_version: int = 1, limit: int = 10_000) -> list[RecordedEvent]:
        """Events of one stream in version order (every committed event, no barrier)."""
        return await recorder.select_stream(self._pool, validate_stream_id(stream_id), from_version, limit)

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version; 0 when it has no events."""
        return await recorder.select_stream_version(self._pool, validate_stream_id(stream_id))

    async def read_all(self, *, after: LogPosition = START, limit: int = 1000) -> list[RecordedEvent]:
        """Events of the whole log after `after`, in canonical order."""
        return await recorder.select_log(self._pool, after, limit)

    async def read_category(
        self, category: str, *, after: LogPosition = START, limit: int = 1000
    ) -> list[RecordedEvent]:
        """Events of streams `category-*` (and the stream named `category`) after `after`, in canonical order."""
        return await recorder.select_category(self._pool, category, after, limit)

    async def head(self) -> LogPosition:
        """The position of the newest event readers can see now."""
        return await recorder.select_head(self._pool)

    async def position_of(self, global_position: int) -> LogPosition | None:
        """The canonical position of the event with this global position, if there is one."""
        return await recorder.select_position_of(self._pool, global_position)

    def decode(self, recorded: RecordedEvent) -> Event:
        """The typed event, upcast to its newest schema version."""
        try:
            return self.catalogue.decode(recorded.event_type, recorded.schema_version, recorded.data)
        except EventSchemaError as error:
            raise EventSchemaError(f"event {recorded.global_position}: {error}") from error

    async def waiter(self) -> Waiter:
        """A wake-up for a reader of its own (the handler runner): set on NOTIFY, on reconnect, never lost."""
        return (await self._started_wakeups()).waiter()

    def forget_waiter(self, waiter: Waiter) -> None:
        if self._wakeups is not None:
            self._wakeups.forget(waiter)

    async def _started_wakeups(self) -> Wakeups:
        if self._closed:
            raise ClosedError("cannot follow the log: the event store is closed")
        if self._wakeups is None:
            self._wakeups = Wakeups(self.url, origin=self._origin)
            await self._wakeups.start()
        return self._wakeups

    async def subscribe(
        self,
        *,
        after: LogPosition = START,
        category: str | None = None,
        batch_size: int = 500,
        poll_interval: float | None = None,
    ) -> Subscription:
        """Follow the log (or one category) after `after`: catch up, then live, in batches."""
        wakeups = await self._started_wakeups()
        return Subscription(
            self._pool,
            wakeups,
            after=after,
            category=category,
            batch_size=batch_size,
            poll_interval=self.poll_interval if poll_interval is None else poll_interval,
        )


EMPTY_OBJECT = b"{}"


def _event_data(event: Event) -> bytes:
    """The event's payload as JSON bytes, or `UnstorableValueError` naming the value the log cannot keep.

    Checked on the bytes, so the common event costs a few substring searches, not a walk: pydantic writes NUL as
    `\\u0000` and NaN and Infinity as such (`Event`'s config), and refuses to encode a lone surrogate. A string
    that merely spells one of them (`"NaN"`, a backslash and `u0000`) matches too; the walk then finds nothing."""
    try:
        data = event.to_json()
    except PydanticSerializationError as error:
        found = find_unstorable(event.model_dump())
        if found is not None:
            raise UnstorableValueError(event.event_type, "the payload", found) from error
        raise InvalidEventError(f"{event.event_type} cannot be written as JSON: {error}") from error
    if b"\\u0000" in data or b"NaN" in data or b"Infinity" in data:
        found = find_unstorable(event.model_dump())
        if found is not None:
            raise UnstorableValueError(event.event_type, "the payload", found)
    return data


def _plain_metadata(event_type: str, metadata: Any) -> bytes:
    """Metadata as JSON bytes; a mapping of JSON values the log can keep, or an error naming what is wrong."""
    if not metadata:
        return EMPTY_OBJECT
    try:
        plain = dict(metadata)
    except (TypeError, ValueError) as error:
        raise InvalidEventError(f"metadata must be a JSON object: {error}") from error
    found = find_unstorable(plain)
    if found is not None:
        raise UnstorableValueError(event_type, "the metadata", found)
    try:
        return orjson.dumps(plain)
    except (TypeError, ValueError, orjson.JSONEncodeError) as error:
        raise InvalidEventError(f"metadata must be a JSON object: {error}") from error


def _results(appends: Sequence[StreamAppend], inserted: Sequence[Any], expected_rows: int) -> list[AppendResult]:
    """Group the returned rows by stream, in the order of `appends` (rows of a stream come in version order).

    Every event gets a row, recorded now or before; anything else is a broken promise of the append function,
    reported rather than passed on as a result with events missing.
    """
    if len(inserted) != expected_rows:
        raise AgentlogError(
            f"the log answered an append of {expected_rows} events with {len(inserted)} rows; "
            "it may have been recorded in part: read the streams before retrying"
        )
    by_stream: dict[str, list[AppendedEvent]] = {append.stream_id: [] for append in appends}
    for event_id, stream_id, stream_version, global_position, transaction_id, duplicate in inserted:
        by_stream[stream_id].append(
            AppendedEvent(event_id, stream_id, stream_version, LogPosition(transaction_id, global_position), duplicate)
        )
    return [AppendResult(stream_id, tuple(events)) for stream_id, events in by_stream.items()]
