"""Document content in PostgreSQL: every Y.js update stored as received, in batches, and followed by the other
document servers.

Three rules hold here, and the rooms rely on them:

- **Nothing is dropped.** `UpdateWriter.submit` queues an update and returns a future that resolves once it is
  committed; a batch that fails (the server is away) is retried until it commits, and the rooms hold back
  everything that depends on it (broadcasts, sync replies) meanwhile. A full queue slows the senders down (the
  rooms wait before reading more), it never refuses.
- **One statement per batch.** Updates of every room of this server go into one INSERT per batch, one batch in
  flight at a time, in the order they were submitted; the next batch fills while the last commits.
- **Compaction replaces only what it applied.** Loading folds a document's rows into one document; only the rows
  whose every operation made it in are replaced by their fold. A row that waits for an update that is not there
  (its dependencies are missing) is kept as it is, so nothing it holds is ever lost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from pycrdt import Doc
from pycrdt._base import BaseType

from agentlog.documents.protocol import is_integrated
from agentlog.eventstore.postgres.connections import StatementPool
from agentlog.eventstore.postgres.errors import CONNECTION_ERRORS
from agentlog.eventstore.postgres.notifications import Notifier, Wakeups
from agentlog.eventstore.postgres.queries import load_queries

log = structlog.get_logger("agentlog.documents.updates")

QUERIES = load_queries(Path(__file__).with_name("queries.sql"))
CHANNEL = "agentlog_documents"
COMPACT_AFTER = 500
"""Rows a document may pile up before loading it folds them into one (a keystroke is an update)."""
MAX_BATCH_UPDATES = 5_000
OpenDocuments = Callable[[], list[str]]
"""The documents whose rooms are open on this server now."""
Deliver = Callable[[str, bytes], Awaitable[None]]
"""Hand one update another server stored to the room of its document."""
MAX_BATCH_BYTES = 8 * 1024 * 1024


@dataclass(slots=True)
class _Queued:
    document_id: str
    body: bytes
    stored: asyncio.Future[None]


class UpdateWriter:
    """Stores the updates of every room of this server, in submission order, one statement per batch."""

    def __init__(self, pool: StatementPool, server_id: str, notifier: Notifier | None = None) -> None:
        self._pool = pool
        self._server_id = server_id
        self._notifier = notifier
        self._queue: collections.deque[_Queued] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last: asyncio.Future[None] | None = None
        """The last update submitted: once it is stored, everything before it is (batches commit in order). The
        queue alone cannot tell, as the batch in flight has left it."""
        self.stored_updates = 0
        self.batches = 0

    def submit(self, document_id: str, body: bytes) -> asyncio.Future[None]:
        """Queue one update; the future resolves once it is committed."""
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(document_id, body, stored))
        self._last = stored
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return stored

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def drain(self) -> None:
        """Wait until every update submitted so far is stored, the batch in flight included."""
        if self._last is not None and not self._last.done():
            await asyncio.shield(self._last)
        if self._task is not None and not self._task.done():
            self._wake.set()

    async def close(self) -> None:
        await self.drain()
        if self._notifier is not None:
            await self._notifier.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch: list[_Queued] = []
            size = 0
            while self._queue and len(batch) < MAX_BATCH_UPDATES and size < MAX_BATCH_BYTES:
                batch.append(self._queue[0])
                size += len(self._queue[0].body)
                self._queue.popleft()
            await self._store(batch)
            for item in batch:
                if not item.stored.done():
                    item.stored.set_result(None)

    async def _store(self, batch: list[_Queued]) -> None:
        delay = 0.05
        attempt = 0
        while True:
            try:
                await self._pool.execute(
                    QUERIES["insert_updates"],
                    [item.document_id for item in batch],
                    [item.body for item in batch],
                    self._server_id,
                )
                break
            except Exception as error:
                # Whatever the database answered (gone, disk full, a statement timeout), the batch is kept and
                # tried again: an update given up here would have been seen by its sender and lost, and its
                # future left unresolved would stop the room sending to anyone, unloading, or shutting down.
                attempt += 1
                connection = isinstance(error, CONNECTION_ERRORS)
                event = "document.updates_not_stored" if connection else "document.updates_refused"
                log.warning(event, updates=len(batch), error=f"{type(error).__name__}: {error}", attempt=attempt,
                            retry_in_s=delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.stored_updates += len(batch)
        self.batches += 1
        if self._notifier is not None:
            self._notifier.committed()


# -- loading -----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class LoadedDocument:
    document: Doc[BaseType]
    rows: int
    size: int
    """Bytes of the rows it was folded from."""
    barrier: int
    """The visibility barrier of the read: rows at or above it may have committed after it (`stored_since`)."""
    waiting: list[bytes] = field(default_factory=list)
    """Stored updates whose dependencies are not (yet) in the document: kept, and applied again when they come."""


def fold(rows: list[tuple[int, bytes]]) -> tuple[Doc[BaseType], list[int], list[bytes]]:
    """The document of these rows (in id order), the ids of the rows wholly in it, and the bodies of the others.

    CPU work on the caller's thread: big documents are folded on a worker thread, away from the event loop.
    """
    document: Doc[BaseType] = Doc()
    for _, body in rows:
        document.apply_update(body)
    state = document.get_state()
    applied, waiting = [], []
    for row_id, body in rows:
        if is_integrated(body, state):
            applied.append(row_id)
        else:
            waiting.append(body)
    return document, applied, waiting


async def stored_rows(pool: StatementPool, document_id: str) -> tuple[list[tuple[int, bytes]], int]:
    """The document's stored updates, (id, body) oldest first, and the visibility barrier of the same read."""
    found = await pool.fetchrow(QUERIES["select_document"], document_id)
    assert found is not None  # an aggregate: one row, however many updates
    rows = [(row_id, bytes(body)) for row_id, body in zip(found["ids"], found["bodies"], strict=True)]
    return rows, int(found["barrier"])


