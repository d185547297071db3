"""The document server's update writer without a database: every update submitted is stored before the writer
says so, and before it closes (issue 10, item 2: nothing a person saw is lost; a hostile review's findings)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from agentlog.documents.updates import UpdateWriter


class SlowPool:
    """A pool whose INSERT takes as long as the test says, and can fail as the test says."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.failures: list[BaseException] = []
        self.stored: list[bytes] = []

    async def execute(self, query: str, *args: Any) -> str:
        self.started.set()
        if self.failures:
            raise self.failures.pop(0)
        await self.release.wait()
        self.stored.extend(args[1])
        return "INSERT 0 1"


async def test_closing_the_writer_waits_for_the_batch_in_flight() -> None:
    """Shutdown drained only the queue: a batch already handed to the database was cancelled mid-INSERT."""
    pool = SlowPool()
    writer = UpdateWriter(pool, "s1")  # type: ignore[arg-type]
    stored = writer.submit("trip", b"update")
    await asyncio.wait_for(pool.started.wait(), 5)
    closing = asyncio.create_task(writer.close())
    await asyncio.sleep(0.05)
    assert not closing.done(), "the writer closed with a batch still being stored"
    pool.release.set()
    await asyncio.wait_for(closing, 5)
    assert pool.stored == [b"update"] and stored.done() and stored.exception() is None


async def test_a_batch_the_database_refuses_is_retried_not_left_unanswered() -> None:
    """An error that is not a lost connection (disk full, a statement timeout) killed the writer's task: the batch's
    futures never resolved, so the room sent nothing more to anyone, never unloaded, and shutdown hung."""
    pool = SlowPool()
    pool.release.set()
    pool.failures = [asyncpg.DiskFullError("could not extend file"), asyncpg.QueryCanceledError("timeout")]
    writer = UpdateWriter(pool, "s1")  # type: ignore[arg-type]
    stored = writer.submit("trip", b"update")
    await asyncio.wait_for(stored, 10)
    later = writer.submit("trip", b"later")
    await asyncio.wait_for(later, 5)
    assert pool.stored == [b"update", b"later"]
    await asyncio.wait_for(writer.close(), 5)
