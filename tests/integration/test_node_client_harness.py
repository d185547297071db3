"""Self-test of the Node Y.js client harness (tests/support/node_client.py + yjs_client/client.mjs).

The server here is a plain pycrdt-websocket server (no agentlog code, no database), served by uvicorn under
`/doc/{room}` with a `?token=` check, and a Python "fake agent" that joins the room server-side and marks each
"Paris" of a finished sentence with a `geo` attribute - which the real yjs/y-websocket client must then see.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
from pycrdt import Doc, Subscription, Text, XmlElement, XmlFragment, XmlText
from pycrdt.websocket import ASGIServer, WebsocketServer, YRoom

from tests.support.asgi import serving
from tests.support.node_client import YjsClientResult, ensure_node_client, node_available, run_yjs_client

pytestmark = [
    pytest.mark.skipif(not node_available(), reason="node and npm are not on PATH: the Y.js interop test needs them"),
    pytest.mark.usefixtures("node_client"),
]

GOOD_TOKEN = "s3cret-token"
REVOKED_TOKEN = "revoked-token"  # accepted at the HTTP level, then closed with an application close code
REVOKED_CLOSE_CODE = 4403
PARIS = {"name": "Paris", "lat": 48.8566, "lon": 2.3522}
CLIENT_TIMEOUT_S = 20.0

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@pytest.fixture(scope="module")
def node_client() -> None:
    ensure_node_client()


# --- the server: pycrdt-websocket under /doc/{room}, with a token check -------------------------------------------


def _token(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode()).get("token")
    return values[0] if values else None


@dataclass
class DocServer:
    url: str
    websocket_server: WebsocketServer
    refused: list[str] = field(default_factory=list)


class DocRouter:
    """Serves `/doc/{room}` websockets with pycrdt-websocket (room name = `{room}`); refuses anything else."""

    def __init__(self, websocket_server: WebsocketServer, refused: list[str]) -> None:
        self._refused = refused
        self._asgi = ASGIServer(websocket_server, on_connect=self._on_connect)

    def _on_connect(self, message: Message, scope: Scope) -> bool:
        """pycrdt-websocket's hook: returning True refuses the socket (`__call__` then closes the handshake)."""
        refuse = _token(scope) != GOOD_TOKEN
        if refuse:
            self._refused.append(scope["path"])
            scope["refused"] = True
        return refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._asgi(scope, receive, send)
            return
        if scope["type"] != "websocket":
            return
        path: str = scope["path"]
        room = path.removeprefix("/doc/")
        if room == path or not room or "/" in room:
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        if _token(scope) == REVOKED_TOKEN:
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": REVOKED_CLOSE_CODE, "reason": "token revoked"})
            self._refused.append(room)
            return
        # The room name pycrdt-websocket uses is the ASGI path: make it the bare document id.
        scope = {**scope, "path": room}
        await self._asgi(scope, receive, send)
        if scope.get("refused"):
            # pycrdt-websocket's refusal just returns without a word, which uvicorn reports as an error and answers
            # with HTTP 500: close the handshake properly (before accept, uvicorn answers HTTP 403).
            await send({"type": "websocket.close", "code": 1008})


async def _run_doc_server(sock: socket.socket, ready: asyncio.Future[DocServer], stop: asyncio.Event) -> None:
    """Runs the server until `stop` is set. One task from start to end: anyio's task groups (in pycrdt-websocket)
    must be exited by the task that entered them, and pytest-asyncio may run fixture teardown in another task."""
    port = sock.getsockname()[1]
    refused: list[str] = []
    websocket_server = WebsocketServer(auto_clean_rooms=False)
    async with (
        websocket_server,
        serving(DocRouter(websocket_server, refused), sock, lifespan="on", ws="websockets-sansio"),
    ):
        ready.set_result(DocServer(f"ws://127.0.0.1:{port}/doc", websocket_server, refused))
        await stop.wait()


