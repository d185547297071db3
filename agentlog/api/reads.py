"""The read side: the coordination and orchestration projections, with read-your-writes per token (a read waits,
briefly, until the projections have applied what the same token wrote last)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from pathlib import Path

from agentlog.eventstore import EventStore, LogPosition
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_name("queries.sql"))
PROJECTIONS = ["registry", "chat", "inbox", "checkpoints", "memories", "locks", "claims", "operations", "tasks",
               "budgets", "schedules", "planning", "tool_refusals"]  # fmt: skip


class Reads:
    def __init__(self, store: EventStore, wait_s: float = 2.0) -> None:
        self.store = store
        self.wait_s = wait_s
        self._written: OrderedDict[str, LogPosition] = OrderedDict()

    def wrote(self, key: str, position: LogPosition) -> None:
        self._written[key] = max(position, self._written.get(key, position))
        self._written.move_to_end(key)
        while len(self._written) > 100_000:
            self._written.popitem(last=False)

    async def caught_up(self, key: str) -> None:
        """Wait (at most `wait_s`) until the projections show this caller's last write; then read anyway."""
        position = self._written.get(key)
        if position is None:
            return
        deadline = time.monotonic() + self.wait_s
        delay = 0.002
        while time.monotonic() < deadline:
            if await self.store.pool.fetchval(QUERIES["caught_up"], PROJECTIONS, *position):
                self._written.pop(key, None)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
