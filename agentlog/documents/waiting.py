"""A room's updates that wait for missing dependencies, indexed by what each waits for.

Each waiting update is filed under one (client, clock) it lacks (`dependencies.missing`); an update applied to the
room rechecks only the waiting ones whose clock it brought, so the cost of a recheck follows what came, not how
much waits (every waiting update was rechecked with every later update, on the event loop, however many were left
by earlier sockets or loaded with the document). One the reader cannot file is rechecked with every update, and now
and then all are (`sweep_every`, or as many updates as are waiting, whichever is more, so that costs at most one
recheck per update on average): the reader errs towards "still waiting", and the sweep catches what it missed.

Counts per holder (the token's name) and in all are the room's limits; updates loaded with the document or stored
by another server have no holder here.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
from dataclasses import dataclass

from agentlog.documents.dependencies import Need, UnreadableUpdateError, decode_state, missing
from agentlog.documents.protocol import is_integrated

SWEEP_EVERY = 1_000


@dataclass(eq=False, slots=True)
class Waiting:
    """An update stored (or being stored) but not sent on: its dependencies are not in the document yet."""

    body: bytes
    holder: str | None = None
    sender: object | None = None
    """The socket it came from (not sent back to it)."""
    stored: asyncio.Future[None] | None = None
    """Resolved once it is stored; None when it was stored before it reached this room."""


class WaitingUpdates:
    def __init__(self, sweep_every: int = SWEEP_EVERY) -> None:
        self._needs: dict[int, list[tuple[int, int, Waiting]]] = {}
        """client → heap of (clock, order, waiting): each waits until the document holds that clock."""
        self._unfiled: list[Waiting] = []
        self._order = itertools.count()
        self._per_holder: collections.Counter[str] = collections.Counter()
        self._count = 0
        self._sweep_every = sweep_every
        self._since_sweep = 0
        self.rechecks = 0
        """Waiting updates rechecked so far (what a flood of them costs)."""

    def __len__(self) -> int:
        return self._count

    def held_by(self, holder: str) -> int:
        return self._per_holder[holder]

    def add(self, waiting: Waiting, state: bytes) -> None:
        """File an update that `is_integrated` found waiting in a document at `state`."""
        self._count += 1
        if waiting.holder is not None:
            self._per_holder[waiting.holder] += 1
        self._file(waiting, decode_state(state))

    def ready(self, state: bytes) -> list[Waiting]:
        """The waiting updates a document at `state` now holds whole; they no longer wait."""
        known = decode_state(state)
        self._since_sweep += 1
        if self._since_sweep >= max(self._sweep_every, self._count):
            self._since_sweep = 0
            candidates = self._unfiled + [entry[2] for heap in self._needs.values() for entry in heap]
            self._needs.clear()
        else:
            candidates = self._unfiled
            for client in [client for client, heap in self._needs.items() if heap[0][0] < known.get(client, 0)]:
                heap = self._needs[client]
                while heap and heap[0][0] < known.get(client, 0):
                    candidates.append(heapq.heappop(heap)[2])
                if not heap:
                    del self._needs[client]
        self._unfiled = []
        done = []
        for waiting in candidates:
            self.rechecks += 1
            if is_integrated(waiting.body, state):
                done.append(waiting)
                self._count -= 1
                if waiting.holder is not None:
                    self._per_holder[waiting.holder] -= 1
                    if not self._per_holder[waiting.holder]:
                        del self._per_holder[waiting.holder]
            else:
                self._file(waiting, known)
        return done

    def _file(self, waiting: Waiting, known: dict[int, int]) -> None:
        need: Need | None
        try:
            need = missing(waiting.body, known)
        except UnreadableUpdateError:
            need = None
        if need is None:
            self._unfiled.append(waiting)
        else:
            heapq.heappush(self._needs.setdefault(need[0], []), (need[1], next(self._order), waiting))


def would_wait(update: bytes, state: bytes) -> bool:
    """Whether `update` would wait for missing dependencies in a document at `state`, told before applying it (an
    update the reader cannot read counts as one that would)."""
    try:
        return missing(update, decode_state(state)) is not None
    except UnreadableUpdateError:
        return True
