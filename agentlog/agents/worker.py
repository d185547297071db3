"""The agent worker: one process per (document, agent), run by the supervisor.

It joins its document as a Y.js peer, follows edits, and when a sentence is finished (see
`agentlog.agents.sentences`: end punctuation, CJK full stops, line breaks, not after "St." or "e.g.") asks the
location extractor for the places in it and marks each with a `geo` formatting attribute carrying name, latitude
and longitude. It talks to its supervisor over its standard streams, one JSON object per line:

    in:  {"op": "ping", "n": 7} | {"op": "shutdown"}
         | {"op": "token", "token": "..."}  a renewed token: used for any later connection, and sent at once over
                                            the open document socket as y-websocket message 2 ("auth"):
                                            b"\\x02" + varuint(length of the UTF-8 token) + the token
         | {"op": "reserved", "n": 3, "ok": true, "reservation_id": "..."} | {..., "ok": false, "reason": "..."}
    out: {"op": "pong", "n": 7} | {"op": "connected", "sync_ms": …} | {"op": "marked", "places": [...]}
         | {"op": "tokens", …, "reservation_id": …} | {"op": "metrics", …}
         | {"op": "reserve", "n": 3, "tokens": 480}  with `--budgeted`: before each LLM call, tokens to hold on the
                                            agent's budgets; the call is made only once reserved (refused: the
                                            sentence is retried later, with back-off), and settled by its `tokens`

When its standard input closes (the supervisor is gone), it leaves. Logs go to standard error.

Work per keystroke follows what changed, not the document: the observer hands each transaction's events to the
`Surface` mirror, which re-splits only the sentences around each change and yields the sentences whose text is
new; the `ExtractionQueue` decides which of those to mark now (places known, in an LRU cache) and which to send to
the extractor, with a per-sentence back-off for failures, retried by a timer, at most a few calls at a time. A
sentence nobody edited is never looked at again, so a mark someone removed from it stays removed; the texts and
places someone unmarked are remembered too, for when such a sentence comes back (its paragraph split, say).

Positions: pycrdt counts text positions in UTF-8 bytes, Python strings in characters; the mirror keeps each node
as bytes, so a place is formatted at its sentence's byte offset plus the bytes before it in the sentence.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
import structlog
from pycrdt import Doc, Provider, Subscription, write_var_uint
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agentlog.agents.backoff import Backoff
from agentlog.agents.channel import SocketChannel
from agentlog.agents.extraction_queue import ExtractionQueue
from agentlog.agents.lru import LRUCache
from agentlog.agents.node_text import MARK, Unmarked
from agentlog.agents.surface import SentenceWork, Surface
from agentlog.llm import LocationExtractor, Place, make_extractor
from agentlog.logs import configure_logging

log = structlog.get_logger("agentlog.worker")

ORIGIN = "agentlog-agent"
RESERVE_TIMEOUT_S = 10.0
RESERVED_COMPLETION_TOKENS = 256
"""Held for the answer of one call on top of its prompt (a sentence's places are a short JSON list)."""
PROMPT_OVERHEAD_TOKENS = 200
"""The instructions around the sentence."""


class BudgetRefusedError(Exception):
    """The agent's token budget did not let this call be made (now)."""


def reservation_estimate(sentence: str) -> int:
    """Tokens to hold for one extraction call: its prompt (about four bytes a token, rounded up) and answer."""
    return PROMPT_OVERHEAD_TOKENS + -(-len(sentence.encode()) // 3) + RESERVED_COMPLETION_TOKENS
EXIT_REFUSED = 3
AUTH = 2
"""The y-websocket message type that carries a renewed token."""
FOUND_CACHE = 10_000
"""Sentences whose places are remembered, least recently used forgotten first (one call per distinct sentence)."""
DECLINED_MEMORY = 10_000
"""Sentences in which someone removed a mark, remembered with the characters unmarked."""
BACKOFF = Backoff(first_s=1.0, factor=2.0, cap_s=60.0, attempts=10)
CONCURRENT_CALLS = 4
"""Extractor calls out at once: a slow or hanging call holds back only its own sentence."""
MARK_BATCH = 200
"""Sentences marked in one step at most before the loop lets pings and the socket through (a document just
joined); fewer when marking is slow (`STEP_S`)."""
STEP_S = 0.05
"""What one step of marking should take at most: pycrdt formats in time proportional to the formatting runs
before the place, so in one long text with thousands of marks a step of `MARK_BATCH` sentences can take seconds."""
OWN_EVENT_BYTES = 16_384
"""Nodes longer than this are not followed through the worker's own formatting transactions (see `_mark`)."""
SETTLE_S = 0.02
"""Let a burst of keystrokes settle before working on it."""
LINE_QUIET_S = 1.0
"""A line finished by a line break alone (a list item) is extracted once it has not changed for this long: the
line break may have been there while it was typed, and every keystroke would be a call otherwise."""

__all__ = ["MARK", "ORIGIN", "SocketChannel", "Worker", "main"]


@dataclass(slots=True)
class Counters:
    llm_calls: int = 0
    locations_marked: int = 0
    llm_ms: list[float] = field(default_factory=list)


class Worker:
    def __init__(
        self, args: argparse.Namespace, extractor: LocationExtractor, commands: asyncio.StreamReader | None = None
    ) -> None:
        self.args = args
        self.extractor = extractor
        self._commands_reader = commands
        """Standard input, when it was already being read (a standby worker read its assignment from it)."""
        self.token: str | None = getattr(args, "token", None) or os.environ.get("AGENTLOG_AGENT_TOKEN")
        """The current token: the assignment's, or the latest `token` command's."""
        self.document: Doc[Any] = Doc()
        self.surface = Surface(self.document, args.layout)
        self.counters = Counters()
        self.changed = asyncio.Event()
        self.cache: LRUCache[str, tuple[Place, ...]] = LRUCache(FOUND_CACHE)
        """Sentence → the places in it."""
        self.declined: LRUCache[str, list[tuple[int, int]]] = LRUCache(DECLINED_MEMORY)
        """Sentence → character ranges in it from which someone removed a mark."""
        self.queue: ExtractionQueue[SentenceWork] = ExtractionQueue(BACKOFF, concurrency=CONCURRENT_CALLS)
        self._calls: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None
        self._batch = MARK_BATCH
        self.stop = asyncio.Event()
        self.websocket: ClientConnection | None = None
        self.graceful = False
        """Asked to stop (or its supervisor is gone) rather than cut off from its document."""
        self._process = psutil.Process()
        self._process.cpu_percent()
        self._reservations = 0
        self._reserving: dict[int, asyncio.Future[dict[str, Any]]] = {}
        """Token reservations asked of the supervisor and not answered yet, by number."""

    def emit(self, message: dict[str, Any]) -> None:
        sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
        sys.stdout.buffer.flush()

    def url(self) -> str:
        if not self.token:
            raise RuntimeError("the worker has no token: pass one in its assignment or AGENTLOG_AGENT_TOKEN")
        return f"{self.args.url.rstrip('/')}/{self.args.document}?token={self.token}"

    async def run(self) -> int:
        url, token = self.url(), self.token
        started = time.perf_counter()
        commands = asyncio.create_task(self._commands())  # pings and shutdown are answered while connecting too
        try:
            async with connect(url, max_size=64 * 1024 * 1024, open_timeout=10) as websocket:
                self.websocket = websocket
                if self.token != token:  # renewed while we were connecting
                    await self._send_token()
                channel = SocketChannel(websocket, self.args.document)
                async with Provider(self.document, channel):
                    if not await self._synced_or_stopped(channel):
                        return 0 if self.graceful else 1
                    self.emit({"op": "connected", "sync_ms": (time.perf_counter() - started) * 1000})
                    log.info("worker.connected", document=self.args.document, agent=self.args.agent)
                    self.follow()
                    tasks = [
                        asyncio.create_task(self._annotate()),
                        asyncio.create_task(self._metrics()),
                        asyncio.create_task(self._watch(websocket)),
                    ]
                    await self.stop.wait()
                    for task in [*tasks, *self._calls]:
                        task.cancel()
                    self._unfollow()
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            reason = closed.rcvd.reason if closed.rcvd is not None else ""
            log.error("worker.disconnected", code=code, reason=reason)
            return EXIT_REFUSED if code is not None and 4400 <= code < 4500 else 1
        finally:
            commands.cancel()
            await self.extractor.aclose()
        return 0 if self.graceful else 1

    def follow(self) -> None:
        """Mirror the document as it is (its finished sentences are work: they were written before we came) and
        follow its changes from now on."""
        self.surface.load()
        self._take(hold_lines=False)  # written before we came, not being typed
        self.changed.set()
        self._subscription = self.surface.root.observe_deep(self._on_change)

    def _unfollow(self) -> None:
        if self._subscription is not None:
            self.surface.root.unobserve(self._subscription)
            self._subscription = None

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

    def _on_change(self, events: list[Any]) -> None:
        # Never write to the document from inside an observer (pycrdt forbids it): mirror the change (reads only),
        # queue the sentences it made new, and wake the annotator.
        transaction = getattr(events[0], "transaction", None) if events else None
        own = transaction is not None and transaction.origin == ORIGIN
        self.surface.follow(events, own=own)
        self._take()
        self.changed.set()

    def _take(self, *, hold_lines: bool = True) -> None:
        fresh, unmarked = self.surface.take()
        quiet_until = time.monotonic() + LINE_QUIET_S
        for record, pending in fresh:
            held = hold_lines and pending.by_line and LINE_QUIET_S > 0
            self.queue.add(SentenceWork(record, pending), quiet_until if held else None)
        for removed in unmarked:
            self._decline(removed)

    def _decline(self, removed: Unmarked) -> None:
        ranges = self.declined.get(removed.sentence) or []
        ranges.append((removed.start, removed.end))
        self.declined.put(removed.sentence, ranges)
        log.info("worker.mark_removed", sentence=removed.sentence[:80], start=removed.start, end=removed.end)

    async def _watch(self, websocket: ClientConnection) -> None:
        await websocket.wait_closed()
        if not self.stop.is_set():
            log.error("worker.document_socket_closed")
            self.stop.set()

    async def _annotate(self) -> None:
        while True:
            retry = self.queue.next_retry()
            timeout = None if retry is None else max(0.0, retry - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout)
            await asyncio.sleep(SETTLE_S)
            self.changed.clear()
            try:
                self._step()
            except Exception:
                log.exception("worker.annotate_failed")

    async def _annotate_once(self) -> None:
        """Work until nothing more is due now: mark what is known, extract what is not, and wait for those calls
        (a failed one backs off and is left to the timer). What one keystroke costs, end to end."""
        while True:
            self._step()
            if self._calls:
                await asyncio.wait(set(self._calls))
            elif not self.queue.has_ready():
                return

    def _step(self) -> None:
        started = time.perf_counter()
        due = self.queue.due(time.monotonic(), self.cache.get, limit=self._batch)
        self._mark(due.known)
        for text in due.calls:
            task = asyncio.create_task(self._call(text))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
        if len(due.known) >= self._batch:
            self.changed.set()  # more to do: come back after the loop has had its turn
        if due.known:  # the next step's size, so that a step takes about STEP_S
            elapsed = max(time.perf_counter() - started, 1e-6)
            self._batch = max(1, min(MARK_BATCH, int(len(due.known) * STEP_S / elapsed)))

    async def _call(self, text: str) -> None:
        try:
            places = await self._extract(text)
        except Exception as error:
            delay = self.queue.failed(text, time.monotonic())
            log.warning(
                "worker.extract_failed" if delay is not None else "worker.extract_given_up",
                error=str(error), retry_in_s=delay, sentence=text[:80],
            )  # fmt: skip
        else:
            self.cache.put(text, places)
            self._mark([(work, places) for work in self.queue.succeeded(text)])
        finally:
            self.changed.set()

    async def _extract(self, sentence: str) -> tuple[Place, ...]:
        reservation_id = await self._reserve(sentence) if self.args.budgeted else None
        extraction = await self.extractor.extract(sentence)
        self.counters.llm_calls += 1
        self.counters.llm_ms.append(extraction.duration_ms)
        del self.counters.llm_ms[:-100]
        self.emit(
            {
                "op": "tokens",
                "provider": extraction.provider,
                "model": extraction.model,
                "prompt_tokens": extraction.prompt_tokens,
                "completion_tokens": extraction.completion_tokens,
                "duration_ms": extraction.duration_ms,
                "reservation_id": reservation_id,
            }
        )
        return extraction.places

    async def _reserve(self, sentence: str) -> str:
        """Hold tokens for one call on the agent's budgets (through the supervisor); raise when it refuses."""
        self._reservations += 1
        number = self._reservations
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reserving[number] = answer
        try:
            self.emit({"op": "reserve", "n": number, "tokens": reservation_estimate(sentence)})
            reply = await asyncio.wait_for(answer, RESERVE_TIMEOUT_S)
        except TimeoutError:
            raise BudgetRefusedError("the supervisor did not answer the token reservation in time") from None
        finally:
            self._reserving.pop(number, None)
        if not reply.get("ok"):
            raise BudgetRefusedError(str(reply.get("reason") or "the token budget refused the call"))
        return str(reply["reservation_id"])

    def _mark(self, sentences: list[tuple[SentenceWork, tuple[Place, ...]]]) -> None:
        """Mark the places of these sentences where they are now, in one transaction (one update to send, one
        event to follow), except places already marked and those someone unmarked in a sentence with that text."""
        planned = [(work.record, formats) for work, places in sentences if (formats := self._formats(work, places))]
        if not planned:
            return
        # In a long node our own formatting is told to the mirror directly rather than through the observer:
        # pycrdt builds an event's delta by walking the node's formatting runs, and the mirror knows the change.
        # (Unsubscribing costs pycrdt a signature inspection, more than a short node's delta.)
        bypass = self._subscription is not None and any(len(r.text.content) > OWN_EVENT_BYTES for r, _ in planned)
        if bypass:
            self._unfollow()
        try:
            # In text order: formatting from the end is faster, but leaves pycrdt more runs to walk on every edit.
            with self.document.transaction(origin=ORIGIN):
                for record, formats in planned:
                    for start, end, place in formats:
                        value = {"name": place.name, "lat": place.latitude, "lon": place.longitude}
                        record.node.format(start, end, {MARK: value})
                        record.text.mark(start, end)
        finally:
            if bypass:
                self._subscription = self.surface.root.observe_deep(self._on_change)
        for _, formats in planned:
            marked = [{"name": p.name, "latitude": p.latitude, "longitude": p.longitude} for _, _, p in formats]
            self.counters.locations_marked += len(marked)
            self.emit({"op": "marked", "places": marked})
            log.info("worker.marked", places=[place["name"] for place in marked])

    def _formats(self, work: SentenceWork, places: tuple[Place, ...]) -> list[tuple[int, int, Place]]:
        """Where to mark the places of one sentence (bytes in its node); the sentence is done with either way."""
        record, pending = work.record, work.pending
        work.finish()
        if not places or not record.alive:
            return []
        declined = self.declined.get(pending.text) or []
        formats: list[tuple[int, int, Place]] = []
        for place in places:
            if pending.text[place.start : place.end] != place.name:
                continue
            if any(low < place.end and place.start < high for low, high in declined):
                continue
            start = pending.start + len(pending.text[: place.start].encode())
            end = start + len(place.name.encode())
            if record.text.is_marked(start, end):
                continue
            if record.text.content[start:end] != place.name.encode():
                log.warning("worker.mirror_out_of_step", sentence=pending.text[:80], place=place.name)
                continue
            formats.append((start, end, place))
        return formats

    async def _send_token(self) -> None:
        """Hand the document server the current token over the open socket (y-websocket message 2, `auth`), so
        that the socket outlives the token it was opened with."""
        if self.websocket is None or not self.token:
            return
        encoded = self.token.encode()
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.send(bytes([AUTH]) + write_var_uint(len(encoded)) + encoded)

    async def _commands(self) -> None:
        reader = self._commands_reader or await standard_input()
        while line := await reader.readline():
            try:
                command = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(command, dict):
                continue
            if command.get("op") == "ping":
                self.emit({"op": "pong", "n": command.get("n")})
            elif command.get("op") == "reserved":
                waiting = self._reserving.get(command.get("n"))  # type: ignore[arg-type]
                if waiting is not None and not waiting.done():
                    waiting.set_result(command)
            elif command.get("op") == "token":
                token = command.get("token")
                if isinstance(token, str) and token:
                    self.token = token
                    log.info("worker.token_renewed")
                    await self._send_token()
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
    parser.add_argument("--budgeted", action="store_true", help="reserve tokens through the supervisor per call")
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
