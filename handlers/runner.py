"""The handler runner: hosts named handlers, one active instance of each across every process and machine.

Each handler instance holds a session advisory lock named after the handler on its own connection and runs
every batch's transaction on that same connection: if the connection dies, the lock goes with it and so does the
transaction in flight, so a standby that takes the lock over can never interleave with a stale active instance.
The checkpoint moves by compare-and-set in the batch's transaction, a second fence. Events come from a
subscription (NOTIFY wake-up, fallback poll); after any failure the instance reconnects with backoff and resumes
from the checkpoint in the database, never from memory.

An event the handler cannot handle however often it is retried (`UndecidableEventError`) must not hold every later
event back: the runner shrinks the batch until that event is alone in it (the events before it first, in a batch
of their own), then records it as skipped exactly as it records an event it cannot decode, and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import signal
import time
from collections.abc import Sequence

import structlog

from agentlog.eventstore import ConcurrencyRetryError, EventStore, LogPosition, RecordedEvent
from agentlog.eventstore.decoding import decode_wanted, takes_raw_events, wanted_records
from agentlog.eventstore.errors import (
    AgentlogError,
    NewerSchemaVersionError,
    UnknownEventTypeError,
)
from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.postgres.connections import Connection, connect
from agentlog.eventstore.postgres.errors import CONNECTION_ERRORS, FailedStatementWatch, is_in_failed_transaction
from agentlog.eventstore.postgres.notifications import Waiter
from agentlog.eventstore.subscription import HELD_BACK_FIRST_RETRY_S, HELD_BACK_MAX_RETRY_S
from agentlog.handlers.handler import Handler, HandlerBatch, UndecidableEventError

log = structlog.get_logger("handlers.runner")

BATCH_ATTEMPTS = 5


class CheckpointMovedError(AgentlogError):
    """Another instance moved this handler's checkpoint; resuming from the database."""


class BatchAbortedError(AgentlogError):
    """A handler caught a database error and carried on, so its batch's transaction had failed and was rolled back.

    Retried with backoff. Let such errors propagate, or catch them around a savepoint (`SAVEPOINT name`, and
    `ROLLBACK TO SAVEPOINT name` on the error), which undoes only what followed it. The batch's transaction is
    not asyncpg's, so `connection.transaction()` cannot make one there.
    """

    def __init__(self, handler: str, sqlstate: str | None, message: str | None) -> None:
        self.handler = handler
        self.sqlstate = sqlstate
        self.swallowed = message
        cause = f"{sqlstate}: {message}" if sqlstate else "an error the runner did not see"
        super().__init__(
            f"handler {handler} caught a database error and carried on ({cause}), so its batch was rolled back; "
            "let the error propagate, or catch it around a savepoint (SAVEPOINT, ROLLBACK TO SAVEPOINT)"
        )


HELD_ERRORS: tuple[type[BaseException], ...] = (NewerSchemaVersionError, UnknownEventTypeError)
"""Events a handler cannot read yet through no fault of theirs: it retries, and never skips them."""

RECONNECT_ERRORS: tuple[type[BaseException], ...] = (CheckpointMovedError, *CONNECTION_ERRORS)
"""Failures that end an instance's session quietly: it reconnects and resumes from its checkpoint."""


class HandlerState(enum.Enum):
    STANDBY = "standby"
    ACTIVE = "active"
    RETRYING = "retrying"
    STOPPED = "stopped"


