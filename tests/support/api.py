"""The API served by uvicorn in the test's process, over a real socket, with the coordination handlers running."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from agentlog.api.app import ApiLimits, api_for
from agentlog.eventstore import EventStore
from agentlog.tokens import Keyring, Kind, issue, signing_key
from tests.support.asgi import serving
from tests.support.coordination import coordination_running


@dataclass
class RunningApi:
    url: str
    keys: Keyring
    store: EventStore
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    """Every client `client` made, closed when the API stops (a test need not close them)."""

    def token(self, kind: Kind, name: str, ttl_s: float = 3600) -> str:
        return issue(self.keys, kind, name, ttl_s=ttl_s)

    def client(self, kind: Kind, name: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=f"{self.url}/api/v1", headers={"authorization": f"Bearer {self.token(kind, name)}"}, timeout=30
        )
        self.clients.append(client)
        return client

    async def event_count(self) -> int:
        return int(await self.store.pool.fetchval("SELECT count(*) FROM agentlog.events"))


@asynccontextmanager
async def api_running(
    store: EventStore, limits: ApiLimits | None = None, without: frozenset[str] = frozenset()
) -> AsyncIterator[RunningApi]:
    """The API, and what `up` hosts beside it but the deciders named in `without`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY: no 40 ms stalls
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    async with (
        coordination_running(store, without),
        api_for(store, limits) as app,
        serving(
            app,
            sock,
            timeout_keep_alive=300,  # idle clients' connections stay up: a closed one fails its next POST
        ),
    ):
        app.state.base_url = f"http://127.0.0.1:{port}"
        running = RunningApi(f"http://127.0.0.1:{port}", await signing_key(store.pool), store)
        try:
            yield running
        finally:
            for client in running.clients:
                await client.aclose()
