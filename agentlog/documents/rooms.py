"""The rooms open on this server: each loaded once, however many sockets open it at the same moment (they wait
for the one load, under the document's lock), and unloaded a while after its last socket left, once everything
in it is stored. Once a room is open the follower hands it what other servers store for it; what they stored while
it loaded is read again when it opens. A room has occupants from the moment a socket is let in until it is gone,
so an unload never takes a room from under a socket about to join it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable

import structlog

from agentlog.documents.room import Room, RoomLimits
from agentlog.documents.updates import UpdateWriter, load_document, stored_since
from agentlog.eventstore.postgres.connections import StatementPool

log = structlog.get_logger("agentlog.documents.rooms")


class RoomsFullError(Exception):
    """This server has as many documents open as it may (AGENTLOG_DOCUMENT_MAX_ROOMS)."""


class DocumentRooms:
    def __init__(
        self,
        pool: StatementPool,
        writer: UpdateWriter,
        server_id: str,
        limits: RoomLimits,
        *,
        unload_after_s: float,
        max_rooms: int = 1_000,
        on_person_edit: Callable[[str], None] | None = None,
    ) -> None:
        self._pool = pool
        self._writer = writer
        self._server_id = server_id
        self._limits = limits
        self._unload_after_s = unload_after_s
        self.max_rooms = max_rooms
        self._on_person_edit = on_person_edit
        self.rooms: dict[str, Room] = {}
        self._occupants: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: collections.Counter[str] = collections.Counter()
        self._unloads: dict[str, asyncio.Task[None]] = {}
        self.reading = asyncio.Event()
        """Set while the rooms read their sockets; cleared when the server stops (`pause`)."""
        self.reading.set()

    async def enter(self, name: str) -> Room:
        """The document's room, loaded if need be; the caller is an occupant until it calls `leave`."""
        async with self._document_lock(name):
            room = self.rooms.get(name)
            if room is None:
                if len(self.rooms) >= self.max_rooms:
                    raise RoomsFullError(f"this server has {len(self.rooms)} documents open, its limit; try later")
                loaded = await load_document(self._pool, name, self._server_id)
                edited = None if self._on_person_edit is None else _bound(self._on_person_edit, name)
                room = Room(name, loaded.document, self._writer, self._limits, size=loaded.size,
                            waiting=loaded.waiting, on_person_edit=edited, reading=self.reading)  # fmt: skip
                self.rooms[name] = room
                try:
                    # Open now, so the follower hands it every row it reads from here on; the rows it passed over
                    # while the load folded (the document was not open yet) are read again.
                    for update in await stored_since(self._pool, name, loaded.barrier, self._server_id):
                        await room.deliver(update)
                except BaseException:
                    del self.rooms[name]  # no occupant would ever unload it
                    raise
                log.debug("document.loaded", document=name, rows=loaded.rows)
            self._occupants[name] = self._occupants.get(name, 0) + 1
            unload = self._unloads.pop(name, None)
            if unload is not None:
                unload.cancel()
            return room

    @contextlib.asynccontextmanager
    async def _document_lock(self, name: str) -> AsyncIterator[None]:
        """The document's lock, forgotten once nobody holds or waits for it (kept, one per name ever opened, they
        grew without end: a token for `*` could open a million names one after another)."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        self._lock_users[name] += 1
        try:
            async with lock:
                yield
        finally:
            self._lock_users[name] -= 1
            if not self._lock_users[name]:
                del self._lock_users[name]
                del self._locks[name]

    def leave(self, name: str) -> None:
        self._occupants[name] -= 1
        if self._occupants[name] == 0 and name not in self._unloads:
            self._unloads[name] = asyncio.get_running_loop().create_task(self._unload_later(name))

    async def _unload_later(self, name: str) -> None:
        await asyncio.sleep(self._unload_after_s)
        async with self._document_lock(name):
            room = self.rooms.get(name)
            if room is not None and self._occupants.get(name, 0) == 0:
                await room.stored()  # what it holds is in the database before it goes
                del self.rooms[name]
                self._occupants.pop(name, None)
                log.debug("document.unloaded", document=name)
            self._unloads.pop(name, None)

    async def deliver(self, name: str, update: bytes) -> None:
        """An update another server stored, for the room of `name` if it is open here."""
        room = self.rooms.get(name)
        if room is not None:
            await room.deliver(update)

    def pause(self) -> None:
        """Stop reading every socket: what was read is still stored and sent on, nothing more comes in (a stopping
        server under a flood must not spend its last seconds on it)."""
        self.reading.clear()

    def open_documents(self) -> list[str]:
        return list(self.rooms)

    async def close(self) -> None:
        """Stop unloading; wait until everything every room applied is stored."""
        for task in self._unloads.values():
            task.cancel()
        for task in list(self._unloads.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._writer.drain()


def _bound(callback: Callable[[str], None], name: str) -> Callable[[], None]:
    return lambda: callback(name)