class HandlerInstance:
    """One handler in this process: standby until it holds the lock, then active until stopped or cut off."""

    def __init__(
        self,
        store: EventStore,
        handler: Handler,
        stop: asyncio.Event,
        *,
        batch_size: int = 500,
        lock_retry_interval: float = 1.0,
        lag_log_interval: float = 10.0,
        max_backoff: float = 10.0,
    ) -> None:
        self.store = store
        self.handler = handler
        self.state = HandlerState.STANDBY
        self.position: LogPosition | None = None
        self.batches_applied = 0
        self._stop = stop
        self._batch_size = batch_size
        self._lock_retry_interval = lock_retry_interval
        self._lag_log_interval = lag_log_interval
        self._max_backoff = max_backoff

    def __repr__(self) -> str:
        return f"<HandlerInstance {self.handler.name} {self.state.value} at {self.position}>"

    async def run(self) -> None:
        """Run until the stop event is set; failures are logged and retried with backoff."""
        backoff = 0.1
        while not self._stop.is_set():
            try:
                await self._run_session()
                backoff = 0.1
            except RECONNECT_ERRORS as error:
                log.warning("handler.connection_lost", handler=self.handler.name, error=str(error))
            except HELD_ERRORS as error:
                # Not the event's fault: this process is older than the event, or lacks a plugin. Hold here.
                log.error("handler.held", handler=self.handler.name, error=str(error), retry_in_s=backoff)
            except BatchAbortedError as error:
                log.error(
                    "handler.batch_aborted",
                    handler=self.handler.name,
                    sqlstate=error.sqlstate,
                    error=error.swallowed,
                    retry_in_s=backoff,
                )
            except Exception:
                log.exception("handler.batch_failed", handler=self.handler.name, retry_in_s=backoff)
            if self._stop.is_set():
                break
            self.state = HandlerState.RETRYING
            await _sleep_unless(self._stop, backoff)
            backoff = min(backoff * 2, self._max_backoff)
        self.state = HandlerState.STOPPED

    async def _run_session(self) -> None:
        # Batches that append nothing commit asynchronously: their effects are derived state, atomic with the
        # checkpoint, so a server crash that loses the last few commits loses both together and the events are
        # applied again. Batches that append to the log commit durably (see `_apply`).
        # Between batches the session idles in a transaction that has run nothing (see `_follow`) for at most a
        # poll interval; the timeout that guards against forgotten transactions must outlast that.
        idle_timeout_ms = max(60_000, int(self.store.poll_interval * 4_000))
        connection = await connect(
            self.store.url,
            application_name=f"agentlog handler {self.handler.name}",
            synchronous_commit="off",
            idle_in_transaction_session_timeout=str(idle_timeout_ms),
            **dict(getattr(self.handler, "session_settings", {})),
        )
        failed_statements = FailedStatementWatch(connection)
        try:
            self.state = HandlerState.STANDBY
            if not await self._acquire_lock(connection):
                return
            self.state = HandlerState.ACTIVE
            self.position = await recorder.load_checkpoint(connection, self.handler.name)
            try:
                if (session_started := getattr(self.handler, "session_started", None)) is not None:
                    started = session_started()
                    if inspect.isawaitable(started):
                        await started
                log.info("handler.active", handler=self.handler.name, checkpoint=str(self.position))
                reporter = asyncio.get_running_loop().create_task(self._report_lag())
                try:
                    await self._follow(connection, failed_statements)
                finally:
                    reporter.cancel()
            finally:
                if (session_ended := getattr(self.handler, "session_ended", None)) is not None:
                    session_ended()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=2)
            connection.terminate()

    async def _acquire_lock(self, connection: Connection) -> bool:
        announced = False
        while not self._stop.is_set():
            if await recorder.try_lock_handler(connection, self.handler.name):
                return True
            if not announced:
                log.info("handler.standby", handler=self.handler.name)
                announced = True
            await _sleep_unless(self._stop, self._lock_retry_interval)
        return False

    async def _follow(self, connection: Connection, failed_statements: FailedStatementWatch) -> None:
        """Apply batches until stopped: at once while there is work, else after a wake-up or the fallback poll.

        Listening starts (the waiter) before the first read, so no NOTIFY can fall in between. When committed
        events wait behind the barrier, the next read comes soon rather than at the next NOTIFY: the transaction
        holding the barrier may never notify. The re-reads back off to `HELD_BACK_MAX_RETRY_S` at most, as the
        subscriptions' do (backing off to the fallback poll made a handler that read a moment too early wait up
        to a second).

        Between batches the connection sits in a transaction that has run nothing yet (`recorder.begin_batch`),
        opened in the same round trip as the previous COMMIT: after a wake-up, the batch's first round trip is
        already the claim. Such a transaction holds no snapshot, transaction id or lock.
        """
        waiter = await self.store.waiter()
        stop_watch = asyncio.get_running_loop().create_task(_wake_on(self._stop, waiter))
        held_back_retry = HELD_BACK_FIRST_RETRY_S
        try:
            await recorder.begin_batch(connection)
            while not self._stop.is_set():
                waiter.clear()  # a wake-up arriving during the batch sets it again
                applied, held_back = await self._apply_next_batch(connection, failed_statements)
                if applied == self._batch_size:
                    continue
                if applied:
                    held_back_retry = HELD_BACK_FIRST_RETRY_S
                    continue
                if held_back:
                    await _sleep_unless(self._stop, held_back_retry)
                    held_back_retry = min(held_back_retry * 2, HELD_BACK_MAX_RETRY_S, self.store.poll_interval)
                    continue
                held_back_retry = HELD_BACK_FIRST_RETRY_S
                await waiter.wait(self.store.poll_interval)  # a stop wakes it too
        finally:
            stop_watch.cancel()
            self.store.forget_waiter(waiter)

    async def _apply_next_batch(
        self, connection: Connection, failed_statements: FailedStatementWatch
    ) -> tuple[int, bool]:
        """Claim the next batch, apply it and commit, in one transaction.

        Returns how many events the batch held and, when it held none, whether committed events wait behind
        the barrier. The claim reads the events and moves the checkpoint past them in one statement; the
        handler's writes and any events it appends join the same transaction, so all of it commits or none of
        it does. The transaction was opened beforehand, and the next one is opened as this one ends.

        A handler that caught a database error and carried on has left the transaction failed: the COMMIT then
        rolls back without an error and says so only in its answer. Such a batch is a failed one
        (`BatchAbortedError`): nothing of it is counted, the hooks are not called, the position stays.

        A handler that raises `UndecidableEventError` has its batch rolled back and claimed again smaller: first
        the events before the one it named, then that one alone, which is recorded as skipped (`_skip`).
        """
        assert self.position is not None
        limit, attempt = self._batch_size, 1
        while True:
            failed_statements.clear()
            events: list[RecordedEvent] = []
            try:
                events, moved = await recorder.claim_batch(connection, self.handler.name, self.position, limit)
                if not events:
                    held_back = await recorder.select_held_back(connection, self.position)
                    await recorder.abandon_batch(connection)  # releases the locks the reads took
                    return 0, held_back
                if not moved:
                    raise CheckpointMovedError()
                batch, skipped = self._batch_of(events, connection)
                await recorder.insert_skipped(connection, self.handler.name, skipped)
                if batch.records:
                    await self.handler.handle(batch)
                if not await self._commit(connection, batch):
                    raise BatchAbortedError(self.handler.name, failed_statements.sqlstate, failed_statements.message)
            except ConcurrencyRetryError:
                if attempt == BATCH_ATTEMPTS:
                    raise
                attempt += 1
                await recorder.abandon_batch(connection)
                continue
            except UndecidableEventError as error:
                await recorder.abandon_batch(connection)
                if len(events) > 1:
                    limit = isolating_limit(events, error)
                    log.info("handler.isolating_event", handler=self.handler.name, event_id=str(error.event_id))
                    continue
                if not events or events[0].event_id != error.event_id:
                    raise  # it names an event outside the batch: not one the runner can skip
                return await self._skip(connection, error)
            if (batch_committed := getattr(self.handler, "batch_committed", None)) is not None:
                batch_committed()
            if batch.appended:
                self.store.committed()
            self.position = events[-1].position
            self.batches_applied += 1
            for recorded, reason in skipped:
                log.warning(
                    "handler.event_skipped",
                    handler=self.handler.name,
                    global_position=recorded.global_position,
                    stream_id=recorded.stream_id,
                    event_type=recorded.event_type,
                    schema_version=recorded.schema_version,
                    reason=reason,
                )
            log.debug(
                "handler.batch_applied",
                handler=self.handler.name,
                events=len(events),
                applied=len(batch.records),
                checkpoint=str(self.position),
            )
            return len(events), False

    async def _skip(self, connection: Connection, error: UndecidableEventError) -> tuple[int, bool]:
        """Record the one event the handler cannot handle as skipped, in a batch of its own that moves past it.

        The claim reads the same event again (nothing can appear before it below the barrier); the handler is not
        called. The skip commits with the checkpoint, like an undecodable event's, so it is recorded once.
        """
        assert self.position is not None
        events, moved = await recorder.claim_batch(connection, self.handler.name, self.position, 1)
        if not moved:
            raise CheckpointMovedError()
        if [event.event_id for event in events] != [error.event_id]:
            await recorder.abandon_batch(connection)
            return 0, False  # not the event it was: claim again as usual
        (event,) = events
        await recorder.insert_skipped(connection, self.handler.name, [(event, error.reason)])
        if not await recorder.commit_batch(connection):
            raise BatchAbortedError(self.handler.name, None, None)
        self.position = event.position
        self.batches_applied += 1
        log.error(
            "handler.event_undecidable",
            handler=self.handler.name,
            global_position=event.global_position,
            event_id=str(event.event_id),
            stream_id=event.stream_id,
            event_type=event.event_type,
            reason=error.reason,
        )
        return 1, False

    def _batch_of(
        self, events: Sequence[RecordedEvent], connection: Connection
    ) -> tuple[HandlerBatch, list[tuple[RecordedEvent, str]]]:
        """The handler's part of the claimed events, decoded unless it takes raw events, and what it must skip."""
        wanted = self.handler.event_types
        if takes_raw_events(self.handler):
            records = wanted_records(events, wanted)
            return HandlerBatch(self.handler.name, [], records, connection, self.store), []
        typed, undecodable = decode_wanted(self.store.catalogue, events, wanted)
        batch = HandlerBatch(self.handler.name, typed, [event.recorded for event in typed], connection, self.store)
        return batch, [(skip.recorded, skip.reason) for skip in undecodable]

    async def _commit(self, connection: Connection, batch: HandlerBatch) -> bool:
        """Commit the batch and open the next transaction; False when the transaction had failed (nothing committed)."""
        try:
            if batch.appended:
                await recorder.commit_durably(connection)
            return await recorder.commit_batch(connection)
        except Exception as error:
            if is_in_failed_transaction(error):  # the SET before the COMMIT was refused: the session ends, rolling back
                return False
            raise

    async def _report_lag(self) -> None:
        while True:
            await asyncio.sleep(self._lag_log_interval)
            with contextlib.suppress(AgentlogError, *CONNECTION_ERRORS):
                for lag in await recorder.select_handler_lag(self.store.pool, [self.handler.name]):
                    log.info(
                        "handler.lag",
                        handler=lag.name,
                        events_behind=lag.events_behind,
                        seconds_behind=round(lag.seconds_behind, 3),
                    )


