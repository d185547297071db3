"""Which sentences to mark now and which to send to the extractor: a pure state machine the worker drives.

Why its own object: the rules are what make one bad sentence harmless. A sentence whose places are known is
marked at once; one whose text is already being extracted waits for that call (one call per text, however many
times it occurs); a text that failed waits out its back-off (`Backoff`), then is tried again without anyone having
to type, and is given up after its last attempt; at most `concurrency` calls are out at a time, so a slow or
hanging call holds back at most that many texts, never the rest. Nothing here does I/O or reads a clock: the
worker passes `now` in and acts on what it gets back.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from agentlog.agents.backoff import Backoff
from agentlog.agents.lru import LRUCache


class Work(Protocol):
    """One occurrence of a sentence that needs its places."""

    @property
    def text(self) -> str: ...

    def current(self) -> bool:
        """Still in the document, unedited (else it is dropped: its new version is work of its own)."""
        ...

    def finish(self) -> None:
        """Done with, marked or given up."""
        ...


W = TypeVar("W", bound=Work)
P = TypeVar("P")


@dataclass(slots=True)
class Due(Generic[W, P]):
    known: list[tuple[W, P]] = field(default_factory=list)
    """Sentences whose places are known: mark them."""
    calls: list[str] = field(default_factory=list)
    """Texts to send to the extractor now; answer with `succeeded` or `failed`."""


@dataclass(slots=True)
class _Failures:
    count: int
    retry_at: float | None
    """None: given up."""


class ExtractionQueue(Generic[W]):
    def __init__(self, backoff: Backoff, *, concurrency: int = 4, memory: int = 10_000) -> None:
        self.backoff = backoff
        self.concurrency = concurrency
        self._ready: deque[W] = deque()
        self._waiting: dict[str, list[W]] = {}
        """Work whose text is being extracted or backing off, by text."""
        self._in_flight: set[str] = set()
        self._failures: LRUCache[str, _Failures] = LRUCache(memory)
        self._retries: list[tuple[float, str]] = []
        self._held: list[tuple[float, int, W]] = []
        """Work that is not to be started before a time (a line that may still be being typed)."""
        self._order = itertools.count()

    def add(self, work: W, not_before: float | None = None) -> None:
        """Queue `work`; with `not_before`, only from then on (if it is still current then)."""
        if not_before is None:
            self._ready.append(work)
        else:
            heapq.heappush(self._held, (not_before, next(self._order), work))

    @property
    def in_flight(self) -> frozenset[str]:
        return frozenset(self._in_flight)

    def has_ready(self) -> bool:
        return bool(self._ready)

    def next_retry(self) -> float | None:
        """When the earliest back-off or hold ends (the worker wakes up then), or None."""
        while self._retries and not self._waiting.get(self._retries[0][1]):
            heapq.heappop(self._retries)  # nothing waits for that text any more
        while self._held and not self._held[0][2].current():
            heapq.heappop(self._held)  # edited meanwhile: its new version is work of its own
        times = [entries[0][0] for entries in (self._retries, self._held) if entries]
        return min(times) if times else None

    def due(self, now: float, places_of: Callable[[str], P | None], limit: int = 500) -> Due[W, P]:
        """What to do now: at most `limit` sentences to mark, and the calls to start (within `concurrency`)."""
        self._release(now)
        due: Due[W, P] = Due()
        while self._ready and len(due.known) < limit:
            work = self._ready[0]
            if not work.current():
                self._ready.popleft()
                continue
            places = places_of(work.text)
            if places is not None:
                self._ready.popleft()
                due.known.append((work, places))
                continue
            failures = self._failures.get(work.text)
            if failures is not None and failures.retry_at is None:
                self._ready.popleft()
                work.finish()  # given up until someone edits it
                continue
            backing_off = failures is not None and failures.retry_at is not None and failures.retry_at > now
            waiting = work.text in self._in_flight or backing_off
            if not waiting and len(self._in_flight) >= self.concurrency:
                break
            self._ready.popleft()
            self._waiting.setdefault(work.text, []).append(work)
            if not waiting:
                self._in_flight.add(work.text)
                due.calls.append(work.text)
        return due

    def succeeded(self, text: str) -> list[W]:
        """The call for `text` answered: the sentences that were waiting for it and are still there."""
        self._in_flight.discard(text)
        self._failures.pop(text)
        return [work for work in self._waiting.pop(text, []) if work.current()]

    def failed(self, text: str, now: float) -> float | None:
        """The call for `text` failed: seconds until it is tried again, or None when it is given up."""
        self._in_flight.discard(text)
        previous = self._failures.get(text)
        count = 1 if previous is None else previous.count + 1
        delay = self.backoff.delay(count)
        if delay is None:
            self._failures.put(text, _Failures(count, None))
            for work in self._waiting.pop(text, []):
                work.finish()
            return None
        self._failures.put(text, _Failures(count, now + delay))
        heapq.heappush(self._retries, (now + delay, text))
        return delay

    def _release(self, now: float) -> None:
        """Put the work whose back-off has ended back in front of the line, in the order it came; held work whose
        time has come goes behind."""
        while self._held and self._held[0][0] <= now:
            self._ready.append(heapq.heappop(self._held)[2])
        released: list[W] = []
        while self._retries and self._retries[0][0] <= now:
            _, text = heapq.heappop(self._retries)
            if text not in self._in_flight:
                released.extend(self._waiting.pop(text, []))
        self._ready.extendleft(reversed(released))
