"""A fake OpenAI chat-completions server: real HTTP/1.1 on 127.0.0.1 (an ephemeral port), plain asyncio, streaming
exactly as the API does.

    async with FakeOpenAI(api_key="sk-test") as fake:
        fake.script(Answer.say("Hello there", pieces=3), Answer.call(FakeCall("search", {"q": "Paris"})))
        provider = OpenAICompatibleChat(fake.base_url, "sk-test")
        ...
        fake.requests[0].body["model"]

Each POST to `/v1/chat/completions` takes the next scripted `Answer` (or `default` once there are none; with
neither, an HTTP 500 saying so) and streams it as the API would: a first chunk with the assistant's role, the text
in content deltas, the tool calls (the id and name first, then the arguments' JSON text in pieces; calls one after
the other, or interleaved by index), a chunk with the `finish_reason`, a usage-only chunk when the request asked for
it (`stream_options.include_usage`), then `data: [DONE]`; one HTTP chunk per event, the connection kept alive.
JSON is written as vLLM and others do, compact and with non-ASCII characters unescaped.

An answer also says how to fail: an HTTP status, a delay before answering or between events, a stream that ends
early (cleanly, or by resetting the connection), a garbage event, SSE comments and `event:` lines to be ignored, or
a raw body instead of a stream. Meant for tests and for benchmarks of per-call overhead: no framework, an answer
without delays is written in one go.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

_ROUTE = "/v1/chat/completions"
_END = b"0\r\n\r\n"
_DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class FakeCall:
    """A tool call to stream: `arguments` as JSON (a string is sent as is, valid JSON or not), in `pieces` deltas."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    call_id: str | None = None
    """`call_<index>` unless given."""
    pieces: int = 3


@dataclass(frozen=True, slots=True)
class Answer:
    """One scripted response."""

    text: tuple[str, ...] = ()
    """The content deltas, as sent."""
    calls: tuple[FakeCall, ...] = ()
    interleave: bool = False
    """Tool-call deltas round-robin by index, instead of one call after the other."""
    finish_reason: str | None = None
    """`tool_calls` when there are calls, `stop` otherwise, unless given."""
    usage: tuple[int, int] = (17, 9)
    """Prompt and completion tokens."""
    status: int = 200
    body: str = ""
    """The body sent with a status other than 200."""
    raw: str | None = None
    """Sent with status 200 as an `application/json` body instead of a stream."""
    delay_s: float = 0.0
    """Before the status line: a slow server."""
    chunk_delay_s: float = 0.0
    """Before each event."""
    cut_after: int | None = None
    """End the body cleanly after this many events, without `[DONE]`."""
    drop_after: int | None = None
    """Reset the connection after this many events, mid-body."""
    garbage: str | None = None
    """An event with this data, sent after the first one."""
    sse_extras: bool = False
    """`: keep-alive` comments and `event:`/`id:` lines around the events, which clients must ignore."""

    @classmethod
    def say(cls, text: str, *, pieces: int = 3, usage: tuple[int, int] = (17, 9)) -> Answer:
        """`text` in `pieces` content deltas of about equal length."""
        return cls(text=tuple(_split(text, pieces)), usage=usage)

    @classmethod
    def call(cls, *calls: FakeCall, interleave: bool = False, text: str = "") -> Answer:
        """Tool calls, after `text` (in one delta) if any."""
        return cls(text=(text,) if text else (), calls=calls, interleave=interleave)

    @classmethod
    def error(
        cls, status: int = 500, message: str = "The server had an error while processing your request."
    ) -> Answer:
        """An error status with the API's error body."""
        return cls(status=status, body=json.dumps({"error": {"message": message, "type": "server_error"}}))


@dataclass(frozen=True, slots=True)
class Received:
    """A request as the fake received it; `body` parsed from JSON."""

    method: str
    path: str
    headers: Mapping[str, str]
    """Names in lower case."""
    body: Any


def _split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[start : start + size] for start in range(0, len(text), size)]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _events(answer: Answer, model: str, include_usage: bool) -> list[bytes]:
    """The answer's events, each `data: ...` and a blank line, `[DONE]` last."""
    created = int(time.time())
    chunks: list[dict[str, Any]] = []

    def choice(delta: dict[str, Any], finish: str | None = None) -> None:
        chunk: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            chunk["usage"] = None
        chunks.append(chunk)

    choice({"role": "assistant", "content": None if answer.calls and not answer.text else "", "refusal": None})
    for piece in answer.text:
        choice({"content": piece})
    streams: list[list[dict[str, Any]]] = []
    for index, call in enumerate(answer.calls):
        arguments = call.arguments if isinstance(call.arguments, str) else _json(dict(call.arguments))
        first = {"index": index, "id": call.call_id or f"call_{index}", "type": "function",
                 "function": {"name": call.name, "arguments": ""}}  # fmt: skip
        streams.append([first, *({"index": index, "function": {"arguments": piece}}
                                 for piece in _split(arguments, call.pieces))])  # fmt: skip
    if answer.interleave:
        deltas = [stream[n] for n in range(max(map(len, streams), default=0)) for stream in streams if n < len(stream)]
    else:
        deltas = [delta for stream in streams for delta in stream]
    for delta in deltas:
        choice({"tool_calls": [delta]})
    choice({}, answer.finish_reason or ("tool_calls" if answer.calls else "stop"))
    if include_usage:
        prompt, completion = answer.usage
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        chunks.append({**chunks[-1], "choices": [], "usage": usage})
    events = [f"data: {_json(chunk)}\n\n".encode() for chunk in chunks]
    if answer.garbage is not None:
        events.insert(1, f"data: {answer.garbage}\n\n".encode())
    events.append(_DONE)
    if answer.sse_extras:
        events = [b": keep-alive\n\n", *(b"event: message\nid: %d\n" % n + event for n, event in enumerate(events))]
    return events


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _head(status: int, headers: Mapping[str, str]) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _plain(status: int, body: str, content_type: str = "application/json") -> bytes:
    data = body.encode()
    return _head(status, {"content-type": content_type, "content-length": str(len(data))}) + data