async def load_document(pool: StatementPool, document_id: str, server_id: str) -> LoadedDocument:
    """The document as stored; compacted first when its rows piled up (only the rows wholly applied)."""
    rows, barrier = await stored_rows(pool, document_id)
    document, applied, waiting = await asyncio.to_thread(fold, rows)
    if len(applied) > COMPACT_AFTER:
        folded = await asyncio.to_thread(document.get_update)
        await pool.execute(QUERIES["compact_document"], document_id, applied, folded, server_id)
        log.info("document.compacted", document=document_id, rows=len(applied), kept=len(waiting))
    if waiting:
        log.warning("document.updates_waiting", document=document_id, rows=len(waiting))
    size = sum(len(body) for _, body in rows)
    return LoadedDocument(document, len(rows), size, barrier, waiting)


async def stored_since(pool: StatementPool, document_id: str, barrier: int, server_id: str) -> list[bytes]:
    """What other servers stored for the document at or above a load's barrier (some of it the load may hold too:
    applying an update twice changes nothing)."""
    rows = await pool.fetch(QUERIES["select_document_since"], document_id, barrier, server_id)
    return [bytes(row["body"]) for row in rows]


# -- following the other servers ---------------------------------------------------------------------------------


class UpdateFollower:
    """Hands the rooms open here what the other servers store for them, in canonical order, never skipping one."""

    def __init__(
        self,
        pool: StatementPool,
        url: str,
        server_id: str,
        *,
        poll_interval: float = 1.0,
        batch_size: int = 2_000,
    ) -> None:
        self._pool = pool
        self._url = url
        self._server_id = server_id
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self.delivered = 0

    async def run(self, open_documents: OpenDocuments, deliver: Deliver, stop: asyncio.Event) -> None:
        wakeups = Wakeups(self._url, origin=self._server_id, channel=CHANNEL)
        await wakeups.start()
        waiter = wakeups.waiter()
        position: tuple[int, int] | None = None
        retry = 0.005
        try:
            while not stop.is_set():
                waiter.clear()
                try:  # every read of the database in here: one that failed outside ended the follower for good
                    if position is None:
                        position = (int(await self._pool.fetchval(QUERIES["follow_position"])), 0)
                    scanned, position = await self._follow(position, open_documents, deliver)
                    held_back = scanned == 0 and await self._pool.fetchval(QUERIES["follow_held_back"], *position)
                except CONNECTION_ERRORS as error:
                    log.warning("document.follow_failed", error=str(error))
                    await asyncio.sleep(min(retry, self._poll_interval))
                    retry = min(retry * 2, self._poll_interval)
                    continue
                if scanned == self._batch_size:
                    continue
                if held_back:
                    # Committed rows wait behind the barrier (a transaction below them still runs, and may never
                    # notify): look again soon, backing off to the poll interval.
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, self._poll_interval)
                    continue
                retry = 0.005
                await waiter.wait(self._poll_interval)
        finally:
            wakeups.forget(waiter)
            await wakeups.close()

    async def _follow(
        self, position: tuple[int, int], open_documents: OpenDocuments, deliver: Deliver
    ) -> tuple[int, tuple[int, int]]:
        rows = await self._pool.fetch(
            QUERIES["follow_updates"], position[0], position[1], self._server_id, open_documents(), self._batch_size
        )
        if not rows:
            return 0, position
        for row in rows:
            if row["document_id"] is not None:
                await deliver(row["document_id"], bytes(row["body"]))
                self.delivered += 1
        last = rows[0]
        return int(last["scanned"]), (int(last["last_transaction_id"]), int(last["last_id"]))
