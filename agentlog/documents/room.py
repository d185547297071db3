"""One document's room on this server: its Y.js document, the sockets in it, and what each of them may see when.

**Nothing anyone sees is unstored.** An update from a socket is applied to the room's document, queued for
storing, and sent to the other sockets only once it is stored; a reply to a joiner's sync request is computed from
the room's document and sent only once everything applied before it is stored. Each socket has its own outbox,
sent in order, every message waiting for the store of what it shows (a future from `UpdateWriter`). A client that
floods the room fills the store's queue, and then the room stops reading from it until the store caught up: it is
slowed down, never dropped.

**Nothing a client sends can make the server do unbounded work.** Per socket: updates (and awareness messages)
per second, with a burst; updates waiting for missing dependencies, counted per holder across its sockets and in
all per room (`waiting.py`) — those are stored but sent on only when their dependencies came, and one past either
limit is told before it is applied, so it is neither applied nor stored and the socket is closed with the reason
(applied first, it was stored already: one more with every reconnect); bytes waiting in its outbox (a socket
that does not read is closed rather than buffered without end). Big updates and big sync replies are computed on a
worker thread, one at a time per room, so the event loop that runs the handlers stays responsive.

**Awareness is checked before it is forwarded**, remembered per client for joiners, and cleared for every client
a socket announced when that socket goes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from pycrdt import Doc, merge_updates
from pycrdt._base import BaseType

from agentlog.documents.protocol import (
    AUTH,
    AWARENESS,
    QUERY_AWARENESS,
    SYNC,
    SYNC_STEP1,
    SYNC_STEP2,
    SYNC_UPDATE,
    AwarenessEntry,
    MalformedMessageError,
    awareness_message,
    is_integrated,
    parse_awareness,
    parse_message,
    sync_message,
)
from agentlog.documents.updates import UpdateWriter
from agentlog.documents.waiting import Waiting, WaitingUpdates, would_wait

log = structlog.get_logger("agentlog.documents.room")

CLOSE_POLICY = 1008
CLOSE_MALFORMED = 1007
CLOSE_TRY_AGAIN = 1013
THREAD_BYTES = 64 * 1024
"""Updates and documents above this size are applied or encoded on a worker thread."""
MERGE_UPDATES = 100
"""At most this many queued updates go out as one merged update."""


@dataclass(frozen=True, slots=True)
class RoomLimits:
    messages_per_s: float = 200.0
    """Sustained updates and awareness messages per second per socket (a burst of `burst` is allowed)."""
    burst: int = 1_000
    pending_updates: int = 100
    """Updates with missing dependencies one holder (token name) may have waiting, across its sockets."""
    room_pending_updates: int = 1_000
    """The same for everyone in the room together, those loaded with the document and other servers' included."""
    outbox_bytes: int = 32 * 1024 * 1024
    """Bytes one socket may have waiting to be sent to it."""
    unstored_bytes: int = 8 * 1024 * 1024
    """Bytes of one room's updates waiting to be stored before the room stops reading from its sockets."""
    unstored_updates: int = 20_000
    """The same in updates (a flood of one-character updates is many updates of few bytes)."""
    awareness_ids: int = 8
    """Awareness client ids one socket may announce (a Y.js client has one per document)."""


