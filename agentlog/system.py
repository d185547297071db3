"""The whole system in one process, as `agentlog up` runs it: every handler and projection, rebuilds as needed."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence

import structlog

from agentlog.agent_system import AgentSystem, log_deciders
from agentlog.api.app import ApiLimits, api_for
from agentlog.api.serve import serve_api
from agentlog.config import Settings
from agentlog.eventstore import EventStore
from agentlog.eventstore.errors import AgentlogError
from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.postgres.errors import CONNECTION_ERRORS
from agentlog.handlers import Handler, HandlerRunner
from agentlog.handlers.decider import DecisionHandler, record_settings
from agentlog.handlers.projection_handler import ProjectionHandler
from agentlog.handlers.timers import TimerService
from agentlog.projections.projection import Projection
from agentlog.projections.replay import rebuild
from agentlog.projections.versions import projections_to_rebuild

log = structlog.get_logger("agentlog.system")

UNKNOWN_BARRIER: tuple[type[BaseException], ...] = (AgentlogError, *CONNECTION_ERRORS)


async def run_system(
    settings: Settings,
    url: str,
    handlers: Sequence[Handler],
    projections: Sequence[Projection],
    *,
    stop: asyncio.Event | None = None,
    agents: bool = False,
    api: bool = False,
) -> None:
    """Host `handlers` and `projections` until `stop` is set (by default: SIGINT/SIGTERM); rebuild projections
    whose version changed meanwhile. With `agents`, also the document server, this manager's supervisor, the
    deciders and the timer service (`agentlog up`); they stop first, so every agent is detached and recorded. With
    `api`, the HTTP API under /api/v1 too: beside the documents on their port, or on that port alone."""
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(
            EventStore.open(url, poll_interval=settings.poll_interval_s, notify_interval=settings.notify_interval_s)
        )
        limits = ApiLimits(settings.api_requests_per_s, settings.api_burst, settings.api_max_body_bytes)
        api_app = await stack.enter_async_context(api_for(store, limits)) if api else None
        stale = await projections_to_rebuild(store.pool, projections)
        system = AgentSystem(settings, api=api_app) if agents else None
        stop_api = asyncio.Event()
        if api_app is not None and system is None:
            api_started = asyncio.Event()
            serving_api = asyncio.create_task(serve_api(api_app, settings.host, settings.port, stop_api, api_started))
            stack.push_async_callback(_stop_serving, stop_api, serving_api)
            await asyncio.wait([serving_api, asyncio.create_task(api_started.wait())],
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if serving_api.done():
                serving_api.result()
        hosted = [*handlers, *(await system.start(store) if system is not None else [])]
        if api_app is not None and system is not None and system.documents is not None:
            api_app.state.base_url = system.documents.url.replace("ws://", "http://", 1).removesuffix("/doc")
        if api_app is not None and system is None:
            # Without the agents component, the API still needs its locks, claims and agents expired by the log,
            # its tasks dispatched and its budgets' reservations given back.
            for decider in log_deciders(settings):
                await record_settings(store, decider)
                hosted.append(DecisionHandler(decider))
            stop_timers = asyncio.Event()
            timers = asyncio.create_task(TimerService(store, stop_timers).run())
            stack.push_async_callback(_stop_serving, stop_timers, timers)
        runner = HandlerRunner(
            store,
            [*hosted, *(ProjectionHandler(projection) for projection in projections)],
            batch_size=settings.handler_batch_size,
            lock_retry_interval=settings.handler_lock_retry_s,
            lag_log_interval=settings.lag_log_interval_s,
        )
        loop = asyncio.get_running_loop()
        if stop is None:
            stop = asyncio.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, _stopping, stop, signum, system)
        running = loop.create_task(runner.run())
        rebuilding = loop.create_task(_rebuild_all(store, stale))
        watching = loop.create_task(_watch_barrier(store, settings.lag_log_interval_s, settings.barrier_warn_s))
        stopping = loop.create_task(stop.wait())
        lost = loop.create_task(system.lost.wait()) if system is not None else None
        try:
            await asyncio.wait(
                [t for t in (running, stopping, lost) if t is not None], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if lost is not None:
                lost.cancel()
            if system is not None:
                await system.shutdown()
            runner.stop.set()
            for task in (rebuilding, watching, stopping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await running
        if system is not None and system.lost.is_set():
            raise AgentlogError(
                f"another process took over manager {settings.manager_id} while this one was cut off from the "
                "database; its agents were detached. Give each `agentlog up` its own AGENTLOG_MANAGER_ID."
            )


async def _stop_serving(stop: asyncio.Event, serving: asyncio.Task[None]) -> None:
    stop.set()
    with contextlib.suppress(Exception):
        await serving


def _stopping(stop: asyncio.Event, signum: int, system: AgentSystem | None = None) -> None:
    if stop.is_set() and system is not None:  # asked again: no more waiting for programs' grace
        log.warning("agentlog.stopping_now", signal=signal.Signals(signum).name)
        system.hurry()
        return
    log.info("agentlog.stopping", signal=signal.Signals(signum).name)
    stop.set()


async def _set_when(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _watch_barrier(store: EventStore, interval_s: float, warn_after_s: float) -> None:
    """Warn about a transaction holding the visibility barrier back: while it runs, no handler or subscriber gets
    any event committed after it began, and nothing else says why. A forgotten prepared transaction is the worst
    case: it belongs to no session, so idle timeouts never end it."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            holders = await recorder.select_barrier_holders(store.pool)
        except UNKNOWN_BARRIER as error:
            log.warning("log.barrier_unknown", error=str(error))
            continue
        if holders and holders[0].age_seconds >= warn_after_s:
            holder = holders[0]
            log.warning(
                "log.barrier_held",
                held_by=holder.describe(),
                kind=holder.kind,
                pid=holder.pid,
                prepared_gid=holder.prepared_gid,
                age_seconds=round(holder.age_seconds, 1),
            )


async def _rebuild_all(store: EventStore, stale: Sequence[Projection]) -> None:
    """Rebuild one after the other, while the live ones (these included) keep serving; a rebuild cut off from the
    database resumes where it stopped once it is back."""
    for projection in stale:
        log.info("projection.rebuild_needed", projection=projection.name, version=projection.version)
        delay = 0.5
        while True:
            try:
                outcome = await rebuild(store, projection)
                break
            except CONNECTION_ERRORS as error:  # resumed once the database is back
                log.warning("projection.rebuild_interrupted", projection=projection.name, error=str(error),
                            retry_in_s=delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except AgentlogError as error:
                log.error("projection.rebuild_failed", projection=projection.name, error=str(error))
                outcome = None
                break
        if outcome is None:
            continue
        log.info(
            "projection.rebuilt",
            projection=outcome.projection,
            events=outcome.events,
            seconds=round(outcome.seconds, 1),
        )
