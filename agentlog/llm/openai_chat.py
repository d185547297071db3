"""A `ChatProvider` speaking the OpenAI chat-completions wire format, streamed: OpenAI, vLLM, llama.cpp, Ollama...

The answer comes as Server-Sent Events: `data: {chunk}` lines, a blank line after each event, `data: [DONE]` last.
Each chunk's `choices[0].delta` carries a piece of the text (`content`) and/or pieces of tool calls (`tool_calls`,
keyed by `index`: the first piece has the call's `id` and `function.name`, the following ones more of
`function.arguments`); the last choice chunk has the `finish_reason`; with `stream_options.include_usage` a final
chunk with no choices carries the `usage`. Each chunk becomes one `ChatChunk`; `agentlog.llm.chat.collect` joins
them.

Lines are split on CR and LF only, as the SSE format says, not with `httpx`'s `aiter_lines`: that splits like
`str.splitlines`, on U+2028, U+0085 and others too, which servers send unescaped inside JSON strings (a model's
text may hold them), and a chunk cut there would no longer parse.

`timeout_s` bounds each wait: for the connection, for the answer to begin, and between two pieces of the stream; a
long answer that keeps streaming is not cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import structlog

from agentlog.llm.chat import ChatChunk, ChatRequest, ToolCallDelta, Usage
from agentlog.llm.port import LLMProviderError

PROVIDER = "openai-compatible"
_SNIPPET_CHARS = 200
_DONE = "[DONE]"
_DRAIN_S = 1.0
"""How long to wait, after `[DONE]`, for the response's end: read to the end, the connection goes back to the pool."""
_NEWLINE = re.compile(rb"\r\n|\r|\n")
_SSE_FIELDS = frozenset({"data", "event", "id", "retry"})

_log = structlog.get_logger(__name__)


class _ChunkError(Exception):
    """A chunk that is not what the API sends; the message says what is wrong with it."""


class _ReportedError(Exception):
    """An error the server sent in the stream instead of a chunk."""


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET_CHARS else flat[: _SNIPPET_CHARS - 3] + "..."


def _error_text(body: str) -> str:
    """An error body's `error.message` (the API's shape), or the body itself, on one line."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return _one_line(body)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return _one_line(message) if isinstance(message, str) and message.strip() else _one_line(body)


def chat_body(request: ChatRequest) -> dict[str, Any]:
    """The JSON body of the `/chat/completions` call for `request`."""
    profile = request.profile
    body: dict[str, Any] = {
        "model": profile.model,
        "temperature": profile.temperature,
        "max_tokens": profile.max_tokens,
        "messages": [message.to_wire() for message in request.messages],
    }
    if request.tools:
        body["tools"] = [tool.to_wire() for tool in request.tools]
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body


class OpenAICompatibleChat:
    """A `ChatProvider` backed by any `/chat/completions` endpoint that streams (`stream: true`)."""

    provider: str = PROVIDER

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float = 60) -> None:
        self.url = f"{base_url.rstrip('/')}/chat/completions"
        self.timeout_s = timeout_s
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s))

    def _error(self, model: str, message: str) -> LLMProviderError:
        return LLMProviderError(message, provider=self.provider, model=model, url=self.url)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The answer's chunks as they arrive; raises `LLMProviderError` saying what failed."""
        model = request.profile.model
        chunks = 0
        answering = False  # the response's status line and headers have arrived
        try:
            async with self._client.stream("POST", self.url, json=chat_body(request)) as response:
                answering = True
                if response.is_error:
                    await response.aread()
                    raise self._error(model, f"HTTP {response.status_code}: {_error_text(response.text)}")
                done = False
                stray: list[str] = []  # the first line that is no SSE field: what was sent instead of events
                async with contextlib.aclosing(_sse_data(response.aiter_bytes(), stray)) as events:
                    async for data in events:
                        if data == _DONE:
                            done = True
                            break
                        try:
                            chunk = _chunk(data)
                        except _ChunkError as exc:
                            raise self._error(model, f"malformed chunk {chunks + 1}: {exc}") from exc
                        except _ReportedError as exc:
                            raise self._error(model, f"the server sent an error after {chunks} chunks: {exc}") from exc
                        chunks += 1
                        yield chunk
                    if done:
                        await self._drain(events, model)
                if not done:
                    raise self._error(model, self._unfinished(response, chunks, stray))
        except httpx.TimeoutException as exc:
            if not answering:
                raise self._error(model, f"no answer within {self.timeout_s:g}s ({type(exc).__name__})") from exc
            raise self._error(model, f"the stream stalled: nothing for {self.timeout_s:g}s after {chunks} chunks "
                                     f"({type(exc).__name__})") from exc  # fmt: skip
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {_one_line(str(exc))}"
            if not answering:
                raise self._error(model, f"request failed: {detail}") from exc
            if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
                raise self._error(model, f"the stream was cut off after {chunks} chunks: {detail}") from exc
            raise self._error(model, f"the stream failed after {chunks} chunks: {detail}") from exc

    @staticmethod
    def _unfinished(response: httpx.Response, chunks: int, stray: list[str]) -> str:
        if chunks == 0 and stray:
            kind = response.headers.get("content-type", "none")
            return f"the response is not an event stream (content-type {kind}): {_one_line(stray[0])}"
        return f"the stream was cut off: it ended after {chunks} chunks without data: {_DONE}"

    async def _drain(self, events: AsyncIterator[str], model: str) -> None:
        """Read what follows `[DONE]` (normally only the end of the body), so that the connection is reused."""
        try:
            async with asyncio.timeout(_DRAIN_S):
                async for _ in events:
                    pass
        except (TimeoutError, httpx.HTTPError) as exc:  # the answer is whole: the connection is just not reused
            _log.warning("llm.stream_not_closed_after_done", provider=self.provider, model=model, url=self.url,
                         error=type(exc).__name__)  # fmt: skip

    async def aclose(self) -> None:
        await self._client.aclose()


