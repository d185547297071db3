"""The write side's two tools, for any domain: folds of streams kept current cheaply, and a decision appended at
exactly the versions it was decided from.

A command folds the streams it needs with its domain's rule (`StreamFolds`), decides, and appends at the versions
it folded (`append_decided`). Two commands that decided from the same version cannot both append: the loser folds
again and decides anew. Nothing is appended for a refused command (the plan raises).

Folds are cached per stream (LRU) and caught up by reading only what was appended since (`read_stream` from the
next version), so a command costs one read of the new events and one append, whatever the stream's length.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from agentlog.eventstore.errors import WrongExpectedVersionError
from agentlog.eventstore.events import Event
from agentlog.eventstore.records import ExpectedVersion, LogPosition, NewEvent, StreamAppend
from agentlog.eventstore.store import EventStore

ATTEMPTS = 50
CACHE_SIZE = 10_000
Planned = tuple[str, int | None, Sequence[Event]]
"""One stream's part of a decision: (stream id, the version folded or None for any, the events)."""


class Foldable(Protocol):
    """A fold of one stream: `version` is the last stream version folded into it."""

    version: int

    def fold(self, event: Event, version: int | None = None) -> Any: ...


F = TypeVar("F", bound=Foldable)


class StreamFolds(Generic[F]):
    """A domain's fold of streams of one kind (pydantic models, copied deep), cached and caught up on each use."""

    def __init__(self, store: EventStore, make: Callable[[], F], cache_size: int = CACHE_SIZE) -> None:
        self._store = store
        self._make = make
        self._cache: OrderedDict[str, F] = OrderedDict()
        self._cache_size = cache_size

    async def current(self, stream_id: str) -> F:
        """A fresh copy of the stream's fold as of now (the caller may change it)."""
        cached = self._cache.get(stream_id)
        state = self._make() if cached is None else _copy(cached)
        while True:
            page = await self._store.read_stream(stream_id, from_version=state.version + 1, limit=1_000)
            for recorded in page:
                state.fold(self._store.decode(recorded), recorded.stream_version)
            if len(page) < 1_000:
                break
        if cached is None or state.version > cached.version:
            self._cache[stream_id] = _copy(state)
            self._cache.move_to_end(stream_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return state


def _copy(state: F) -> F:
    copied: F = state.model_copy(deep=True)  # type: ignore[attr-defined]
    return copied


@dataclass(frozen=True, slots=True)
class Written:
    """What a decision appended: where its last event landed, the first stream's version after it, the events."""

    position: LogPosition
    stream_version: int
    events: Sequence[Event]


async def append_decided(
    store: EventStore,
    plan: Callable[[], Awaitable[Sequence[Planned]]],
    new_event: Callable[[Event], NewEvent] = NewEvent,
    again: Callable[[], None] = lambda: None,
) -> Written:
    """Run `plan` (which folds what it needs and returns [(stream, expected version, events)], or raises to refuse)
    and append it in one transaction; from a fresh fold again when another writer took a version first.

    `new_event` gives each event its id and metadata; `again` is called before every try (ids derived from a
    request's idempotency key start over)."""
    for attempt in range(ATTEMPTS):
        again()
        appends = await plan()
        batch = [
            StreamAppend(stream, tuple(new_event(event) for event in events),
                         ExpectedVersion.ANY if expected is None else expected)
            for stream, expected, events in appends
        ]
        try:
            results = await store.append_batch(batch)
        except WrongExpectedVersionError:
            if attempt == ATTEMPTS - 1:
                raise
            await asyncio.sleep(0)
            continue
        last = max((event for result in results for event in result.events), key=lambda e: e.position)
        return Written(last.position, results[0].stream_version, [e for _, _, es in appends for e in es])
    raise AssertionError("unreachable")
