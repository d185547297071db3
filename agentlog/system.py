"""The whole system in one process, as `agentlog up` runs it: every handler and projection, rebuilds as needed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from agentlog.config import Settings
from eventstore import EventStore
from eventstore.errors import AgentlogError
from handlers import Handler, HandlerRunner
from handlers.projection_handler import ProjectionHandler
from projections.projection import Projection
from projections.replay import rebuild
from projections.versions import projections_to_rebuild

log = structlog.get_logger("agentlog.system")


async def run_system(
    settings: Settings,
    url: str,
    handlers: Sequence[Handler],
    projections: Sequence[Projection],
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Host `handlers` and `projections` until `stop` is set (by default: SIGINT/SIGTERM); rebuild projections
    whose version changed meanwhile."""
    async with EventStore.open(
        url, poll_interval=settings.poll_interval_s, notify_interval=settings.notify_interval_s
    ) as store:
        stale = await projections_to_rebuild(store.pool, projections)
        runner = HandlerRunner(
            store,
            [*handlers, *(ProjectionHandler(projection) for projection in projections)],
            batch_size=settings.handler_batch_size,
            lock_retry_interval=settings.handler_lock_retry_s,
            lag_log_interval=settings.lag_log_interval_s,
        )
        loop = asyncio.get_running_loop()
        if stop is None:
            runner.stop_on_signals()
            stopper = None
        else:
            stopper = loop.create_task(_set_when(stop, runner.stop))
        rebuilding = loop.create_task(_rebuild_all(store, stale))
        try:
            await runner.run()
        finally:
            for task in (rebuilding, stopper):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


async def _set_when(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _rebuild_all(store: EventStore, stale: Sequence[Projection]) -> None:
    """Rebuild one after the other, while the live ones (these included) keep serving."""
    for projection in stale:
        log.info("projection.rebuild_needed", projection=projection.name, version=projection.version)
        try:
            outcome = await rebuild(store, projection)
        except AgentlogError as error:
            log.error("projection.rebuild_failed", projection=projection.name, error=str(error))
            continue
        log.info(
            "projection.rebuilt",
            projection=outcome.projection,
            events=outcome.events,
            seconds=round(outcome.seconds, 1),
        )
