"""The agent worker: one process per (document, agent), run by the supervisor.

It joins its document as a Y.js peer, follows edits, and when a sentence is finished (it ends with `.`, `!` or
`?`) asks the location extractor for the places in it and marks each with a `geo` formatting attribute carrying
name, latitude and longitude. It talks to its supervisor over its standard streams, one JSON object per line:

    in:  {"op": "ping", "n": 7} | {"op": "shutdown"}
    out: {"op": "pong", "n": 7} | {"op": "connected", "sync_ms": …} | {"op": "marked", "places": [...]}
         | {"op": "tokens", …} | {"op": "metrics", …}

When its standard input closes (the supervisor is gone), it leaves. Logs go to standard error.

Positions: pycrdt counts text positions in UTF-8 bytes, Python strings in characters; every position handed to
`format` is converted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
import structlog
from pycrdt import Doc, Provider, Text, XmlElement, XmlFragment, XmlText
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agentlog.llm import LocationExtractor, Place, make_extractor
from agentlog.logs import configure_logging

log = structlog.get_logger("agentlog.worker")

MARK = "geo"
ORIGIN = "agentlog-agent"
SENTENCE = re.compile(r"[^.!?]*[.!?]+(?=\s|$)")
EXIT_REFUSED = 3
EMBED = "\ufffc"
"""Stands in for an embed in a node's plain text (sentences holding one are left alone)."""
FOUND_CACHE = 10_000
"""Sentences whose places are remembered (one LLM call per distinct sentence, within this bound)."""


