"""Catch-up-then-live subscriptions to the whole log or one category, from a checkpoint.

The subscription listens before it reads (through the process's `Wakeups`), reads batches after its position in
canonical order below the visibility barrier, and sleeps until a wake-up or the fallback poll. When committed
events wait behind the barrier (a lower transaction still runs), it re-reads soon instead of trusting the next
NOTIFY: the transaction holding the barrier may not be an append and may never notify. The re-reads back off from
1 ms to at most `HELD_BACK_MAX_RETRY_S` (backing off to the fallback poll, as they did, made a reader that came a
moment too early wait up to a second: the p99 of dispatch latency). They do not listen meanwhile: under a steady
stream of commits every NOTIFY would wake every held-back reader, thousands of reads a second on a busy log.
Connection failures are retried with backoff from the last delivered position; nothing is skipped and nothing is
delivered twice.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Awaitable

import structlog

from agentlog.eventstore.errors import ClosedError, DatabaseUnavailableError
from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.postgres.notifications import Wakeups
from agentlog.eventstore.postgres.recorder import Executor
from agentlog.eventstore.records import LogPosition, RecordedEvent

log = structlog.get_logger("eventstore.subscription")

HELD_BACK_FIRST_RETRY_S = 0.001
HELD_BACK_MAX_RETRY_S = 0.05


class SubscriptionState(enum.Enum):
    NEW = "new"
    CATCHING_UP = "catching_up"
    LIVE = "live"
    RETRYING = "retrying"
    CLOSED = "closed"


class Subscription:
    """Async iterator of batches (lists of `RecordedEvent`) in canonical order, after `position`."""

    def __init__(
        self,
        reader: Executor,
        wakeups: Wakeups,
        *,
        after: LogPosition,
        category: str | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._reader = reader
        self._wakeups = wakeups
        self._category = category
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._closed = asyncio.Event()
        self.position = after
        self.state = SubscriptionState.NEW

    def __repr__(self) -> str:
        return f"<Subscription {self.state.value} after {self.position}>"

    def close(self) -> None:
        """Stop after the batch being processed; the iterator then ends."""
        self.state = SubscriptionState.CLOSED
        self._closed.set()

    async def _read(self) -> list[RecordedEvent]:
        if self._category is None:
            return await recorder.select_log(self._reader, self.position, self._batch_size)
        return await recorder.select_category(self._reader, self._category, self.position, self._batch_size)

    async def __aiter__(self) -> AsyncIterator[list[RecordedEvent]]:
        if self.state is not SubscriptionState.NEW:
            raise ClosedError(f"cannot iterate a subscription that is {self.state.value}")
        self.state = SubscriptionState.CATCHING_UP
        waiter = self._wakeups.waiter()
        backoff = 0.05
        held_back_retry = HELD_BACK_FIRST_RETRY_S
        try:
            while not self._closed.is_set():
                waiter.clear()  # a wake-up arriving during the read sets it again
                try:
                    batch = await self._read()
                    held_back = not batch and await recorder.select_held_back(self._reader, self.position,
                                                                              self._category)
                except DatabaseUnavailableError as error:
                    self.state = SubscriptionState.RETRYING
                    log.warning("subscription.read_failed", error=str(error), retry_in_s=backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                backoff = 0.05
                if batch:
                    self.position = batch[-1].position
                    yield batch
                    if len(batch) == self._batch_size:
                        continue
                    self.state = SubscriptionState.LIVE
                    continue
                self.state = SubscriptionState.LIVE
                if held_back:
                    await self._sleep(held_back_retry)
                    held_back_retry = min(held_back_retry * 2, HELD_BACK_MAX_RETRY_S, self._poll_interval)
                    continue
                held_back_retry = HELD_BACK_FIRST_RETRY_S
                await self._wait(waiter.wait(self._poll_interval))
        finally:
            self._wakeups.forget(waiter)
            self.state = SubscriptionState.CLOSED

    async def _sleep(self, seconds: float) -> None:
        await self._wait(asyncio.sleep(seconds))

    async def _wait(self, awaitable: Awaitable[object]) -> None:
        """Wait for `awaitable` unless the subscription is closed first."""
        task = asyncio.ensure_future(awaitable)
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, closed):
                pending.cancel()

