"""A bounded map that forgets what was used longest ago: the worker's memory of sentences and their places.

Why least recently *used* rather than first in: a sentence that keeps coming back (a boilerplate line, a heading
typed in every section, a sentence re-read when its paragraph is split) is the one worth keeping, however early it
was first seen; first-in-first-out would throw it away and pay for another extractor call.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most `capacity` entries; `get` and `put` make an entry the most recently used one."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"an LRU cache holds at least one entry, not {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._entries.pop(key, None)

    def __contains__(self, key: object) -> bool:
        """Whether `key` is held, without making it recently used."""
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