class SocketChannel:
    """A `websockets` client connection as the channel `pycrdt.Provider` syncs over; notes the first sync."""

    def __init__(self, websocket: ClientConnection, path: str) -> None:
        self._websocket = websocket
        self._path = path
        self.synced = asyncio.Event()

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> SocketChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed as error:
            raise StopAsyncIteration from error

    async def recv(self) -> bytes:
        message = await self._websocket.recv()
        data = message.encode() if isinstance(message, str) else bytes(message)
        if len(data) > 1 and data[0] == 0 and data[1] == 1:  # sync step 2: the server's answer to our state
            self.synced.set()
        return data

    async def send(self, message: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._websocket.send(message)


@dataclass(slots=True)
class Counters:
    llm_calls: int = 0
    locations_marked: int = 0
    llm_ms: list[float] = field(default_factory=list)


class Surface:
    """The text of a document as plain strings per text node, with formatting by character positions."""

    def __init__(self, document: Doc[Any], layout: str) -> None:
        self.layout = layout
        if layout == "tiptap":
            self.root: Text | XmlFragment = document.get("default", type=XmlFragment)
        else:
            self.root = document.get("text", type=Text)

    def nodes(self) -> Iterator[Text | XmlText]:
        if isinstance(self.root, Text):
            yield self.root
            return
        yield from _xml_texts(self.root)

    @staticmethod
    def plain(node: Text | XmlText) -> Plain:
        """The node's characters, its formatted ranges and its embeds (character positions)."""
        parts: list[str] = []
        ranges: list[tuple[int, int, dict[str, Any]]] = []
        embeds: set[int] = set()
        at = 0
        for chunk, attributes in node.diff():
            if isinstance(chunk, str):
                text = chunk
            else:  # an embed takes one position in the document; stand a character in for it
                text = EMBED
                embeds.add(at)
            parts.append(text)
            if attributes:
                ranges.append((at, at + len(text), dict(attributes)))
            at += len(text)
        return Plain("".join(parts), ranges, frozenset(embeds))

    @staticmethod
    def mark(node: Text | XmlText, plain: Plain, start: int, end: int, value: dict[str, Any]) -> None:
        node.format(plain.position(start), plain.position(end), {MARK: value})


@dataclass(frozen=True, slots=True)
class Plain:
    text: str
    ranges: list[tuple[int, int, dict[str, Any]]]
    embeds: frozenset[int]

    def position(self, index: int) -> int:
        """The document position of character `index`: pycrdt counts UTF-8 bytes, and one per embed."""
        return sum(1 if at in self.embeds else len(self.text[at].encode()) for at in range(index))

    def marked(self, start: int, end: int) -> bool:
        """Every character of [start, end) carries a `geo` mark (formatting may split a mark into pieces)."""
        return all(
            any(MARK in attributes and low <= at < high for low, high, attributes in self.ranges)
            for at in range(start, end)
        )


def _xml_texts(node: XmlFragment | XmlElement) -> Iterator[XmlText]:
    for child in node.children:
        if isinstance(child, XmlText):
            yield child
        elif isinstance(child, XmlElement):
            yield from _xml_texts(child)


class Worker:
    def __init__(
        self, args: argparse.Namespace, extractor: LocationExtractor, commands: asyncio.StreamReader | None = None
    ) -> None:
        self.args = args
        self.extractor = extractor
        self._commands_reader = commands
        """Standard input, when it was already being read (a standby worker read its assignment from it)."""
        self.document: Doc[Any] = Doc()
        self.surface = Surface(self.document, args.layout)
        self.counters = Counters()
        self.changed = asyncio.Event()
        self.found: dict[str, tuple[Place, ...]] = {}
        """Sentence → the places in it (one LLM call per distinct sentence)."""
        self.stop = asyncio.Event()
        self.websocket: ClientConnection | None = None
        self.graceful = False
        """Asked to stop (or its supervisor is gone) rather than cut off from its document."""
        self._process = psutil.Process()
        self._process.cpu_percent()

    def emit(self, message: dict[str, Any]) -> None:
        sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
        sys.stdout.buffer.flush()

    async def run(self) -> int:
        token = self.args.token or os.environ["AGENTLOG_AGENT_TOKEN"]
        url = f"{self.args.url.rstrip('/')}/{self.args.document}?token={token}"
        started = time.perf_counter()
        commands = asyncio.create_task(self._commands())  # pings and shutdown are answered while connecting too
        try:
            async with connect(url, max_size=64 * 1024 * 1024, open_timeout=10) as websocket:
                self.websocket = websocket
                channel = SocketChannel(websocket, self.args.document)
                async with Provider(self.document, channel):
                    if not await self._synced_or_stopped(channel):
                        return 0 if self.graceful else 1
                    self.emit({"op": "connected", "sync_ms": (time.perf_counter() - started) * 1000})
                    log.info("worker.connected", document=self.args.document, agent=self.args.agent)
                    subscription = self.surface.root.observe_deep(self._on_change)
                    self.changed.set()  # sentences finished before we came
                    tasks = [
                        asyncio.create_task(self._annotate()),
                        asyncio.create_task(self._metrics()),
                        asyncio.create_task(self._watch(websocket)),
                    ]
                    await self.stop.wait()
                    for task in tasks:
                        task.cancel()
                    self.surface.root.unobserve(subscription)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            reason = closed.rcvd.reason if closed.rcvd is not None else ""
            log.error("worker.disconnected", code=code, reason=reason)
            return EXIT_REFUSED if code is not None and 4400 <= code < 4500 else 1
        finally:
            commands.cancel()
            await self.extractor.aclose()
        return 0 if self.graceful else 1

    async def _synced_or_stopped(self, channel: SocketChannel) -> bool:
        synced = asyncio.create_task(channel.synced.wait())
        stopped = asyncio.create_task(self.stop.wait())
        done, _ = await asyncio.wait([synced, stopped], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        synced.cancel()
        stopped.cancel()
        if synced in done:
            return True
        if stopped not in done:
            raise TimeoutError("the document server did not finish the first sync within 30 s")
        return False

    def _on_change(self, *_: object) -> None:
        # Never write to the document from inside an observer (pycrdt forbids it): wake the annotator instead.
        self.changed.set()

    async def _watch(self, websocket: ClientConnection) -> None:
        await websocket.wait_closed()
        if not self.stop.is_set():
            log.error("worker.document_socket_closed")
            self.stop.set()

    async def _annotate(self) -> None:
        while True:
            await self.changed.wait()
            await asyncio.sleep(0.02)  # let a burst of keystrokes settle
            self.changed.clear()
            try:
                await self._annotate_once()
            except Exception:
                log.exception("worker.annotate_failed")

    async def _annotate_once(self) -> None:
        for node in list(self.surface.nodes()):
            text = self.surface.plain(node).text
            for match in SENTENCE.finditer(text):
                sentence = match.group().strip()
                if not sentence or EMBED in sentence:
                    continue
                places = self.found.get(sentence)
                if places is None:
                    places = await self._extract(sentence)
                    if len(self.found) >= FOUND_CACHE:
                        del self.found[next(iter(self.found))]
                    self.found[sentence] = places
                if places:
                    self._mark(node, sentence, places)

    async def _extract(self, sentence: str) -> tuple[Place, ...]:
        extraction = await self.extractor.extract(sentence)
        self.counters.llm_calls += 1
        self.counters.llm_ms.append(extraction.duration_ms)
        self.emit(
            {
                "op": "tokens",
                "provider": extraction.provider,
                "model": extraction.model,
                "prompt_tokens": extraction.prompt_tokens,
                "completion_tokens": extraction.completion_tokens,
                "duration_ms": extraction.duration_ms,
            }
        )
        return extraction.places

    def _mark(self, node: Text | XmlText, sentence: str, places: tuple[Place, ...]) -> None:
        """Mark every place of `sentence` wherever the sentence now is in `node`, unless already marked."""
        plain = self.surface.plain(node)  # read again: the document may have changed during the LLM call
        text = plain.text
        marked: list[dict[str, Any]] = []
        with self.document.transaction(origin=ORIGIN):
            at = text.find(sentence)
            while at >= 0:
                for place in places:
                    start, end = at + place.start, at + place.end
                    if text[start:end] != place.name or plain.marked(start, end):
                        continue
                    value = {"name": place.name, "lat": place.latitude, "lon": place.longitude}
                    self.surface.mark(node, plain, start, end, value)
                    marked.append({"name": place.name, "latitude": place.latitude, "longitude": place.longitude})
                at = text.find(sentence, at + len(sentence))
        if marked:
            self.counters.locations_marked += len(marked)
            self.emit({"op": "marked", "places": marked})
            log.info("worker.marked", places=[place["name"] for place in marked])

    async def _commands(self) -> None:
        reader = self._commands_reader or await standard_input()
        while line := await reader.readline():
            try:
                command = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if command.get("op") == "ping":
                self.emit({"op": "pong", "n": command.get("n")})
            elif command.get("op") == "shutdown":
                self.graceful = True
                self.stop.set()
                return
        log.warning("worker.supervisor_gone")  # standard input closed
        self.graceful = True
        self.stop.set()

    async def _metrics(self) -> None:
        while True:
            await asyncio.sleep(self.args.metrics_interval)
            latency = None
            if self.websocket is not None:
                with contextlib.suppress(Exception):
                    started = time.perf_counter()
                    pong = await self.websocket.ping()
                    await asyncio.wait_for(pong, 5)
                    latency = (time.perf_counter() - started) * 1000
            calls = self.counters.llm_ms[-20:]
            self.emit(
                {
                    "op": "metrics",
                    "memory_mb": self._process.memory_info().rss / 1024 / 1024,
                    "cpu_percent": self._process.cpu_percent(),
                    "llm_calls": self.counters.llm_calls,
                    "locations_marked": self.counters.locations_marked,
                    "websocket_latency_ms": latency,
                    "llm_response_time_ms": sum(calls) / len(calls) if calls else None,
                }
            )


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agentlog-worker", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--document")
    parser.add_argument("--agent")
    parser.add_argument("--url", help="the document server, e.g. ws://127.0.0.1:8787/doc")
    parser.add_argument(
        "--standby-of",
        metavar="MANAGER",
        help="start warm and wait: the first line on standard input assigns the document, agent, url and token",
    )
    parser.add_argument("--layout", choices=["tiptap", "text"], default="tiptap")
    parser.add_argument("--metrics-interval", type=float, default=30.0)
    parser.add_argument("--llm-provider", default="gazetteer")
    parser.add_argument("--llm-base-url")
    parser.add_argument("--llm-model")
    parser.add_argument("--cache-dir", type=Path)
    args = parser.parse_args(argv)
    args.token = None
    if args.standby_of is None and not (args.document and args.agent and args.url):
        parser.error("--document, --agent and --url are required (unless --standby-of)")
    return args


async def standard_input() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def standby(args: argparse.Namespace, extractor: LocationExtractor) -> int:
    """Get warm (imports are done; the extractor loads its index), then wait for the first line on standard input:
    the assignment. A supervisor keeps one such worker ready, so an agent starts in the time it takes to join."""
    load = getattr(extractor, "load", None)
    if load is not None:
        await load()
    commands = await standard_input()
    line = await commands.readline()
    if not line:
        return 0  # the supervisor went away before it needed us
    assignment = orjson.loads(line)
    if not isinstance(assignment, dict) or assignment.get("op") != "assign":
        log.error("worker.bad_assignment", line=line[:200].decode(errors="replace"))
        return 2
    args.document, args.agent = str(assignment["document"]), str(assignment["agent"])
    args.url, args.token = str(assignment["url"]), str(assignment["token"])
    structlog.contextvars.bind_contextvars(agent=args.agent, document=args.document)
    return await Worker(args, extractor, commands).run()


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    configure_logging(os.environ.get("AGENTLOG_LOG_LEVEL", "info"))
    extractor = make_extractor(
        args.llm_provider,
        base_url=args.llm_base_url,
        api_key=os.environ.get("AGENTLOG_LLM_API_KEY"),
        model=args.llm_model,
        cache_dir=args.cache_dir,
    )
    try:
        if args.standby_of is not None:
            return asyncio.run(standby(args, extractor))
        structlog.contextvars.bind_contextvars(agent=args.agent, document=args.document)
        return asyncio.run(Worker(args, extractor).run())
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
