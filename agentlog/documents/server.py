"""The document server: `/doc/{document_id}?token=…` speaks the y-websocket protocol; rooms in `room.py`.

What this module adds around the rooms:

- **Who may come in.** Every socket needs a token (`tokens.py`) that opens this document and was not revoked;
  people's sockets are recorded as `PersonJoined`/`PersonLeft` on the document's stream (agents' sockets are not:
  an agent is not a person wanting an agent). A refused socket is accepted and closed at once with a 44xx code and
  the reason, which y-websocket clients take as final (an HTTP refusal would look like a network error to them and
  they would retry forever); nothing is appended for it. A token's expiry and its revocation close open sockets
  too; an agent renews its short-lived token over its socket (`auth` message) before it expires.
- **How much anyone may ask of it.** Sockets per person, documents open at once, message size; per socket the
  limits of `RoomLimits`.
- **Activity.** People's edits are recorded as `DocumentEdited`, at most once per document per interval, so that
  "recently active" means work, not only joins.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from agentlog.documents.revocations import Revocations
from agentlog.documents.room import Client, RoomLimits, SocketClosedError
from agentlog.documents.rooms import DocumentRooms, RoomsFullError
from agentlog.documents.tokens import Identity, Keyring, TokenError, verify
from agentlog.documents.updates import UpdateFollower, UpdateWriter
from agentlog.domains.documents.events import (
    DOCUMENT_ID_PATTERN,
    DocumentEdited,
    PersonJoined,
    PersonLeft,
    document_stream,
)
from agentlog.domains.tokens.events import TokenRevoked
from agentlog.eventstore import ANY, EventStore, NewEvent
from agentlog.eventstore.errors import AgentlogError, ClosedError

log = structlog.get_logger("agentlog.documents")

CLOSE_INVALID_DOCUMENT = 4400
CLOSE_BAD_TOKEN = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY = 4429
CLOSE_UNSUPPORTED = 1003
CLOSE_SERVER_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013


class SocketChannel:
    """A Starlette WebSocket as a room's channel: binary frames in and out, a close with a reason."""

    def __init__(self, websocket: WebSocket, document_id: str) -> None:
        self._websocket = websocket
        self.document_id = document_id
        self._send_lock = asyncio.Lock()
        self.closed_because: str | None = None

    async def receive(self) -> bytes | None:
        """The next frame; None once the socket is gone (or after a text frame, which closes it)."""
        if self.closed_because is not None:
            return None
        try:
            message = await self._websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        data = message.get("bytes")
        if data is None:
            await self.close(CLOSE_UNSUPPORTED, "y-websocket messages are binary; got a text frame")
            return None
        return bytes(data)

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
        async with self._send_lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self._websocket.close(code, reason[:120])


@dataclass(frozen=True, slots=True)
class ServerLimits:
    sockets_per_person: int = 20
    edit_activity_s: float = 60.0
    """At most one `DocumentEdited` per document per this many seconds."""


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
            except ClosedError:
                return  # the server is stopping: its ManagerStopped takes its people with it
            except Exception as error:
                log.warning(failure, document=document_id, error=str(error), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _new(self, event: PersonJoined | PersonLeft, what: str, connection_id: str) -> NewEvent:
        return NewEvent(event, uuid.uuid5(PRESENCE_NAMESPACE, f"{self.server_id}/{connection_id}/{what}"))


class EditActivity:
    """People's edits, recorded coarsely: one `DocumentEdited` per document per interval at most."""

    def __init__(self, store: EventStore, server_id: str, interval_s: float) -> None:
        self._store = store
        self._server_id = server_id
        self._interval_s = interval_s
        self._counts: collections.Counter[str] = collections.Counter()
        self._last: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def edited(self, document_id: str) -> None:
        self._counts[document_id] += 1
        now = time.monotonic()
        if now - self._last.get(document_id, -self._interval_s) < self._interval_s:
            return
        self._last[document_id] = now
        updates, self._counts[document_id] = self._counts[document_id], 0
        task = asyncio.get_running_loop().create_task(self._record(document_id, updates))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, document_id: str, updates: int) -> None:
        event = DocumentEdited(document_id=document_id, server_id=self._server_id, updates=updates)
        try:
            await self._store.append(document_stream(document_id), [event], ANY)
        except AgentlogError as error:  # activity is a hint for eviction order: the next edit records it again
            log.warning("document.edit_not_recorded", document=document_id, error=str(error))
            self._last.pop(document_id, None)


@dataclass(slots=True)
class OpenSocket:
    client: Client
    identity: Identity
    expiry: asyncio.TimerHandle | None = None


