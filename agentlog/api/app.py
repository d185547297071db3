"""The API application: every route under /api/v1, OpenAPI at /openapi.json, docs at /docs, the MCP tools over
streamable HTTP at /mcp.

`agentlog up` serves it on its port (component `api`), beside the document server when both are hosted (one
uvicorn, one port: the documents' routes first, the API mounted at the root after them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from agentlog.api import errors
from agentlog.api.auth import Authenticator
from agentlog.api.commands import Coordinator
from agentlog.api.feed import Hub
from agentlog.api.feed import router as feed_router
from agentlog.api.guard import API_PREFIX, Guard, RateLimiter
from agentlog.api.reads import Reads
from agentlog.api.routes_agents import router as agents_router
from agentlog.api.routes_budgets import router as budgets_router
from agentlog.api.routes_documents import router as documents_router
from agentlog.api.routes_locks import router as locks_router
from agentlog.api.routes_messages import router as messages_router
from agentlog.api.routes_operations import router as operations_router
from agentlog.api.routes_overview import router as overview_router
from agentlog.api.routes_programs import router as programs_router
from agentlog.api.routes_schedules import router as schedules_router
from agentlog.api.routes_sessions import router as sessions_router
from agentlog.api.routes_tasks import router as tasks_router
from agentlog.api.routes_tools import router as tools_router
from agentlog.api.services import Services
from agentlog.documents.revocations import Revocations
from agentlog.eventstore import EventStore
from agentlog.mcp.http import Clients, http_server
from agentlog.tokens import Keyring, signing_key


@dataclass(frozen=True)
class ApiLimits:
    requests_per_s: float = 50.0
    burst: int = 200
    max_body_bytes: int = 1 << 20
    read_wait_s: float = 2.0


def create_api(store: EventStore, keys: Keyring, revocations: Revocations, limits: ApiLimits | None = None) -> FastAPI:
    limits = limits or ApiLimits()
    auth = Authenticator(keys, revocations)
    app = FastAPI(
        title="agentlog",
        summary="Coordination of AI agents over one event log: registry, chat, inboxes, checkpoints, memories, "
        "locks with fencing tokens, claims, a task queue and token budgets.",
        version="1",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = Services(store, Coordinator(store), Reads(store, limits.read_wait_s), auth)
    app.state.hub = Hub(store)
    routers = (agents_router, messages_router, locks_router, operations_router, tasks_router, budgets_router,
               schedules_router, programs_router, tools_router, sessions_router, documents_router,
               overview_router,
               feed_router)  # fmt: skip
    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    errors.install(app)
    app.state.base_url = ""
    """Where this server answers (http://host:port), set by whoever serves it: the MCP tools call the API there."""
    app.state.mcp_clients = Clients(lambda: app.state.base_url)
    app.state.mcp = http_server(keys, app.state.mcp_clients)
    app.mount("/", app.state.mcp.streamable_http_app())  # last: /mcp, and the 404 of any other path
    app.add_middleware(
        Guard, store=store, auth=auth, limiter=RateLimiter(limits.requests_per_s, limits.burst),
        max_body_bytes=limits.max_body_bytes,
    )  # fmt: skip
    return app


@asynccontextmanager
async def api_for(store: EventStore, limits: ApiLimits | None = None) -> AsyncIterator[FastAPI]:
    """The API over `store`, following token revocations while it runs (for `agentlog up` and tests)."""
    keys = await signing_key(store.pool)
    revocations = Revocations()
    following = asyncio.create_task(revocations.follow(store, lambda _revoked: None))
    try:
        await asyncio.wait_for(revocations.caught_up.wait(), 30)
        app = create_api(store, keys, revocations, limits)
        try:
            async with app.state.mcp.session_manager.run():
                yield app
        finally:
            await app.state.hub.close()
            await app.state.mcp_clients.close()
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