@pytest.fixture
async def doc_server() -> AsyncIterator[DocServer]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        ready: asyncio.Future[DocServer] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        task = asyncio.create_task(_run_doc_server(sock, ready, stop))
        try:
            started: set[asyncio.Future[Any]] = {ready, task}
            await asyncio.wait(started, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                task.result()
            yield ready.result()
        finally:
            stop.set()
            await task


# --- the fake agent: marks "Paris" in finished sentences, outside the observer callbacks ---------------------------

SENTENCE = re.compile(r"[^.!?]*[.!?]")


def _plain(chunks: list[tuple[Any, dict[str, Any] | None]]) -> str:
    return "".join(c if isinstance(c, str) else "\ufffc" for c, _ in chunks)


def _utf8_offset(s: str, index: int) -> int:
    """pycrdt (yrs) indexes text in UTF-8 bytes; Yjs in UTF-16 code units; Python in code points."""
    return len(s[:index].encode("utf-8"))


class FakeAgent:
    """Joins a room server-side and formats every "Paris" of a finished sentence with `{"geo": PARIS}`."""

    def __init__(self, room: YRoom, mode: str) -> None:
        self.doc: Doc[Any] = room.ydoc
        self.mode = mode
        self.marked = 0
        self._wake: asyncio.Queue[None] = asyncio.Queue()
        self._subscription: Subscription
        self._target: Text | XmlFragment
        if mode == "text":
            self._target = self.doc.get("text", type=Text)
            self._subscription = self._target.observe(lambda _event: self._wake.put_nowait(None))
        else:
            self._target = self.doc.get("default", type=XmlFragment)
            self._subscription = self._target.observe_deep(lambda _events: self._wake.put_nowait(None))

    def close(self) -> None:
        self._target.unobserve(self._subscription)

    async def run(self) -> None:
        while True:
            await self._wake.get()
            self._mark_all()

    def texts(self) -> list[Text | XmlText]:
        if isinstance(self._target, Text):
            return [self._target]
        return [
            child
            for paragraph in self._target.children
            if isinstance(paragraph, XmlElement) and paragraph.tag == "paragraph"
            for child in paragraph.children
            if isinstance(child, XmlText)
        ]

    def _mark_all(self) -> None:
        for text in self.texts():
            chunks = text.diff()
            plain = _plain(chunks)
            marked = self._marked_spans(chunks)
            for sentence in SENTENCE.finditer(plain):
                for found in re.finditer("Paris", sentence.group()):
                    start = sentence.start() + found.start()
                    end = start + len(found.group())
                    if (start, end) in marked:
                        continue
                    text.format(_utf8_offset(plain, start), _utf8_offset(plain, end), {"geo": PARIS})
                    self.marked += 1

    @staticmethod
    def _marked_spans(chunks: list[tuple[Any, dict[str, Any] | None]]) -> set[tuple[int, int]]:
        spans = set()
        pos = 0
        for content, attrs in chunks:
            length = len(content) if isinstance(content, str) else 1
            if attrs and attrs.get("geo") is not None:
                spans.add((pos, pos + length))
            pos += length
        return spans


@contextlib.asynccontextmanager
async def fake_agent(server: DocServer, room_name: str, mode: str) -> AsyncIterator[FakeAgent]:
    room = await server.websocket_server.get_room(room_name)
    agent = FakeAgent(room, mode)
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        agent.close()


def _room() -> str:
    return f"doc-{uuid.uuid4().hex[:12]}"


def _assert_paris_marks(result: YjsClientResult, count: int) -> None:
    assert result.ok, result.describe()
    assert result.marks == [{"text": "Paris", "geo": PARIS}] * count, result.describe()
    assert result.done is not None and result.done["elapsed_ms"] >= 0


# --- tests ---------------------------------------------------------------------------------------------------------

SENTENCES = [
    pytest.param("I flew to Paris last week.", id="ascii"),
    # non-BMP and accented characters before the mark: UTF-8 (pycrdt) vs UTF-16 (Yjs) offsets must agree
    pytest.param("Café crème 🥐 à Paris, très bien!", id="non-ascii"),
]


@pytest.mark.parametrize("mode", ["text", "tiptap"])
@pytest.mark.parametrize("sentence", SENTENCES)
async def test_client_sees_the_agents_geo_mark(doc_server: DocServer, mode: str, sentence: str) -> None:
    room = _room()
    async with fake_agent(doc_server, room, mode) as agent:
        result = await run_yjs_client(
            doc_server.url,
            room,
            GOOD_TOKEN,
            mode=mode,
            sentence=sentence,
            expect_marks=1,
            timeout_s=CLIENT_TIMEOUT_S,
        )
    _assert_paris_marks(result, 1)
    assert agent.marked == 1
    assert doc_server.refused == []
    # the server's copy holds what the client typed
    assert sentence in [_plain(t.diff()) for t in agent.texts()]


@pytest.mark.parametrize("mode", ["text", "tiptap"])
async def test_client_waits_for_several_marks_and_holds(doc_server: DocServer, mode: str) -> None:
    room = _room()
    async with fake_agent(doc_server, room, mode):
        result = await run_yjs_client(
            doc_server.url,
            room,
            GOOD_TOKEN,
            mode=mode,
            sentence="From Paris to Lyon, then back to Paris.",
            expect_marks=2,
            timeout_s=CLIENT_TIMEOUT_S,
            hold_ms=300,
        )
    _assert_paris_marks(result, 2)


async def test_long_sentence_goes_through_stdin(doc_server: DocServer) -> None:
    room = _room()
    sentence = "word " * 20_000 + "and finally Paris."  # > 32 KiB: passed on stdin, not argv
    async with fake_agent(doc_server, room, "tiptap"):
        result = await run_yjs_client(
            doc_server.url,
            room,
            GOOD_TOKEN,
            mode="tiptap",
            sentence=sentence,
            expect_marks=1,
            timeout_s=CLIENT_TIMEOUT_S,
        )
    _assert_paris_marks(result, 1)


async def test_two_clients_share_a_room(doc_server: DocServer) -> None:
    room = _room()
    async with fake_agent(doc_server, room, "text") as agent:
        first, second = await asyncio.gather(
            *(
                run_yjs_client(
                    doc_server.url,
                    room,
                    GOOD_TOKEN,
                    mode="text",
                    sentence=sentence,
                    expect_marks=1,
                    timeout_s=CLIENT_TIMEOUT_S,
                    hold_ms=500,
                )
                for sentence in ("Bonjour de Paris. ", "Paris again. ")
            )
        )
    _assert_paris_marks(first, 1)
    _assert_paris_marks(second, 1)
    assert agent.marked == 2


async def test_client_times_out_without_marks(doc_server: DocServer) -> None:
    result = await run_yjs_client(
        doc_server.url, _room(), GOOD_TOKEN, mode="text", sentence="No agent here.", expect_marks=1, timeout_s=1.5
    )
    assert result.returncode == 1, result.describe()
    assert result.done is not None and result.done["done"] is False
    assert result.done["synced"] is True and result.done["text"] == "No agent here."
    assert result.marks == []


async def test_bad_token_is_refused(doc_server: DocServer) -> None:
    room = _room()
    result = await run_yjs_client(
        doc_server.url, room, "wrong", mode="text", sentence="", expect_marks=0, timeout_s=10, expect_close=True
    )
    assert result.returncode == 0, result.describe()
    assert result.closed is not None, result.describe()
    # refused before the handshake completes (pycrdt-websocket's on_connect, then our websocket.close): uvicorn
    # answers the upgrade with HTTP 403, so the client sees no close frame, just code 1006
    assert result.closed["http_status"] == 403
    assert result.closed["code"] == 1006
    assert doc_server.refused == [room]
    assert room not in doc_server.websocket_server.rooms


async def test_bad_token_without_expect_close_is_a_connection_error(doc_server: DocServer) -> None:
    result = await run_yjs_client(
        doc_server.url, _room(), "wrong", mode="text", sentence="Paris.", expect_marks=1, timeout_s=10
    )
    assert result.returncode == 2, result.describe()
    assert result.done is not None and result.done["done"] is False
    assert result.done["http_status"] == 403


async def test_close_code_and_reason_are_reported(doc_server: DocServer) -> None:
    room = _room()
    result = await run_yjs_client(
        doc_server.url, room, REVOKED_TOKEN, mode="text", sentence="", expect_marks=0, timeout_s=10, expect_close=True
    )
    assert result.returncode == 0, result.describe()
    assert result.closed is not None
    assert result.closed["code"] == REVOKED_CLOSE_CODE
    assert result.closed["reason"] == "token revoked"


async def test_expect_close_fails_when_the_server_accepts(doc_server: DocServer) -> None:
    result = await run_yjs_client(
        doc_server.url, _room(), GOOD_TOKEN, mode="text", sentence="", expect_marks=0, timeout_s=10, expect_close=True
    )
    assert result.returncode == 1, result.describe()
    assert result.closed is None
