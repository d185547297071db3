"""The document server: `/doc/{document_id}?token=…` speaks the y-websocket protocol (pycrdt-websocket rooms).

What pycrdt-websocket does not do, this module does:

- **Who is there.** Every socket needs a token; people's sockets are recorded as `PersonJoined`/`PersonLeft` on
  the document's stream (agents' sockets are not: an agent is not a person wanting an agent). A refused socket is
  accepted and closed at once with a 44xx code and the reason, which y-websocket clients take as final (an HTTP
  refusal would look like a network error to them and they would retry forever); nothing is appended for it.
- **Content.** A room is loaded from PostgreSQL on first use, writes each update back, and is unloaded a while
  after its last socket closed.
- **Garbage.** A socket that sends anything but a well-formed y-websocket message is closed; the room and the
  other people in it carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
import uvicorn
from pycrdt import create_update_message
from pycrdt.websocket import WebsocketServer, YRoom
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from agentlog.documents.protocol import MalformedMessageError, check_message
from agentlog.documents.tokens import TokenError, verify
from agentlog.documents.ystore import PostgresYStore, load_document
from eventstore import ANY, EventStore, NewEvent
from eventstore.errors import AgentlogError
from eventstore.event_types.documents import DOCUMENT_ID_PATTERN, PersonJoined, PersonLeft, document_stream
from eventstore.postgres.connections import StatementPool

log = structlog.get_logger("agentlog.documents")

CLOSE_INVALID_DOCUMENT = 4400
CLOSE_BAD_TOKEN = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_UNSUPPORTED = 1003
CLOSE_MALFORMED = 1007
CLOSE_SERVER_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012


class SocketChannel:
    """A Starlette WebSocket as the channel pycrdt-websocket rooms serve, checking every frame on the way in."""

    def __init__(self, websocket: WebSocket, document_id: str) -> None:
        self._websocket = websocket
        self._path = document_id
        self._send_lock = asyncio.Lock()
        self.closed_because: str | None = None

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> SocketChannel:
        return self

    async def __anext__(self) -> bytes:
        if self.closed_because is not None:
            raise StopAsyncIteration
        try:
            message = await self._websocket.receive()
        except (WebSocketDisconnect, RuntimeError) as error:
            raise StopAsyncIteration from error
        if message["type"] == "websocket.disconnect":
            raise StopAsyncIteration
        data = message.get("bytes")
        if data is None:
            await self.close(CLOSE_UNSUPPORTED, "y-websocket messages are binary; got a text frame")
            raise StopAsyncIteration
        try:
            check_message(data)
        except MalformedMessageError as error:
            await self.close(CLOSE_MALFORMED, f"malformed y-websocket message: {error}")
            raise StopAsyncIteration from error
        return bytes(data)

    async def recv(self) -> bytes:
        return await self.__anext__()

    async def send(self, message: bytes) -> None:
        if self.closed_because is not None:
            return
        async with self._send_lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self._websocket.send_bytes(message)

    async def close(self, code: int, reason: str) -> None:
        if self.closed_because is not None:
            return
        self.closed_because = reason
        log.warning("document.socket_closed", document=self._path, code=code, reason=reason)
        async with self._send_lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self._websocket.close(code, reason[:120])


class DurableRoom(YRoom):
    """A room that stores each update before anyone else sees it.

    pycrdt-websocket's room sends an update to the other sockets and writes it to the store concurrently, so a
    person could see an agent's mark that a crash of the server then lost. Here each update is written first, in
    the order the document received them (concurrent writes could also have stored them out of order), and only
    then sent on. The cost is one INSERT per update before the others see it; while PostgreSQL is away, the
    room's updates wait for `PostgresYStore.write`'s retries. Written against pycrdt-websocket 0.16 (pinned): it
    replaces the room's `_broadcast_updates`.
    """

    async def _broadcast_updates(self) -> None:
        assert self.ystore is not None and self._task_group is not None
        async with self.ystore.start_lock:
            if not self.ystore.started.is_set():
                await self._task_group.start(self.ystore.start)
        async with self._update_receive_stream:
            async for update in self._update_receive_stream:
                if self._task_group.cancel_scope.cancel_called:
                    return
                try:
                    await self.ystore.write(update)
                except Exception as exception:  # the room goes on; its handler logs it
                    self._handle_exception(exception)
                message = create_update_message(update)
                for client in self.clients:
                    self._task_group.start_soon(client.send, message)


class DocumentRooms(WebsocketServer):
    """Rooms loaded from and written to PostgreSQL, unloaded `unload_after_s` after their last socket left."""

    def __init__(self, pool: StatementPool, *, unload_after_s: float) -> None:
        super().__init__(rooms_ready=True, auto_clean_rooms=False, exception_handler=self._exception)
        self._pool = pool
        self._unload_after_s = unload_after_s
        self._loading: dict[str, asyncio.Lock] = {}
        self._unloads: dict[str, asyncio.Task[None]] = {}

    async def get_room(self, name: str) -> YRoom:
        lock = self._loading.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in self.rooms:
                document = await load_document(self._pool, name)
                room = DurableRoom(ready=True, ystore=PostgresYStore(self._pool, name), ydoc=document,
                                   exception_handler=self._exception)
                room.on_message_error = _close_sender
                self.rooms[name] = room
        unload = self._unloads.pop(name, None)
        if unload is not None:
            unload.cancel()
        return await super().get_room(name)

    def socket_closed(self, name: str) -> None:
        room = self.rooms.get(name)
        if room is not None and not room.clients and name not in self._unloads:
            self._unloads[name] = asyncio.get_running_loop().create_task(self._unload_later(name))

    async def _unload_later(self, name: str) -> None:
        await asyncio.sleep(self._unload_after_s)
        room = self.rooms.get(name)
        if room is not None and not room.clients:
            await asyncio.sleep(0.5)  # let the last updates' writes finish
            await self.delete_room(room=room)
            log.debug("document.unloaded", document=name)
        self._unloads.pop(name, None)

    @staticmethod
    def _exception(exception: Exception, logger: Any) -> bool:
        log.error("document.room_error", error=repr(exception))
        return True


def _close_sender(exception: Exception, message: bytes, channel: Any) -> bool:
    """A frame that passed the framing check but that the document cannot apply: close its sender only."""
    if isinstance(channel, SocketChannel):
        asyncio.get_running_loop().create_task(
            channel.close(CLOSE_MALFORMED, f"the document cannot apply this message: {exception}")
        )
    return True


PRESENCE_NAMESPACE = uuid.UUID("7c1e3f0a-5a5d-4f0e-9a8e-3d2f6b1c9e42")


@dataclass(slots=True)
class Presence:
    """People per document on this server, recorded in the log as they come and go.

    Each join and leave has an id derived from its connection, so retrying after an ambiguous failure (the
    commit happened, the answer was lost) records it once; a leave is recorded for every join that was tried.
    """

    store: EventStore
    server_id: str
    people: dict[str, dict[str, str]] = field(default_factory=dict)
    """document → connection → user."""

    async def joined(self, document_id: str, user_id: str, connection_id: str) -> None:
        here = self.people.setdefault(document_id, {})
        here[connection_id] = user_id
        event = PersonJoined(
            user_id=user_id, people_present=len(here), connection_id=connection_id, server_id=self.server_id
        )
        try:
            await self.store.append(document_stream(document_id), [self._new(event, "joined", connection_id)], ANY)
        except BaseException:
            here.pop(connection_id, None)
            raise

    async def left(self, document_id: str, user_id: str, connection_id: str) -> None:
        here = self.people.get(document_id, {})
        here.pop(connection_id, None)
        if not here:
            self.people.pop(document_id, None)
        event = PersonLeft(
            user_id=user_id, people_present=len(here), connection_id=connection_id, server_id=self.server_id
        )
        # Until it is recorded: a presence never recorded as gone keeps its document active.
        await self._record_until_done(
            document_id, self._new(event, "left", connection_id), "document.leave_not_recorded"
        )

    async def rejoin_all(self, incarnation: str) -> None:
        """Record every person on this server as joined again: a new incarnation of the server's manager (recorded
        as lost while cut off from the database, then started afresh) dropped its people from presence, while their
        sockets stayed open here."""
        for document_id, here in list(self.people.items()):
            for connection_id, user_id in list(here.items()):
                event = PersonJoined(
                    user_id=user_id, people_present=len(here), connection_id=connection_id, server_id=self.server_id
                )
                new = self._new(event, f"joined/{incarnation}", connection_id)
                await self._record_until_done(document_id, new, "document.rejoin_not_recorded")

    async def _record_until_done(self, document_id: str, new: NewEvent, failure: str) -> None:
        delay = 0.2
        while True:
            try:
                await self.store.append(document_stream(document_id), [new], ANY)
                return
            except Exception as error:
                log.warning(failure, document=document_id, error=str(error), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _new(self, event: PersonJoined | PersonLeft, what: str, connection_id: str) -> NewEvent:
        return NewEvent(event, uuid.uuid5(PRESENCE_NAMESPACE, f"{self.server_id}/{connection_id}/{what}"))


@dataclass(slots=True)
class DocumentServer:
    store: EventStore
    server_id: str
    signing_key: bytes
    rooms: DocumentRooms
    presence: Presence
    sockets: int = 0
    url: str = ""
    """Where agents on this machine reach it, `ws://host:port/doc`."""
    accepting: bool = True
    """False once the manager is stopping: new sockets are told to come back (to another server)."""

    async def socket(self, websocket: WebSocket) -> None:
        document_id = websocket.path_params["document_id"]
        await websocket.accept()
        channel = SocketChannel(websocket, document_id)
        if not self.accepting:
            await channel.close(CLOSE_SERVICE_RESTART, "the document server is stopping; reconnect")
            return
        if not DOCUMENT_ID_PATTERN.fullmatch(document_id):
            await channel.close(CLOSE_INVALID_DOCUMENT, "invalid document id: use 1-128 letters, digits, . _ -")
            return
        try:
            identity = verify(self.signing_key, websocket.query_params.get("token"))
        except TokenError as error:
            await channel.close(CLOSE_BAD_TOKEN, str(error))
            return
        if identity.kind == "agent" and identity.document_id not in (None, document_id):
            await channel.close(CLOSE_FORBIDDEN, "this agent token is for another document")
            return
        person = identity.kind == "user"
        connection_id = uuid.uuid4().hex[:16]
        if person:
            try:
                await self.presence.joined(document_id, identity.name, connection_id)
            except AgentlogError as error:
                await channel.close(CLOSE_SERVER_ERROR, f"cannot record your presence: {error}")
                # The join may have been recorded all the same (its answer lost): record the leave too.
                asyncio.get_running_loop().create_task(self.presence.left(document_id, identity.name, connection_id))
                return
        self.sockets += 1
        started = time.monotonic()
        log.info("document.socket_open", document=document_id, who=identity.name, kind=identity.kind)
        try:
            await self.rooms.serve(channel)
        finally:
            self.sockets -= 1
            self.rooms.socket_closed(document_id)
            log.info("document.socket_closed_by_peer", document=document_id, who=identity.name,
                     seconds=round(time.monotonic() - started, 1))
            if person:
                await asyncio.shield(self.presence.left(document_id, identity.name, connection_id))

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "server_id": self.server_id,
                "rooms": sorted(self.rooms.rooms),
                "sockets": self.sockets,
                "people": {document: len(people) for document, people in self.presence.people.items()},
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                WebSocketRoute("/doc/{document_id}", self.socket),
                Route("/health", self.health),
            ]
        )


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: `agentlog up` owns SIGINT/SIGTERM and shuts down in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


class DocumentServerError(AgentlogError):
    """The document server cannot listen (the address is taken, not ours, or malformed)."""


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound before uvicorn starts, so a taken port is one clear error here (uvicorn would exit the process)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise DocumentServerError(
            f"the document server cannot listen on {host}:{port}: {error.strerror or error}"
            " (set AGENTLOG_PORT, or AGENTLOG_PORT=0 for any free port)"
        ) from error
    sock.listen(128)
    sock.setblocking(False)
    return sock


def reachable_url(sock: socket.socket, host: str) -> str:
    """`ws://host:port/doc` for agents on this machine, from the bound socket (so port 0 works)."""
    bound = sock.getsockname()[1]
    reachable = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    return f"ws://{reachable}:{bound}/doc"


async def serve_documents(
    server: DocumentServer, sock: socket.socket, stop: asyncio.Event, started: asyncio.Event | None = None
) -> None:
    """Serve on the bound socket until `stop` is set."""
    config = uvicorn.Config(
        server.app(), log_config=None, lifespan="off", ws="websockets-sansio",
        ws_max_size=16 * 1024 * 1024, ws_ping_interval=20, ws_ping_timeout=20,
    )  # fmt: skip
    web = _Uvicorn(config)
    async with server.rooms:
        task = asyncio.get_running_loop().create_task(web.serve(sockets=[sock]))
        while not web.started and not task.done():  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.01)
        if task.done():
            raise DocumentServerError(f"the document server on {server.url} stopped while starting")
        log.info("documents.listening", url=f"{server.url}/{{document_id}}")
        if started is not None:
            started.set()
        try:
            await stop.wait()
        finally:
            web.should_exit = True
            await task
            sock.close()
