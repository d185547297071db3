"""The handlers the API needs running in the test's process: the coordination and orchestration projections, the
timers projection, the expiry decider, the task dispatcher, the budget keeper and the timer service, and a wait for
them to catch up with the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agentlog.eventstore import EventStore
from agentlog.eventstore.postgres import recorder
from agentlog.handlers import HandlerRunner
from agentlog.handlers.activity.status_keeper import StatusKeeper
from agentlog.handlers.budgets.keeper import BudgetKeeper
from agentlog.handlers.coordination.expiry import CoordinationExpiry
from agentlog.handlers.coordination.operations import OperationExpiry
from agentlog.handlers.programs.keeper import ProgramKeeper
from agentlog.handlers.schedules.scheduler import Scheduler
from agentlog.handlers.tasks.dispatcher import Dispatcher
from tests.support.hosting import hosted

PROJECTIONS = (
    "registry", "chat", "inbox", "checkpoints", "memories", "locks", "claims", "operations", "tasks", "budgets",
    "schedules", "programs", "timers", "planning", "tool_refusals",
)  # fmt: skip
DECIDERS = (CoordinationExpiry.name, OperationExpiry.name, Dispatcher.name, Scheduler.name, BudgetKeeper.name,
            StatusKeeper.name, ProgramKeeper.name)  # fmt: skip


@asynccontextmanager
async def coordination_running(
    store: EventStore, without: frozenset[str] = frozenset()
) -> AsyncIterator[HandlerRunner]:
    """What `agentlog up` hosts beside the API: the projections it reads and the deciders of the log (but those
    named in `without`: a decider that is down, or lagging behind the API)."""
    deciders = [CoordinationExpiry(), OperationExpiry(), Dispatcher(), Scheduler(), BudgetKeeper(), StatusKeeper(),
                ProgramKeeper()]  # fmt: skip
    deciders = [decider for decider in deciders if decider.name not in without]
    async with hosted(store, deciders, PROJECTIONS) as runner:
        yield runner


LAST_COMMITTED = """
SELECT transaction_id::text::bigint, global_position FROM agentlog.events
 ORDER BY transaction_id DESC, global_position DESC LIMIT 1
"""


async def caught_up(store: EventStore, timeout: float = 20, without: frozenset[str] = frozenset()) -> None:
    """Every coordination handler (but those named in `without`) has applied every event committed so far
    (`store.head()` is only what is below the visibility barrier now, which a handler's open batch may hold back)."""
    row = await store.pool.fetchrow(LAST_COMMITTED)
    head = (0, 0) if row is None else (row[0], row[1])
    async with asyncio.timeout(timeout):
        for name in (*PROJECTIONS, *(name for name in DECIDERS if name not in without)):
            while (await recorder.select_checkpoint(store.pool, name) or (0, 0)) < head:
                await asyncio.sleep(0.01)


async def settled(store: EventStore, timeout: float = 20, without: frozenset[str] = frozenset()) -> None:
    """Caught up, and nothing more appended meanwhile (the decider's decisions included)."""
    async with asyncio.timeout(timeout):
        while True:
            before = await store.pool.fetchrow(LAST_COMMITTED)
            await caught_up(store, timeout, without)
            if await store.pool.fetchrow(LAST_COMMITTED) == before:
                return