def _api_error(status: int, message: str) -> bytes:
    return _plain(status, json.dumps({"error": {"message": message, "type": "invalid_request_error"}}))


class FakeOpenAI:
    """The fake server, as an async context manager: `base_url` (ending in `/v1`) once entered."""

    def __init__(self, *, api_key: str | None = None, default: Answer | None = None, record: bool = True) -> None:
        self.api_key = api_key
        """When given, a request without `Authorization: Bearer <api_key>` is answered 401."""
        self.default = default
        """The answer once the scripted ones are used up."""
        self.record = record
        self.answers: deque[Answer] = deque()
        self.requests: list[Received] = []
        self.connections = 0
        """How many connections were accepted (a client that keeps its connections alive opens one)."""
        self.base_url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rendered: dict[tuple[str, bool], tuple[Answer | None, list[bytes]]] = {}

    def script(self, *answers: Answer) -> None:
        """Queue answers for the next requests, in order."""
        self.answers.extend(answers)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            try:
                while await self._exchange(reader, writer):
                    pass
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # the client went away
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
        except asyncio.CancelledError:
            if self._server is not None:
                raise
            # Cancelled by `__aexit__`: end quietly (asyncio 3.11 logs a connection task cancelled as an error).
        finally:
            self._tasks.discard(task)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection stays open for another."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return False
        except asyncio.LimitOverrunError:
            writer.write(_api_error(431, "request headers too large"))
            return False
        request_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            writer.write(_api_error(411, "the fake takes bodies with a content-length only"))
            return False
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        keep_alive = headers.get("connection", "").lower() != "close"
        response = await self._respond(method, path, headers, raw)
        if isinstance(response, bytes):
            writer.write(response)
            await writer.drain()
            return keep_alive
        return await self._stream(writer, *response) and keep_alive

    async def _respond(
        self, method: str, path: str, headers: Mapping[str, str], raw: bytes
    ) -> bytes | tuple[Answer, list[bytes]]:
        """A whole response, or the answer and events to stream."""
        if method != "POST" or path.partition("?")[0] != _ROUTE:
            return _api_error(404, f"no route {method} {path}")
        try:
            body = json.loads(raw)
        except ValueError:
            return _api_error(400, "the body is not JSON")
        if self.record:
            self.requests.append(Received(method, path, headers, body))
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return _api_error(401, "Incorrect API key provided.")
        if not isinstance(body, dict) or body.get("stream") is not True:
            return _api_error(400, "the fake only streams: the body must be an object with stream: true")
        answer = self.answers.popleft() if self.answers else self.default
        if answer is None:
            return _plain(500, json.dumps({"error": {"message": "the fake has no scripted answer left"}}))
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        if answer.status != 200:
            return _plain(answer.status, answer.body)
        if answer.raw is not None:
            return _plain(200, answer.raw)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        model = str(body.get("model"))
        if answer is not self.default:
            return answer, _events(answer, model, include_usage)
        key = (model, include_usage)  # the default answer is rendered once per model: benchmarks repeat it
        if self._rendered.get(key, (None, []))[0] is not answer:
            self._rendered[key] = (answer, _events(answer, model, include_usage))
        return answer, self._rendered[key][1]

    async def _stream(self, writer: asyncio.StreamWriter, answer: Answer, events: list[bytes]) -> bool:
        """Stream `events` as `answer` says; whether the connection is still usable."""
        head = _head(200, {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
                           "transfer-encoding": "chunked"})  # fmt: skip
        cut = answer.drop_after if answer.drop_after is not None else answer.cut_after
        sent = events if cut is None else events[:cut]
        if not answer.chunk_delay_s:
            tail = b"" if answer.drop_after is not None else _END
            writer.write(head + b"".join(map(_http_chunk, sent)) + tail)
            await writer.drain()
        else:
            writer.write(head)
            for event in sent:
                await asyncio.sleep(answer.chunk_delay_s)
                writer.write(_http_chunk(event))
                await writer.drain()
            if answer.drop_after is None:
                writer.write(_END)
                await writer.drain()
        if answer.drop_after is not None:
            writer.transport.abort()
            return False
        return True
