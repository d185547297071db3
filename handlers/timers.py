"""The timer service: appends `TimerFired` when the database clock passes a scheduled timer's due time.

It reads the `timers` projection and is the only place where wall-clock time turns into events, so deciders stay
pure. One instance is active across all processes (a session advisory lock, as for handlers); the others stand
by. Each timer's `TimerFired` has an id derived from the timer id, so two instances racing during a takeover, or
one firing again before the projection caught up, append it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import structlog

from agentlog.domains.timers.events import TimerFired
from agentlog.eventstore import ANY, EventStore, NewEvent
from agentlog.eventstore.errors import AgentlogError
from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.postgres.connections import Connection, connect
from agentlog.eventstore.postgres.errors import CONNECTION_ERRORS
from agentlog.eventstore.postgres.queries import load_queries

log = structlog.get_logger("handlers.timers")

LOCK_NAME = "timer-service"
TIMER_NAMESPACE = uuid.UUID("5b0d3c8e-2f4a-4e61-9a57-4c3c1f0f6a11")

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


RETRY_ERRORS: tuple[type[BaseException], ...] = (AgentlogError, *CONNECTION_ERRORS)


def fired_event_id(timer_id: str) -> uuid.UUID:
    return uuid.uuid5(TIMER_NAMESPACE, timer_id)


class TimerService:
    def __init__(self, store: EventStore, stop: asyncio.Event, *, batch_size: int = 500) -> None:
        self.store = store
        self._stop = stop
        self._batch_size = batch_size
        self._fired: dict[str, None] = {}
        """Timers fired but maybe not yet settled in the projection: not fired again meanwhile (bounded)."""
        self.fired_count = 0

    async def run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                await self._session()
                backoff = 0.1
            except RETRY_ERRORS as error:
                log.warning("timers.connection_lost", error=str(error), retry_in_s=backoff)
            except Exception:
                # Timers are how documents go idle and agents restart: never let one failure end the service.
                log.exception("timers.failed", retry_in_s=backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, 10.0)

    async def _session(self) -> None:
        connection = await connect(self.store.url, application_name="agentlog timer service")
        try:
            while not await recorder.try_lock_handler(connection, LOCK_NAME):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)
                if self._stop.is_set():
                    return
            log.info("timers.active")
            waiter = await self.store.waiter()
            try:
                while not self._stop.is_set():
                    waiter.clear()
                    wait_s = await self._fire_due(connection)
                    if not self._stop.is_set():
                        await waiter.wait(min(wait_s, self.store.poll_interval))
            finally:
                self.store.forget_waiter(waiter)
        finally:
            connection.terminate()

    async def _fire_due(self, connection: Connection) -> float:
        """Fire every due timer; return how long until the next one (or a poll interval)."""
        rows = await connection.fetch(QUERIES["due_timers"], self._batch_size)
        next_wait = self.store.poll_interval
        for row in rows:
            if row["wait_s"] > 0:
                next_wait = min(next_wait, row["wait_s"])
                break
            if row["timer_id"] in self._fired:
                continue
            fired = TimerFired(
                timer_id=row["timer_id"], purpose=row["purpose"], subject=row["subject"], due_at=row["due_at"]
            )
            await self.store.append(row["stream_id"], [NewEvent(fired, fired_event_id(row["timer_id"]))], ANY)
            self._fired[row["timer_id"]] = None
            self.fired_count += 1
            log.debug("timers.fired", timer=row["timer_id"], purpose=row["purpose"], subject=row["subject"])
        while len(self._fired) > 10 * self._batch_size:
            del self._fired[next(iter(self._fired))]
        return next_wait
