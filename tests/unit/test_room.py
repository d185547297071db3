"""The document server's room without a database: what a socket may see when, what a client may make the server do
(issue 10, items 2 and 3). The store is a fake whose commits the test releases."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from pycrdt import Doc, Text, create_update_message

from agentlog.documents.protocol import (
    AWARENESS,
    SYNC,
    SYNC_STEP1,
    SYNC_STEP2,
    SYNC_UPDATE,
    AwarenessEntry,
    awareness_message,
    parse_awareness,
    parse_message,
    sync_message,
)
from agentlog.documents.room import Client, Room, RoomLimits


class GatedWriter:
    """Stores updates only when the test opens the gate; keeps every stored body, in order."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.queued: collections.deque[tuple[bytes, asyncio.Future[None]]] = collections.deque()
        self.stored: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, document_id: str, body: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queued.append((body, future))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return future

    async def _run(self) -> None:
        while True:
            await self.gate.wait()
            while self.queued:
                body, future = self.queued.popleft()
                self.stored.append(body)
                future.set_result(None)
            await asyncio.sleep(0)


class Socket:
    """A channel the test writes to (`inbox`) and whose sent messages it reads."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.sent: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> bytes | None:
        if self.closed is not None:
            return None
        return await self.inbox.get()

    async def send(self, message: bytes) -> None:
        self.sent.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.inbox.put_nowait(None)

    def updates(self) -> list[bytes]:
        found = []
        for message in self.sent:
            parsed = parse_message(message)
            if parsed.kind == SYNC and parsed.step in (SYNC_STEP2, SYNC_UPDATE):
                found.append(parsed.payload)
        return found

    def document(self) -> str:
        doc: Doc[Any] = Doc()
        for update in self.updates():
            doc.apply_update(update)
        return str(doc.get("text", type=Text))


def keystrokes(text: str) -> list[bytes]:
    """One update per character, in order: what a person typing sends."""
    doc: Doc[Any] = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    node = doc.get("text", type=Text)
    for character in text:
        node.insert(len(node), character)
    return updates


@asynccontextmanager
async def room_with(
    *sockets: Socket, limits: RoomLimits | None = None, document: Doc[Any] | None = None
) -> AsyncIterator[tuple[Room, GatedWriter, list[Client]]]:
    writer = GatedWriter()
    room = Room("trip", document or Doc(), writer, limits or RoomLimits())  # type: ignore[arg-type]
    clients = [Client(socket, f"p{index}", True, limits or RoomLimits()) for index, socket in enumerate(sockets)]
    serving = [asyncio.create_task(room.serve(client)) for client in clients]
    await eventually(lambda: len(room.clients) == len(clients))
    try:
        yield room, writer, clients
    finally:
        for socket in sockets:
            socket.inbox.put_nowait(None)
        await asyncio.wait_for(asyncio.gather(*serving, return_exceptions=True), 5)


async def eventually(condition: Any, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_an_update_reaches_the_other_sockets_only_once_stored() -> None:
    ada, bob = Socket(), Socket()
    async with room_with(ada, bob) as (_, writer, _clients):
        (update,) = keystrokes("P")
        ada.inbox.put_nowait(create_update_message(update))
        await asyncio.sleep(0.1)
        assert bob.updates() == [], "bob saw an update that was not stored yet"
        writer.gate.set()
        await eventually(lambda: bob.updates() == [update])
        assert writer.stored == [update]


async def test_a_joiner_is_answered_only_with_what_is_stored() -> None:
    ada = Socket()
    async with room_with(ada) as (room, writer, _):
        for update in keystrokes("Paris"):
            ada.inbox.put_nowait(create_update_message(update))
        await eventually(lambda: len(writer.queued) == 5)
        cy = Socket()
        joining = asyncio.create_task(room.serve(Client(cy, "cy", True, RoomLimits())))
        cy.inbox.put_nowait(sync_message(SYNC_STEP1, Doc().get_state()))
        await asyncio.sleep(0.1)
        assert cy.updates() == [], "the joiner was answered from memory, before the store"
        writer.gate.set()
        await eventually(lambda: cy.document() == "Paris")
        cy.inbox.put_nowait(None)
        await joining


async def test_a_client_bursting_on_connect_has_every_update_stored() -> None:
    """Updates sent before the room had even synced the socket (issue 10, item 2b: 0 of 5 were stored)."""
    ada = Socket()
    for update in keystrokes("Lyon."):
        ada.inbox.put_nowait(create_update_message(update))
    async with room_with(ada) as (_, writer, _):
        writer.gate.set()
        await eventually(lambda: len(writer.stored) == 5)


async def test_a_flood_is_slowed_down_never_dropped() -> None:
    """A store that falls behind stops the room reading its sockets; every update is stored in the end (issue 10,
    item 2a: a full write queue dropped updates)."""
    limits = RoomLimits(messages_per_s=1e9, burst=10**9, unstored_updates=100)
    ada, bob = Socket(), Socket()
    updates = keystrokes("x" * 2_000)
    async with room_with(ada, bob, limits=limits) as (_, writer, _):
        for update in updates:
            ada.inbox.put_nowait(create_update_message(update))
        await asyncio.sleep(0.2)
        assert 100 <= len(writer.queued) <= 101, "the room kept reading past its limit of unstored updates"
        assert ada.inbox.qsize() > 1_000  # left unread: the sender is slowed down (TCP does the rest)
        writer.gate.set()
        await eventually(lambda: len(writer.stored) == 2_000, timeout=20)
        await eventually(lambda: bob.document() == "x" * 2_000, timeout=20)
    assert writer.stored == updates


async def test_updates_with_missing_dependencies_wait_and_too_many_close_the_socket() -> None:
    limits = RoomLimits(pending_updates=3)
    ada, bob = Socket(), Socket()
    first, *rest = keystrokes("abcde")
    async with room_with(ada, bob, limits=limits) as (_, writer, _):
        writer.gate.set()
        for update in rest[:3]:  # each needs the one before it, and the first is withheld
            ada.inbox.put_nowait(create_update_message(update))
        await eventually(lambda: len(writer.stored) == 3)
        await asyncio.sleep(0.05)
        assert bob.updates() == [], "updates that cannot be applied yet were sent on"
        ada.inbox.put_nowait(create_update_message(first))
        await eventually(lambda: bob.document() == "abcd")
        # A socket that keeps sending what cannot be applied is closed, with the reason.
        eve = Socket()
        eve_updates = keystrokes("0123456")
        eve_client = Client(eve, "eve", True, limits)
        serving = asyncio.create_task(_serve_in(_room_of(bob), eve_client))
        for update in eve_updates[1:]:
            eve.inbox.put_nowait(create_update_message(update))
        await eventually(lambda: eve.closed is not None)
        assert eve.closed is not None and eve.closed[0] == 1008 and "dependencies" in eve.closed[1]
        await serving


_rooms: dict[int, Room] = {}


def _room_of(socket: Socket) -> Room:
    return _rooms[id(socket)]


async def _serve_in(room: Room, client: Client) -> None:
    await room.serve(client)


@pytest.fixture(autouse=True)
def _remember_rooms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lets a test reach the room a socket is in (to add a socket of its own)."""
    original = Room.serve

    async def serve(self: Room, client: Client, renew: Any = None) -> None:
        _rooms[id(client.channel)] = self
        await original(self, client, renew)

    monkeypatch.setattr(Room, "serve", serve)