class Channel(Protocol):
    """A socket as the room sees it: framed messages in, messages out, and a close with a reason."""

    async def receive(self) -> bytes | None: ...

    async def send(self, message: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class SocketClosedError(Exception):
    """The room closes this socket: the code and reason it is told."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class TokenBucket:
    """`rate` per second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


Renew = Callable[["Client", str], Awaitable[None]]
"""Checks a renewed token a client sent (`auth`) and extends its socket's life, or raises SocketClosedError."""


@dataclass(eq=False, slots=True)
class Client:
    """One socket in a room."""

    channel: Channel
    name: str
    """Who (the token's name), for logs."""
    person: bool
    limits: RoomLimits
    outbox: collections.deque[tuple[asyncio.Future[None] | None, bytes, bool, bool]] = field(
        default_factory=collections.deque
    )
    """(stored, bytes, is an update, counted in `outbox_bytes`): an update's bytes are its payload (updates in a row
    are merged at sending)."""
    queued: asyncio.Event = field(default_factory=asyncio.Event)
    outbox_bytes: int = 0
    reply_waiting: bool = False
    """A sync reply is in the outbox, not counted: it is the whole document for a joiner, and a document bigger than
    the outbox limit closed every joiner (a second reply while one waits counts, so asking again and again does)."""
    awareness_ids: set[int] = field(default_factory=set)
    bucket: TokenBucket = field(init=False)
    closed: SocketClosedError | None = None
    sender: asyncio.Task[None] | None = None
    closing: asyncio.Task[None] | None = None
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the room closes this socket."""

    def __post_init__(self) -> None:
        self.bucket = TokenBucket(self.limits.messages_per_s, self.limits.burst)

    def send_after(
        self, stored: asyncio.Future[None] | None, message: bytes, *, update: bool = False, reply: bool = False
    ) -> None:
        """Queue a message (or, with `update`, an update's payload), to be sent once `stored` resolved (at once if
        None). A sync `reply` is not counted against the outbox limit unless another one waits."""
        if self.closed is not None:
            return
        counted = not reply or self.reply_waiting
        if counted:
            self.outbox_bytes += len(message)
            if self.outbox_bytes > self.limits.outbox_bytes:
                why = SocketClosedError(CLOSE_TRY_AGAIN, "this socket reads too slowly to keep up; reconnect")
                self.close_soon(why)
                return
        else:
            self.reply_waiting = True
        self.outbox.append((stored, message, update, counted))
        self.queued.set()

    def close_soon(self, why: SocketClosedError) -> None:
        """Close the socket with this reason: what waits in its outbox is not sent (it may be stuck sending)."""
        if self.closed is None:
            self.closed = why
            self.gone.set()
            self.queued.set()
            self.closing = asyncio.get_running_loop().create_task(self._close())

    async def _close(self) -> None:
        assert self.closed is not None
        if self.sender is not None:
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.sender
        await self.channel.close(self.closed.code, self.closed.reason)

    def start_sending(self) -> None:
        self.sender = asyncio.get_running_loop().create_task(self._send_loop())

    async def stop_sending(self) -> None:
        """Once the socket is gone: nothing more to send (or close it as asked)."""
        if self.closing is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.closing, 5)
        if self.sender is not None:
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.sender

    async def _send_loop(self) -> None:
        """Send in order, each message once what it shows is stored. Updates that are ready in a row go as one
        merged update: a keystroke flood costs one frame per burst, not one per keystroke."""
        outbox = self.outbox
        while True:
            if not outbox:
                self.queued.clear()
                await self.queued.wait()
                continue
            stored, message, update, counted = outbox[0]
            if stored is not None and not stored.done():
                await asyncio.shield(stored)
            outbox.popleft()
            if counted:
                self.outbox_bytes -= len(message)
            else:
                self.reply_waiting = False
            if update:
                payloads = [message]
                while (
                    outbox and outbox[0][2] and len(payloads) < MERGE_UPDATES
                    and (outbox[0][0] is None or outbox[0][0].done())
                ):  # fmt: skip
                    payloads.append(outbox.popleft()[1])
                    self.outbox_bytes -= len(payloads[-1])
                message = sync_message(SYNC_UPDATE, payloads[0] if len(payloads) == 1 else merge_updates(*payloads))
            await self.channel.send(message)


class Room:
    """One document on this server. `serve(client)` until the socket ends; `deliver(update)` for other servers'."""

    def __init__(
        self,
        name: str,
        document: Doc[BaseType],
        writer: UpdateWriter,
        limits: RoomLimits,
        *,
        size: int = 0,
        waiting: list[bytes] | None = None,
        on_person_edit: Callable[[], None] | None = None,
        reading: asyncio.Event | None = None,
    ) -> None:
        self.name = name
        self.document = document
        self.clients: set[Client] = set()
        self.awareness: dict[int, AwarenessEntry] = {}
        self._awareness_owners: dict[int, Client] = {}
        """Which socket announced each client id: only it may change or clear it."""
        self._writer = writer
        self._limits = limits
        self._lock = asyncio.Lock()
        """Held around every use of the document: the worker thread and the loop never touch it at once."""
        self._last_stored: asyncio.Future[None] | None = None
        self._waiting = WaitingUpdates()
        """Per holder (token name), not per socket: what a closed socket left waiting stays, and a limit per socket
        let a client reconnect and pile up more without end."""
        self._unstored = 0
        self._unstored_updates = 0
        self._room_for_more = asyncio.Event()
        self._room_for_more.set()
        self.size = size
        """Bytes of updates the document holds, roughly (loaded and applied since): big ones work on a thread."""
        self.reading = reading or asyncio.Event()
        """Cleared while the server stops: nothing more is read from its sockets (the inflow stops at once)."""
        if reading is None:
            self.reading.set()
        self._on_person_edit = on_person_edit
        if waiting:  # rows stored earlier that wait for their dependencies (from the load)
            state = document.get_state()
            for body in waiting:
                self._waiting.add(Waiting(body), state)

    # -- sockets -------------------------------------------------------------------------------------------------

    async def serve(self, client: Client, renew: Renew | None = None) -> None:
        """Sync the client, then handle its messages until its socket ends or the room closes it."""
        self.clients.add(client)
        client.start_sending()
        try:
            async with self._lock:
                client.send_after(None, sync_message(SYNC_STEP1, self.document.get_state()))
            known = [entry for entry in self.awareness.values() if not entry.gone]
            if known:
                client.send_after(None, awareness_message(known))
            while client.closed is None:
                if not self.reading.is_set():
                    await _first(self.reading.wait(), client.gone.wait())
                    continue
                frame = await client.channel.receive()
                if frame is None:
                    break
                try:
                    await self._handle(client, frame, renew)
                except SocketClosedError as why:
                    client.close_soon(why)
                except MalformedMessageError as error:
                    client.close_soon(SocketClosedError(CLOSE_MALFORMED, f"malformed y-websocket message: {error}"))
                except ValueError as error:  # pycrdt could not apply it
                    reason = f"the document cannot apply this message: {error}"
                    client.close_soon(SocketClosedError(CLOSE_MALFORMED, reason))
        finally:
            self.clients.discard(client)
            self._forget_awareness(client)
            if client.closed is not None:
                log.warning("document.socket_closed", document=self.name, who=client.name, code=client.closed.code,
                            reason=client.closed.reason)  # fmt: skip
            await client.stop_sending()

    async def _handle(self, client: Client, frame: bytes, renew: Renew | None) -> None:
        message = parse_message(frame)
        counted = message.kind in (SYNC, AWARENESS) and not (message.kind == SYNC and message.step == SYNC_STEP1)
        if counted and not client.bucket.take():
            raise SocketClosedError(
                CLOSE_POLICY,
                f"more than {client.limits.messages_per_s:g} messages per second (burst {client.limits.burst})",
            )
        if message.kind == SYNC and message.step == SYNC_STEP1:
            await self._reply_to_sync(client, message.payload)
        elif message.kind == SYNC:  # step 2 (what we lacked) or an update: both are updates to the document
            await self._apply_from(client, message.payload)
        elif message.kind == AWARENESS:
            self._awareness_from(client, message.payload, frame)
        elif message.kind == QUERY_AWARENESS:
            client.send_after(None, awareness_message([e for e in self.awareness.values() if not e.gone]))
        elif message.kind == AUTH:
            if renew is None:
                raise SocketClosedError(CLOSE_POLICY, "auth messages are not accepted here")
            await renew(client, message.payload.decode(errors="replace"))

    async def _reply_to_sync(self, client: Client, state: bytes) -> None:
        async with self._lock:
            if self._big():
                reply = await asyncio.to_thread(self.document.get_update, state)
            else:
                reply = self.document.get_update(state)
            stored = self._last_stored
        client.send_after(stored, sync_message(SYNC_STEP2, reply), reply=True)

    async def _apply(self, update: bytes) -> bytes:
        """Apply an update (under the lock); the document's state after it."""
        if len(update) > THREAD_BYTES:
            await asyncio.to_thread(self.document.apply_update, update)
        else:
            self.document.apply_update(update)
        self.size += len(update)
        return self.document.get_state()

    async def _apply_from(self, client: Client, update: bytes) -> None:
        await self._room_for_more.wait()  # back-pressure: the store is behind; this socket waits (is not read)
        async with self._lock:
            if (
                self._waiting.held_by(client.name) >= client.limits.pending_updates
                or len(self._waiting) >= self._limits.room_pending_updates
            ) and await self._would_wait(update):
                raise self._too_many_waiting(client)  # told before it is applied: neither in the document nor stored
            state = await self._apply(update)
            stored = self._submit(update)
            if is_integrated(update, state):
                self._broadcast(update, stored, exclude=client)
            else:
                self._waiting.add(Waiting(update, client.name, client, stored), state)
                if self._waiting.held_by(client.name) > client.limits.pending_updates:
                    raise self._too_many_waiting(client)  # the reader thought it complete; it is stored
            if self._waiting:
                self._settle_waiting(state)
        if client.person and self._on_person_edit is not None:
            self._on_person_edit()

    async def _would_wait(self, update: bytes) -> bool:
        state = self.document.get_state()
        if len(update) > THREAD_BYTES:  # read in Python: a thread lets the loop in between
            return await asyncio.to_thread(would_wait, update, state)
        return would_wait(update, state)

    def _too_many_waiting(self, client: Client) -> SocketClosedError:
        if len(self._waiting) >= self._limits.room_pending_updates:
            reason = f"this document has {len(self._waiting)} updates whose dependencies are missing, its limit"
        else:
            reason = f"more than {client.limits.pending_updates} updates whose dependencies are missing"
        return SocketClosedError(CLOSE_POLICY, f"{reason} (send updates in order)")

    async def deliver(self, update: bytes) -> None:
        """An update another server stored: into the document, and on to every socket here (already stored)."""
        async with self._lock:
            state = await self._apply(update)
            if is_integrated(update, state):
                self._broadcast(update, None, exclude=None)
            else:
                self._waiting.add(Waiting(update), state)
            if self._waiting:
                self._settle_waiting(state)

    def _settle_waiting(self, state: bytes) -> None:
        """Send on the waiting updates whose dependencies have now come (under the room's lock)."""
        for waiting in self._waiting.ready(state):
            self._broadcast(waiting.body, waiting.stored, exclude=waiting.sender)  # type: ignore[arg-type]

    def _submit(self, update: bytes) -> asyncio.Future[None]:
        stored = self._writer.submit(self.name, update)
        self._last_stored = stored
        self._unstored += len(update)
        self._unstored_updates += 1
        limits = self._limits
        if self._unstored > limits.unstored_bytes or self._unstored_updates > limits.unstored_updates:
            self._room_for_more.clear()
        stored.add_done_callback(functools.partial(self._stored, len(update)))
        return stored

    def _stored(self, size: int, _: asyncio.Future[None]) -> None:
        self._unstored -= size
        self._unstored_updates -= 1
        limits = self._limits
        if self._unstored <= limits.unstored_bytes // 2 and self._unstored_updates <= limits.unstored_updates // 2:
            self._room_for_more.set()

    def _broadcast(self, update: bytes, stored: asyncio.Future[None] | None, *, exclude: Client | None) -> None:
        for other in self.clients:
            if other is not exclude:
                other.send_after(stored, update, update=True)

    def _big(self) -> bool:
        return self.size > THREAD_BYTES

    # -- awareness -----------------------------------------------------------------------------------------------

    def _awareness_from(self, client: Client, payload: bytes, frame: bytes) -> None:
        """Keep and forward what this socket says of its own client ids. An id another person's socket announced is
        theirs (passed over: it would overwrite their cursor for everyone, and clear it on leaving); an id the same
        person's older socket announced moves to this one (a client reconnecting before its old socket was noticed
        dead keeps its id)."""
        entries = parse_awareness(payload)
        accepted = []
        for entry in entries:
            owner = self._awareness_owners.get(entry.client_id)
            if owner is not None and owner is not client:
                if owner.name != client.name:
                    continue
                owner.awareness_ids.discard(entry.client_id)
            known = self.awareness.get(entry.client_id)
            if known is not None and known.clock > entry.clock:
                continue
            if entry.gone:
                self.awareness.pop(entry.client_id, None)
                self._awareness_owners.pop(entry.client_id, None)
                client.awareness_ids.discard(entry.client_id)
            else:
                limit = self._limits.awareness_ids
                if entry.client_id not in client.awareness_ids and len(client.awareness_ids) >= limit:
                    raise SocketClosedError(
                        CLOSE_POLICY, f"more than {self._limits.awareness_ids} awareness client ids from one socket"
                    )
                self.awareness[entry.client_id] = entry
                self._awareness_owners[entry.client_id] = client
                client.awareness_ids.add(entry.client_id)
            accepted.append(entry)
        if not accepted:
            return
        forwarded = frame if len(accepted) == len(entries) else awareness_message(accepted)
        for other in self.clients:
            if other is not client:
                other.send_after(None, forwarded)

    def _forget_awareness(self, client: Client) -> None:
        gone = []
        for client_id in client.awareness_ids:
            if self._awareness_owners.get(client_id) is not client:
                continue
            del self._awareness_owners[client_id]
            known = self.awareness.pop(client_id, None)
            if known is not None:
                gone.append(AwarenessEntry(client_id, known.clock + 1, "null"))
        client.awareness_ids.clear()
        if gone:
            message = awareness_message(gone)
            for other in self.clients:
                other.send_after(None, message)

    # -- life ------------------------------------------------------------------------------------------------------

    async def stored(self) -> None:
        """Wait until every update applied here is stored (before the room is unloaded)."""
        if self._last_stored is not None:
            await asyncio.shield(self._last_stored)


async def _first(*awaitables: Awaitable[object]) -> None:
    """Wait until the first of these is done; cancel the others."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
