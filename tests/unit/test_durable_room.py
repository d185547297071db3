"""The document server's room: an update reaches the other sockets only once it is stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pycrdt import Doc, Text, create_update_message
from pycrdt.store import BaseYStore

from agentlog.documents.server import DurableRoom

SYNC, SYNC_UPDATE = 0, 2


class GatedStore(BaseYStore):
    """Stores an update only when the test opens the gate."""

    def __init__(self) -> None:
        self.path = "trip"
        self.metadata_callback = None
        self.gate = asyncio.Event()
        self.stored: list[bytes] = []

    async def write(self, data: bytes) -> None:
        await self.gate.wait()
        self.stored.append(data)

    async def read(self) -> AsyncIterator[tuple[bytes, bytes, float]]:  # type: ignore[override]
        return
        yield  # an async generator that yields nothing


class Socket:
    """A channel the test writes to (`inbox`) and whose sent messages it reads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.sent: list[bytes] = []

    def __aiter__(self) -> Socket:
        return self

    async def __anext__(self) -> bytes:
        return await self.inbox.get()

    async def recv(self) -> bytes:
        return await self.inbox.get()

    async def send(self, message: bytes) -> None:
        self.sent.append(message)

    def updates(self) -> list[bytes]:
        return [message for message in self.sent if message[:2] == bytes([SYNC, SYNC_UPDATE])]


async def test_an_update_reaches_the_other_sockets_only_once_stored() -> None:
    store = GatedStore()
    async with DurableRoom(ready=True, ystore=store, ydoc=Doc()) as room:
        agent, person = Socket("agent"), Socket("person")
        serving = [asyncio.create_task(room.serve(agent)), asyncio.create_task(room.serve(person))]
        await asyncio.sleep(0.1)
        edit = Doc()
        edit.get("text", type=Text).insert(0, "Lunch in Paris.")
        agent.inbox.put_nowait(create_update_message(edit.get_update()))
        await asyncio.sleep(0.2)
        assert person.updates() == [], "the person saw an update that was not stored yet"
        store.gate.set()
        async with asyncio.timeout(5):
            while not person.updates():
                await asyncio.sleep(0.01)
        assert len(store.stored) == 1
        for task in serving:
            task.cancel()
        await asyncio.gather(*serving, return_exceptions=True)
    room._update_send_stream.close()  # pycrdt-websocket 0.16 leaves it open (a ResourceWarning at collection)
