"""The follower of other servers' updates on a real database, when the database goes away under it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from pycrdt import Doc, Text

from agentlog.documents.updates import QUERIES, UpdateFollower
from agentlog.eventstore import EventStore
from agentlog.eventstore.postgres.connections import StatementPool
from tests.support.documents import eventually


@pytest.fixture
async def log(database_url: str) -> AsyncIterator[EventStore]:
    async with EventStore.open(database_url, poll_interval=0.2, notify_interval=0.001) as store:
        yield store


class LosesItsConnection:
    """The pool, except that its first check for rows held back finds the connection gone (as a restart leaves
    it)."""

    def __init__(self, pool: StatementPool) -> None:
        self._pool = pool
        self.lost = False

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._pool.fetch(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        if query == QUERIES["follow_held_back"] and not self.lost:
            self.lost = True
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        return await self._pool.fetchval(query, *args)


async def test_the_follower_survives_the_database_going_away_between_its_reads(log: EventStore) -> None:
    """Hostile review (a PostgreSQL restart): the follower caught a lost connection while it read rows, not while it
    then asked whether rows were held back; that one ended it, and from then on nothing another server stored
    reached this server's sockets."""
    pool = LosesItsConnection(log.pool)
    follower = UpdateFollower(pool, log.url, "here", poll_interval=0.05)  # type: ignore[arg-type]
    delivered: list[bytes] = []

    async def deliver(document_id: str, update: bytes) -> None:
        delivered.append(update)

    stop = asyncio.Event()
    following = asyncio.create_task(follower.run(lambda: ["shared"], deliver, stop))
    await eventually(lambda: pool.lost, timeout=10)
    document: Doc[Any] = Doc()
    document.get("text", type=Text).insert(0, "typed on the other server")
    update = document.get_update()
    await log.pool.execute(
        "INSERT INTO agentlog.document_updates (document_id, body, server_id) VALUES ('shared', $1, 'there')", update
    )
    await eventually(lambda: delivered == [update] or following.done(), timeout=10)
    assert not following.done(), f"the follower ended: {following.exception()!r}"
    stop.set()
    await asyncio.wait_for(following, 10)