class HandlerRunner:
    """Hosts several handlers in one process until `stop` is set (SIGINT/SIGTERM with `stop_on_signals`)."""

    def __init__(
        self,
        store: EventStore,
        handlers: Sequence[Handler],
        *,
        batch_size: int = 500,
        lock_retry_interval: float = 1.0,
        lag_log_interval: float = 10.0,
    ) -> None:
        names = [handler.name for handler in handlers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"handler names must be unique; repeated: {', '.join(duplicates)}")
        self.stop = asyncio.Event()
        self.instances = [
            HandlerInstance(
                store,
                handler,
                self.stop,
                batch_size=batch_size,
                lock_retry_interval=lock_retry_interval,
                lag_log_interval=lag_log_interval,
            )
            for handler in handlers
        ]

    def stop_on_signals(self) -> None:
        """SIGINT and SIGTERM finish the batch in progress, release the locks and return from `run`."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._signalled, signum)

    def _signalled(self, signum: int) -> None:
        log.info("runner.stopping", signal=signal.Signals(signum).name)
        self.stop.set()

    async def run(self) -> None:
        started = time.monotonic()
        log.info("runner.started", handlers=[instance.handler.name for instance in self.instances])
        # Until stopped, even with nothing to host: `agentlog up` is a long-running process either way.
        await asyncio.gather(*(instance.run() for instance in self.instances), self.stop.wait())
        log.info("runner.stopped", ran_s=round(time.monotonic() - started, 1))


def isolating_limit(events: Sequence[RecordedEvent], error: UndecidableEventError) -> int:
    """The size of the next claim after `error` in a batch of `events`: the events before the one it names, or
    that one alone when it comes first (or is not among them)."""
    ids = [event.event_id for event in events]
    index = ids.index(error.event_id) if error.event_id in ids else 0
    return max(index, 1)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _wake_on(stop: asyncio.Event, waiter: Waiter) -> None:
    """Wake `waiter` when the runner is stopped, so a wait for events ends at once (no extra task per wait)."""
    await stop.wait()
    waiter.wake()