async def test_a_socket_over_its_message_rate_is_closed() -> None:
    limits = RoomLimits(messages_per_s=10, burst=20)
    ada = Socket()
    async with room_with(ada, limits=limits) as (_, writer, _):
        writer.gate.set()
        for update in keystrokes("y" * 50):
            ada.inbox.put_nowait(create_update_message(update))
        await eventually(lambda: ada.closed is not None)
        assert ada.closed is not None and ada.closed[0] == 1008 and "per second" in ada.closed[1]


def awareness(client_id: int, clock: int, state: str) -> bytes:
    return awareness_message([AwarenessEntry(client_id, clock, state)])


async def test_awareness_is_checked_before_it_is_forwarded_and_cleared_when_its_socket_goes() -> None:
    ada, bob, eve = Socket(), Socket(), Socket()
    async with room_with(ada, bob, eve) as (room, writer, _):
        writer.gate.set()
        ada.inbox.put_nowait(awareness(7, 1, orjson.dumps({"user": {"name": "ada"}}).decode()))
        await eventually(lambda: any(m[0] == AWARENESS for m in bob.sent))
        # Garbage awareness (as the Node peers would choke on) closes its sender and reaches nobody.
        raw = b"\x01" + b"\x07" + b"\x01" + b"\x05" + b"{nope"
        eve.inbox.put_nowait(bytes([AWARENESS]) + bytes([len(raw)]) + raw)
        await eventually(lambda: eve.closed is not None)
        assert eve.closed is not None and eve.closed[0] == 1007
        forwarded = [m for m in bob.sent if m[0] == AWARENESS]
        assert len(forwarded) == 1
        ada.inbox.put_nowait(None)
        await eventually(lambda: len([m for m in bob.sent if m[0] == AWARENESS]) == 2)
        last = parse_awareness(parse_message([m for m in bob.sent if m[0] == AWARENESS][-1]).payload)
        assert last == [AwarenessEntry(7, 2, "null")]
        assert room.awareness == {}


