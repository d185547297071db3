"""Serving the API on its own port (`agentlog up` without the document server)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import structlog
import uvicorn
from fastapi import FastAPI

log = structlog.get_logger("agentlog.api")


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: `agentlog up` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_api(app: FastAPI, host: str, port: int, stop: asyncio.Event, started: asyncio.Event) -> None:
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only then (else each answer waits ~40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Agents pause between calls: keep their connections open longer than uvicorn's 5 s (a request racing the
    # server's close of an idle connection fails; the typed client retries it, not every client does).
    config = uvicorn.Config(app, log_config=None, lifespan="off", timeout_graceful_shutdown=5, timeout_keep_alive=75)
    web = _Uvicorn(config)
    task = asyncio.create_task(web.serve(sockets=[sock]))
    while not web.started and not task.done():  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
        raise RuntimeError("the API server stopped while starting")
    bound = sock.getsockname()
    app.state.base_url = f"http://{host}:{bound[1]}"
    log.info("api.listening", url=f"http://{host}:{bound[1]}/api/v1", docs=f"http://{host}:{bound[1]}/docs")
    started.set()
    try:
        await stop.wait()
    finally:
        web.should_exit = True
        await task
        sock.close()
