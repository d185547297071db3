"""A ranking: ids kept in the order of a key, so that the first few are found without looking at the others.

The agent manager asks, after every event, for the most deserving document without an agent and for the least
deserving agent; sorting every document for that made each event cost as much as the number of documents known.
Here an insert, a move or a removal costs O(log n) comparisons plus moving at most `2 * LOAD` references within a
run and n / LOAD in the list of runs (the keys are held in sorted runs of bounded length, as `sortedcontainers`
does), and the first entries are read in order.
Deterministic: the order is the keys' alone (each key ends with its id, so no two are equal).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from typing import Any

Key = tuple[Any, ...]
LOAD = 256
"""Keys per run before it is split in two: short runs keep inserts cheap, few runs keep the search short."""


class Ranking:
    def __init__(self) -> None:
        self._keys: dict[str, Key] = {}
        self._runs: list[list[Key]] = []
        self._maxima: list[Key] = []
        """The last (greatest) key of each run, for the search."""
        self._gathering = False

    def gather(self) -> None:
        """Take keys without ordering them until `order` (a state being loaded: one sort beats n inserts)."""
        self._gathering = True

    def order(self) -> None:
        self._gathering = False
        ordered = sorted(self._keys.values())
        self._runs = [ordered[start : start + LOAD] for start in range(0, len(ordered), LOAD)]
        self._maxima = [run[-1] for run in self._runs]

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, item: str) -> bool:
        return item in self._keys

    def put(self, item: str, key: Key) -> None:
        """Rank `item` by `key` (which must end with the item itself), moving it if it was ranked otherwise."""
        old = self._keys.get(item)
        if old == key:
            return
        self._keys[item] = key
        if self._gathering:
            return
        if old is not None:
            self._remove(old)
        self._insert(key)

    def discard(self, item: str) -> None:
        old = self._keys.pop(item, None)
        if old is not None and not self._gathering:
            self._remove(old)

    def __iter__(self) -> Iterator[Key]:
        """The keys in order, first first."""
        for run in self._runs:
            yield from run

    def first(self) -> Key | None:
        return self._runs[0][0] if self._runs else None

    def _insert(self, key: Key) -> None:
        if not self._runs:
            self._runs.append([key])
            self._maxima.append(key)
            return
        index = bisect_left(self._maxima, key)
        if index == len(self._maxima):
            index -= 1
            self._runs[index].append(key)
            self._maxima[index] = key
        else:
            insort(self._runs[index], key)
        run = self._runs[index]
        if len(run) > 2 * LOAD:
            self._runs.insert(index + 1, run[LOAD:])
            del run[LOAD:]
            self._maxima[index] = run[-1]
            self._maxima.insert(index + 1, self._runs[index + 1][-1])

    def _remove(self, key: Key) -> None:
        index = bisect_left(self._maxima, key)
        run = self._runs[index]
        del run[bisect_left(run, key)]
        if run:
            self._maxima[index] = run[-1]
        else:
            del self._runs[index]
            del self._maxima[index]