async def _sse_lines(pieces: AsyncIterator[bytes]) -> AsyncGenerator[str, None]:
    """The lines of an event stream, split on CRLF, LF or CR (a CR at the end of a piece waits for a LF)."""
    pending = b""
    first = True
    async for piece in pieces:
        pending += piece
        held = pending.endswith(b"\r")
        *lines, pending = _NEWLINE.split(pending[:-1] if held else pending)
        if held:
            pending += b"\r"
        for line in lines:
            text = _decode(line)
            if first:
                text, first = text.removeprefix("\ufeff"), False
            yield text
    pending = pending.removesuffix(b"\r")
    if pending:
        yield _decode(pending).removeprefix("\ufeff") if first else _decode(pending)


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise httpx.DecodingError(f"the event stream is not UTF-8: {line[:80]!r}") from exc


async def _sse_data(pieces: AsyncIterator[bytes], stray: list[str]) -> AsyncGenerator[str, None]:
    """The data of each event (its `data` lines joined by LF); comments and the other fields are dropped, and the
    first line that is no SSE field at all is kept in `stray`. An event the stream ends in is still given."""
    data: list[str] = []
    async with contextlib.aclosing(_sse_lines(pieces)) as lines:
        async for line in lines:
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
                continue
            if line.startswith(":"):  # a comment, such as ": keep-alive"
                continue
            name, colon, value = line.partition(":")
            if name == "data":
                data.append(value.removeprefix(" "))
            elif not stray and (not colon or name not in _SSE_FIELDS):
                stray.append(line)
    if data:
        yield "\n".join(data)


def _chunk(data: str) -> ChatChunk:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError as exc:
        raise _ChunkError(f"not JSON ({exc.msg}): {_one_line(data)}") from exc
    except (ValueError, RecursionError) as exc:  # a number of thousands of digits, a nesting thousands deep
        raise _ChunkError(f"unreadable JSON ({type(exc).__name__}): {_one_line(data)}") from exc
    if not isinstance(chunk, dict):
        raise _ChunkError(f"not a JSON object: {_one_line(data)}")
    if chunk.get("error") is not None:  # vLLM, LiteLLM and others report a failure mid-stream so
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else None
        raise _ReportedError(_one_line(str(message or error)))
    usage = _usage(chunk.get("usage"), data)
    choices = chunk.get("choices")
    if choices is None and usage is not None:
        return ChatChunk(usage=usage)
    if not isinstance(choices, list):
        raise _ChunkError(f"choices is not a list: {_one_line(data)}")
    if not choices:
        return ChatChunk(usage=usage)
    choice = choices[0]
    if not isinstance(choice, dict):
        raise _ChunkError(f"choices[0] is not an object: {_one_line(data)}")
    delta = choice.get("delta") or {}
    if not isinstance(delta, dict):
        raise _ChunkError(f"choices[0].delta is not an object: {_one_line(data)}")
    text = delta.get("content") or ""
    if not isinstance(text, str):
        raise _ChunkError(f"choices[0].delta.content is not a string: {_one_line(data)}")
    finish = choice.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise _ChunkError(f"choices[0].finish_reason is not a string: {_one_line(data)}")
    calls = delta.get("tool_calls") or ()
    if not isinstance(calls, list | tuple):
        raise _ChunkError(f"choices[0].delta.tool_calls is not a list: {_one_line(data)}")
    deltas = tuple(_tool_call_delta(position, call, data) for position, call in enumerate(calls))
    return ChatChunk(text, deltas, finish or None, usage)


def _tool_call_delta(position: int, call: Any, data: str) -> ToolCallDelta:
    where = f"choices[0].delta.tool_calls[{position}]"
    if not isinstance(call, dict):
        raise _ChunkError(f"{where} is not an object: {_one_line(data)}")
    index = call.get("index", position)  # some servers leave the index out when there is one call
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise _ChunkError(f"{where}.index is not a natural number: {_one_line(data)}")
    call_id = call.get("id")
    function = call.get("function") or {}
    if not isinstance(function, dict):
        raise _ChunkError(f"{where}.function is not an object: {_one_line(data)}")
    name = function.get("name")
    arguments = function.get("arguments") or ""
    if isinstance(arguments, dict):  # a few servers send the arguments parsed already
        arguments = json.dumps(arguments)
    if not (isinstance(call_id, str | None) and isinstance(name, str | None) and isinstance(arguments, str)):
        raise _ChunkError(f"{where}: id, function.name or function.arguments is not a string: {_one_line(data)}")
    return ToolCallDelta(index, call_id or None, name or None, arguments)


def _usage(usage: Any, data: str) -> Usage | None:
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise _ChunkError(f"usage is not an object: {_one_line(data)}")
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    if not (isinstance(prompt, int) and isinstance(completion, int)):
        raise _ChunkError(f"usage.prompt_tokens or usage.completion_tokens is not an integer: {_one_line(data)}")
    return Usage(prompt, completion)