async def test_a_socket_that_does_not_read_is_closed_rather_than_buffered_without_end() -> None:
    limits = RoomLimits(outbox_bytes=2_000, messages_per_s=1e9, burst=10**9)

    class Stuck(Socket):
        async def send(self, message: bytes) -> None:
            await asyncio.Event().wait()  # never returns: a client that stopped reading

    ada, stuck = Socket(), Stuck()
    async with room_with(ada, stuck, limits=limits) as (_, writer, _):
        writer.gate.set()
        for update in keystrokes("z" * 400):
            ada.inbox.put_nowait(create_update_message(update))
        await eventually(lambda: writer.stored and len(writer.stored) == 400)
        await eventually(lambda: stuck.closed is not None)
        assert stuck.closed is not None and stuck.closed[0] == 1013


async def test_a_socket_cannot_take_over_or_erase_another_persons_awareness() -> None:
    """Hostile review: any socket could announce another person's awareness client id, overwrite their cursor for
    everyone, and on leaving clear it; and announce thousands of client ids, each kept for every joiner."""
    ada, bob, eve = Socket(), Socket(), Socket()
    async with room_with(ada, bob, eve) as (room, writer, clients):
        writer.gate.set()
        ada_state = orjson.dumps({"user": {"name": "ada"}}).decode()
        ada.inbox.put_nowait(awareness(7, 1, ada_state))
        await eventually(lambda: 7 in room.awareness)
        eve.inbox.put_nowait(awareness(7, 9, orjson.dumps({"user": {"name": "not ada"}}).decode()))
        eve.inbox.put_nowait(awareness(8, 1, orjson.dumps({"user": {"name": "eve"}}).decode()))
        await eventually(lambda: 8 in room.awareness)
        assert room.awareness[7].state == ada_state
        forwarded = [parse_awareness(parse_message(m).payload) for m in bob.sent if m[0] == AWARENESS]
        assert all(entry.client_id != 7 or entry.state == ada_state for entries in forwarded for entry in entries)
        eve.inbox.put_nowait(None)
        await eventually(lambda: 8 not in room.awareness)
        assert room.awareness[7].state == ada_state, "eve's leaving cleared ada's awareness"
        # A socket announcing a crowd of client ids is closed, and none of them stays.
        many = awareness_message([AwarenessEntry(100 + n, 1, "{}") for n in range(1_000)])
        bob.inbox.put_nowait(many)
        await eventually(lambda: bob.closed is not None)
        assert bob.closed is not None and bob.closed[0] == 1008 and "client ids" in bob.closed[1]
        await eventually(lambda: set(room.awareness) == {7})
        assert clients[0].closed is None


async def test_a_persons_new_socket_takes_over_their_awareness_from_the_old_one() -> None:
    """A client that reconnects before the server noticed its old socket died keeps its client id: the old socket's
    end must not clear the cursor the new one shows."""
    old, new = Socket(), Socket()
    async with room_with(old) as (room, writer, _):
        writer.gate.set()
        old.inbox.put_nowait(awareness(7, 1, "{}"))
        await eventually(lambda: 7 in room.awareness)
        joining = asyncio.create_task(room.serve(Client(new, "p0", True, RoomLimits())))
        new.inbox.put_nowait(awareness(7, 2, '{"cursor": 3}'))
        await eventually(lambda: room.awareness[7].clock == 2)
        old.inbox.put_nowait(None)
        await eventually(lambda: len(room.clients) == 1)
        assert room.awareness[7].state == '{"cursor": 3}'
        new.inbox.put_nowait(None)
        await joining
        assert room.awareness == {}


async def test_reconnecting_does_not_reset_the_limit_of_updates_waiting_for_dependencies() -> None:
    """Hostile review: the limit was per socket, and what a closed socket left waiting stayed; reconnecting again and
    again piled up waiting updates without end, each rechecked on the event loop with every later update. Then each
    reconnect still left one more: the update that showed the limit was passed had been applied, so stored."""
    limits = RoomLimits(pending_updates=3)
    ada = Socket()
    async with room_with(ada, limits=limits) as (room, writer, _):
        writer.gate.set()
        for round_ in range(10):
            eve = Socket()
            serving = asyncio.create_task(room.serve(Client(eve, "eve", True, limits)))
            for update in keystrokes(f"{round_}abcd")[1:]:  # a chain of its own, its first update withheld
                eve.inbox.put_nowait(create_update_message(update))
            await eventually(lambda eve=eve: eve.closed is not None)  # type: ignore[misc]
            await serving
        assert len(room._waiting) == limits.pending_updates
        assert len(writer.stored) == limits.pending_updates, "an update past the limit was stored"
        assert ada.updates() == []


def chains(count: int, length: int) -> list[list[bytes]]:
    """`count` people's keystrokes, each its own chain: every update needs the one before it."""
    return [keystrokes(f"{index:03}"[:length].ljust(length, "x")) for index in range(count)]


