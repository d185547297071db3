"""Deciders and projections hosted in the test's process, with the timer service their timers need, as `agentlog
up` hosts them: one runner, stopped (timers first) when the block ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from agentlog.eventstore import EventStore
from agentlog.handlers import HandlerRunner
from agentlog.handlers.decider import Decider, DecisionHandler
from agentlog.handlers.projection_handler import ProjectionHandler
from agentlog.handlers.timers import TimerService
from agentlog.projections import installed_projections


@asynccontextmanager
async def hosted(
    store: EventStore, deciders: Sequence[Decider[Any]], projections: Sequence[str]
) -> AsyncIterator[HandlerRunner]:
    found = installed_projections().found
    handlers = [DecisionHandler(decider) for decider in deciders]
    runner = HandlerRunner(
        store,
        [*handlers, *(ProjectionHandler(found[name]) for name in projections)],
        batch_size=200,
        lock_retry_interval=0.1,
    )
    stop_timers = asyncio.Event()
    running = asyncio.create_task(runner.run())
    timers = asyncio.create_task(TimerService(store, stop_timers).run())
    try:
        yield runner
    finally:
        stop_timers.set()
        runner.stop.set()
        await timers
        await running
