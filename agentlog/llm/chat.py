"""The port planners and executors talk to a language model through: chat completions with tool calls, streamed.

The shapes follow the OpenAI chat-completions wire format, the one most servers speak (OpenAI, vLLM, llama.cpp,
Ollama, LiteLLM), so that a provider maps them one to one: a stream of `ChatChunk`s (text deltas, tool-call deltas
keyed by their index, the usage in the last chunk), which `collect` folds into one `ChatResponse`. A provider only
has to implement `stream`.

A profile names what a caller wants (`balanced` for planners, `speed` for executors, as in seed 004), and
configuration maps it to a model and a temperature, so that callers never name models.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from agentlog.llm.port import LLMProviderError

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asks for: `arguments` already parsed from the JSON text the model wrote."""

    call_id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    """For a `tool` message: the call it answers."""

    def to_wire(self) -> dict[str, Any]:
        """The message as the chat-completions API takes it."""
        wire: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            wire["tool_calls"] = [
                {"id": call.call_id, "type": "function",
                 "function": {"name": call.name, "arguments": json.dumps(dict(call.arguments))}}
                for call in self.tool_calls
            ]  # fmt: skip
        if self.tool_call_id is not None:
            wire["tool_call_id"] = self.tool_call_id
        return wire


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model is shown it: a name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]

    def to_wire(self) -> dict[str, Any]:
        function = {"name": self.name, "description": self.description, "parameters": dict(self.parameters)}
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call as streamed: the first piece of index `index` carries its id and name, the following
    ones more of its arguments' JSON text."""

    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class ChatChunk:
    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """What a caller asks for by name; configuration gives its model and temperature."""

    name: str
    model: str
    temperature: float = 0.7
    max_tokens: int = 2_048


DEFAULT_PROFILES: Mapping[str, tuple[float, int]] = {"balanced": (0.7, 2_048), "speed": (0.3, 1_024)}
"""Seed 004's profiles: the planner reasons (`balanced`, warmer), executors look things up (`speed`, cooler)."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    profile: Profile
    tools: tuple[ToolSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """One whole answer: the assistant message (text and/or tool calls), what it cost and how long it took."""

    message: ChatMessage
    provider: str
    model: str
    usage: Usage
    finish_reason: str
    duration_ms: float
    chunks: int = 0
    first_chunk_ms: float | None = None
    text_parts: tuple[str, ...] = field(default=(), repr=False)


@runtime_checkable
class ChatProvider(Protocol):
    """Answers chat requests. Implementations own resources (an HTTP pool): `aclose` them."""

    provider: str

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The answer as it is produced; raises `LLMProviderError` saying what failed."""
        ...

    async def aclose(self) -> None: ...


RUNAWAY_CHARS_PER_TOKEN = 16
"""An answer longer than this many characters per token of the profile's `max_tokens` is a runaway stream (a
token is about four characters): it is cut off as the provider's error rather than kept in memory for ever."""


async def collect(provider: ChatProvider, request: ChatRequest) -> ChatResponse:
    """Run `request` and fold its stream into one response: text deltas joined, tool-call deltas joined by index
    and their arguments parsed (a call whose arguments are not a JSON object is the provider's error). A stream
    that runs past `max_tokens` many times over, or reports negative usage, is the provider's error too."""
    began = time.perf_counter()
    limit = max(request.profile.max_tokens, 1) * RUNAWAY_CHARS_PER_TOKEN + 4_096
    received = 0
    first: float | None = None
    parts: list[str] = []
    calls: dict[int, list[Any]] = {}
    finish = "stop"
    usage = Usage()
    count = 0
    async for chunk in provider.stream(request):
        count += 1
        received += len(chunk.text) + sum(len(d.arguments) + len(d.name or "") for d in chunk.tool_calls)
        if received > limit:
            raise LLMProviderError(f"the answer ran past {limit:,} characters (max_tokens "
                                   f"{request.profile.max_tokens:,}): cut off", provider=provider.provider,
                                   model=request.profile.model)  # fmt: skip
        if first is None:
            first = (time.perf_counter() - began) * 1000
        if chunk.text:
            parts.append(chunk.text)
        for delta in chunk.tool_calls:
            call = calls.setdefault(delta.index, [None, None, []])
            call[0] = call[0] or delta.call_id
            call[1] = call[1] or delta.name
            call[2].append(delta.arguments)
        if chunk.finish_reason:
            finish = chunk.finish_reason
        if chunk.usage is not None:
            if chunk.usage.prompt_tokens < 0 or chunk.usage.completion_tokens < 0:
                raise LLMProviderError(f"negative usage ({chunk.usage.prompt_tokens}, "
                                       f"{chunk.usage.completion_tokens})", provider=provider.provider,
                                       model=request.profile.model)  # fmt: skip
            usage = chunk.usage
    tool_calls = tuple(_tool_call(provider.provider, request.profile.model, index, *call)
                       for index, call in sorted(calls.items()))  # fmt: skip
    message = ChatMessage("assistant", "".join(parts), tool_calls)
    duration = (time.perf_counter() - began) * 1000
    return ChatResponse(message, provider.provider, request.profile.model, usage, finish, duration, count, first,
                        tuple(parts))  # fmt: skip


def _tool_call(provider: str, model: str, index: int, call_id: str | None, name: str | None,
               pieces: Sequence[str]) -> ToolCall:  # fmt: skip
    if not name:
        raise LLMProviderError(f"tool call {index} has no function name", provider=provider, model=model)
    text = "".join(pieces).strip() or "{}"
    try:
        arguments = json.loads(text)
    except json.JSONDecodeError as error:
        raise LLMProviderError(f"tool call {name}: arguments are not JSON ({error.msg})", provider=provider,
                               model=model) from error  # fmt: skip
    except (ValueError, RecursionError) as error:  # a number of thousands of digits, a nesting thousands deep
        raise LLMProviderError(f"tool call {name}: arguments JSON is unreadable ({type(error).__name__})",
                               provider=provider, model=model) from error  # fmt: skip
    if not isinstance(arguments, dict):
        raise LLMProviderError(f"tool call {name}: arguments are not a JSON object", provider=provider, model=model)
    return ToolCall(call_id or f"call_{index}", name, arguments)


def estimate_tokens(request: ChatRequest) -> int:
    """What to reserve on a budget before the call: the prompt's size (about four characters a token, the tools'
    schemas included) plus the most the answer may take."""
    text = sum(len(m.content) + sum(len(json.dumps(dict(c.arguments))) for c in m.tool_calls)
               for m in request.messages)  # fmt: skip
    tools = sum(len(json.dumps(spec.to_wire())) for spec in request.tools)
    return (text + tools) // 4 + 16 * len(request.messages) + request.profile.max_tokens
