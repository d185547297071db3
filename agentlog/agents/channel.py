"""A `websockets` client connection as the channel `pycrdt.Provider` syncs a document over."""

from __future__ import annotations

import asyncio
import contextlib

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed


class SocketChannel:
    """A `websockets` client connection as the channel `pycrdt.Provider` syncs over; notes the first sync."""

    def __init__(self, websocket: ClientConnection, path: str) -> None:
        self._websocket = websocket
        self._path = path
        self.synced = asyncio.Event()

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> SocketChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed as error:
            raise StopAsyncIteration from error

    async def recv(self) -> bytes:
        message = await self._websocket.recv()
        data = message.encode() if isinstance(message, str) else bytes(message)
        if len(data) > 1 and data[0] == 0 and data[1] == 1:  # sync step 2: the server's answer to our state
            self.synced.set()
        return data

    async def send(self, message: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._websocket.send(message)