class DocumentServer:
    def __init__(
        self,
        store: EventStore,
        server_id: str,
        signing_key: Keyring,
        rooms: DocumentRooms,
        presence: Presence,
        *,
        room_limits: RoomLimits | None = None,
        limits: ServerLimits | None = None,
        revocations: Revocations | None = None,
    ) -> None:
        self.store = store
        self.server_id = server_id
        self.signing_key = signing_key
        self.rooms = rooms
        self.presence = presence
        self.room_limits = room_limits or RoomLimits()
        self.limits = limits or ServerLimits()
        self.revocations = revocations or Revocations()
        self.mounted: list[BaseRoute] = []
        """Routes served on the same port after the document server's own (the API, when `up` hosts both)."""
        self.sockets: dict[Client, OpenSocket] = {}
        self.per_person: collections.Counter[str] = collections.Counter()
        self.url = ""
        """Where agents on this machine reach it, `ws://host:port/doc`."""
        self.accepting = True
        """False once the manager is stopping: new sockets are told to come back (to another server)."""

    # -- sockets ---------------------------------------------------------------------------------------------

    async def socket(self, websocket: WebSocket) -> None:
        document_id = websocket.path_params["document_id"]
        await websocket.accept()
        channel = SocketChannel(websocket, document_id)
        admitted = await self._admit(channel, document_id, websocket.query_params.get("token"))
        if admitted is None:
            return
        identity = admitted
        try:  # the socket counts against its holder's limit from the moment `_admit` let it in
            await self._serve_admitted(channel, document_id, identity)
        finally:
            self.per_person[identity.name] -= 1
            if not self.per_person[identity.name]:
                del self.per_person[identity.name]

    async def _serve_admitted(self, channel: SocketChannel, document_id: str, identity: Identity) -> None:
        person = identity.kind != "agent"
        connection_id = uuid.uuid4().hex[:16]
        if person:
            try:
                await self.presence.joined(document_id, identity.name, connection_id)
            except (AgentlogError, ValidationError) as error:
                await channel.close(CLOSE_SERVER_ERROR, f"cannot record your presence: {error}")
                # The join may have been recorded all the same (its answer lost): record the leave too.
                asyncio.get_running_loop().create_task(self.presence.left(document_id, identity.name, connection_id))
                return
        started = time.monotonic()
        log.info("document.socket_open", document=document_id, who=identity.name, kind=identity.kind)
        try:
            try:
                room = await self.rooms.enter(document_id)
            except RoomsFullError as error:
                await channel.close(CLOSE_TRY_AGAIN, str(error))
                return
            client = Client(channel, identity.name, person, self.room_limits)
            self.sockets[client] = OpenSocket(client, identity, self._expire_at(client, identity))
            try:
                await room.serve(client, renew=self._renew)
            finally:
                opened = self.sockets.pop(client, None)
                if opened is not None and opened.expiry is not None:
                    opened.expiry.cancel()
                self.rooms.leave(document_id)
        finally:
            log.info("document.socket_closed_by_peer", document=document_id, who=identity.name,
                     seconds=round(time.monotonic() - started, 1))  # fmt: skip
            if person:
                await asyncio.shield(self.presence.left(document_id, identity.name, connection_id))

    async def _admit(self, channel: SocketChannel, document_id: str, token: str | None) -> Identity | None:
        """Who this socket is, counted against its holder's limit (the caller uncounts it when it ends), or None once it
        was closed with the reason it may not come in."""
        if not self.accepting:
            await channel.close(CLOSE_SERVICE_RESTART, "the document server is stopping; reconnect")
            return None
        if not DOCUMENT_ID_PATTERN.fullmatch(document_id):
            await channel.close(CLOSE_INVALID_DOCUMENT, "invalid document id: use 1-128 letters, digits, . _ -")
            return None
        try:
            identity = verify(self.signing_key, token)
        except TokenError as error:
            await channel.close(CLOSE_BAD_TOKEN, str(error))
            return None
        await self.revocations.caught_up.wait()
        if self.revocations.revoked(identity):
            await channel.close(CLOSE_BAD_TOKEN, "revoked token")
            return None
        if identity.read_only:
            # A socket edits: a token that may only read has none (it reads GET /api/v1/documents/{id}/text).
            await channel.close(CLOSE_FORBIDDEN, "this token may only read (scope read): it cannot open a document "
                                "socket; read the text at /api/v1/documents/{id}/text")  # fmt: skip
            return None
        if not identity.opens(document_id):
            what = "this agent token is for another document" if identity.kind == "agent" else (
                "this token does not open this document"
            )
            await channel.close(CLOSE_FORBIDDEN, what)
            return None
        if self.per_person[identity.name] >= self.limits.sockets_per_person:
            await channel.close(
                CLOSE_TOO_MANY, f"{identity.name} has {self.limits.sockets_per_person} sockets open here, the limit"
            )
            return None
        # Counted here, with no await between the check and the count: sockets opened at the same moment each see
        # the others (counted after recording the join, ten concurrent opens all passed a limit of two).
        self.per_person[identity.name] += 1
        return identity

    def _expire_at(self, client: Client, identity: Identity) -> asyncio.TimerHandle:
        delay = max(identity.expires_at - time.time(), 0.0)
        return asyncio.get_running_loop().call_later(
            delay, client.close_soon, SocketClosedError(CLOSE_BAD_TOKEN, "token expired")
        )

    async def _renew(self, client: Client, token: str) -> None:
        """A client's renewed token (an `auth` message): the same holder, for longer, or the socket goes."""
        opened = self.sockets.get(client)
        if opened is None:
            return
        try:
            renewed = verify(self.signing_key, token)
        except TokenError as error:
            raise SocketClosedError(CLOSE_BAD_TOKEN, f"renewed token refused: {error}") from error
        old = opened.identity
        same = (renewed.kind, renewed.name, renewed.document_id) == (old.kind, old.name, old.document_id)
        if not same or self.revocations.revoked(renewed):
            raise SocketClosedError(CLOSE_BAD_TOKEN, "renewed token refused: another holder, or revoked")
        if opened.expiry is not None:
            opened.expiry.cancel()
        opened.identity = renewed
        opened.expiry = self._expire_at(client, renewed)

    def close_sockets(self, code: int, reason: str) -> None:
        for opened in list(self.sockets.values()):
            opened.client.close_soon(SocketClosedError(code, reason))

    def revoked(self, revocation: TokenRevoked) -> None:
        """A revocation recorded (here or on another server): close the sockets open with such a token."""
        for opened in list(self.sockets.values()):
            if self.revocations.revoked(opened.identity):
                opened.client.close_soon(SocketClosedError(CLOSE_BAD_TOKEN, "revoked token"))
                log.info("document.socket_revoked", who=opened.identity.name, reason=revocation.reason)

    # -- HTTP ------------------------------------------------------------------------------------------------

    async def health(self, request: Request) -> JSONResponse:
        """Liveness only: what is open, and by whom, needs a token (`/documents`)."""
        return JSONResponse({"status": "ok"})

    async def documents(self, request: Request) -> JSONResponse:
        """The documents open on this server and the people in them, as far as the token may see."""
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else request.query_params.get(
            "token"
        )
        try:
            identity = verify(self.signing_key, token)
        except TokenError as error:
            return JSONResponse({"error": str(error)}, status_code=401)
        if identity.kind == "agent" or self.revocations.revoked(identity):
            return JSONResponse({"error": "a person's token is needed"}, status_code=403)
        people = self.presence.people
        return JSONResponse(
            {
                "server_id": self.server_id,
                "documents": [
                    {"document_id": name, "people": len(people.get(name, {}))}
                    for name in sorted(self.rooms.rooms)
                    if identity.opens(name)
                ],
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                WebSocketRoute("/doc/{document_id}", self.socket),
                Route("/health", self.health),
                Route("/documents", self.documents),
                *self.mounted,
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
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and the accepted
    # sockets inherit it; without it every small answer waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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
    server: DocumentServer,
    sock: socket.socket,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
    *,
    writer: UpdateWriter,
    follower: UpdateFollower,
    max_message_bytes: int = 8 * 1024 * 1024,
) -> None:
    """Serve on the bound socket until `stop` is set; then wait until everything the rooms applied is stored."""
    # No permessage-deflate: the server compresses what it sends on the event loop, and a joiner's sync reply is the
    # whole document (36 MB held every other room for 1.4 s). Bandwidth is given up for a loop that stays responsive.
    config = uvicorn.Config(
        server.app(), log_config=None, lifespan="off", ws="websockets-sansio", ws_per_message_deflate=False,
        ws_max_size=max_message_bytes, ws_ping_interval=20, ws_ping_timeout=20, timeout_graceful_shutdown=5,
    )  # fmt: skip
    web = _Uvicorn(config)
    loop = asyncio.get_running_loop()
    revocations = loop.create_task(server.revocations.follow(server.store, server.revoked))
    following = loop.create_task(follower.run(server.rooms.open_documents, server.rooms.deliver, stop))
    try:
        task = loop.create_task(web.serve(sockets=[sock]))
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
            server.rooms.pause()
            server.close_sockets(CLOSE_SERVICE_RESTART, "the document server is stopping; reconnect")
            web.should_exit = True
            await task
            sock.close()
            await server.rooms.close()
            await writer.close()
    finally:
        for background in (revocations, following):
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await background
