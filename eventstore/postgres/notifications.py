"""Wake-ups over LISTEN/NOTIFY. A notification is a hint that the log grew, never the delivery itself.

Sending: a NOTIFY inside the appending transaction takes a database-wide lock held through the commit's WAL
flush and serialises every committing writer. `Notifier` sends it after the commit instead, in its own tiny
transaction, at once for the first commit and then at most once per `interval` while commits keep coming. A
process that dies between its commit and its NOTIFY costs subscribers one fallback poll, nothing more.

Receiving: `Wakeups` holds one LISTEN connection per process and wakes every waiter on a notification, on
(re)connect (notifications sent while it was not listening are gone, so everyone must re-read), and on a fallback
timer kept by each waiter. A liveness probe catches a silently half-open socket.

Within one store no round trip is needed: its own commits wake its own waiters at once (`Wakeups.wake_local`),
about a quarter of a millisecond sooner than the NOTIFY would. Each NOTIFY carries the sending store's origin, and
a store's listener ignores its own, whose readers were all woken already.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum

import asyncpg
import structlog

from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.postgres.connections import connect
from agentlog.eventstore.postgres.errors import CONNECTION_ERRORS
from agentlog.eventstore.postgres.queries import QUERIES

CHANNEL = "agentlog_events"
"""The log's channel; other tables followed the same way (document updates) have their own."""
log = structlog.get_logger("eventstore.notifications")


class Notifier:
    """Coalesced post-commit NOTIFY on a dedicated connection."""

    def __init__(self, url: str, interval: float, origin: str, *, channel: str = CHANNEL) -> None:
        self._url = url
        self._interval = interval
        self._origin = origin
        self._channel = channel
        self._connection: asyncpg.Connection | None = None
        self._pending = False
        self._task: asyncio.Task[None] | None = None

    def committed(self) -> None:
        """Say that an append committed; subscribers get woken up soon, without blocking the caller."""
        self._pending = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            self._pending = False
            try:
                if self._connection is None or self._connection.is_closed():
                    # A NOTIFY takes a transaction id, so its commit would wait for a WAL flush: a wake-up hint
                    # has nothing durable in it, and subscribers poll anyway.
                    self._connection = await connect(self._url, synchronous_commit="off")
                await recorder.notify(self._connection, self._channel, self._origin)
            except CONNECTION_ERRORS as error:
                # Subscribers' fallback poll covers a lost wake-up; the next commit reconnects.
                log.warning("notifier.send_failed", error=str(error))
                self._connection = None
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        if self._task is not None:
            await self._task
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


class WakeupState(enum.Enum):
    NEW = "new"
    LISTENING = "listening"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class Waiter:
    """One subscriber's view of the wake-ups: `clear()` before reading, `wait(timeout)` after."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._event.set()  # the first read happens at once

    def wake(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - the fallback poll is the point
        """True when woken, False when the timeout (the fallback poll) ran out first."""
        try:
            async with asyncio.timeout(timeout):  # no extra task, unlike wait_for: one loop turn sooner
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class Wakeups:
    """One LISTEN connection for the whole process, reconnected with backoff, fanning out to waiters."""

    def __init__(
        self,
        url: str,
        *,
        origin: str,
        channel: str = CHANNEL,
        probe_interval: float = 15.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._url = url
        self._origin = origin
        self._channel = channel
        self._probe_interval = probe_interval
        self._max_backoff = max_backoff
        self._waiters: set[Waiter] = set()
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.state = WakeupState.NEW

    async def start(self) -> None:
        if self.state is not WakeupState.NEW:
            raise RuntimeError(f"cannot start wake-ups: they are {self.state.value}")
        self._task = asyncio.get_running_loop().create_task(self._supervise())
        # Listening before anyone catches up is what makes a notification impossible to miss in between.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout=10)

    def waiter(self) -> Waiter:
        waiter = Waiter()
        self._waiters.add(waiter)
        return waiter

    def forget(self, waiter: Waiter) -> None:
        self._waiters.discard(waiter)

    def wake_local(self) -> None:
        """This process committed an append: wake every waiter now rather than when the NOTIFY comes back."""
        self._wake_all()

    def _on_notification(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        if payload != self._origin:
            self._wake_all()

    def _wake_all(self) -> None:
        for waiter in self._waiters:
            waiter.wake()

    async def _supervise(self) -> None:
        backoff = 0.05
        while self.state is not WakeupState.CLOSED:
            connection: asyncpg.Connection | None = None
            try:
                connection = await connect(self._url)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await connection.add_listener(self._channel, self._on_notification)
                self.state = WakeupState.LISTENING
                self._listening.set()
                self._wake_all()
                backoff = 0.05
                log.debug("wakeups.listening")
                await self._probe_until_lost(connection, lost)
            except CONNECTION_ERRORS as error:
                log.warning("wakeups.connection_lost", error=str(error), retry_in_s=backoff)
            finally:
                self._listening.clear()
                if connection is not None and not connection.is_closed():
                    connection.terminate()
            if self.state is WakeupState.CLOSED:
                break
            self.state = WakeupState.RECONNECTING
            self._wake_all()  # subscribers fall back to polling while we reconnect
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _probe_until_lost(self, connection: asyncpg.Connection, lost: asyncio.Event) -> None:
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self._probe_interval)
            if not lost.is_set():
                await connection.fetchval(QUERIES["probe"], timeout=self._probe_interval)

    async def close(self) -> None:
        self.state = WakeupState.CLOSED
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._wake_all()
