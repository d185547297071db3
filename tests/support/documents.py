"""A document server in the test's own event loop, on a real database, and raw y-websocket clients for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agentlog.documents.protocol import SYNC, SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE, parse_message, sync_message
from agentlog.documents.room import RoomLimits
from agentlog.documents.rooms import DocumentRooms
from agentlog.documents.server import (
    DocumentServer,
    EditActivity,
    Presence,
    ServerLimits,
    listening_socket,
    reachable_url,
    serve_documents,
)
from agentlog.documents.tokens import issue, signing_key
from agentlog.documents.updates import CHANNEL, UpdateFollower, UpdateWriter
from agentlog.eventstore import EventStore
from agentlog.eventstore.postgres.notifications import Notifier


@dataclass
class ServedDocuments:
    server: DocumentServer
    url: str
    """ws://host:port/doc"""
    key: bytes
    writer: UpdateWriter

    def token(self, name: str, kind: str = "person", **claims: Any) -> str:
        return issue(self.key, kind, name, ttl_s=claims.pop("ttl_s", 3600), **claims)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def document_server(
    store: EventStore,
    server_id: str = "s1",
    *,
    room_limits: RoomLimits | None = None,
    limits: ServerLimits | None = None,
    unload_after_s: float = 60.0,
    max_rooms: int = 1_000,
    max_message_bytes: int = 8 * 1024 * 1024,
) -> AsyncIterator[ServedDocuments]:
    key = await signing_key(store.pool)
    room_limits = room_limits or RoomLimits()
    limits = limits or ServerLimits()
    writer = UpdateWriter(store.pool, server_id, Notifier(store.url, 0.001, server_id, channel=CHANNEL))
    edits = EditActivity(store, server_id, limits.edit_activity_s)
    rooms = DocumentRooms(store.pool, writer, server_id, room_limits, unload_after_s=unload_after_s,
                          max_rooms=max_rooms, on_person_edit=edits.edited)  # fmt: skip
    server = DocumentServer(store, server_id, key, rooms, Presence(store, server_id), room_limits=room_limits,
                            limits=limits)  # fmt: skip
    sock = listening_socket("127.0.0.1", 0)
    server.url = reachable_url(sock, "127.0.0.1")
    follower = UpdateFollower(store.pool, store.url, server_id, poll_interval=0.2)
    stop, started = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(
        serve_documents(
            server, sock, stop, started, writer=writer, follower=follower, max_message_bytes=max_message_bytes
        )
    )
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait([serving, waiting], return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        serving.result()
    try:
        yield ServedDocuments(server, server.url, key, writer)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 30)


@dataclass
class RawClient:
    """A y-websocket client that sends exactly what a test says and keeps everything it receives."""

    websocket: ClientConnection
    received: list[bytes] = field(default_factory=list)
    document: Doc[Any] = field(default_factory=Doc)
    reader: asyncio.Task[None] | None = None
    closed: tuple[int | None, str] | None = None

    async def _read(self) -> None:
        try:
            async for message in self.websocket:
                data = message.encode() if isinstance(message, str) else bytes(message)
                self.received.append(data)
                parsed = parse_message(data)
                if parsed.kind == SYNC and parsed.step in (SYNC_STEP2, SYNC_UPDATE):
                    self.document.apply_update(parsed.payload)
        except ConnectionClosed:
            pass
        finally:
            received = self.websocket.protocol.close_rcvd  # the server's close frame, if it sent one
            self.closed = (received.code, received.reason) if received is not None else (None, "")

    async def send(self, message: bytes) -> None:
        """Send a message; an update sent is in this client's own copy of the document too (as in a real client)."""
        await self.websocket.send(message)
        parsed = parse_message(message)
        if parsed.kind == SYNC and parsed.step in (SYNC_STEP2, SYNC_UPDATE):
            self.document.apply_update(parsed.payload)

    async def sync(self) -> None:
        """Ask for the whole document (sync step 1 with an empty state) and wait for the answer."""
        before = self.answers()
        await self.send(sync_message(SYNC_STEP1, Doc().get_state()))
        async with asyncio.timeout(30):
            while self.answers() == before:
                await asyncio.sleep(0.01)

    def answers(self) -> int:
        return sum(1 for m in self.received if m[:2] == bytes([SYNC, SYNC_STEP2]))

    def text(self) -> str:
        return str(self.document.get("text", type=Text))


@contextlib.asynccontextmanager
async def raw_client(url: str, document_id: str, token: str) -> AsyncIterator[RawClient]:
    async with connect(f"{url}/{document_id}?token={token}", max_size=64 * 1024 * 1024) as websocket:
        client = RawClient(websocket)
        client.reader = asyncio.create_task(client._read())
        try:
            yield client
        finally:
            await websocket.close()
            await client.reader


async def eventually(condition: Any, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not (await condition() if asyncio.iscoroutinefunction(condition) else condition()):
            await asyncio.sleep(0.02)