def loaded(rows: list[bytes]) -> Doc[Any]:
    """A document as a load folds these rows (those that wait are in it, waiting)."""
    document: Doc[Any] = Doc()
    for row in rows:
        document.apply_update(row)
    return document


async def test_waiting_updates_are_rechecked_only_when_what_they_wait_for_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hostile review: updates loaded waiting (left by earlier sockets) were rechecked on the event loop with every
    later update, however many: 300 waiting made each keystroke cost 300 checks."""
    from agentlog.documents import protocol

    waited = chains(150, 3)
    checks = 0
    original = protocol.get_update

    def counted(update: bytes, state: bytes) -> bytes:
        nonlocal checks
        checks += 1
        return original(update, state)

    monkeypatch.setattr(protocol, "get_update", counted)
    ada, bob = Socket(), Socket()
    writer = GatedWriter()
    writer.gate.set()
    limits = RoomLimits(messages_per_s=1e9, burst=10**9)
    rows = [update for chain in waited for update in chain[1:]]
    room = Room("trip", loaded(rows), writer, limits, waiting=rows)  # type: ignore[arg-type]
    serving = [
        asyncio.create_task(room.serve(Client(socket, name, True, limits)))
        for socket, name in ((ada, "ada"), (bob, "bob"))
    ]
    await eventually(lambda: len(room.clients) == 2)
    typed = keystrokes("hello there")
    checks = 0
    for update in typed:
        ada.inbox.put_nowait(create_update_message(update))
    await eventually(lambda: len(writer.stored) == len(typed))
    assert checks < 3 * len(typed), f"{checks} checks for {len(typed)} keystrokes with 300 updates waiting"
    ada.inbox.put_nowait(create_update_message(waited[7][0]))  # what one chain waited for comes: it is sent on
    await eventually(lambda: "007" in bob.document())
    assert len(room._waiting) == 298
    for socket in (ada, bob):
        socket.inbox.put_nowait(None)
    await asyncio.gather(*serving)


async def test_a_room_full_of_waiting_updates_takes_no_more_of_them() -> None:
    """Hostile review: updates loaded waiting had no limit (each holder's limit started afresh once the room had
    unloaded); past the room's limit an update that would wait is refused before it is applied or stored, while
    updates in order still go through."""
    limits = RoomLimits(room_pending_updates=5)
    ada, eve = Socket(), Socket()
    writer = GatedWriter()
    writer.gate.set()
    rows = [chain[1] for chain in chains(5, 2)]
    room = Room("trip", loaded(rows), writer, limits, waiting=rows)  # type: ignore[arg-type]
    serving = [
        asyncio.create_task(room.serve(Client(socket, name, True, limits)))
        for socket, name in ((ada, "ada"), (eve, "eve"))
    ]
    await eventually(lambda: len(room.clients) == 2)
    eve.inbox.put_nowait(create_update_message(keystrokes("ab")[1]))
    await eventually(lambda: eve.closed is not None)
    assert eve.closed is not None and eve.closed[0] == 1008 and "this document has 5" in eve.closed[1]
    assert writer.stored == []
    for update in keystrokes("in order"):
        ada.inbox.put_nowait(create_update_message(update))
    await eventually(lambda: len(writer.stored) == 8)
    ada.inbox.put_nowait(None)
    await asyncio.gather(*serving)


async def test_a_document_bigger_than_the_outbox_limit_syncs_and_asking_for_it_again_and_again_does_not() -> None:
    """Hostile review: a sync reply counted against the outbox limit, so every joiner of a document bigger than it
    (32 MiB by default) was closed with 1013 and the document could not be opened at all. One reply waiting is not
    counted; a socket that asks again and again while it does not read still fills its outbox and is closed."""
    limits = RoomLimits(outbox_bytes=4_000, messages_per_s=1e9, burst=10**9)
    document: Doc[Any] = Doc()
    document.get("text", type=Text).insert(0, "x" * 20_000)
    release = asyncio.Event()

    class Slow(Socket):
        async def send(self, message: bytes) -> None:
            await release.wait()  # reads only once the test lets it
            await super().send(message)

    ada, bob = Slow(), Slow()
    async with room_with(ada, bob, limits=limits, document=document) as (_, writer, _):
        writer.gate.set()
        ada.inbox.put_nowait(sync_message(SYNC_STEP1, Doc().get_state()))
        for update in keystrokes("typed while ada syncs"):
            bob.inbox.put_nowait(create_update_message(update))
        await eventually(lambda: len(writer.stored) == 21)
        for _ in range(3):
            bob.inbox.put_nowait(sync_message(SYNC_STEP1, Doc().get_state()))
        await eventually(lambda: bob.closed is not None)
        assert bob.closed is not None and bob.closed[0] == 1013
        release.set()
        await eventually(lambda: len(ada.document()) == 20_021)
        assert ada.closed is None
