"""An ASGI app served by uvicorn inside the test's event loop, on a socket the test already bound."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


@asynccontextmanager
async def serving(app: Any, sock: socket.socket, **config: Any) -> AsyncIterator[uvicorn.Server]:
    """Serve until the block ends; a server that cannot start says why here."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn exited before starting")
                await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
