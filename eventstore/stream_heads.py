"""The versions this process has seen its streams reach, so that its next append can skip the head lookup.

Why it is safe: stream versions have no gaps and are never removed (the log is append-only), so a version seen
committed stays reached forever. Appending right after a version that is no longer the head only fails, on the
unique (stream_id, stream_version) key; it can never leave a gap. Only versions this process saw committed are
remembered: never a version from a transaction that may still roll back.

The one way a remembered version could run ahead of the database is the database losing committed events (a
restore from backup, a failover to a lagging replica, a crash with fsync off). Each of those ends every
connection, and the store forgets everything whenever its pool opens a new connection; an answer that comes back
on a connection from before that (an `epoch` ago) is not remembered either. A proxy that keeps client connections
open while the server behind it is replaced by one that lost events defeats this, as it defeats much else.

A stream whose remembered head turned out stale has another writer; remembering it would cost a failed statement
at every turn, so such streams are looked up every time.
"""

from __future__ import annotations

DEFAULT_CAPACITY = 10_000


class StreamHeads:
    """A bounded map of stream id -> a version the stream is known to have reached."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._heads: dict[str, int] = {}
        self._shared: dict[str, None] = {}
        """Streams with another writer (an ordered set: the oldest entry goes first)."""
        self.epoch = 0
        """How many times everything was forgotten: take it before a statement, give it back with its answer."""

    def append_after(self, stream_id: str, expected: int | None) -> int | None:
        """The version to append right after, without looking up the head; None when only a lookup can tell.

        `expected` is the caller's expected version (None for any). An exact expectation needs no lookup when the
        stream is known to have reached it: it either is the head, or the version after it is taken.
        """
        if expected == 0:
            return 0
        known = self._heads.get(stream_id)
        if known is None:
            return None
        if expected is None:
            return known
        return expected if known >= expected else None

    def reached(self, stream_id: str, version: int, epoch: int) -> None:
        """Remember that `version` of the stream committed, as a statement sent in `epoch` reported."""
        if epoch != self.epoch or stream_id in self._shared:
            return
        heads = self._heads
        if version <= heads.get(stream_id, 0):
            return
        if stream_id not in heads and len(heads) >= self._capacity:
            del heads[next(iter(heads))]
        heads[stream_id] = version

    def contended(self, stream_id: str) -> None:
        """Another writer got to the stream first: stop remembering its head."""
        self._heads.pop(stream_id, None)
        if len(self._shared) >= self._capacity:
            del self._shared[next(iter(self._shared))]
        self._shared[stream_id] = None

    def forget_all(self) -> None:
        self._heads.clear()
        self._shared.clear()
        self.epoch += 1
