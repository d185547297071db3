"""The write side's two tools, for any domain: folds of streams kept current cheaply, and a decision appended at
exactly the versions it was decided from.

A command folds the streams it needs with its domain's rule (`StreamFolds`), decides, and appends at the versions
it folded (`append_decided`). Two commands that decided from the same version cannot both append: the loser folds
again and decides anew. Nothing is appended for a refused command (the plan raises).

Folds are cached per stream (LRU) and caught up by reading only what was appended since (`read_stream` from the
next version), so a command costs one read of the new events and one append, whatever the stream's length.

Many commands on one stream at once (sixteen agents reserving against one budget, everyone posting to the chat)
would mostly lose: each loser folds and tries again, and a busy stream's writers spin until some give up. So the
commands of one process take turns on a stream once it is contended (`_Turns`): a command that lost once, or that
finds others waiting, waits for its turn, and decides then from the fold as it is. The version check stays what
makes it correct — across processes, and if a turn is ever skipped — the turns only stop the waste.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from agentlog.eventstore.errors import WrongExpectedVersionError
from agentlog.eventstore.events import Event
from agentlog.eventstore.records import START, ExpectedVersion, LogPosition, NewEvent, StreamAppend
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
    and append it in one transaction; from a fresh fold again when another writer took a version first. A plan
    with no events (the command is done already, as the fold now shows) appends nothing: `Written` at `START`.

    `new_event` gives each event its id and metadata; `again` is called before every try (ids derived from a
    request's idempotency key start over)."""
    turns = _turns_of(store)
    async with contextlib.AsyncExitStack() as in_turn:
        waiting = False
        for attempt in range(ATTEMPTS):
            again()
            appends = await plan()
            streams = sorted({stream for stream, expected, _ in appends if expected is not None})
            if not waiting and (attempt > 0 or turns.contended(streams)):
                waiting = True
                await in_turn.enter_async_context(turns.turn(streams))
                again()
                appends = await plan()  # decided again: what the turns before this one appended is in the fold
            if not any(events for _, _, events in appends):  # nothing to do, as decided from the fold now
                return Written(START, appends[0][1] or 0 if appends else 0, [])
            batch = [
                StreamAppend(stream, tuple(new_event(event) for event in events),
                             ExpectedVersion.ANY if expected is None else expected)
                for stream, expected, events in appends
            ]  # fmt: skip
            try:
                results = await store.append_batch(batch)
            except WrongExpectedVersionError:
                if attempt == ATTEMPTS - 1:
                    raise
                # In its turn, only another process can have come first: let it finish before folding again.
                await asyncio.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)) if waiting else 0)
                continue
            last = max((event for result in results for event in result.events), key=lambda e: e.position)
            return Written(last.position, results[0].stream_version, [e for _, _, es in appends for e in es])
    raise AssertionError("unreachable")


@dataclass
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    """Commands holding or waiting for the turn: the entry goes when none is left."""


class _Turns:
    """The turns of one store's commands on the streams they write (one process, one event loop)."""

    def __init__(self) -> None:
        self._streams: dict[str, _Turn] = {}

    def contended(self, streams: Sequence[str]) -> bool:
        return any(stream in self._streams for stream in streams)

    @contextlib.asynccontextmanager
    async def turn(self, streams: Sequence[str]) -> AsyncIterator[None]:
        """Hold every stream's turn, taken in sorted order (two commands on the same streams never deadlock)."""
        entries = [self._streams.setdefault(stream, _Turn()) for stream in streams]
        taken: list[_Turn] = []
        for entry in entries:
            entry.users += 1
        try:
            for entry in entries:
                await entry.lock.acquire()
                taken.append(entry)
            yield
        finally:
            for entry in reversed(taken):
                entry.lock.release()
            for stream, entry in zip(streams, entries, strict=True):
                entry.users -= 1
                if entry.users == 0:
                    del self._streams[stream]


_TURNS: weakref.WeakKeyDictionary[EventStore, _Turns] = weakref.WeakKeyDictionary()


def _turns_of(store: EventStore) -> _Turns:
    turns = _TURNS.get(store)
    if turns is None:
        turns = _TURNS[store] = _Turns()
    return turns
